"""Leaderboard tables and Pareto plots from result files alone (no rerun).

    python run_bench.py report results/runs/A results/runs/B --baseline fixed --out report/

Rows come from bench/frame.py (one per run, model, task and method); then a table of AUP per
method family (bench/aup.py). Tables: markdown (stdout by default), LaTeX (booktabs; the best
value of each column in bold, within each group of rows that share model, task and machine) and
CSV (full precision; the family's AUP as a column). The Pareto plot (bench/plots.py) needs
matplotlib, an optional extra: `pip install 'dllm-bench[plot]'`; without it the tables are still
written and a note says why the plot is missing.

Speedup is always computed inside one run (one machine, one session of measurements): the
baseline method's total decode time over the method's, on the same samples. A run that lacks the
chosen baseline gets no speedup; two runs are never combined into one speedup, since their
timings may come from different machines (or the same machine in another state).
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from . import aup, frame
from .plots import pareto_front, pareto_png  # noqa: F401  (pareto_front: part of this module's API)

# key, header, format, better ("max" / "min" / None)
COLUMNS = [
    ("run", "run", None, None), ("machine", "machine", None, None), ("model", "model", None, None),
    ("task", "task", None, None), ("method", "method", None, None), ("n", "n", "d", None),
    ("accuracy", "accuracy", ".3f", "max"), ("nfe_mean", "NFE", ".2f", "min"), ("tpf", "TPF", ".2f", "max"),
    ("latency_s_p50", "latency p50 (s)", ".4f", "min"), ("tokens_per_s", "tok/s", ".1f", "max"),
    ("energy_j_per_sample", "J/sample", ".3f", "min"), ("energy_j_per_token", "J/token", ".4f", "min"),
    ("speedup", "speedup", ".2f", "max"),
]
CSV_EXTRA = ["accuracy_stderr", "latency_s_mean", "latency_s_p90", "time_per_sample_s", "decode_time_s",
             "energy_net_j_per_sample", "energy_net_j_per_token", "energy_method", "peak_mem_gb", "forward_frac",
             "tokens_per_s_fastdllm", "gen_tokens_mean", "baseline", "expected_n", "complete", "family", "aup",
             "timing_under_load", "speedup_under_load", "load_reason"]


@dataclass
class Run:
    path: Path
    info: dict
    rows: list[dict]

    @property
    def machine(self) -> str:
        env = self.info.get("env", {})
        gpu = env.get("gpu_name")
        return gpu if gpu else f"cpu ({env.get('host', '?')})"


def load_run(path: str | Path) -> Run:
    """One run directory's method rows (those with samples); for the regression gate."""
    res = frame.load([path])
    if not res.runs:
        raise ValueError(f"{path} holds no finished samples")
    (run,) = res.runs.values()
    rows = [r for r in frame.records(res.methods()) if r["n"] > 0]
    return Run(run.path, run.info, rows)


def build_rows(res: frame.Results, baseline: str | None = None) -> tuple[list[dict], list[dict], list[str]]:
    """Method rows (one per run, model, task, method; speedup within each run and task), AUP rows
    (one per run, model, task and method family with several operating points) and notes."""
    rows = frame.records(res.methods(baseline))
    notes = []
    for rid, run in res.runs.items():
        base = baseline or run.info.get("baseline")
        if not any(r["method"] == base and r["n"] > 0 for r in rows if r["run"] == rid):
            notes.append(f"run {rid}: baseline {base!r} not in this run, so no speedup "
                         f"(speedups are never taken across runs)")
    for r in rows:
        if not r["complete"]:
            have = "no samples" if r["n"] == 0 else f"{r['n']} of {r['expected_n']} samples"
            notes.append(f"* incomplete: run {r['run']}, {r['model']}/{r['task']}, {r['method']}: {have}")
    for r in rows:
        if r.get("timing_under_load") or r.get("speedup_under_load"):
            notes.append(f"† timed under load: run {r['run']}, {r['model']}/{r['task']}, {r['method']}: "
                         f"{r.get('load_reason') or 'its baseline was timed under load'} (bench/load.py)")
    aups = aup.family_aups([r for r in rows if r["n"] > 0], group=("run", "model", "task"))
    by_family = {(a["run"], a["model"], a["task"], a["family"]): a for a in aups}
    for r in rows:
        a = by_family.get((r["run"], r["model"], r["task"], r["family"]))
        r["aup"] = a["aup"] if a else None
    for a in aups:
        where = f"run {a['run']}, {a['model']}/{a['task']}, {a['family']}"
        if a["aup"] is None:
            notes.append(f"no AUP for {where} ({len(a['methods'])} points): {a['reason']}")
        elif a["dropped"]:
            notes.append(f"AUP of {where} leaves out {len(a['dropped'])} of {len(a['methods'])} points, more than "
                         f"{aup.DROP_POINTS:g} accuracy points below its lowest-TPF point: "
                         + ", ".join(f"TPF {r:.2f} at {y:.1f}%" for r, y in a["dropped"]))
    return rows, aups, notes


def _fmt(v, spec) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return format(v, spec) if spec else str(v)


TIMED = {"latency_s_p50", "tokens_per_s", "time_per_sample_s", "latency_s_mean", "latency_s_p90"}


def _cell(row, key, spec) -> str:
    flagged = row.get("speedup_under_load") if key == "speedup" else row.get("timing_under_load") if key in TIMED else None
    if flagged and row.get(key) is not None:   # timed under load (bench/load.py): not printed as fact
        return _cell({**row, "speedup_under_load": None, "timing_under_load": None}, key, spec) + "†"
    if key == "n" and not row.get("complete", True):
        return f"{row['n']} of {row['expected_n']}*" if row.get("expected_n") is not None else f"{row['n']}*"
    if key == "accuracy" and row.get("accuracy") is not None and row.get("accuracy_stderr") is not None:
        return f"{row['accuracy']:{spec}} ± {row['accuracy_stderr']:{spec}}"
    return _fmt(row.get(key), spec)


AUP_COLUMNS = [("run", "run"), ("model", "model"), ("task", "task"), ("family", "method family"),
               ("points", "points used"), ("y_max", "best accuracy (%)"), ("aup", "AUP")]
AUP_TITLE = ("AUP (accuracy under parallelism, d3LLM): area under accuracy (%) vs TPF, weighted by "
             "min(exp(-3(1 - acc/best)), 1); points over 5 below the lowest-TPF point dropped")


def _aup_cells(a: dict) -> list[str]:
    pts = f"{len(a['points'])} of {len(a['methods'])}"
    return [str(a["run"]), str(a["model"]), str(a["task"]), a["family"], pts, _fmt(a["y_max"], ".1f"),
            _fmt(a["aup"], ".1f")]


def markdown(rows: list[dict], aups: list[dict] | None = None) -> str:
    text = tabulate([[_cell(r, k, s) for k, _, s, _ in COLUMNS] for r in rows],
                    headers=[h for _, h, _, _ in COLUMNS], tablefmt="github", disable_numparse=True)
    if aups:
        text += "\n\n" + AUP_TITLE + "\n\n" + tabulate([_aup_cells(a) for a in aups],
                                                       headers=[h for _, h in AUP_COLUMNS], tablefmt="github",
                                                       disable_numparse=True)
    return text


def _best(rows: list[dict]) -> set[tuple[int, str]]:
    """(row index, column) pairs holding the best value of their column in their group."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r["model"], r["task"], r["machine"]), []).append(i)
    best = set()
    for idx in groups.values():
        for key, _, spec, better in COLUMNS:
            if better is None:
                continue
            # compare the values as printed, so ties on the page are bold together
            vals = {i: float(_fmt(rows[i][key], spec)) for i in idx if rows[i].get(key) is not None}
            if len(vals) < 2:
                continue
            target = (max if better == "max" else min)(vals.values())
            best |= {(i, key) for i, v in vals.items() if v == target}
    return best


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
        text = text.replace(a, b)
    return text


def latex(rows: list[dict], aups: list[dict] | None = None) -> str:
    best = _best(rows)
    align = "".join("r" if spec else "l" for _, _, spec, _ in COLUMNS)
    lines = [r"% needs \usepackage{booktabs}", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(_tex(h) for _, h, _, _ in COLUMNS) + r" \\", r"\midrule"]
    for i, r in enumerate(rows):
        cells = []
        for key, _, spec, _ in COLUMNS:
            c = _tex(_cell(r, key, spec)).replace("±", r"$\pm$").replace("†", r"$^\dagger$")
            cells.append(rf"\textbf{{{c}}}" if (i, key) in best else c)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if aups:
        lines += ["", "% " + AUP_TITLE, r"\begin{tabular}{llllrrr}", r"\toprule",
                  " & ".join(_tex(h) for _, h in AUP_COLUMNS) + r" \\", r"\midrule"]
        lines += [" & ".join(_tex(c) for c in _aup_cells(a)) + r" \\" for a in aups]
        lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict], aups: list[dict] | None = None) -> str:
    """One line per row; a row's family AUP is its `aup` column (`aups` is taken for a uniform call)."""
    keys = [k for k, _, _, _ in COLUMNS] + CSV_EXTRA
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(keys)
    for r in rows:
        # 12 significant digits: stable across Python versions (3.12's sum() rounds differently)
        w.writerow(["" if r.get(k) is None else (format(r[k], ".12g") if isinstance(r[k], float) else r[k])
                    for k in keys])
    return buf.getvalue()


def report(run_paths: list[str], baseline: str | None = None, out_dir: str | None = None,
           fmt: str = "md") -> tuple[str, list[str]]:
    """Returns the table in `fmt` and notes; with out_dir also writes report.md/.tex/.csv and pareto.png."""
    render = {"md": markdown, "latex": latex, "csv": to_csv}
    if fmt not in render:
        raise ValueError(f"unknown format {fmt!r}; choose md, latex or csv")
    if not run_paths:
        raise ValueError("report needs at least one run directory, e.g. results/runs/<run_id>")
    res = frame.load(run_paths)
    rows, aups, notes = build_rows(res, baseline)
    notes = res.notes + notes
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(markdown(rows, aups) + "\n" + "".join(f"\n- {n}" for n in notes) + "\n")
        (out / "report.tex").write_text(latex(rows, aups))
        (out / "report.csv").write_text(to_csv(rows))
        note = pareto_png(rows, aups, out / "pareto.png")
        if note:
            notes.append(note)
    return render[fmt](rows, aups), notes
