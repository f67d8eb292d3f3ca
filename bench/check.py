"""Regression gate for CI: compare a run with a committed baseline.

    python run_bench.py check --baseline results/baselines/tiny-arith.json results/runs/ci
    python run_bench.py check --baseline results/baselines/tiny-arith.json results/runs/ci --update

For every method of the baseline the run must have the same spec (model, task, methods, limit,
seed, protocol, batch size, ...) and must not show:
- an accuracy drop beyond chance: with k correct of n, the one-sided exact binomial test against
  the baseline accuracy p0 fails when P(X <= k | n, p0) < alpha (default 0.01), so an equal run
  always passes and a real drop fails once n is large enough to see it. p0 is the baseline's
  k0 of n0 smoothed to (k0 + 0.5) / (n0 + 1), so a perfect baseline still allows chance misses
  (a CPU of another make can flip a near-tie greedy choice);
- an NFE rise beyond `nfe_rel` (default 5%) of the baseline's mean NFE;
- a latency ratio (the method's total decode time / the reference method's, both from the *same*
  run, on the same documents in the same batches) worse than the baseline's ratio by more than
  `latency_ratio_rel` (default 50%). Absolute times are never compared: the baseline may come
  from another machine. On a CPU-only run the decode's process CPU time is used instead of wall
  time (`latency_basis: cpu_time`): on a shared CI machine other processes stretch wall time by
  whole seconds at random, while CPU time stays the decode's own cost (measured on this project's
  2-core machine at load 5: CPU-time ratios of two runs within 0.4-6%, wall-time ratios 8-25%).
  Run the gate with OMP_NUM_THREADS=1: spinning intra-op threads on an oversubscribed machine
  inflate both clocks by an order of magnitude.
Exit status: 0 pass, 1 regression (a diff table names it), 2 bad input (run.py's convention).
`--update` rewrites the baseline from the run, keeping its tolerances and description.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from tabulate import tabulate

from .report import load_run

DEFAULT_TOLERANCES = {"accuracy_alpha": 0.01, "nfe_rel": 0.05, "latency_ratio_rel": 0.5}
NOT_COMPARED = ("device", "baseline")   # the spec keys allowed to differ from the baseline's


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (exact for the n of a benchmark)."""
    if p <= 0:
        return 1.0
    if p >= 1:
        return 1.0 if k >= n else 0.0
    total = 0.0
    for i in range(0, k + 1):
        total += math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                          + i * math.log(p) + (n - i) * math.log1p(-p))
    return min(1.0, total)


def min_correct(n: int, p0: float, alpha: float) -> int:
    """The fewest correct answers of n that still pass the accuracy test."""
    for k in range(n + 1):
        if binom_cdf(k, n, p0) >= alpha:
            return k
    return n


def latency_basis(run) -> str:
    cpu_run = (run.info.get("machine") or {}).get("device_type") == "cpu"
    has_cpu = all(r.get("cpu_time_s") is not None for r in run.rows)
    return "cpu_time" if cpu_run and has_cpu else "wall"


def _ratios(rows: dict[str, dict], reference: str, basis: str) -> dict[str, float | None]:
    key = "cpu_time_s" if basis == "cpu_time" else "decode_time_s"
    ref = rows.get(reference)
    if ref is None or not ref.get(key):
        return {m: None for m in rows}
    return {m: r[key] / ref[key] for m, r in rows.items()}


def _spec_for_baseline(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k not in NOT_COMPARED}


def _spec_diff(a: dict, b: dict) -> list[str]:
    """Spec fields that differ. A field only one side has (the harness gained a setting after the
    baseline was made) differs only if its value is not the setting's default."""
    import dataclasses
    from .runner import RunSpec
    defaults = {f.name: f.default for f in dataclasses.fields(RunSpec)}
    missing = object()
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, missing), b.get(k, missing)
        va = defaults.get(k) if va is missing else va
        vb = defaults.get(k) if vb is missing else vb
        if va != vb:
            out.append(k)
    return out


def make_baseline(run_path: str, old: dict | None = None) -> dict:
    run = load_run(run_path)
    rows = {r["method"]: r for r in run.rows}
    old = old or {}
    reference = old.get("reference_method") or run.info.get("baseline") or run.rows[0]["method"]
    if reference not in rows:
        raise ValueError(f"reference method {reference!r} is not in run {run_path}; the latency ratio needs it")
    basis = latency_basis(run)
    ratios = _ratios(rows, reference, basis)
    return {
        "description": old.get("description", "CI regression baseline; rewrite with `run_bench.py check --update`"),
        "spec": _spec_for_baseline(run.info["spec"]),
        "protocol": run.info.get("protocol"),
        "reference_method": reference,
        "latency_basis": basis,
        "tolerances": {**DEFAULT_TOLERANCES, **old.get("tolerances", {})},
        "rows": {m: {"n": r["n"], "correct": round(r["accuracy"] * r["n"]) if r["accuracy"] is not None else None,
                     "accuracy": r["accuracy"], "nfe_mean": r["nfe_mean"], "latency_ratio": ratios[m]}
                 for m, r in rows.items()},
        "made_from": {"run_id": run.info.get("run_id"), "machine": run.machine,
                      "git_commit": run.info.get("env", {}).get("git_commit"),
                      "date": time.strftime("%Y-%m-%d")},
    }


def check(baseline_path: str, run_path: str) -> tuple[bool, str]:
    """(passed, diff table). Raises ValueError/FileNotFoundError on bad input."""
    bpath = Path(baseline_path)
    if not bpath.exists():
        raise FileNotFoundError(f"baseline {bpath} does not exist; create it with "
                                f"`run_bench.py check --update --baseline {bpath} RUN`")
    base = json.loads(bpath.read_text())
    run = load_run(run_path)
    spec = _spec_for_baseline(run.info["spec"])
    diff = _spec_diff(spec, base["spec"])
    if diff:
        raise ValueError(f"run {run_path} was made with another spec than baseline {bpath} (differs in: "
                         + ", ".join(f"{k}={spec.get(k)!r} vs {base['spec'].get(k)!r}" for k in diff)
                         + "); rerun with the baseline's settings")
    tol = {**DEFAULT_TOLERANCES, **base.get("tolerances", {})}
    rows = {r["method"]: r for r in run.rows}
    basis = latency_basis(run)
    if basis != base.get("latency_basis", "wall"):
        raise ValueError(f"run {run_path} measures latency as {basis} but baseline {bpath} as "
                         f"{base.get('latency_basis', 'wall')}; make the baseline on the same kind of device")
    ratios = _ratios(rows, base["reference_method"], basis)
    table, ok = [], True

    def add(method, metric, b, r, limit, passed):
        nonlocal ok
        ok &= passed
        table.append([method, metric, b, r, limit, "ok" if passed else "FAIL"])

    for method, b in base["rows"].items():
        r = rows.get(method)
        if r is None:
            add(method, "present", "yes", "missing", "", False)
            continue
        if b.get("accuracy") is not None and r.get("accuracy") is not None:
            k = round(r["accuracy"] * r["n"])
            p0 = (b["correct"] + 0.5) / (b["n"] + 1) if b.get("correct") is not None else b["accuracy"]
            kmin = min_correct(r["n"], p0, tol["accuracy_alpha"])
            add(method, "accuracy", f"{b['accuracy']:.4f}", f"{r['accuracy']:.4f} ({k}/{r['n']})",
                f">= {kmin / r['n']:.4f} (binomial, alpha={tol['accuracy_alpha']})", k >= kmin)
        nfe_max = b["nfe_mean"] * (1 + tol["nfe_rel"])
        add(method, "NFE", f"{b['nfe_mean']:.3f}", f"{r['nfe_mean']:.3f}", f"<= {nfe_max:.3f}",
            r["nfe_mean"] <= nfe_max + 1e-12)
        if b.get("latency_ratio") is not None and method != base["reference_method"]:
            lim = b["latency_ratio"] * (1 + tol["latency_ratio_rel"])
            got = ratios.get(method)
            add(method, f"{'cpu time' if basis == 'cpu_time' else 'latency'} / {base['reference_method']}", f"{b['latency_ratio']:.3f}",
                "n/a" if got is None else f"{got:.3f}", f"<= {lim:.3f}", got is not None and got <= lim)
    text = tabulate(table, headers=["method", "metric", "baseline", "run", "allowed", "status"], tablefmt="github")
    return ok, text


def update(baseline_path: str, run_path: str) -> str:
    bpath = Path(baseline_path)
    old = json.loads(bpath.read_text()) if bpath.exists() else None
    new = make_baseline(run_path, old)
    bpath.parent.mkdir(parents=True, exist_ok=True)
    tmp = bpath.with_suffix(".tmp")
    tmp.write_text(json.dumps(new, indent=1) + "\n")
    tmp.replace(bpath)
    return f"baseline {bpath} written from {run_path} ({len(new['rows'])} methods)"
