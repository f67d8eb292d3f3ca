"""Each method's step time outside its forwards, measured inside the decode itself (GPU), with no
separately timed forwards to compare against.

For each method spec (LLaDA-8B random weights, calibrated confidence as bench/bench_speed.py):
a warm-up decode (it captures the graphs), a timed decode as users run it (steps queued ahead), then
a profiled decode in which every model forward (a forward graph's replay, an eager forward) runs
inside a `dllm.forward` range and no step is queued ahead (a queued step is one graph holding its
forward and its bookkeeping). A forward's GPU time is its span on the GPU: from the first to the
last of the kernels, copies and fills launched inside its range. The loop's overhead is the share of the step that is not
forward GPU time: (wall - forwards) / wall, the same ratio bench_speed prints, for the timed decode
and for the profiled one.

    python experiments/speed/forward_share.py --batch 8 --methods "threshold:cache=dual;prr:controller=/tmp/random-controller,cache=dual"
"""
from __future__ import annotations

import bisect
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from acceleration import Decoder, graphs  # noqa: E402
from calibrated import calibrated, speed_args  # noqa: E402
from decoding.registry import build_method, parse_methods  # noqa: E402

TAG = "dllm.forward"


def tagged(fn):
    def call(*args, **kwargs):
        with record_function(TAG):
            return fn(*args, **kwargs)
    return call


def forward_gpu_us(events) -> tuple[float, float, float]:
    """(GPU us the forwards span, GPU us of their kernels, GPU us of all kernels) of a chrome trace's
    events. A forward is an outermost TAG range on the host; its work is the kernels, copies and fills
    whose launching runtime call (matched by correlation id) lies inside it, and its span runs from
    its first such kernel's start to its last one's end (the gaps between its kernels included)."""
    ranges = []
    for s, e in sorted((e["ts"], e["ts"] + e.get("dur", 0)) for e in events
                       if e.get("cat") == "user_annotation" and e.get("name") == TAG):
        if ranges and s <= ranges[-1][1]:   # nested or overlapping: one forward
            ranges[-1][1] = max(ranges[-1][1], e)
        else:
            ranges.append([s, e])
    starts = [s for s, _ in ranges]
    launch = {e["args"]["correlation"]: e["ts"] for e in events
              if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    first, last, inside, total = {}, {}, 0.0, 0.0
    for e in events:
        if e.get("cat") not in ("kernel", "gpu_memcpy", "gpu_memset"):
            continue
        s, d = e["ts"], e.get("dur", 0)
        total += d
        t = launch.get(e.get("args", {}).get("correlation"))
        i = -1 if t is None else bisect.bisect_right(starts, t) - 1
        if i >= 0 and t <= ranges[i][1]:
            inside += d
            first[i], last[i] = min(first.get(i, s), s), max(last.get(i, s + d), s + d)
    return sum(last[i] - first[i] for i in first), inside, total


def decode_once(decoder, spec, prompts, gen):
    res = decoder(build_method(parse_methods(spec)[0], gen), prompts, gen)
    torch.cuda.synchronize()
    return res


@torch.no_grad()
def main():
    a = speed_args(batch=8).parse_args()
    model, prompts, gen = calibrated(a)
    graphs.GraphedCall.__call__ = tagged(graphs.GraphedCall.__call__)
    model.forward = tagged(model.forward)
    decoder = Decoder(model)
    for spec in a.methods:
        decode_once(decoder, spec, prompts, gen)
        t0 = time.perf_counter()
        res = decode_once(decoder, spec, prompts, gen)
        wall, steps = time.perf_counter() - t0, int(res.steps.max())
        os.environ["DLLM_QUEUE_AHEAD"] = "0"
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
            t0 = time.perf_counter()
            decode_once(decoder, spec, prompts, gen)
            wall_p = time.perf_counter() - t0
        del os.environ["DLLM_QUEUE_AHEAD"]
        trace = Path(tempfile.mkdtemp()) / "trace.json"
        p.export_chrome_trace(str(trace))
        fwd, kernels, gpu = (x / 1e6 for x in forward_gpu_us(json.loads(trace.read_text())["traceEvents"]))
        ms = lambda s: s / steps * 1e3
        print(f"{spec} b={a.batch}: {steps} steps; wall {ms(wall):.2f} ms/step (profiled {ms(wall_p):.2f}); "
              f"forwards {ms(fwd):.2f} ms/step on the GPU (their kernels {ms(kernels):.2f}), other GPU work "
              f"{ms(gpu - kernels):.3f} ms/step; loop overhead {(wall - fwd) / wall:.2%} "
              f"(profiled {(wall_p - fwd) / wall_p:.2%})", flush=True)


if __name__ == "__main__":
    main()
