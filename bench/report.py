"""Leaderboard tables and Pareto plots from result files alone (no rerun).

    python run_bench.py report results/runs/A results/runs/B --baseline fixed --out report/

Tables: markdown (stdout by default), LaTeX (booktabs; the best value of each column in bold,
within each group of rows that share model, task and machine) and CSV (full precision). The
Pareto plot (accuracy against NFE and against latency p50) needs matplotlib, an optional extra:
`pip install 'dllm-bench[plot]'`; without it the tables are still written and a note says why
the plot is missing.

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

from . import metrics

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
             "tokens_per_s_fastdllm", "gen_tokens_mean", "baseline"]


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
    path = Path(path)
    run_json, reqs_file = path / "run.json", path / "requests.jsonl"
    if not run_json.exists():
        raise FileNotFoundError(f"{path} is not a run directory (no run.json); pass results/runs/<run_id>")
    info = json.loads(run_json.read_text())
    reqs = [json.loads(l) for l in reqs_file.read_text().splitlines() if l.strip()] if reqs_file.exists() else []
    if not reqs:
        raise ValueError(f"{path} holds no finished samples (requests.jsonl is empty or missing)")
    labels = list(info.get("methods") or dict.fromkeys(r["method"] for r in reqs))
    rows = []
    for label in labels:
        mine = [r for r in reqs if r["method"] == label]
        if mine:
            rows.append({"run": info.get("run_id", path.name), "model": mine[0]["model"], "task": mine[0]["task"],
                         "method": label, **metrics.summarize_method(mine)})
    return Run(path, info, rows)


def build_rows(runs: list[Run], baseline: str | None = None) -> tuple[list[dict], list[str]]:
    """One row per (run, method), speedup within each run; notes explain missing speedups."""
    out, notes = [], []
    for run in runs:
        base = baseline or run.info.get("baseline")
        rows = [dict(r, machine=run.machine, baseline=base) for r in run.rows]
        metrics.add_speedup(rows, base)
        if not any(r["method"] == base for r in rows):
            notes.append(f"run {run.info.get('run_id')}: baseline {base!r} not in this run, so no speedup "
                         f"(speedups are never taken across runs)")
        out += rows
    return out, notes


def _fmt(v, spec) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return format(v, spec) if spec else str(v)


def _cell(row, key, spec) -> str:
    if key == "accuracy" and row.get("accuracy") is not None and row.get("accuracy_stderr") is not None:
        return f"{row['accuracy']:{spec}} ± {row['accuracy_stderr']:{spec}}"
    return _fmt(row.get(key), spec)


def markdown(rows: list[dict]) -> str:
    return tabulate([[_cell(r, k, s) for k, _, s, _ in COLUMNS] for r in rows],
                    headers=[h for _, h, _, _ in COLUMNS], tablefmt="github", disable_numparse=True)


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


def latex(rows: list[dict]) -> str:
    best = _best(rows)
    align = "".join("r" if spec else "l" for _, _, spec, _ in COLUMNS)
    lines = [r"% needs \usepackage{booktabs}", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(_tex(h) for _, h, _, _ in COLUMNS) + r" \\", r"\midrule"]
    for i, r in enumerate(rows):
        cells = []
        for key, _, spec, _ in COLUMNS:
            c = _tex(_cell(r, key, spec)).replace("±", r"$\pm$")
            cells.append(rf"\textbf{{{c}}}" if (i, key) in best else c)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    keys = [k for k, _, _, _ in COLUMNS] + CSV_EXTRA
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(keys)
    for r in rows:
        # 12 significant digits: stable across Python versions (3.12's sum() rounds differently)
        w.writerow(["" if r.get(k) is None else (format(r[k], ".12g") if isinstance(r[k], float) else r[k])
                    for k in keys])
    return buf.getvalue()


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower cost x and higher accuracy y), sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], -math.inf
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def pareto_png(rows: list[dict], path: str | Path) -> str | None:
    """Accuracy vs NFE and vs latency p50, one colour per machine; returns a note if skipped."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "Pareto plot skipped: matplotlib is not installed (pip install 'dllm-bench[plot]')"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "nfe_mean", "NFE (forward calls per sample)"),
                           (axes[1], "latency_s_p50", "latency p50 (s)")):
        for machine in dict.fromkeys(r["machine"] for r in rows):
            pts = [r for r in rows if r["machine"] == machine and r.get(key) is not None
                   and r.get("accuracy") is not None]
            if not pts:
                continue
            xy = [(r[key], r["accuracy"]) for r in pts]
            sc = ax.scatter([p[0] for p in xy], [p[1] for p in xy], label=machine, zorder=3)
            front = pareto_front(xy)
            ax.step([xy[i][0] for i in front], [xy[i][1] for i in front], where="post",
                    color=sc.get_facecolor()[0], alpha=0.5)
            labelled = set()
            for r, (x, y) in zip(pts, xy):   # repeats of a method: label its first point only
                if r["method"] not in labelled:
                    labelled.add(r["method"])
                    ax.annotate(r["method"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle("accuracy vs cost (Pareto front: step line)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def report(run_paths: list[str], baseline: str | None = None, out_dir: str | None = None,
           fmt: str = "md") -> tuple[str, list[str]]:
    """Returns the table in `fmt` and notes; with out_dir also writes report.md/.tex/.csv and pareto.png."""
    if not run_paths:
        raise ValueError("report needs at least one run directory, e.g. results/runs/<run_id>")
    runs = [load_run(p) for p in run_paths]
    rows, notes = build_rows(runs, baseline)
    render = {"md": markdown, "latex": latex, "csv": to_csv}
    if fmt not in render:
        raise ValueError(f"unknown format {fmt!r}; choose md, latex or csv")
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(markdown(rows) + "\n" + "".join(f"\n- {n}" for n in notes) + "\n")
        (out / "report.tex").write_text(latex(rows))
        (out / "report.csv").write_text(to_csv(rows))
        note = pareto_png(rows, out / "pareto.png")
        if note:
            notes.append(note)
    return render[fmt](rows), notes
