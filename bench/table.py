"""The console table printed after a run."""
from __future__ import annotations

from tabulate import tabulate

COLUMNS = [("method", "method", None), ("n", "n", None), ("accuracy", "accuracy", ".3f"),
           ("nfe_mean", "NFE", ".2f"), ("tpf", "tok/fwd", ".2f"),
           ("tpf_all", "tok/fwd all", ".2f"), ("time_per_sample_s", "s/sample", ".4f"),
           ("latency_s_p50", "latency p50 (s)", ".3f"), ("tokens_per_s", "tok/s", ".1f"),
           ("tokens_per_s_all", "tok/s all", ".1f"),
           ("energy_j_per_sample", "J/sample", ".2f"), ("speedup", "speedup", ".2f")]


def _fmt(v, spec):
    if v is None:
        return "n/a"
    return format(v, spec) if spec else v


# timings taken on a busy machine (bench/load.py) carry this marker and the footnote
LOAD_MARK = "*"
TIMED = ("time_per_sample_s", "latency_s_p50", "tokens_per_s", "tokens_per_s_all", "energy_j_per_sample")


def _cell(r, key, spec):
    text = _fmt(r.get(key), spec)
    flagged = r.get("speedup_under_load") if key == "speedup" else r.get("timing_under_load") if key in TIMED else None
    return text + LOAD_MARK if flagged and r.get(key) is not None else text


def summary_table(rows: list[dict], fmt: str = "github") -> str:
    cols = COLUMNS
    for key, head in (("batch_size", "batch"), ("chat", "chat"), ("task", "task")):
        if len({r.get(key) for r in rows}) > 1:   # several tasks or sweep points: say which row is which
            cols = [(key, head, None)] + cols
    table = tabulate([[_cell(r, k, s) for k, _, s in cols] for r in rows],
                     headers=[h for _, h, _ in cols], tablefmt=fmt, disable_numparse=True)
    reasons = [r["load_reason"] for r in rows if r.get("timing_under_load") and r.get("load_reason")]
    if reasons:
        table += (f"\n{LOAD_MARK} timed under load, not a trustworthy figure (bench/load.py): {reasons[0]}"
                  + (f" ({len(reasons)} rows)" if len(reasons) > 1 else ""))
    return table
