"""Where a whole captured decode's wall time goes (GPU): for each method spec, decode once
(LLaDA-8B random weights, calibrated confidence as bench/bench_speed.py), then a second decode on
the kept graphs under torch.profiler (CPU and CUDA): its wall time, the host calls by self time
(syncs, graph launches, eager ops between the graphs) and the GPU work by total time, so the part of
a step outside its forward and step graph shows where it is.

    python experiments/speed/decode_timeline.py --batch 8 --methods "threshold:cache=dual;prr:controller=/tmp/random-controller,cache=dual"
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from acceleration import Decoder  # noqa: E402
from decoding.base import GenConfig  # noqa: E402
from decoding.registry import build_method, parse_methods  # noqa: E402
from models import load_model  # noqa: E402
from models.calibrate import calibrate_confidence_  # noqa: E402


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="llada-8b")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--methods", type=lambda s: s.split(";"), required=True)
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()
    dev = torch.device("cuda")
    model = load_model(a.config, device="cuda", dtype=torch.bfloat16, no_weights=True)
    g = torch.Generator(device=dev).manual_seed(1)
    sample = torch.randint(2000, 100000, (1, a.prompt), device=dev, generator=g)
    calibrate_confidence_(model, torch.cat([sample, torch.full((1, a.gen), model.mask_id, device=dev)], 1), 0.5, tau=0.9)
    prompts = torch.randint(2000, 100000, (a.batch, a.prompt), device=dev,
                            generator=torch.Generator(device=dev).manual_seed(0)).tolist()
    gen = GenConfig(gen_length=a.gen, block_length=a.block, early_stop=False)
    decoder = Decoder(model)
    for spec in a.methods:
        decoder(build_method(parse_methods(spec)[0], gen), prompts, gen)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = decoder(build_method(parse_methods(spec)[0], gen), prompts, gen)
        torch.cuda.synchronize()
        wall, steps = time.perf_counter() - t0, int(res.steps.max())
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
            decoder(build_method(parse_methods(spec)[0], gen), prompts, gen)
            torch.cuda.synchronize()
        ev = p.key_averages()
        print(f"== {spec}: {steps} steps, {wall / steps * 1e3:.2f} ms/step wall (unprofiled)")
        print("  host, by self CPU time (ms/step, calls/step):")
        for e in sorted(ev, key=lambda e: -e.self_cpu_time_total)[:a.top]:
            print(f"    {e.self_cpu_time_total / 1e3 / steps:8.3f}  {e.count / steps:6.1f}  {e.key[:110]}")
        print("  GPU, by device time (ms/step, calls/step):")
        dt = lambda e: getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        for e in sorted(ev, key=lambda e: -dt(e))[:a.top]:
            print(f"    {dt(e) / 1e3 / steps:8.3f}  {e.count / steps:6.1f}  {e.key[:110]}")


if __name__ == "__main__":
    main()
