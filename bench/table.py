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


def summary_table(rows: list[dict], fmt: str = "github") -> str:
    cols = COLUMNS
    if len({r.get("task") for r in rows}) > 1:   # several tasks in one run: say which row is which
        cols = [("task", "task", None)] + cols
    return tabulate([[_fmt(r.get(k), s) for k, _, s in cols] for r in rows],
                    headers=[h for _, h, _ in cols], tablefmt=fmt, disable_numparse=True)
