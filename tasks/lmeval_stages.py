"""The two lm-eval stages around decoding: build requests, and score stored generations.

Both run lm-eval's own `simple_evaluate` on lm-eval's own task objects, so everything lm-eval
does to a task (few-shot seed, chat rendering, filters, metrics, aggregation, result files) is
what happens here:

- build: a recording LM answers nothing and notes every request lm-eval renders (context, stop
  strings, doc id, and with a chat mode the chat messages), with the metrics bypassed
  (`predict_only`). The requests go to prompts.jsonl; decoding needs nothing else.
- score: a replay LM answers each request with the generation stored for its (task, doc id);
  lm-eval applies its filters and metrics and writes its standard results and samples files.

Chat modes: `none` (plain few-shot text), `single-turn` (lm-eval `apply_chat_template` without
`fewshot_as_multiturn`: the whole few-shot prompt as one user message, the Fast-dLLM convention),
`multiturn` (each shot a user/assistant exchange). Messages are recorded as data; the decode
stage renders them with the model's chat template (bench/chat.py).
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
from pathlib import Path

from .lmeval_tasks import LMEVAL_TASKS, build_task
from .sandbox import DEFAULT_TIMEOUT_S as DEFAULT_CODE_TIMEOUT

CHAT_MODES = ("none", "single-turn", "multiturn")
_MSG = "\x00dllm-bench-messages\x00"   # marks a chat-rendered context as the JSON of its messages
FEWSHOT_SEED = 1234                    # lm-eval's default fewshot_random_seed


def _chat_args(chat: str) -> dict:
    if chat not in CHAT_MODES:
        raise ValueError(f"unknown chat mode {chat!r}; choose one of {', '.join(CHAT_MODES)}")
    return {"apply_chat_template": chat != "none", "fewshot_as_multiturn": chat == "multiturn"}


def _lm_base():
    from lm_eval.api.model import LM

    class _Base(LM):
        def loglikelihood(self, requests):
            raise NotImplementedError("dllm-bench serves generate_until tasks only")

        def loglikelihood_rolling(self, requests):
            raise NotImplementedError("dllm-bench serves generate_until tasks only")

        def apply_chat_template(self, chat_history, add_generation_prompt=True):
            return _MSG + json.dumps(chat_history)

        @property
        def tokenizer_name(self):
            return "dllm-bench-messages"

        def chat_template(self, chat_template=False):
            return "recorded as messages; rendered with the model's template at decode time"

    return _Base


def _quiet():
    for name in ("lm-eval", "lm_eval", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def _compiled_templates():
    """lm-eval compiles each Jinja template string anew for every document and field (`env.from_string`
    in `utils.apply_template`): two thirds of the time of building or scoring full GSM8K. Within
    our calls the compiled templates are memoized; the rendering, and so every prompt, is unchanged
    (the prompt test compares against lm-eval run without this)."""
    from lm_eval import utils
    real = utils.apply_template
    compiled = functools.lru_cache(maxsize=512)(utils.env.from_string)
    utils.apply_template = lambda template, doc: compiled(template).render(**doc)
    try:
        yield
    finally:
        utils.apply_template = real


def _evaluate(lm, tasks: list, limit, chat: str, predict_only: bool, allow_code: bool, tracker=None):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    _quiet()
    with _compiled_templates():
        return simple_evaluate(model=lm, tasks=tasks, limit=limit, predict_only=predict_only, log_samples=True,
                               task_manager=TaskManager(include_defaults=False), fewshot_random_seed=FEWSHOT_SEED,
                               confirm_run_unsafe_code=allow_code, evaluation_tracker=tracker,
                               bootstrap_iters=0, **_chat_args(chat))


def split_context(context: str) -> tuple[str, list | None]:
    """(prompt text, None) for plain prompts; ("", messages) for chat-rendered ones."""
    if context.startswith(_MSG):
        return "", json.loads(context[len(_MSG):])
    return context, None


def build_requests(task_names: list[str], data_dir, limit: int | None, chat: str) -> list[dict]:
    """Render every request of the tasks through lm-eval; one dict per (task, doc)."""
    base = _lm_base()
    seen: list = []

    class Recorder(base):
        def generate_until(self, requests, disable_tqdm=False):
            seen.extend(requests)
            return ["" for _ in requests]

    tasks = [build_task(n, data_dir) for n in task_names]
    by_name = {t.config.task: t for t in tasks}
    _chat_args(chat)
    _evaluate(Recorder(), tasks, limit, chat, predict_only=True, allow_code=True)   # metrics bypassed
    out = []
    for inst in seen:
        context, gen_kwargs = inst.args
        prompt, messages = split_context(context)
        until = gen_kwargs.get("until") or []
        out.append({"task": inst.task_name, "doc_id": inst.doc_id, "prompt": prompt, "messages": messages,
                    "until": [until] if isinstance(until, str) else list(until),
                    "gold": LMEVAL_TASKS[inst.task_name].oracle(inst.doc),
                    "target": str(by_name[inst.task_name].doc_to_target(inst.doc))})
    out.sort(key=lambda r: (task_names.index(r["task"]), r["doc_id"]))
    return out


def score_generations(task_name: str, outputs: dict, data_dir, limit: int | None, chat: str,
                      allow_code: bool, out_dir: Path | None = None, model_name: str = "dllm-bench",
                      code_timeout: float = DEFAULT_CODE_TIMEOUT) -> dict:
    """Score stored generations {doc_id: text} of one task with lm-eval.

    Returns {"metrics": {"metric,filter": value}, "per_doc": {doc_id: {"metric,filter": value,
    "extracted": ...}}}; writes lm-eval's results_*.json and samples_*.jsonl under out_dir.
    code_timeout: CPU seconds per generated program in the sandbox."""
    from .code_eval import configure
    from .sandbox import SandboxConfig
    d = LMEVAL_TASKS[task_name]
    if d.executes_code:
        configure(allow=allow_code, config=SandboxConfig(timeout_s=code_timeout))
        if not allow_code:
            from .sandbox import CodeExecutionNotAllowed
            raise CodeExecutionNotAllowed(f"scoring {task_name}")
    base = _lm_base()
    missing: list = []

    class Replay(base):
        def generate_until(self, requests, disable_tqdm=False):
            res = []
            for inst in requests:
                if inst.doc_id not in outputs:
                    missing.append(inst.doc_id)
                res.append(outputs.get(inst.doc_id, ""))
            return res

    tracker = None
    if out_dir is not None:
        from lm_eval.loggers import EvaluationTracker
        tracker = EvaluationTracker(output_path=str(out_dir))
    _quiet()
    if d.executes_code:   # pass 1: note every program, then run them all in parallel
        from .code_eval import CODE_EVAL, collecting, prefetch
        with collecting() as programs:
            _evaluate(Replay(), [build_task(task_name, data_dir)], limit, chat, predict_only=False,
                      allow_code=allow_code)
        missing.clear()
        CODE_EVAL.cache.clear()
        prefetch(programs)
    res = _evaluate(Replay(), [build_task(task_name, data_dir)], limit, chat, predict_only=False,
                    allow_code=allow_code, tracker=tracker)
    if missing:
        raise ValueError(f"{task_name}: no generation stored for doc ids {missing[:10]}"
                         f"{' ...' if len(missing) > 10 else ''}; decode them first (run with --resume)")
    if tracker is not None:
        tracker.general_config_tracker.model_name = model_name
        tracker.general_config_tracker.model_name_sanitized = model_name.replace("/", "__").replace(":", "_")
        samples = res.pop("samples")
        tracker.save_results_aggregated(results=res, samples=samples)
        for t in res["configs"]:
            tracker.save_results_samples(task_name=t, samples=samples[t])
        res["samples"] = samples
    metrics = {k: v for k, v in res["results"][task_name].items()
               if "," in k and not k.split(",")[0].endswith("_stderr")}
    per_doc: dict = {}
    for s in res["samples"][task_name]:
        entry = per_doc.setdefault(s["doc_id"], {})
        key_filter = s["filter"]
        for m in s["metrics"]:
            entry[f"{m},{key_filter}"] = _num(s[m])
        entry.setdefault("extracted", {})[key_filter] = _first(s["filtered_resps"])
        if d.executes_code:
            from .code_eval import CODE_EVAL, program_text
            r = CODE_EVAL.cache.get(program_text(str(_first(s["filtered_resps"])), str(s["target"])))
            entry["exec_status"] = r.status if r is not None else None
    return {"metrics": metrics, "per_doc": per_doc}


def _num(v):
    if isinstance(v, dict):   # humaneval's metric returns {"pass@1": x}
        v = next(iter(v.values()))
    return float(v) if v is not None else None


def _first(v):
    while isinstance(v, list) and v:
        v = v[0]
    return v if isinstance(v, (str, int, float)) or v is None else str(v)
