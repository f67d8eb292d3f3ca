"""Metric definitions, written once (README "Metrics" quotes them).

- NFE: model forward calls per sample, cache-refresh forwards included (CFG: two per step).
- gen_tokens: generated tokens before the first EOS (padding and mask excluded).
- TPF: tokens per forward = sum(gen_tokens) / sum(NFE) over the samples (ratio of totals).
- latency: wall time of the decode call that produced the sample (token ids in, token ids out),
  GPU synchronized at both ends, warm-up excluded; mean, p50, p90 over samples. With batch size
  b > 1 every sample of a batch carries its batch's latency.
- time_per_sample_s: total decode time / n (the batch-amortized cost of one sample).
- tokens_per_s: sum(gen_tokens) / total decode time (ratio of totals; each decode call counted once).
- energy: NVML energy over the decode calls: per sample = total / n, per token = total / sum(gen_tokens);
  gross and net of idle power. null (never 0) without a GPU.
- speedup: baseline total decode time / method total decode time, over the same samples, from
  the same run and device.
"""
from __future__ import annotations

import math
import statistics


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]), as numpy's default."""
    s = sorted(values)
    if not s:
        return math.nan
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _batches(reqs: list[dict]) -> dict[str, dict]:
    """One entry per decode call: its latency and energy, counted once however many samples."""
    out = {}
    for r in reqs:
        out.setdefault(r["batch_id"], r)
    return out


def summarize_method(reqs: list[dict]) -> dict:
    n = len(reqs)
    correct = [bool(r["correct"]) for r in reqs if r["correct"] is not None]
    acc = sum(correct) / len(correct) if correct else None
    nfe = sum(r["nfe"] for r in reqs)
    toks = sum(r["gen_tokens"] for r in reqs)
    batches = _batches(reqs)
    total_s = sum(b["batch_latency_s"] for b in batches.values())
    lat = [r["batch_latency_s"] for r in reqs]
    energies = [b["batch_energy_j"] for b in batches.values()]
    energy = sum(energies) if energies and all(e is not None for e in energies) else None
    net = [b.get("batch_energy_net_j") for b in batches.values()]
    energy_net = sum(net) if net and all(e is not None for e in net) else None
    return {
        "n": n,
        "accuracy": acc,
        "accuracy_stderr": math.sqrt(acc * (1 - acc) / len(correct)) if correct else None,
        "nfe_mean": nfe / n,
        "gen_tokens_mean": toks / n,
        "tpf": toks / nfe if nfe else None,
        "latency_s_mean": statistics.fmean(lat),
        "latency_s_p50": percentile(lat, 50),
        "latency_s_p90": percentile(lat, 90),
        "time_per_sample_s": total_s / n,
        "decode_time_s": total_s,
        "tokens_per_s": toks / total_s if total_s > 0 else None,
        "energy_j_per_sample": energy / n if energy is not None else None,
        "energy_j_per_token": energy / toks if energy is not None and toks else None,
        "energy_net_j_per_sample": energy_net / n if energy_net is not None else None,
    }


def add_speedup(rows: list[dict], baseline: str) -> None:
    """speedup = baseline's total decode time / the method's, on the same samples."""
    base = next((r for r in rows if r["method"] == baseline), None)
    for r in rows:
        comparable = base is not None and base["n"] == r["n"] and r["decode_time_s"] > 0
        r["speedup"] = base["decode_time_s"] / r["decode_time_s"] if comparable else None
