"""Per-row NFE of eb:cache=dual at batch 8 on random LLaDA-8B (calibrated as bench_speed does),
fast path and reference loop, with and without compiled kernels in the reference cache forwards
(decoding/cache.py, small_inputs_compiled); counts non-finite entropies at candidates.

    python experiments/gpu_checks/eb_dual_rows.py
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import decoding.cache as cache_mod  # noqa: E402
import decoding.methods.eb as eb_mod  # noqa: E402
from acceleration import Decoder  # noqa: E402
from decoding.base import GenConfig  # noqa: E402
from decoding.loop import decode  # noqa: E402
from decoding.registry import build_method, parse_methods  # noqa: E402
from models import load_model  # noqa: E402
from models.calibrate import calibrate_confidence_  # noqa: E402

dev = torch.device("cuda")
model = load_model("llada-8b", device="cuda", dtype=torch.bfloat16, no_weights=True)
g = torch.Generator(device=dev).manual_seed(1)
sample = torch.randint(2000, 100000, (1, 512), device=dev, generator=g)
sample = torch.cat([sample, torch.full((1, 256), model.mask_id, device=dev)], 1)
calibrate_confidence_(model, sample, 0.5, tau=0.9)
g = torch.Generator(device=dev).manual_seed(0)
prompts = torch.randint(2000, 100000, (8, 512), device=dev, generator=g).tolist()
gen = GenConfig(gen_length=256, block_length=32, early_stop=False)
bad = [0]
inner = eb_mod.block_entropy


def counted(view, out, bl):
    ent = inner(view, out, bl)
    bad[0] += int((~torch.isfinite(ent) & view.candidates).sum())
    return ent


decoder = Decoder(model)
m = lambda: build_method(parse_methods("eb:cache=dual")[0], gen)
for wrap in ("compiled", "eager"):
    if wrap == "eager":
        cache_mod.small_inputs_compiled = contextlib.nullcontext
    decoder.pool.clear()
    decoder(m(), prompts, gen)
    fast = decoder(m(), prompts, gen)
    bad[0] = 0
    eb_mod.block_entropy = counted   # the reference loop only: a captured step cannot sync
    ref = decode(model, m(), prompts, gen)
    eb_mod.block_entropy = inner
    print(f"reference cache forwards {wrap}: fast nfe {fast.nfe.tolist()}; "
          f"reference nfe {ref.nfe.tolist()} (non-finite {bad[0]}); equal rows "
          f"{int(((fast.tokens == ref.tokens).all(1) & (fast.nfe == ref.nfe)).sum())}/8", flush=True)
