"""GPU parity of the fast path: acceleration.Decoder (CUDA graphs, captured steps, compiled
bookkeeping) against the reference loop decoding.loop.decode (every step eager, no graphs), for
every registered method at cache none and dual, on a random-weight model whose confidence is
calibrated (models/calibrate.py) so adaptive methods commit several tokens per step. A block-causal
config (sdar-8b, llada2-mini, fast-dllm-v2-7b) runs the methods that apply to it, in the model's
default blocks (Fast-dLLM v2: its sub-blocks of 8): the fast path is then the captured block
decode (acceleration/captured_block.py).

    python experiments/gpu_checks/fast_vs_reference.py --config llada-8b --batch 8 --gen 128
    python experiments/gpu_checks/fast_vs_reference.py --config sdar-8b --batch 8 --gen 128
    python experiments/gpu_checks/fast_vs_reference.py --config sdar-8b --batch 4 --suffix ,append=separate
    python experiments/gpu_checks/fast_vs_reference.py --only cache=dual --save /tmp/fast.pt   # to compare trees

Prints one line per method: rows with equal tokens and NFE, and the mean NFE per row.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from acceleration import Decoder  # noqa: E402
from bench.bench_speed import all_methods  # noqa: E402
from decoding.base import GenConfig  # noqa: E402
from decoding.block_causal import default_block  # noqa: E402
from decoding.loop import decode  # noqa: E402
from decoding.registry import build_method, parse_methods  # noqa: E402
from models import load_model  # noqa: E402
from models.calibrate import calibrate_confidence_  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="llada-8b")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--share", type=float, default=0.5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--only", default="", help="run only the method specs containing this text, e.g. cache=dual")
    ap.add_argument("--suffix", default="", help="settings added to every spec, e.g. ,append=separate")
    ap.add_argument("--save", default="", help="write the fast path's tokens and NFE per spec here (torch.save), "
                    "to compare two trees")
    a = ap.parse_args()
    model = load_model(a.config, device=a.device, dtype=torch.bfloat16 if a.device == "cuda" else torch.float32, no_weights=True)
    g = torch.Generator(device=a.device).manual_seed(0)
    lens = [a.prompt - (a.prompt // (2 * a.batch)) * i for i in range(a.batch)]   # left padding in the batch
    prompts = [torch.randint(3, min(100000, model.mask_id - 1), (n,), device=a.device, generator=g).tolist() for n in lens]
    sample = torch.tensor([prompts[0] + [model.mask_id] * a.gen], device=a.device)
    cal = calibrate_confidence_(model, sample, a.share)
    print(f"{a.config}: final norm x{cal.scale:.1f}, share {cal.measured_share:.3f} at top-1 >= 0.9", flush=True)
    block_causal = model.regime == "block_causal"
    gen = GenConfig(gen_length=a.gen, block_length=default_block(model) if block_causal else a.block)
    decoder = Decoder(model)
    all_equal, saved = True, {}
    cfg = model.module.cfg
    specs = all_methods(model, getattr(cfg, "d_model", None) or cfg.hidden_size)
    if block_causal:      # no cache modes, no truncated forwards (decoding/block_causal.check)
        specs = [s for s in specs if "cache=" not in s and not s.startswith(("slowfast", "wino"))]
    for spec in [s + a.suffix for s in specs if a.only in s]:
        fast = decoder(build_method(parse_methods(spec)[0], gen), prompts, gen)
        fast2 = decoder(build_method(parse_methods(spec)[0], gen), prompts, gen)   # the kept graphs, refilled
        ref = decode(model, build_method(parse_methods(spec)[0], gen), prompts, gen)
        same = ((fast.tokens == ref.tokens).all(1) & (fast.nfe == ref.nfe)
                & (fast2.tokens == ref.tokens).all(1) & (fast2.nfe == ref.nfe))
        all_equal &= bool(same.all())
        saved[spec] = {"tokens": fast.tokens.cpu(), "nfe": fast.nfe.cpu()}
        label = spec if "controller=" not in spec else "prr(random controller)" + spec[spec.find(",cache"):] * (",cache" in spec)
        print(f"{label}: {int(same.sum())}/{a.batch} rows equal (tokens, NFE; fast path twice), "
              f"mean NFE/row {ref.nfe.float().mean():.1f}", flush=True)
    print("ALL EQUAL" if all_equal else "DIFFERENCES FOUND")
    if a.save:
        torch.save(saved, a.save)


if __name__ == "__main__":
    main()
