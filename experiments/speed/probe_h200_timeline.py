"""The GPU timeline of batch-1 decode steps (LLaDA-8B, fixed, no cache): where the time between two
graphed forwards goes. Writes every kernel of 4 profiled steps to $OUT/timeline_*.txt and prints
gaps and host API time. Run: PYTHONPATH=. python results/speed/probe_h200_timeline.py
Ran at commit 303c74c; the lookahead loop it compares (`methods/loop.py` `_Lookahead`) was removed
afterwards for want of a measurable gain (results/speed/REPORT.md).
"""
import os, time
import torch
from torch.autograd import DeviceType
from torch.profiler import profile, ProfilerActivity
import decoding.loop as loop
from models import load_model
from decoding.base import GenConfig
from decoding.registry import build_method, parse_methods

out_dir = os.environ.get("OUT", ".")
m = load_model("llada-8b", device="cuda", dtype=torch.bfloat16, no_weights=True)
P, G, BL = 512, 256, 32
g = torch.Generator(device="cuda").manual_seed(0)
prompt = torch.randint(2000, 100000, (1, P), device="cuda", generator=g).tolist()
real = loop._Lookahead.surely_continues
for tag, judge in (("lookahead", real), ("nolookahead", lambda self: False)):
    loop._Lookahead.surely_continues = judge
    for spec in ("fixed", "threshold"):
        gen = GenConfig(gen_length=G, block_length=BL, early_stop=False, max_steps=G // BL)   # 8 steps
        loop.decode(m, build_method(parse_methods(spec)[0], gen), prompt, gen)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as p:
            r = loop.decode(m, build_method(parse_methods(spec)[0], gen), prompt, gen)
            torch.cuda.synchronize()
        steps = int(r.steps.max())
        ev = sorted((e for e in p.events() if e.device_type == DeviceType.CUDA), key=lambda e: e.time_range.start)
        rows, gaps, prev = [], [], None
        for e in ev:
            gap = 0.0 if prev is None else e.time_range.start - prev.time_range.end
            rows.append(f"{e.time_range.start - ev[0].time_range.start:10.1f} {e.time_range.elapsed_us():8.1f} gap {gap:7.1f}  {e.name[:90]}")
            if prev is not None:
                gaps.append((gap, prev.name[:50], e.name[:50]))
            prev = e
        with open(f"{out_dir}/timeline_{tag}_{spec}.txt", "w") as f:
            f.write("\n".join(rows))
        span = ev[-1].time_range.end - ev[0].time_range.start
        busy = sum(e.time_range.elapsed_us() for e in ev)
        big = sorted(gaps, reverse=True)[:8]
        print(f"{tag} {spec}: {steps} steps, GPU span {span / steps / 1e3:.3f} ms/step, kernels busy {busy / steps / 1e3:.3f} ms/step, "
              f"{len(ev) / steps:.0f} kernels/step, idle {(span - busy) / steps / 1e3:.3f} ms/step, gaps > 20 us: "
              f"{sum(g for g, _, _ in gaps if g > 20) / steps / 1e3:.3f} ms/step")
        for gap, a, b in big:
            print(f"   gap {gap:8.1f} us after {a!r} before {b!r}")
        api = [e for e in p.key_averages() if e.key.startswith("cuda") and e.device_type == DeviceType.CPU]
        print("   host API per step: " + ", ".join(f"{e.key} {e.cpu_time_total / steps / 1e3:.3f} ms x{e.count / steps:.1f}"
                                             for e in sorted(api, key=lambda e: -e.cpu_time_total)[:6]))
