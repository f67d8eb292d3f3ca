"""The trajectory of one sample's decode, as data (trace.json) and as a picture (trace.png).

    python run_bench.py trace --method threshold:tau=0.7 --doc 3 --out results/trace/threshold.png
    python run_bench.py trace --from results/trace/threshold.json --out again.png   # redraw, no model

`record` decodes one request of a task with the decode loop's trace on: per step, the positions
still masked with their argmax and top-1 probability, and the positions committed. `draw` makes
a step x position picture: each masked cell coloured by the top-1 probability of its argmax,
committed cells grey, a black square where (step) a position was committed, a red x where its
argmax changed from the previous step, dashed lines at block boundaries, the final tokens along
the top. Trace entries may also carry `remask` (positions taken back to mask) and `edit`
(positions whose committed token was replaced); `draw` marks them (magenta triangle, orange
diamond) whenever a trace records them.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class TraceSpec:
    model: str = "tiny"
    task: str = "arith"
    method: str = "threshold"
    doc: int = 0                  # index of the request among the task's (0 = the first)
    seed: int = 0
    gen_length: int | None = None
    block_length: int | None = None
    device: str = "cpu"
    dtype: str = "float32"
    data_dir: str | None = None
    chat: str = "none"
    model_path: str | None = None
    no_weights: bool = False


def record(spec: TraceSpec) -> dict:
    """Decode request `spec.doc` of `spec.task` with `spec.method` and the trace on."""
    import torch
    from decoding.base import GenConfig
    from decoding.loop import decode
    from decoding.registry import build_method, parse_methods
    from models import load_model
    from tasks import load_task
    from .build import build_prompts
    from .generate import render_prompt
    from .runner import resolve_device, resolve_dtype
    if spec.doc < 0:
        raise ValueError(f"--doc {spec.doc}: give the index of a request, 0 or more")
    methods = parse_methods(spec.method)
    if len(methods) != 1:
        raise ValueError(f"trace takes one method, got {len(methods)} in {spec.method!r}")
    proto = load_task(spec.task).protocol
    gen = GenConfig(gen_length=spec.gen_length or proto.gen_length, block_length=spec.block_length or proto.block_length)
    method = build_method(methods[0], gen)
    prompts = build_prompts([spec.task], spec.doc + 1, spec.data_dir, spec.chat)
    if spec.doc >= len(prompts):
        raise ValueError(f"--doc {spec.doc}: task {spec.task} has {len(prompts)} requests")
    p = prompts[spec.doc]
    device = resolve_device(spec.device)
    model = load_model(spec.model, device=str(device), dtype=resolve_dtype(spec.dtype, device), path=spec.model_path,
                       no_weights=spec.no_weights, seed=spec.seed)
    ids = model.tokenizer.encode(render_prompt(model, p["prompt"], p["messages"]))
    g = torch.Generator(device=device)
    g.manual_seed(spec.seed)
    res = decode(model, method, [ids], gen, generator=g, trace=True)
    tokens = res.tokens[0].tolist()
    return {"spec": asdict(spec), "doc_id": p["doc_id"], "prompt_tail": p["prompt"][-200:],
            "gen_length": gen.gen_length, "block_length": gen.block_length, "nfe": int(res.nfe[0]),
            "gen_tokens": int(res.gen_tokens[0]), "tokens": tokens,
            "token_text": [model.tokenizer.decode([t]) for t in tokens],
            "eos_ids": list(model.eos_ids), "steps": res.trace[0]}


def save(trace: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(trace) + "\n")


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; write one with `run_bench.py trace --out NAME.png`")
    try:
        trace = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not a trace file (not JSON: {e.msg} at line {e.lineno})")
    if not isinstance(trace, dict) or "steps" not in trace or "gen_length" not in trace:
        raise ValueError(f"{path} is not a trace file (no steps or gen_length)")
    return trace


@dataclass
class Events:
    """What `draw` puts on the picture, as (step row, position) lists; rows index trace steps."""
    conf: list[list[float]]                 # [rows][G]: top-1 probability where masked, NaN elsewhere
    commits: list[tuple[int, int]]
    flips: list[tuple[int, int]]
    remasks: list[tuple[int, int]]
    edits: list[tuple[int, int]]


def events(trace: dict) -> Events:
    """The picture's content from a trace (pure: tested on hand-made traces)."""
    G = trace["gen_length"]
    conf, commits, flips, remasks, edits = [], [], [], [], []
    last: dict[int, int] = {}    # position -> argmax at the previous step it was masked
    for row, st in enumerate(trace["steps"]):
        line = [math.nan] * G
        now = dict(zip(st["masked"], st["argmax"]))
        for pos, p1 in zip(st["masked"], st["p1"]):
            line[pos] = p1
            if pos in last and last[pos] != now[pos]:
                flips.append((row, pos))
        last = {pos: tok for pos, tok in now.items() if pos not in st.get("commit", [])}
        conf.append(line)
        commits += [(row, pos) for pos in st.get("commit", [])]
        remasks += [(row, pos) for pos in st.get("remask", [])]
        edits += [(row, pos) for pos in st.get("edit", [])]
    return Events(conf, commits, flips, remasks, edits)


def _tick_texts(trace: dict) -> list[str]:
    """Final tokens for the top axis: spaces shown as a visible blank, EOS once, then dots."""
    eos = set(trace.get("eos_ids") or [])
    out, ended = [], False
    for tok, text in zip(trace.get("tokens") or [None] * len(trace["token_text"]), trace["token_text"]):
        if ended:
            out.append("\u00b7")
        elif tok in eos:
            out.append("EOS")
            ended = True
        else:
            out.append(text.replace("\n", "\\n").replace(" ", "\u2423") or "\u2205")
    return out


def draw(trace: dict, path: str | Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator
    ev = events(trace)
    G, rows = trace["gen_length"], len(ev.conf)
    fig, ax = plt.subplots(figsize=(min(max(8.0, 0.2 * G + 3), 30), min(max(4.0, 0.22 * rows + 2.5), 30)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dcdcdc")
    img = np.ma.masked_invalid(np.array(ev.conf, dtype=float).reshape(rows, G))
    im = ax.imshow(img, cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest",
                   extent=(-0.5, G - 0.5, rows - 0.5, -0.5))
    kinds = [(ev.commits, dict(marker="s", s=46, facecolors="none", edgecolors="black", linewidths=1.2),
              "committed (mask -> token)"),
             (ev.flips, dict(marker="x", s=22, c="red", linewidths=1.0), "argmax changed from the step before"),
             (ev.remasks, dict(marker="v", s=40, c="magenta"), "remasked (token -> mask)"),
             (ev.edits, dict(marker="D", s=34, c="orange", edgecolors="black", linewidths=0.5),
              "edited (token -> token)")]
    handles = []
    for pts, style, label in kinds:
        if pts:
            ax.scatter([p for _, p in pts], [r for r, _ in pts], zorder=3, **style)
            handles.append(Line2D([], [], linestyle="none", label=f"{label}: {len(pts)}",
                                  marker=style["marker"], markersize=6,
                                  markerfacecolor=style.get("c", "none"), markeredgecolor=style.get("edgecolors", style.get("c"))))
    for b in range(trace["block_length"], G, trace["block_length"]):
        ax.axvline(b - 0.5, color="white", lw=1.2, ls="--")
    ax.set_xlabel("generated position")
    ax.set_ylabel("decode step (one forward each, top to bottom)")
    ax.set_xlim(-0.5, G - 0.5)
    if trace.get("token_text") and G <= 160:
        top = ax.secondary_xaxis("top")
        top.set_xticks(range(G), _tick_texts(trace), fontsize=7, rotation=90)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    cb = fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    cb.set_label("top-1 probability (masked)")
    handles.insert(0, Patch(facecolor="#dcdcdc", label="committed, not masked"))
    spec = trace.get("spec", {})
    title = f"{spec.get('model', '?')} / {spec.get('task', '?')} doc {trace.get('doc_id', '?')} / {spec.get('method', '?')}"
    if "nfe" in trace:
        title += f": NFE {trace['nfe']}, {trace.get('gen_tokens', '?')} tokens before EOS"
    ax.set_title(title, fontsize=10, pad=40 if trace.get("token_text") else 6)
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13 - 1.2 / (rows + 4)),
              ncol=len(handles), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
