"""How long building the step graphs (CapturedStep: warm-up + capture) takes per decode call."""
import time
import torch
import decoding.loop as loop
from acceleration.graphs import CapturedStep
from models import load_model
from decoding.base import GenConfig
from decoding.registry import build_method, parse_methods

costs = []


class Timed(CapturedStep):
    def __init__(self, fn, *state):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        super().__init__(fn, *state)
        torch.cuda.synchronize()
        costs.append(time.perf_counter() - t0)


loop.CapturedStep = Timed
model = load_model("llada-8b", device="cuda", dtype=torch.bfloat16, no_weights=True)
g = torch.Generator().manual_seed(0)
prompts = torch.randint(300, 30000, (1, 512), generator=g).tolist()
gen = GenConfig(gen_length=256, block_length=32, early_stop=False)
for spec in ("fixed", "threshold", "fixed:cache=dual", "threshold:cache=dual"):
    for rep in range(2):
        costs.clear()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = loop.decode(model, build_method(parse_methods(spec)[0], gen), prompts, gen)
        torch.cuda.synchronize()
        total = time.perf_counter() - t0
        print(f"{spec} call {rep}: decode {total * 1e3:.0f} ms, {int(res.steps.max())} steps, step graphs built "
              f"{len(costs)} taking " + ", ".join(f"{c * 1e3:.1f}" for c in costs) + " ms", flush=True)
