"""Lookahead on vs off for the built-in model on the GPU (small graphs, short steps), alternated
A/B/A/B in one process. Run: PYTHONPATH=. python results/speed/lookahead_tiny_h200.py
Ran at commit c0be878 (script uncommitted then); the lookahead loop it compares (`methods/loop.py` `_Lookahead`) was removed
afterwards for want of a measurable gain (results/speed/REPORT.md).
"""
import time
import torch
import decoding.loop as loop
from models import load_model
from decoding.base import GenConfig
from decoding.registry import build_method, parse_methods
from tasks.arith import test_problems

m = load_model("tiny", device="cuda", dtype=torch.float32)
probs = test_problems(256)
prompts = [m.tokenizer.encode(p.prompt) for p in probs]
real = loop._Lookahead.surely_continues
for early_stop in (False, True):
    gen = GenConfig(gen_length=48, block_length=16, early_stop=early_stop)
    for spec in ("fixed", "threshold"):
        for rnd in range(2):
            for tag, judge in (("lookahead", real), ("no lookahead", lambda self: False)):
                loop._Lookahead.surely_continues = judge
                batches = [prompts[i:i + 16] for i in range(0, len(prompts), 16)]
                loop.decode(m, build_method(parse_methods(spec)[0], gen), batches[0], gen)
                torch.cuda.synchronize()
                t0, steps = time.perf_counter(), 0
                for b in batches:
                    r = loop.decode(m, build_method(parse_methods(spec)[0], gen), b, gen)
                    steps += int(r.steps.max())
                torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                print(f"early_stop={early_stop} {spec} round {rnd} {tag}: {dt * 1e3 / steps:.3f} ms/step "
                      f"({steps} steps, {dt:.3f} s)", flush=True)
