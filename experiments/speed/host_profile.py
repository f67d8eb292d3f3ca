"""GPU probe: where a captured decode's host time goes. Decodes once (random weights, calibrated
confidence, as bench/bench_speed.py; builds and keeps the step graphs), then a second decode timed
whole and under torch.profiler (CPU and CUDA): its wall time per step, and the host operations and
CUDA runtime calls by their own CPU time, the table printed to stdout.

    python experiments/speed/host_profile.py --config fast-dllm-v2-7b --block 8 --methods threshold --top 30
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from acceleration import Decoder  # noqa: E402
from calibrated import calibrated, speed_args  # noqa: E402
from decoding.registry import build_method, parse_methods  # noqa: E402


@torch.no_grad()
def main():
    a = speed_args().parse_args()
    model, prompts, gen = calibrated(a)
    decoder = Decoder(model)
    for spec in a.methods:
        def once():
            return decoder(build_method(parse_methods(spec)[0], gen), prompts, gen)
        once()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = once()
        torch.cuda.synchronize()
        wall, steps = time.perf_counter() - t0, int(res.steps.max())
        acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=acts) as prof:
            once()
            torch.cuda.synchronize()
        print(f"== {spec}: {steps} steps, {wall * 1e3:.1f} ms whole, {wall / steps * 1e3:.3f} ms/step")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.top, max_name_column_width=60))


if __name__ == "__main__":
    main()
