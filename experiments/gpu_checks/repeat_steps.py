"""Whether repeated decodes of one kept captured decode take the same steps (GPU): LLaDA-8B random
weights, calibrated confidence, one method spec, the same prompts decoded `--reps` times per
setting of the speed switches named (each off in turn, then all on again).

    python experiments/gpu_checks/repeat_steps.py --spec "klass:cache=dual" --batch 8 \
        --switches DLLM_QUEUE_AHEAD,DLLM_MIXED_STEPS,DLLM_COMPILE_STEP

The ms/step of a call includes the compiles and captures of the first one. Run it in two
processes to see whether the tokens repeat across processes (experiments/gpu_checks/determinism.sh).
"""
import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from acceleration import Decoder  # noqa: E402
from decoding.base import GenConfig  # noqa: E402
from decoding.registry import build_method, parse_methods  # noqa: E402
from models import load_model  # noqa: E402
from models.calibrate import calibrate_confidence_  # noqa: E402


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--switches", default="")
    a = ap.parse_args()
    dev = torch.device("cuda")
    model = load_model("llada-8b", device="cuda", dtype=torch.bfloat16, no_weights=True)
    g = torch.Generator(device=dev).manual_seed(1)
    sample = torch.randint(2000, 100000, (1, a.prompt), device=dev, generator=g)
    calibrate_confidence_(model, torch.cat([sample, torch.full((1, a.gen), model.mask_id, device=dev)], 1), 0.5, tau=0.9)
    prompts = torch.randint(2000, 100000, (a.batch, a.prompt), device=dev,
                            generator=torch.Generator(device=dev).manual_seed(0)).tolist()
    gen = GenConfig(gen_length=a.gen, block_length=32, early_stop=False)
    settings = [("all on", {})] + [(f"{s}=0", {s: "0"}) for s in a.switches.split(",") if s] + [("all on", {})]
    for name, env in settings:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        decoder = Decoder(model) if "COMPILE" in "".join(env) else globals().setdefault("_dec", Decoder(model))
        runs = []
        for _ in range(a.reps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            res = decoder(build_method(parse_methods(a.spec)[0], gen), prompts, gen)
            torch.cuda.synchronize()
            steps = int(res.steps.max())
            runs.append((steps, res.tokens.sum().item(), round(1e3 * (time.perf_counter() - t0) / steps, 2)))
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        print(f"{a.spec} b{a.batch} {name}: (steps, token checksum, ms/step) per call {runs}", flush=True)


if __name__ == "__main__":
    main()
