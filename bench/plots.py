"""The Pareto plot of `run_bench.py report`: accuracy against cost, one panel row per (model, task).

Left: accuracy against mean NFE (log axis); right: against latency p50 (log axis). Error bars are
one standard error of the accuracy. One colour per method family (the method name), its operating
points joined in order of cost; one marker per run when several runs are plotted. The legend
gives each family's AUP (bench/aup.py) on that model and task. Point labels (the settings of an
operating point, e.g. `tau=0.7`) are placed where they overlap no other label or point.
matplotlib is an optional extra (`pip install 'dllm-bench[plot]'`).
"""
from __future__ import annotations

import math
from pathlib import Path

from .aup import split_label

MARKERS = "osD^vP*Xh"
# candidate label offsets (points): nearest first, then further out with a leader line
_OFFSETS = [(r * math.cos(a), r * math.sin(a)) for r in (5, 11, 18, 27, 38)
            for a in (math.radians(d) for d in (45, -45, 135, -135, 0, 180, 90, -90))]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower cost x and higher accuracy y), sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], -math.inf
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def point_label(method: str) -> str:
    """What a point is labelled with: its numeric settings (`tau=0.7`; the colour gives the
    family), or the family itself when it has none."""
    fam, point = split_label(method)
    return point or fam


def _aup_text(aups: list[dict], fam: str) -> str:
    vals = [a for a in aups if a["family"] == fam]
    if not vals:
        return fam
    runs = {a["run"] for a in vals}
    parts = [("n/a" if a["aup"] is None else f"{a['aup']:.1f}") + (f" {a['run']}" if len(runs) > 1 else "")
             for a in vals]
    return f"{fam} (AUP {', '.join(parts)})"


def place_labels(ax, items: list[tuple[float, float, str, str]], fontsize: float = 7) -> tuple[list, int]:
    """Annotate (x, y, text, colour) items so no label box overlaps another label or a point
    marker, nearest free spot first; a label with no free spot is left out. Returns the
    annotations and the number left out. Call after the axes' limits and layout are final."""
    from matplotlib.transforms import Bbox
    fig = ax.figure
    fig.canvas.draw()
    rend = fig.canvas.get_renderer()
    disp = ax.transData.transform([(x, y) for x, y, _, _ in items]) if items else []
    taken = [Bbox.from_extents(px - 4, py - 4, px + 4, py + 4) for px, py in disp]
    frame = ax.get_window_extent(rend)
    out = []
    for (x, y, text, colour), (px, py) in zip(items, disp):
        best = None
        for dx, dy in _OFFSETS:
            far = math.hypot(dx, dy) > 12
            t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                            color=colour, ha="left" if dx > 1 else "right" if dx < -1 else "center",
                            va="bottom" if dy > 1 else "top" if dy < -1 else "center",
                            arrowprops=dict(arrowstyle="-", color=colour, lw=0.5, alpha=0.6) if far else None)
            bb = t.get_window_extent(rend).padded(2)   # glyphs may reach past the layout box
            inside = frame.contains(bb.x0, bb.y0) and frame.contains(bb.x1, bb.y1)
            if inside and not any(bb.overlaps(o) for o in taken):
                best = (t, bb)
                break
            t.remove()
        if best is None:   # crowded: no label rather than one over another
            continue
        taken.append(best[1])
        out.append(best[0])
    return out, len(items) - len(out)


def pareto_png(rows: list[dict], aups: list[dict], path: str | Path) -> str | None:
    """Draw the plot (see the module doc) from report rows and AUP rows; returns a note if skipped."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        return "Pareto plot skipped: matplotlib is not installed (pip install 'dllm-bench[plot]')"
    rows = [r for r in rows if r.get("n") and r.get("accuracy") is not None]
    if not rows:
        return "Pareto plot skipped: no method has an accuracy (not scored, or random weights)"
    panels = list(dict.fromkeys((r["model"], r["task"]) for r in rows))
    families = list(dict.fromkeys(r["family"] for r in rows))
    runs = list(dict.fromkeys(r["run"] for r in rows))
    palette = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("Dark2").colors)
    colours = {f: palette[i % len(palette)] for i, f in enumerate(families)}
    markers = {run: MARKERS[i % len(MARKERS)] for i, run in enumerate(runs)}
    fig, axes = plt.subplots(len(panels), 2, figsize=(15, 5.5 * len(panels)), squeeze=False)
    labels = []
    for (model, task), (ax_n, ax_l) in zip(panels, axes):
        mine = [r for r in rows if (r["model"], r["task"]) == (model, task)]
        for ax, key, xlabel in ((ax_n, "nfe_mean", "mean NFE per sample (log)"),
                                (ax_l, "latency_s_p50", "latency p50 per decode call, s (log)")):
            items = []
            for run in runs:
                for fam in families:
                    pts = sorted((r for r in mine if r["run"] == run and r["family"] == fam
                                  and r.get(key) and r[key] > 0), key=lambda r: r[key])
                    if not pts:
                        continue
                    ax.errorbar([r[key] for r in pts], [r["accuracy"] for r in pts],
                                yerr=[r.get("accuracy_stderr") or 0 for r in pts], color=colours[fam],
                                marker=markers[run], ms=5, capsize=2, lw=1.2, elinewidth=0.8,
                                linestyle="-" if len(pts) > 1 else "none", zorder=3)
                    items += [(r[key], r["accuracy"], point_label(r["method"]), colours[fam]) for r in pts]
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(xlabel)
            ax.set_ylabel("accuracy (± 1 s.e.)")
            ax.grid(alpha=0.3, which="both")
            ax.set_title(f"{model} / {task}", fontsize=10)
            ax.margins(x=0.12, y=0.12)
            labels.append((ax, items))
        task_aups = [a for a in aups if (a["model"], a["task"]) == (model, task)]
        handles = [Line2D([], [], color=colours[f], marker="o", label=_aup_text(task_aups, f))
                   for f in families if any(r["family"] == f for r in mine)]
        if len(runs) > 1:
            machines = {r["run"]: r["machine"] for r in rows}
            handles += [Line2D([], [], color="grey", marker=markers[run], linestyle="none",
                               label=f"run {run} ({machines[run]})") for run in runs]
        ax_l.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    left_out = sum(place_labels(ax, items)[1] for ax, items in labels)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return (f"pareto.png: {left_out} point labels left out where no free spot was near their point "
            f"(the CSV has every point)") if left_out else None
