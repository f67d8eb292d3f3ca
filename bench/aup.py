"""AUP, accuracy under parallelism (d3LLM, Qian et al., ICML 2026), per method family.

The computation is d3LLM's `AUP_leaderboard/aup_utils.py` (hao-ai-lab/d3LLM at e5bfcac,
`weight_function` lines 5-7, `get_aup` lines 9-63) and `main.py` line 63 (y_max):

- points (rho_i, y_i): rho = TPF (tokens per forward), y = accuracy in **percent** (0-100);
  sorted by rho;
- y_max: the best accuracy of *any* method on the same model and task (every family's points,
  single-point methods included), not only the family's own;
- weight W(y) = min(exp(-alpha (1 - y / y_max)), 1), alpha = 3;
- y_1 = the accuracy at the lowest TPF (in d3LLM's data the TPF = 1.0 point); points below
  y_1 - 5 are dropped (line 40). Their script also asserts (line 38) that the highest-TPF point
  is not among them: it was written for two-point curves, and would refuse a whole `--methods`
  sweep for its most aggressive setting. Here such points are dropped like any other and the
  report names them, so for every input their script accepts the value is the same;
- AUP = rho_1 * y_1 + sum_i (rho_i - rho_{i-1}) * (y_i W(y_i) + y_{i-1} W(y_{i-1})) / 2:
  the unweighted rectangle from TPF 0 to the first point, then the trapezoid rule on y * W(y).

Units: TPF x accuracy points, e.g. d3LLM-LLaDA on GSM8K-CoT, points (1.0, 74.02) and
(9.11, 73.09) with y_max 74.98, gives 637.7 (their leaderboard; tests/test_aup.py).

A family is a method name with its non-numeric settings (`threshold` for `threshold:tau=0.5` ...
`threshold:tau=0.95`; `threshold (cache=dual)` apart from it, since a cache moves the whole curve);
its operating points are its labels in one run, differing in numeric settings. Only families with two or more points get an AUP;
a family whose points cannot form a curve (no accuracy, no TPF) gets a one-line reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

ALPHA = 3.0          # d3LLM's alpha
DROP_POINTS = 5.0    # d3LLM's y_min_offset, in accuracy points


def _numeric(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def split_label(label: str) -> tuple[str, str]:
    """(family, operating point) of a method label. The family is the method name with its
    non-numeric settings (variants: cache=dual, shaping=temperature, preset=paper); the numeric
    settings (the knobs a sweep turns: tau, gamma, ...) make the operating point.
    `threshold:tau=0.7` -> (`threshold`, `tau=0.7`);
    `prr:shaping=temperature,tau=0.9` -> (`prr (shaping=temperature)`, `tau=0.9`)."""
    name, _, rest = label.partition(":")
    pairs = [kv.split("=", 1) if "=" in kv else [kv, ""] for kv in rest.split(",") if kv]
    variant = [f"{k}={v}" for k, v in pairs if not _numeric(v)]
    point = [f"{k}={v}" for k, v in pairs if _numeric(v)]
    return (f"{name} ({','.join(variant)})" if variant else name), ",".join(point)


def family(label: str) -> str:
    """The method family of a label (see split_label): `threshold:tau=0.7` -> `threshold`."""
    return split_label(label)[0]


def weight(y: float, y_max: float, alpha: float = ALPHA) -> float:
    return min(math.exp(-alpha * (1 - y / y_max)), 1.0)


@dataclass
class Aup:
    value: float | None                      # None when the points cannot form an AUP curve
    reason: str | None = None                # why not, in one line
    points: list[tuple[float, float]] = field(default_factory=list)    # (TPF, accuracy %) used
    dropped: list[tuple[float, float]] = field(default_factory=list)   # below y_1 - 5, left out


def aup(points: list[tuple[float, float]], y_max: float, alpha: float = ALPHA,
        drop_points: float = DROP_POINTS) -> Aup:
    """AUP of (TPF, accuracy in percent) points; see the module doc."""
    if not points:
        return Aup(None, "no operating points")
    if any(r is None or not r > 0 for r, _ in points):
        return Aup(None, "an operating point has no positive TPF (tokens per forward)")
    if any(y is None for _, y in points):
        return Aup(None, "an operating point has no accuracy (not scored, or random weights)")
    if not y_max > 0:
        return Aup(None, "the best accuracy on this model and task is 0, so the weight is undefined")
    pts = sorted(points, key=lambda p: p[0])
    y_1 = pts[0][1]
    keep = [p for p in pts if p[1] >= y_1 - drop_points]
    value = keep[0][0] * keep[0][1]
    for (r0, y0), (r1, y1) in zip(keep, keep[1:]):
        value += 0.5 * (r1 - r0) * (y1 * weight(y1, y_max, alpha) + y0 * weight(y0, y_max, alpha))
    return Aup(value, None, keep, [p for p in pts if p not in keep])


def family_aups(rows: list[dict], group: tuple[str, ...] = ("model", "task")) -> list[dict]:
    """One entry per (group..., family) with two or more operating points among `rows` (summary
    rows: method, accuracy as a fraction, tpf). y_max is taken over every row of the group."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in group), []).append(r)
    out = []
    for key, members in groups.items():
        accs = [r["accuracy"] * 100 for r in members if r.get("accuracy") is not None]
        y_max = max(accs) if accs else None
        fams: dict[str, list[dict]] = {}
        for r in members:
            fams.setdefault(family(r["method"]), []).append(r)
        for fam, pts in fams.items():
            if len(pts) < 2:
                continue
            xy = [(r.get("tpf"), None if r.get("accuracy") is None else r["accuracy"] * 100) for r in pts]
            res = aup(xy, y_max) if y_max is not None else Aup(None, "no accuracy on this model and task "
                                                                   "(not scored, or random weights)")
            out.append({**dict(zip(group, key)), "family": fam, "methods": [r["method"] for r in pts],
                        "aup": res.value, "reason": res.reason, "y_max": y_max,
                        "points": [list(p) for p in res.points], "dropped": [list(p) for p in res.dropped]})
    return out
