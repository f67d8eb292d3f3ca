"""Numbers quoted in REPORT.md, from the committed result files (run from the repo root):
    python results/h100-measurement/analyze.py"""
import gzip
import json
from pathlib import Path

D = Path(__file__).parent / "runs"
runs = {r: (json.loads((D / r / "run.json").read_text()), json.loads((D / r / "summary.json").read_text()))
        for r in ("rep1", "rep2", "split", "power", "crash")}

print("## meter (per run: mode, idle W, counter update period s, min trusted window s, GPU state)")
for r, (info, _) in runs.items():
    e = info["energy"]
    idles = [round(s["energy"]["idle_w"], 2) for s in info["sessions"]]
    print(f"{r:6s} {e['mode']:15s} idle_w per session {idles} period {e['counter_update_period_s']} "
          f"min_window {e['min_window_s']:.3f} gpu {e['gpus'][0]['name']} {e['gpus'][0]['temperature_c']} C "
          f"limit {e['gpus'][0]['power_limit_w']} W")

print("\n## energy per sample, repeats rep1 / rep2 (gross and net of idle), spread = |a-b| / mean")
rows = {r: {x["method"]: x for x in s["rows"]} for r, (_, s) in runs.items()}
print(f"{'method':22s} {'gross J/sample':>24s} {'spread':>7s} {'net J/sample':>22s} {'spread':>7s} "
      f"{'s/sample':>18s} {'spread':>7s} windows")
for m in rows["rep1"]:
    a, b = rows["rep1"][m], rows["rep2"][m]
    def sp(k):
        x, y = a[k], b[k]
        return f"{x:10.4f} {y:10.4f}", f"{abs(x - y) / ((x + y) / 2):6.1%}"
    g, gs = sp("energy_j_per_sample")
    n, ns = sp("energy_net_j_per_sample")
    t, ts = sp("time_per_sample_s")
    print(f"{m:22s} {g:>24s} {gs:>7s} {n:>22s} {ns:>7s} {t:>18s} {ts:>7s} "
          f"{a['energy_method']} ({a['energy_short_windows']} short)")

print("\n## mean GPU power during decode = gross energy / decode time (W), rep1 / rep2")
for m in rows["rep1"]:
    pw = [rows[r][m]["energy_j_per_sample"] / rows[r][m]["time_per_sample_s"] for r in ("rep1", "rep2")]
    print(f"{m:22s} {pw[0]:6.1f} W {pw[1]:6.1f} W  spread {abs(pw[0] - pw[1]) / (sum(pw) / 2):.1%}")

print("\n## power-sampling fallback (run 'power') against the counter (mean of rep1, rep2)")
for m in rows["rep1"]:
    c = (rows["rep1"][m]["energy_j_per_sample"] + rows["rep2"][m]["energy_j_per_sample"]) / 2
    p = rows["power"][m]["energy_j_per_sample"]
    print(f"{m:22s} counter {c:.4f} J/sample  power sampling {p:.4f} J/sample  ({p / c - 1:+.1%}), "
          f"{rows['power'][m]['energy_method']}")

print("\n## latency split (run 'split', --time-forwards true: a sync before and after every forward)")
for m, x in rows["split"].items():
    print(f"{m:22s} forward {x['forward_frac']:.1%}  outside forward {1 - x['forward_frac']:.1%}  "
          f"s/sample {x['time_per_sample_s']:.4f} (rep1 {rows['rep1'][m]['time_per_sample_s']:.4f})")

print("\n## peak GPU memory, Fast-dLLM throughput definition, warm-up")
for m, x in rows["rep1"].items():
    print(f"{m:22s} peak {x['peak_mem_gb'] * 1024:.1f} MiB  tok/s {x['tokens_per_s']:.0f}  "
          f"tok/s (Fast-dLLM def.) {x['tokens_per_s_fastdllm']:.0f}")
for l in (D / "rep1" / "warmup.jsonl").read_text().splitlines():
    w = json.loads(l)
    print(f"warm-up {w['method']:22s} {w['latency_s']:.3f} s  {w['energy_j']:.1f} J (excluded)")

print("\n## crash (kill -9) and resume vs uninterrupted: per-sample outputs, NFE, correctness")
def load(r):
    with gzip.open(D / r / "requests.jsonl.gz", "rt") as f:
        return {(l["method"], l["doc_id"]): (l["output"], l["nfe"], l["correct"]) for l in map(json.loads, f)}
a, c, b = load("rep1"), load("crash"), load("rep2")
print(f"crash+resume: {len(c)} samples, {sum(a[k] != c[k] for k in a)} differ from rep1; "
      f"rep2: {sum(a[k] != b[k] for k in a)} differ; sessions in crash/run.json: {len(runs['crash'][0]['sessions'])}")
keys = ("accuracy", "nfe_mean", "tpf", "gen_tokens_mean", "n")
same = all(rows["crash"][m][k] == rows["rep1"][m][k] for m in rows["rep1"] for k in keys)
print(f"summary {keys} identical between crash+resume and rep1: {same}")
