"""Stage 3, score: generations in requests.jsonl -> correct / extracted per sample, lm-eval's
results and samples files, summary.json. Reads files only, so `run_bench.py score RUN` can
re-score a run anywhere (lm-eval and, for code tasks, --allow-code-exec needed there).

- arith: exact match of the `#### N` answer (tasks/arith_task.py).
- lm-eval tasks: lm-eval's filters and metrics on the stored outputs (tasks/lmeval_stages.py);
  `accuracy` is the task's primary metric (GSM8K: exact_match of strict-match; MBPP: pass_at_1;
  HumanEval: pass@1), every other lm-eval metric is kept in the row's `metrics`.
  lm-eval's own files go to lm_eval/<method>/ in the run directory.
"""
from __future__ import annotations

import json

from tasks import is_lmeval, load_task
from tasks.base import Doc
from tasks.sandbox import DEFAULT_TIMEOUT_S as DEFAULT_CODE_TIMEOUT
from . import accounting, load, metrics
from .aup import family_aups
from .results import RunDir


def _label_dir(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in label)


def score_run(out: RunDir, allow_code_exec: bool = False, data_dir: str | None = None, log=print,
              code_timeout: float = DEFAULT_CODE_TIMEOUT) -> dict:
    info = json.loads(out.run_json.read_text())
    spec = info["spec"]
    data_dir = data_dir or info.get("data", {}).get("data_dir")
    reqs = out.load_requests()
    if not reqs:
        raise ValueError(f"{out.path} has no generations (requests.jsonl is empty); decode first")
    prompts = {(p["task"], p["doc_id"]): p for p in out.load_prompts()}
    by = {}
    for r in reqs:
        by.setdefault((r["task"], r["method"]), []).append(r)
    lm_metrics: dict = {}
    not_scored = _accuracy_note(info)   # random weights: outputs are noise, not scored
    for (task, label), rows in by.items():
        if not_scored:
            for r in rows:
                r["extracted"], r["correct"] = None, None
        elif is_lmeval(task):
            from tasks.lmeval_stages import score_generations
            d = load_task(task)
            outputs = {r["doc_id"]: r["output"] for r in rows}
            res = score_generations(task, outputs, data_dir, spec.get("limit"), spec.get("chat", "none"),
                                    allow_code_exec, out_dir=out.path / "lm_eval" / _label_dir(label),
                                    model_name=f"{spec['model']}__{label}", code_timeout=code_timeout)
            lm_metrics[(task, label)] = res["metrics"]
            primary_filter = d.primary.split(",")[1]
            for r in rows:
                doc = res["per_doc"].get(r["doc_id"])
                if doc is None:    # beyond the limit lm-eval scored: should not happen
                    raise ValueError(f"lm-eval did not score {task} doc {r['doc_id']}")
                r["scores"] = {k: v for k, v in doc.items() if k not in ("extracted", "exec_status")}
                if "exec_status" in doc:
                    r["exec_status"] = doc["exec_status"]   # passed | failed | timeout | killed
                r["extracted"] = doc["extracted"].get(primary_filter)
                r["correct"] = bool(doc[d.primary] >= 1.0)
        else:
            task_obj = load_task(task)
            for r in rows:
                p = prompts[(task, r["doc_id"])]
                s = task_obj.score(Doc(r["doc_id"], p["prompt"], p["target"]), r["output"])
                r["extracted"], r["correct"] = s["extracted"], s["correct"]
    out.rewrite_requests(reqs)
    _record_scoring(out, info, by, allow_code_exec, data_dir)
    return summarize(out, lm_metrics)


def _record_scoring(out: RunDir, info: dict, by: dict, allow_code_exec: bool, data_dir) -> None:
    import time
    from .env import _version
    scoring = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "data_dir": data_dir,
               "lm_eval": _version("lm_eval"), "code_exec": None}
    if any(is_lmeval(t) and load_task(t).executes_code for t, _ in by):
        from tasks.code_eval import CODE_EVAL
        from tasks.sandbox import sandbox_info
        scoring["code_exec"] = sandbox_info(CODE_EVAL.config)
    info["scoring"] = scoring
    out.write_json(out.run_json, info)


def summarize(out: RunDir, lm_metrics: dict | None = None) -> dict:
    """summary.json from requests.jsonl (and lm-eval's aggregate metrics when just scored)."""
    info = json.loads(out.run_json.read_text())
    reqs = out.load_requests()
    labels = list(info["methods"])
    tasks = info["tasks"]
    baseline = info["baseline"]
    model = info["model"]["name"]
    rows = []
    loads = load.read(out.path)
    for task in tasks:
        task_rows = []
        for label in labels:
            mine = [r for r in reqs if r["task"] == task and r["method"] == label]
            if not mine:
                continue
            row = {"model": model, "task": task, "method": label, **metrics.summarize_method(mine)}
            row.update(accounting.totals(mine, row["decode_time_s"]))
            row.update(load.summary_fields(loads, task, label))
            if _accuracy_note(info):
                row["accuracy_note"] = _accuracy_note(info)
            if is_lmeval(task):
                d = load_task(task)
                row["accuracy_metric"] = d.primary
                agg = (lm_metrics or {}).get((task, label)) or _mean_scores(mine)
                row["metrics"] = {k: float(v) for k, v in agg.items() if v is not None}
                if "exact_match,flexible-extract" in row["metrics"]:
                    row["accuracy_flexible_extract"] = row["metrics"]["exact_match,flexible-extract"]
            task_rows.append(row)
        metrics.add_speedup(task_rows, baseline)
        load.flag_speedups(task_rows, baseline)
        rows += task_rows
    summary = {"run_id": info["run_id"], "baseline": baseline, "rows": rows,
               "aup": family_aups(rows),   # per model, task and method family with several points (bench/aup.py)
               "energy_note": None if info["energy"]["available"] else info["energy"]["reason"],
               "machine": info.get("machine"), "path": str(out.path)}
    out.write_json(out.summary_json, summary)
    return summary


def _accuracy_note(info: dict) -> str | None:
    """Why accuracy is not applicable (random weights), from the model info the decode recorded."""
    return ((info.get("model_info") or {}).get("accuracy_note")
            or (info.get("model") or {}).get("accuracy_note"))


def _mean_scores(rows: list[dict]) -> dict:
    keys = {k for r in rows for k in (r.get("scores") or {})}
    return {k: sum(r["scores"][k] for r in rows) / len(rows) for k in keys
            if all(r.get("scores") and r["scores"].get(k) is not None for r in rows)}
