"""Where a whole captured decode's wall time goes (GPU): for each method spec, decode once
(LLaDA-8B random weights, calibrated confidence as bench/bench_speed.py), then a second decode on
the kept graphs under torch.profiler (CPU and CUDA): its wall time, the host calls by self time
(syncs, graph launches, eager ops between the graphs) and the GPU work by total time, so the part of
a step outside its forward and step graph shows where it is.

    python experiments/speed/decode_timeline.py --batch 8 --methods "threshold:cache=dual;prr:controller=/tmp/random-controller,cache=dual"
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from acceleration import Decoder  # noqa: E402
from calibrated import calibrated, speed_args  # noqa: E402
from decoding.registry import build_method, parse_methods  # noqa: E402


@torch.no_grad()
def main():
    a = speed_args(batch=8).parse_args()
    model, prompts, gen = calibrated(a)
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
