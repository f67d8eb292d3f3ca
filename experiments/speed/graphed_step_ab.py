"""Batch-1 loop overhead, the step's bookkeeping graphed (Method.graph_step) vs eager, alternated
in one process on one model (llada-8b, random weights, bf16, prompt 512 + gen 256, block 32).
Overhead as bench/bench_speed.py measures it: decode time minus the forwards timed by CUDA
events inside the loop. The eager variant is the same code with graph_step switched off.

    python results/speed/graphed_step_ab.py --rounds 3 [--methods "fixed:cache=dual;threshold:cache=dual"]
"""
import argparse
import time

import torch

from bench.measure import EventForwardTimer
from models import load_model
from decoding.base import GenConfig, Method
from decoding.methods.fixed import FixedMethod
from decoding.loop import decode
from decoding.registry import build_method, parse_methods
from decoding.methods.threshold import ThresholdMethod

ap = argparse.ArgumentParser()
ap.add_argument("--config", default="llada-8b")
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--methods", default="fixed;threshold", help="specs separated by ';'")
args = ap.parse_args()

dev = torch.device("cuda")
model = load_model(args.config, device="cuda", dtype=torch.bfloat16, no_weights=True)
g = torch.Generator().manual_seed(0)
prompts = torch.randint(300, 30000, (args.batch, 512), generator=g).tolist()
gen = GenConfig(gen_length=256, block_length=32, early_stop=False)
warm = GenConfig(gen_length=256, block_length=32, early_stop=False, max_steps=8)


def set_graphed(on: bool):
    FixedMethod.graph_step = property(lambda self: on and self.cfg.remasking == "low_confidence")
    ThresholdMethod.graph_step = on


def once(spec, graphed):
    set_graphed(graphed)
    decode(model, build_method(parse_methods(spec)[0], warm), prompts, warm)
    torch.cuda.synchronize()
    with EventForwardTimer(model, [dev]) as timer:
        t0 = time.perf_counter()
        res = decode(model, build_method(parse_methods(spec)[0], gen), prompts, gen)
        torch.cuda.synchronize()
        total = time.perf_counter() - t0
    fwd, n = timer.take()
    steps = int(res.steps.max())
    return res, steps, total / steps, fwd / n, 100 * (total - fwd) / total


out = {}
for r in range(args.rounds):
    for spec in args.methods.split(";"):
        for graphed in ((True, False) if r % 2 == 0 else (False, True)):
            res, steps, step, fwd, pct = once(spec, graphed)
            out.setdefault((spec, graphed), []).append((pct, step, res))
            print(f"round {r} b={args.batch} {spec:9s} {'graphed' if graphed else 'eager  '} steps {steps} "
                  f"step {step * 1e3:.2f} ms forward {fwd * 1e3:.2f} ms loop overhead {pct:.2f}%", flush=True)
for spec in args.methods.split(";"):
    a, b = out[(spec, True)], out[(spec, False)]
    same = all(torch.equal(x[2].tokens, y[2].tokens) and torch.equal(x[2].nfe, y[2].nfe) for x, y in zip(a, b))
    print(f"b={args.batch} {spec}: graphed {min(p for p, *_ in a):.2f}-{max(p for p, *_ in a):.2f}% "
          f"(step {min(s for _, s, _ in a) * 1e3:.2f}-{max(s for _, s, _ in a) * 1e3:.2f} ms), "
          f"eager {min(p for p, *_ in b):.2f}-{max(p for p, *_ in b):.2f}% "
          f"(step {min(s for _, s, _ in b) * 1e3:.2f}-{max(s for _, s, _ in b) * 1e3:.2f} ms); "
          f"tokens and NFE equal: {same}")
