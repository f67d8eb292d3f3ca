"""Sweeps in one run: prompt templates and batch sizes, and their sensitivity tables.

    run_bench.py --tasks gsm8k,gsm8k_cot,gsm8k_cot_zeroshot --chat none,single-turn --batch-size 1,8,32 ...

A template is a task variant under a chat mode (lm-eval renders every prompt, bench/build.py);
variants of one data set (gsm8k, gsm8k_cot, gsm8k_cot_zeroshot: the same test documents) are
compared with each other. With several chat modes or batch sizes the run directory is a sweep:

    <run>/sweep.json                 the points (chat mode, batch size) and where each one is
    <run>/points/<chat>_bs<b>/       one ordinary run directory per point (run.json, requests.jsonl,
                                     summary.json; resumable with --resume like any run)
    <run>/summary.json               every point's rows, with chat, batch_size and template added
    <run>/sensitivity.md, .json      the tables below (also printed)

Sensitivity, per method: accuracy and NFE under each template of a data set, and whether the
ranking of the methods by accuracy is the same under every template (said in words); accuracy,
NFE and tokens/s at each batch size, and, for greedy methods (temperature 0), every sample whose
tokens at a batch size differ from the smallest batch size's (ideally 1: a single run), by id.
A run with one point but several variants of one data set writes the template table in its own
directory.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tasks import is_lmeval, load_task


def parse_list(text: str, kind, flag: str) -> list:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        values = [kind(t) for t in items]
    except ValueError:
        raise ValueError(f"{flag} {text!r}: give a value or a comma-separated list, e.g. {flag} 1,8,32") from None
    if not values:
        raise ValueError(f"{flag} is empty; give a value or a comma-separated list")
    if len(set(values)) != len(values):
        raise ValueError(f"{flag} {text!r} lists a value twice")
    return values


def point_name(chat: str, batch_size: int) -> str:
    return f"{chat}_bs{batch_size}"


def run_sweep(spec, chats: list[str], batch_sizes: list[int], run_point, rank: int = 0, log=print) -> dict | None:
    """Run every (chat, batch size) point as its own run under <run>/points/; rank 0 (or the one
    process) writes the merged summary and the sensitivity tables. run_point(spec) -> summary or
    None (ranks other than 0)."""
    from .runner import plan_run
    import hashlib
    import time
    specs = [dataclasses.replace(spec, chat=c, batch_size=b) for c in chats for b in batch_sizes]
    for s in specs:
        plan_run(s)   # every point's input checked before any point runs
    if any(c != "none" for c in chats):
        plain = [t for t in spec.task.split(",") if t.strip() and not is_lmeval(t.strip())]
        if plain:
            raise ValueError(f"task {plain[0]} has no chat format; use --chat none")
    run_id = spec.run_id or time.strftime("%Y%m%d-%H%M%S-sweep-") + hashlib.sha1(
        json.dumps(dataclasses.asdict(spec), sort_keys=True, default=str).encode()).hexdigest()[:6]
    root = Path(spec.out_dir) / run_id
    sweep = {"run_id": run_id, "chats": chats, "batch_sizes": batch_sizes,
             "spec": {k: v for k, v in spec.key().items() if k not in ("chat", "batch_size")},
             "points": [{"chat": s.chat, "batch_size": s.batch_size, "dir": f"points/{point_name(s.chat, s.batch_size)}"}
                        for s in specs]}
    if rank == 0:
        if (root / "sweep.json").exists():
            old = json.loads((root / "sweep.json").read_text())
            if old != sweep:
                raise ValueError(f"{root} holds another sweep; choose another --run-id")
            if not spec.resume:
                raise ValueError(f"{root} already exists; pass --resume to continue it or choose another --run-id")
        root.mkdir(parents=True, exist_ok=True)
        (root / "sweep.json").write_text(json.dumps(sweep, indent=1) + "\n")
    for s in specs:
        log(f"sweep {run_id}: point chat={s.chat} batch_size={s.batch_size}")
        run_point(dataclasses.replace(s, out_dir=str(root / "points"), run_id=point_name(s.chat, s.batch_size)))
    if rank != 0:
        return None
    points = [(p["chat"], p["batch_size"], root / p["dir"]) for p in sweep["points"]]
    rows = merged_rows(points)
    summary = {"run_id": run_id, "rows": rows, "path": str(root), "sweep": sweep,
               "energy_note": None}
    (root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    summary["sensitivity"] = write_sensitivity(root, points)
    return summary


def merged_rows(points) -> list[dict]:
    rows = []
    for chat, bs, d in points:
        for r in json.loads((d / "summary.json").read_text())["rows"]:
            rows.append({**r, "chat": chat, "batch_size": bs, "template": f"{r['task']}/{chat}"})
    return rows


def family(task: str) -> str:
    """Variants of one data set share their test documents (and doc ids)."""
    return load_task(task).data_files["test"] if is_lmeval(task) else task


def _greedy(run_json: dict, label: str) -> bool:
    from decoding.base import GenConfig
    from decoding.registry import build_method, parse_methods
    spec = next(m for m in parse_methods(run_json["spec"]["methods"]) if m.label == label)
    p = run_json["protocol"]
    return build_method(spec, GenConfig(p["gen_length"], p["block_length"])).temperature == 0


def _ranking(acc: dict) -> list[list[str]]:
    """Methods by accuracy, best first; ties grouped."""
    groups: dict = {}
    for m, a in acc.items():
        groups.setdefault(a, []).append(m)
    return [sorted(groups[a]) for a in sorted(groups, key=lambda a: -1 if a is None else a, reverse=True)]


def _rank_text(r: list[list[str]]) -> str:
    return " > ".join(" = ".join(g) for g in r)


def sensitivity(points) -> dict:
    """The template and batch-size tables of a sweep's points [(chat, batch_size, run dir)]."""
    data = []
    for chat, bs, d in points:
        info = json.loads((d / "run.json").read_text())
        rows = json.loads((d / "summary.json").read_text())["rows"]
        reqs = [json.loads(l) for l in (d / "requests.jsonl").read_text().splitlines() if l.strip()]
        data.append((chat, bs, info, rows, reqs))
    labels = list(data[0][2]["methods"])
    out = {"templates": [], "batch_sizes": []}
    # templates: per data set and batch size, every (variant, chat mode)
    for bs in sorted({p[1] for p in data}):
        fams: dict = {}
        for chat, b, info, rows, _ in data:
            if b != bs:
                continue
            for r in rows:
                fams.setdefault(family(r["task"]), {}).setdefault(f"{r['task']}/{chat}", {})[r["method"]] = r
        for fam, temps in fams.items():
            if len(temps) < 2:
                continue
            ranks = {t: _ranking({m: rs[m]["accuracy"] for m in rs}) for t, rs in temps.items()}
            same = len({json.dumps(r) for r in ranks.values()}) == 1
            out["templates"].append({
                "data": fam, "batch_size": bs, "templates": list(temps),
                "methods": {m: {t: {"accuracy": temps[t][m]["accuracy"], "nfe_mean": temps[t][m]["nfe_mean"]}
                                for t in temps if m in temps[t]} for m in labels},
                "ranking": {t: _rank_text(r) for t, r in ranks.items()}, "ranking_changes": not same})
    # batch sizes: per template, each batch size against the smallest
    sizes = sorted({p[1] for p in data})
    if len(sizes) > 1:
        for chat in dict.fromkeys(p[0] for p in data):
            at = {bs: (info, rows, reqs) for c, bs, info, rows, reqs in data if c == chat}
            ref_info, _, ref_reqs = at[sizes[0]]
            ref = {(r["task"], r["method"], r["doc_id"]): r for r in ref_reqs}
            for task in ref_info["tasks"]:
                entry = {"template": f"{task}/{chat}", "reference_batch_size": sizes[0], "methods": {}}
                for m in labels:
                    greedy = _greedy(ref_info, m)
                    per = {}
                    for bs in sizes:
                        info, rows, reqs = at[bs]
                        row = next((r for r in rows if r["task"] == task and r["method"] == m), None)
                        if row is None:
                            continue
                        diff = sorted((r["doc_id"] for r in reqs if r["task"] == task and r["method"] == m
                                       and (r.get("tokens_sha"), r["nfe"]) != (
                                           ref[(task, m, r["doc_id"])].get("tokens_sha"),
                                           ref[(task, m, r["doc_id"])]["nfe"])), key=str) if greedy else None
                        per[bs] = {"accuracy": row["accuracy"], "nfe_mean": row["nfe_mean"],
                                   "tokens_per_s": row["tokens_per_s"], "timing_under_load": row.get("timing_under_load"),
                                   "differs_from_reference": diff}
                    entry["methods"][m] = {"greedy": greedy, "by_batch_size": per}
                out["batch_sizes"].append(entry)
    return out


def _f(v, spec=".3f"):
    return "n/a" if v is None else format(v, spec)


def render(sens: dict) -> str:
    lines = []
    for t in sens["templates"]:
        lines += [f"## Templates: {t['data']} at batch size {t['batch_size']}", "",
                  "| method | " + " | ".join(f"{x} acc / NFE" for x in t["templates"]) + " |",
                  "|---" * (len(t["templates"]) + 1) + "|"]
        for m, per in t["methods"].items():
            lines.append(f"| {m} | " + " | ".join(
                f"{_f(per[x]['accuracy'])} / {_f(per[x]['nfe_mean'], '.1f')}" if x in per else "n/a"
                for x in t["templates"]) + " |")
        lines.append("")
        if t["ranking_changes"]:
            lines.append("The ranking by accuracy CHANGES with the template: " +
                         "; ".join(f"{x}: {r}" for x, r in t["ranking"].items()) + ".")
        else:
            lines.append(f"The ranking by accuracy is the same under every template: {next(iter(t['ranking'].values()))}.")
        lines.append("")
    for e in sens["batch_sizes"]:
        sizes = sorted({bs for m in e["methods"].values() for bs in m["by_batch_size"]})
        lines += [f"## Batch sizes: {e['template']}", "",
                  "| method | " + " | ".join(f"bs {b} acc / NFE / tok/s" for b in sizes) + " | tokens as at bs "
                  f"{e['reference_batch_size']} |", "|---" * (len(sizes) + 2) + "|"]
        notes = []
        for m, d in e["methods"].items():
            per = d["by_batch_size"]
            cells = [f"{_f(per[b]['accuracy'])} / {_f(per[b]['nfe_mean'], '.1f')} / {_f(per[b]['tokens_per_s'], '.1f')}"
                     + ("*" if per[b]["timing_under_load"] else "") if b in per else "n/a" for b in sizes]
            if not d["greedy"]:
                same = "not compared (sampling)"
            else:
                bad = {b: per[b]["differs_from_reference"] for b in sizes if per.get(b, {}).get("differs_from_reference")}
                same = "all equal" if not bad else "DIFFER: " + "; ".join(
                    f"bs {b}: {len(ids)} sample(s)" for b, ids in bad.items())
                notes += [f"- {m} at batch size {b}: tokens or NFE differ from batch size {e['reference_batch_size']} "
                          f"for doc ids {', '.join(map(str, ids))}" for b, ids in bad.items()]
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {same} |")
        lines += [""] + notes + ([""] if notes else [])
        if any(d["by_batch_size"].get(b, {}).get("timing_under_load") for d in e["methods"].values() for b in sizes):
            lines += ["\\* timed under load (bench/load.py): not a trustworthy tokens/s.", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_sensitivity(root: Path, points) -> str | None:
    """sensitivity.json and .md in root; returns the markdown (None when there is nothing to compare)."""
    sens = sensitivity(points)
    if not sens["templates"] and not sens["batch_sizes"]:
        return None
    text = render(sens)
    (root / "sensitivity.json").write_text(json.dumps(sens, indent=1) + "\n")
    (root / "sensitivity.md").write_text(text)
    return text
