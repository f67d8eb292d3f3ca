"""Where a whole captured decode's wall time goes (GPU): for each method spec, decode once
(LLaDA-8B random weights, calibrated confidence as bench/bench_speed.py), then a second decode on
the kept graphs under torch.profiler (CPU and CUDA): its wall time, the host calls by self time
(syncs, graph launches, eager ops between the graphs), the GPU work by total time, and the GPU's idle
gaps (from the trace: time between one kernel's end and the next one's start, over 5 us), summed by
the host call running at each gap's middle, so the part of a step outside its forward and step graph
shows where it is.

    python experiments/speed/decode_timeline.py --batch 8 --methods "threshold:cache=dual;prr:controller=/tmp/random-controller,cache=dual"
"""
from __future__ import annotations

import json
import sys
import tempfile
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
        trace = Path(tempfile.mkdtemp()) / "trace.json"
        p.export_chrome_trace(str(trace))
        busy, idle, by_call = gpu_gaps(json.loads(trace.read_text())["traceEvents"])
        print(f"  GPU busy {busy / 1e3 / steps:.3f} ms/step, idle in gaps over 5 us {idle / 1e3 / steps:.3f} ms/step; "
              f"the gaps by the host call at their middle (ms/step, gaps/step):")
        for name, (t, n) in sorted(by_call.items(), key=lambda kv: -kv[1][0])[:a.top]:
            print(f"    {t / 1e3 / steps:8.3f}  {n / steps:6.2f}  {name[:110]}")


def gpu_gaps(events, min_gap_us: float = 5.0):
    """(GPU busy us, idle us in gaps over min_gap_us, {host call: (idle us, gaps)}) of a chrome trace's
    events: kernels, copies and fills on the device; the host call for a gap is the shortest CPU op
    or CUDA runtime call spanning its middle."""
    dev = sorted((e["ts"], e["ts"] + e.get("dur", 0)) for e in events
                 if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset"))
    host = [(e["ts"], e["ts"] + e.get("dur", 0), e["name"]) for e in events
            if e.get("cat") in ("cpu_op", "cuda_runtime", "cuda_driver", "user_annotation")]
    busy, idle, by_call, end = 0.0, 0.0, {}, dev[0][0]
    for s, e in dev:
        if s - end > min_gap_us:
            mid = (s + end) / 2
            spans = [h for h in host if h[0] <= mid <= h[1]]
            name = min(spans, key=lambda h: h[1] - h[0])[2] if spans else "(no host call)"
            t, n = by_call.get(name, (0.0, 0))
            by_call[name] = (t + s - end, n + 1)
            idle += s - end
        busy += max(0.0, e - max(s, end))
        end = max(end, e)
    return busy, idle, by_call


if __name__ == "__main__":
    main()
