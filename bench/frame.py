"""Run directories as pandas DataFrames: the form to analyse results in a notebook, and what
`run_bench.py report` builds its tables from.

    from bench.frame import load
    res = load(["results/runs/A", "results/runs/B"])   # or load("results/runs/A")
    res.samples        # one row per sample: every field of requests.jsonl, plus run, machine, family
    res.methods()      # one row per (run, model, task, method): the metrics of bench.metrics
    res.notes          # directories skipped, cut last lines, incomplete runs (one line each)

`requests.jsonl` and `requests.jsonl.gz` (committed runs) are both read. A directory that holds no
results (no run.json, or no samples yet) is skipped with a note; a line that does not parse stops
with its file and line (a cut last line, a run still writing, is left out with a note). Expected
counts come from the run itself (run.json's methods; prompts.jsonl's requests per task, or
without it the most samples any method of the run has on the task), so a method missing from a run, or one with 60 of 256 samples, is flagged
(`complete` False) instead of being reported as if whole.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import metrics
from .load import flag_speedups, read as read_loads, summary_fields as load_fields
from .aup import family
from .results import RunDir, parse_jsonl, read_text

KEYS = ["run", "model", "task", "method"]


@dataclass
class RunInfo:
    path: Path
    info: dict                          # run.json
    expected_n: dict[str, int | None]   # task -> requests built for it (None: unknown)

    @property
    def run_id(self) -> str:
        return self.info.get("run_id", self.path.name)

    @property
    def machine(self) -> str:
        env = self.info.get("env", {})
        gpu = env.get("gpu_name")
        return gpu if gpu else f"cpu ({env.get('host', '?')})"

    @property
    def methods(self) -> list[str]:
        return list(self.info.get("methods") or [])

    @property
    def tasks(self) -> list[str]:
        return list(self.info.get("tasks") or [])


@dataclass
class Results:
    samples: pd.DataFrame
    runs: dict[str, RunInfo]            # run id -> its run.json and expected counts
    notes: list[str] = field(default_factory=list)

    def methods(self, baseline: str | None = None) -> pd.DataFrame:
        """One row per (run, model, task, method), in each run's task and method order; every run's
        method x task is present (n 0 when missing). Columns: run, machine, model, task, method,
        family, n, expected_n, complete, baseline, speedup and the fields of
        bench.metrics.summarize_method. Speedup is taken inside one run and task only."""
        return method_table(self, baseline)


def _expected(d: RunDir, info: dict) -> dict[str, int | None]:
    spec = info.get("spec") or {}
    tasks = list(info.get("tasks") or [t.strip() for t in str(spec.get("task") or "").split(",") if t.strip()])
    if d.prompts_jsonl.exists():
        counts: dict[str, int] = {}
        for p in parse_jsonl(d.prompts_jsonl.read_text(), d.prompts_jsonl, allow_cut_tail=True)[0]:
            counts[p.get("task")] = counts.get(p.get("task"), 0) + 1
        return {t: counts.get(t, 0) for t in tasks or counts}
    return {t: None for t in tasks}   # no prompts.jsonl: the most samples any method has (method_table)


def load(paths: str | Path | list) -> Results:
    """Load run directories (see the module doc). Raises FileNotFoundError for a path that does
    not exist, and ValueError when none of the paths holds results or a line does not parse."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ValueError("no run directory given, e.g. results/runs/<run_id>")
    frames, runs, notes, skipped = [], {}, [], []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist; pass run directories (results/runs/<run_id>)")
        d = RunDir(p)
        if not d.run_json.exists():
            skipped.append(f"{p} skipped: not a run directory (no run.json)")
            continue
        info = json.loads(d.run_json.read_text())
        src = d.requests_file
        reqs, cut = parse_jsonl(read_text(src), src, allow_cut_tail=True) if src else ([], None)
        if cut:
            notes.append(cut)
        if not reqs:
            skipped.append(f"{p} skipped: no finished samples (requests.jsonl is empty or missing)")
            continue
        run = RunInfo(p, info, _expected(d, info))
        rid = run.run_id if run.run_id not in runs else str(p)
        runs[rid] = run
        df = pd.DataFrame(reqs)
        df.insert(0, "run", rid)
        df.insert(1, "machine", run.machine)
        df["family"] = df["method"].map(family)
        frames.append(df)
    if not frames:
        raise ValueError("no results to report: " + "; ".join(skipped))
    samples = pd.concat(frames, ignore_index=True)
    return Results(samples, runs, skipped + notes)


def method_table(res: Results, baseline: str | None = None) -> pd.DataFrame:
    rows = []
    for rid, run in res.runs.items():
        mine = res.samples[res.samples["run"] == rid]
        tasks = run.tasks or list(dict.fromkeys(mine["task"]))
        tasks += [t for t in dict.fromkeys(mine["task"]) if t not in tasks]
        labels = run.methods + [m for m in dict.fromkeys(mine["method"]) if m not in run.methods]
        base = baseline or run.info.get("baseline")
        groups = {k: g for k, g in mine.groupby(["task", "method"], sort=False)}
        for task in tasks:
            models = list(dict.fromkeys(mine.loc[mine["task"] == task, "model"])) or [
                (run.info.get("model") or {}).get("name", "?")]
            expected = run.expected_n.get(task)
            if expected is None:
                counts = mine.loc[mine["task"] == task].groupby("method").size()
                expected = int(counts.max()) if len(counts) else None
            task_rows = []
            for label in labels:
                g = groups.get((task, label))
                for model in models:
                    part = g[g["model"] == model] if g is not None else None
                    row = {"run": rid, "machine": run.machine, "model": model, "task": task, "method": label,
                           "family": family(label), "baseline": base, "expected_n": expected}
                    if part is None or part.empty:
                        row.update(n=0, complete=False)
                    else:
                        row.update(metrics.summarize_method(records(part)))
                        row["complete"] = expected is None or row["n"] >= expected
                    task_rows.append(row)
            _speedup(task_rows, base)
            loads = read_loads(run.path)   # the machine's load around each method's decode (bench/load.py)
            for row in task_rows:
                row.update(load_fields(loads, task, row["method"]) if loads else {})
            flag_speedups(task_rows, base)
            rows += task_rows
    return pd.DataFrame(rows)


def records(df: pd.DataFrame) -> list[dict]:
    """A frame's rows as dicts of plain Python values, missing values as None (the form
    bench.metrics and the JSON files use)."""
    return df.astype(object).where(df.notna(), None).to_dict("records")


def _speedup(rows: list[dict], baseline: str | None) -> None:
    """metrics.add_speedup over the rows that have samples, within one run and task."""
    have = [r for r in rows if r["n"] > 0]
    for model in dict.fromkeys(r["model"] for r in have):
        metrics.add_speedup([r for r in have if r["model"] == model], baseline)
    for r in rows:
        r.setdefault("speedup", None)
