"""Metric definitions, written once (README "Metrics" quotes them).

- NFE: model forward calls per sample, cache-refresh forwards included (CFG: two per step).
- gen_tokens: generated tokens before the first EOS (padding and mask excluded).
- TPF: tokens per forward = sum(gen_tokens) / sum(NFE) over the samples (ratio of totals).
- latency: wall time of the decode call that produced the sample (token ids in, token ids out),
  GPU synchronized at both ends, warm-up excluded; mean, p50, p90 over samples. With batch size
  b > 1 every sample of a batch carries its batch's latency.
- latency_s_min: the fastest decode call (best of the batches; robust to load from other
  processes, which the regression gate relies on).
- cpu_time_s: CPU time of the benchmark process (all threads) over the decode calls; on a CPU-only
  run it is the decode's cost without the time other processes took from it.
- time_per_sample_s: total decode time / n (the batch-amortized cost of one sample).
- tokens_per_s: sum(gen_tokens) / total decode time (ratio of totals; each decode call counted once).
- energy: NVML energy over the decode calls: per sample = total / n, per token = total / sum(gen_tokens);
  gross and net of idle power. null (never 0) without a GPU.
  A decode window shorter than the meter's resolution (flagged `batch_energy_short`) is not
  trusted alone: the method's energy is then attributed over the span of its consecutive windows
  (first window start to last window end in one process), scaled by decode time / span time
  (`energy_method: "span"`); with no short window it is the plain sum (`"windows"`). A span
  itself shorter than the resolution gives null with a note, never 0.
- peak_mem_gb: the largest peak allocated GPU memory of any decode window (GPUs in use), in GiB.
- forward_frac: (instrumented runs, --time-forwards) time inside model forward calls / decode
  time; 1 - forward_frac is the share spent outside the model (selection, bookkeeping, Python).
- speedup: baseline total decode time / method total decode time, over the same samples, from
  the same run and device.
- tokens_per_s_fastdllm (labelled alternative, for parity with Fast-dLLM's published tables; its
  llada/eval_llada.py `show_speed`): tokens of the stop-cut output re-tokenized, EOS excluded,
  over the *wall time of the whole generation loop* (tokenization, decode, detokenization,
  scoring and writing included, no GPU synchronization, warm-up excluded). Usually lower than
  tokens_per_s; never compare it with tokens_per_s.
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
    en = method_energy(list(batches.values()))
    energy, energy_net = en["energy_j"], en["energy_net_j"]
    mems = [b.get("batch_peak_mem_bytes") for b in batches.values()]
    fwd = [b.get("batch_forward_s") for b in batches.values()]
    walls = [b.get("batch_wall_s") for b in batches.values()]
    ftoks = [r.get("fastdllm_tokens") for r in reqs]
    temps = [b.get("gpu_temp_c") for b in batches.values() if b.get("gpu_temp_c") is not None]
    return {
        "n": n,
        "accuracy": acc,
        "accuracy_stderr": math.sqrt(acc * (1 - acc) / len(correct)) if correct else None,
        "nfe_mean": nfe / n,
        # forwards fed only part of the sequence (SlowFast's fast phase); each still counts 1 NFE
        "nfe_truncated_mean": sum(r.get("nfe_truncated", 0) for r in reqs) / n,
        "remasks_mean": sum(r.get("remasks", 0) for r in reqs) / n,
        "edits_mean": sum(r.get("edits", 0) for r in reqs) / n,
        "gen_tokens_mean": toks / n,
        "tpf": toks / nfe if nfe else None,
        "latency_s_mean": statistics.fmean(lat),
        "latency_s_p50": percentile(lat, 50),
        "latency_s_p90": percentile(lat, 90),
        "latency_s_min": min(b["batch_latency_s"] for b in batches.values()),
        "time_per_sample_s": total_s / n,
        "decode_time_s": total_s,
        "cpu_time_s": (sum(b["batch_cpu_s"] for b in batches.values())
                       if all(b.get("batch_cpu_s") is not None for b in batches.values()) else None),
        "tokens_per_s": toks / total_s if total_s > 0 else None,
        "energy_j_per_sample": energy / n if energy is not None else None,
        "energy_j_per_token": energy / toks if energy is not None and toks else None,
        "energy_net_j_per_sample": energy_net / n if energy_net is not None else None,
        "energy_net_j_per_token": energy_net / toks if energy_net is not None and toks else None,
        "energy_method": en["energy_method"],
        "energy_short_windows": en["short_windows"],
        "energy_note": en["note"],
        "peak_mem_gb": max(mems) / 2**30 if mems and all(m is not None for m in mems) else None,
        "forward_frac": sum(fwd) / total_s if fwd and all(f is not None for f in fwd) and total_s > 0 else None,
        "gpu_temp_c_max": max(temps) if temps else None,
        "tokens_per_s_fastdllm": (sum(ftoks) / sum(walls) if ftoks and all(t is not None for t in ftoks)
                                  and walls and all(w is not None for w in walls) and sum(walls) > 0 else None),
    }


def method_energy(batches: list[dict]) -> dict:
    """Gross and net decode energy (J) of one method from its decode windows (one dict per
    window: the first request line of each batch). See the module doc for the attribution."""
    none = {"energy_j": None, "energy_net_j": None, "energy_method": None, "short_windows": None, "note": None}
    if not batches or any(b.get("batch_energy_j") is None for b in batches):
        return none
    short = [b for b in batches if b.get("batch_energy_short")]
    if not short:
        gross, how, note = sum(b["batch_energy_j"] for b in batches), "windows", None
    else:
        gross, how, note = 0.0, "span", None
        sessions: dict[str, list[dict]] = {}
        for b in batches:
            sessions.setdefault(b.get("session", ""), []).append(b)
        for bs in sessions.values():
            if any(b.get("batch_t_start") is None or b.get("batch_counter_start_j") is None for b in bs):
                return {**none, "short_windows": len(short),
                        "note": "short energy windows without counter readings to attribute them"}
            first = min(bs, key=lambda b: b["batch_t_start"])
            last = max(bs, key=lambda b: b["batch_t_end"])
            span_s = last["batch_t_end"] - first["batch_t_start"]
            span_j = last["batch_counter_end_j"] - first["batch_counter_start_j"]
            min_s = first.get("energy_min_window_s")
            if span_s <= 0 or min_s is None or span_s < min_s:
                return {**none, "short_windows": len(short),
                        "note": f"decode windows span {span_s:.3f} s, shorter than the energy counter's "
                                f"resolution ({min_s} s): run more samples (--limit) for energy"}
            gross += span_j * sum(b["batch_latency_s"] for b in bs) / span_s
        note = (f"{len(short)} of {len(batches)} decode windows shorter than the counter resolution: "
                f"energy attributed over the span of consecutive windows")
    idle = [b.get("idle_w") for b in batches]
    net = gross - sum(w * b["batch_latency_s"] for w, b in zip(idle, batches)) if all(
        w is not None for w in idle) else None
    return {"energy_j": gross, "energy_net_j": net, "energy_method": how, "short_windows": len(short), "note": note}


def add_speedup(rows: list[dict], baseline: str) -> None:
    """speedup = baseline's total decode time / the method's, on the same samples."""
    base = next((r for r in rows if r["method"] == baseline), None)
    for r in rows:
        comparable = base is not None and base["n"] == r["n"] and r["decode_time_s"] > 0
        r["speedup"] = base["decode_time_s"] / r["decode_time_s"] if comparable else None
