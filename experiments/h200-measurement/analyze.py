"""Numbers quoted in REPORT.md, from the committed result files (run from the repo root):
    python results/h200-measurement/analyze.py"""
import csv
import gzip
import json
from pathlib import Path

D = Path(__file__).parent / "runs"


def load(r):
    s = json.loads((D / r / "summary.json").read_text())
    return {x["method"]: x for x in s["rows"]}


def spread(a, b):
    return abs(a - b) / ((a + b) / 2)


rows = {r: load(r) for r in ("b32-rep1", "b32-rep2", "b32-split", "b256-rep1", "b256-rep2", "eager-A", "eager-B")}
info = {r: json.loads((D / r / "run.json").read_text()) for r in ("b32-rep1", "b32-rep2", "b32-split", "b256-rep1", "b256-rep2")}

print("## meter (per run: mode, idle W, counter update period s, min trusted window s, GPU)")
for r, i in info.items():
    e = i["energy"]
    print(f"{r:10s} {e['mode']:8s} idle_w {[round(s['energy']['idle_w'], 2) for s in i['sessions']]} "
          f"period {e['counter_update_period_s']} min_window {e['min_window_s']:.3f} "
          f"gpu {e['gpus'][0]['name']} {e['gpus'][0]['temperature_c']} C limit {e['gpus'][0]['power_limit_w']} W")


def repeats(a, b, title):
    print(f"\n## {title}: {a} / {b}; spread = |a-b| / mean")
    print(f"{'method':10s} {'gross J/sample':>20s} {'spread':>7s} {'net J/sample':>20s} {'spread':>7s} "
          f"{'s/sample':>16s} {'spread':>7s} {'mean W':>14s} {'spread':>7s}")
    for m in rows[a]:
        x, y = rows[a][m], rows[b][m]
        g = (x["energy_j_per_sample"], y["energy_j_per_sample"])
        n = (x["energy_net_j_per_sample"], y["energy_net_j_per_sample"])
        t = (x["time_per_sample_s"], y["time_per_sample_s"])
        w = (g[0] / t[0], g[1] / t[1])
        print(f"{m:10s} {g[0]:9.4f} {g[1]:9.4f} {spread(*g):7.1%} {n[0]:9.4f} {n[1]:9.4f} {spread(*n):7.1%} "
              f"{t[0]:8.5f} {t[1]:7.5f} {spread(*t):7.1%} {w[0]:6.1f} {w[1]:6.1f} {spread(*w):7.1%}")


repeats("eager-A", "eager-B", "before (eager forwards: commit abb1459 with the fused token_stats of 4536e5d), batch 32")
repeats("b32-rep1", "b32-rep2", "after (CUDA-graph forwards), batch 32")

print("\n## batch 256 (4 decode windows per method): energy per sample, or null with the reason")
for m in rows["b256-rep1"]:
    for r in ("b256-rep1", "b256-rep2"):
        x = rows[r][m]
        print(f"{r:10s} {m:10s} J/sample {x['energy_j_per_sample']}  s/sample {x['time_per_sample_s']:.5f}  "
              f"note: {x.get('energy_note')}")

print("\n## latency split (b32-split, --time-forwards true: a sync before and after every forward)")
for m, x in rows["b32-split"].items():
    print(f"{m:10s} forward {x['forward_frac']:.1%}  outside forward {1 - x['forward_frac']:.1%}  "
          f"s/sample {x['time_per_sample_s']:.5f} (b32-rep1 {rows['b32-rep1'][m]['time_per_sample_s']:.5f})")

print("\n## accuracy and NFE are the same in every run (greedy decoding)")
for m in rows["b32-rep1"]:
    vals = {(rows[r][m]["accuracy"], rows[r][m]["nfe_mean"]) for r in ("b32-rep1", "b32-rep2", "b32-split", "eager-A", "eager-B")}
    print(f"{m:10s} (accuracy, NFE) over the batch-32 runs: {sorted(vals)}")

print("\n## peak GPU memory, throughput (ours and Fast-dLLM's definition), warm-up (b32-rep1)")
for m, x in rows["b32-rep1"].items():
    print(f"{m:10s} peak {x['peak_mem_gb'] * 1024:.1f} MiB  tok/s {x['tokens_per_s']:.0f}  "
          f"tok/s (Fast-dLLM def.) {x['tokens_per_s_fastdllm']:.0f}")
for line in (D / "b32-rep1" / "warmup.jsonl").read_text().splitlines():
    w = json.loads(line)
    print(f"warm-up {w['method']:10s} {w['latency_s']:.3f} s  {w['energy_j']} J (excluded)")


def smi(name):
    """(SM clock MHz, GPU utilization %) of nvidia-smi samples taken every 100-200 ms during the runs."""
    out = []
    for r in csv.reader(open(Path(__file__).parent / name)):
        util = 4 if len(r) == 6 else 3   # the eager-run file also has the memory clock
        try:
            out.append((float(r[1].split()[0]), float(r[util].split()[0])))
        except (ValueError, IndexError):
            pass
    return out


for name in ("nvidia-smi-eager.csv", "nvidia-smi.csv"):
    s = smi(name)
    busy = [c for c, u in s if u > 0]
    print(f"\n{name}: {len(s)} samples, {len(busy)} with the GPU busy (utilization > 0); SM clock in those: "
          f"min {min(busy):.0f}, max {max(busy):.0f} MHz")
