"""Summarize a chrome trace of dual_timeline_probe_h200_049a0c6.py: per graph launch, kernels, span and busy
time, and the kernels of one step graph and one window forward graph.
Run: python results/speed/dual_timeline_summary.py trace_threshold_cachedual.json.gz"""
import gzip, json, sys, collections
d = json.load(gzip.open(sys.argv[1]))
ev = [e for e in d["traceEvents"] if e.get("ph") == "X"]
k = sorted([e for e in ev if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")], key=lambda e: e["ts"])
gl = sorted([e for e in ev if e["name"] == "cudaGraphLaunch"], key=lambda e: e["ts"])
by = collections.defaultdict(list)
for e in k: by[e["args"]["correlation"]].append(e)
for g in gl[4:10]:
    ks = by[g["args"]["correlation"]]
    span = ks[-1]["ts"] + ks[-1]["dur"] - ks[0]["ts"]; busy = sum(e["dur"] for e in ks)
    print(f"graph {len(ks)} kernels: span {span:.1f} us busy {busy:.1f} us")
# step graph kernels list
ks = by[gl[7]["args"]["correlation"]]
agg = collections.Counter()
for e in ks: agg[e["name"][:70]] += e["dur"]
for n, v in agg.most_common(12): print(f"   {v:7.1f} {n}")
# forward graph: kernel-type aggregate
ks = by[gl[6]["args"]["correlation"]]
agg = collections.Counter(); cnt = collections.Counter()
for e in ks: agg[e["name"][:90]] += e["dur"]; cnt[e["name"][:90]] += 1
gaps = sum(b["ts"] - (a["ts"] + a["dur"]) for a, b in zip(ks, ks[1:]))
print("forward graph gaps total", round(gaps, 1))
for n, v in agg.most_common(20): print(f"   {v:7.1f} x{cnt[n]:3d} {n}")
