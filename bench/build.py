"""Stage 1, build: the requests of every task, rendered once and written to prompts.jsonl.

One line per (task, doc): task, doc_id, prompt (or chat messages), stop strings, the gold
completion (for the `oracle` pseudo-model) and, for arith, the target. lm-eval tasks are rendered
by lm-eval itself (tasks/lmeval_stages.py); the built-in arith task by tasks/arith_task.py.
"""
from __future__ import annotations

import hashlib

from tasks import is_lmeval, load_task


def build_prompts(task_names: list[str], limit: int | None, data_dir: str | None, chat: str) -> list[dict]:
    lines: list[dict] = []
    lm = [n for n in task_names if is_lmeval(n)]
    rendered = {}
    if lm:
        from tasks.lmeval_stages import build_requests
        for r in build_requests(lm, data_dir, limit, chat):
            rendered.setdefault(r["task"], []).append(r)
    for name in task_names:
        if is_lmeval(name):
            lines += rendered.get(name, [])
            continue
        if chat != "none":
            raise ValueError(f"task {name} has no chat format; use --chat none")
        task = load_task(name)
        for d in task.docs(limit):
            lines.append({"task": name, "doc_id": d.doc_id, "prompt": d.prompt, "messages": None,
                          "until": list(task.protocol.stop), "gold": f" #### {d.target}", "target": d.target})
    for line in lines:
        text = line["prompt"] if line["messages"] is None else repr(line["messages"])
        line["prompt_hash"] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return lines
