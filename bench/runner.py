"""RunSpec -> build requests -> decode -> score -> result files.

Three stages, each reading and writing files in the run directory (results/runs/<run_id>/):
build (prompts.jsonl: lm-eval renders the prompts of its tasks), decode (requests.jsonl: our
decode loop, timed and metered; imports no lm-eval, so it runs on a GPU machine without it),
score (bench/score.py: lm-eval's filters and metrics, the code sandbox; summary.json).
`run` does all three; `--stop-after build|decode` stops early, `run_bench.py decode RUN` and
`run_bench.py score RUN` continue a run directory.

Only the decode call sits inside the timed (and metered) window: tokenization, detokenization,
scoring and file writes happen outside it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from methods.base import GenConfig
from methods.loop import decode
from methods.registry import build_method, parse_methods
from tasks import is_lmeval, load_task, parse_tasks
from tasks.sandbox import CodeExecutionNotAllowed
from .build import build_prompts
from .env import environment
from .generate import cut_at_stops, render_prompt
from .measure import EnergyMeter, timed
from .models import load_model
from .results import RunDir
from .score import score_run, summarize


@dataclass
class RunSpec:
    model: str = "tiny"
    task: str = "arith"              # comma-separated: --tasks gsm8k,mbpp
    methods: str = "fixed,threshold"
    limit: int | None = 200
    seed: int = 0
    batch_size: int = 32
    gen_length: int | None = None    # None: each task's protocol
    block_length: int | None = None
    early_stop: bool = True
    max_steps: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    warmup_batches: int = 1
    baseline: str | None = None      # method label for speedup; None: the first method
    chat: str = "none"               # none | single-turn | multiturn
    # data source and permissions: recorded in run.json but not part of the spec compared on
    # resume (a run may be built, decoded and scored on different machines)
    data_dir: str | None = None      # local data (the ../shared/data layout); None: the HF hub
    allow_code_exec: bool = False
    stop_after: str = "score"        # build | decode | score
    # where and how to write (not part of the spec compared on resume)
    out_dir: str = "results/runs"
    run_id: str | None = None
    resume: bool = False
    progress: bool = True

    def key(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("out_dir", "run_id", "resume", "progress", "data_dir", "allow_code_exec", "stop_after"):
            d.pop(k)
        return d


PSEUDO_MODELS = ("oracle",)   # return each request's gold completion: checks the scoring pipeline


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for a GPU but torch sees none; use --device cpu")
    return dev


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in table:
        raise ValueError(f"unknown dtype {name!r}; choose one of auto, {', '.join(table)}")
    return table[name]


def _batched(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def run(spec: RunSpec, log=print) -> dict:
    """Build requests, decode every method on every task, score; returns the summary (also
    written to summary.json). Each stage reads and writes files in the run directory."""
    if spec.batch_size <= 0:
        raise ValueError("--batch-size must be positive")
    if spec.limit is not None and spec.limit <= 0:
        raise ValueError("--limit must be positive")
    if spec.stop_after not in ("build", "decode", "score"):
        raise ValueError(f"--stop-after {spec.stop_after!r}: choose build, decode or score")
    task_names = parse_tasks(spec.task)
    from tasks.lmeval_stages import CHAT_MODES
    if spec.chat not in CHAT_MODES:
        raise ValueError(f"unknown chat mode {spec.chat!r}; choose one of {', '.join(CHAT_MODES)}")
    code_tasks = [t for t in task_names if is_lmeval(t) and load_task(t).executes_code]
    if code_tasks and not spec.allow_code_exec and spec.stop_after == "score":
        raise CodeExecutionNotAllowed(f"scoring {', '.join(code_tasks)}")
    method_specs = parse_methods(spec.methods)
    gens = {t: _gen_config(spec, t) for t in task_names}
    methods = {t: [(m.label, build_method(m, gens[t])) for m in method_specs] for t in task_names}  # validate all first
    labels = [m.label for m in method_specs]
    baseline = spec.baseline or labels[0]
    if baseline not in labels:
        raise ValueError(f"--baseline {baseline!r} is not one of the methods run: {labels}")
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    if spec.model not in PSEUDO_MODELS:
        from .models import MODELS
        if spec.model not in MODELS:
            raise ValueError(f"unknown model {spec.model!r}; available: {', '.join(sorted(MODELS) + list(PSEUDO_MODELS))}")

    run_id = spec.run_id or time.strftime("%Y%m%d-%H%M%S-") + hashlib.sha1(
        json.dumps(spec.key(), sort_keys=True).encode()).hexdigest()[:6]
    out = RunDir(Path(spec.out_dir) / run_id)
    if out.run_json.exists() and not spec.resume:
        raise ValueError(f"{out.path} already exists; pass --resume to continue it or choose another --run-id")

    # stage 1: build (skipped when a resumed run already has its requests)
    if out.prompts_jsonl.exists() and spec.resume:
        prompts = out.load_prompts()
    else:
        prompts = build_prompts(task_names, spec.limit, spec.data_dir, spec.chat)
    first = methods[task_names[0]]
    meter = EnergyMeter(device)
    protocols = {t: {**dataclasses.asdict(load_task(t).protocol), **dataclasses.asdict(gens[t]), "chat": spec.chat}
                 for t in task_names}
    out.start({"run_id": run_id, "spec": spec.key(), "tasks": task_names,
               "protocol": protocols[task_names[0]],   # the first task's; `protocols` has every task's
               "protocols": protocols,
               "methods": {label: {"name": m.name, "settings": m.settings()} for label, m in first},
               "model": {"name": spec.model}, "baseline": baseline,
               "data": {"data_dir": spec.data_dir, "source": "local" if spec.data_dir else "hub"},
               "env": environment(device), "energy": meter.info(),
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, resume=spec.resume)
    if not out.prompts_jsonl.exists():
        out.write_prompts(prompts)
    if spec.stop_after == "build":
        log(f"run {run_id}: built {len(prompts)} requests in {out.prompts_jsonl}")
        return {"run_id": run_id, "rows": [], "energy_note": None, "path": str(out.path)}

    decode_stage(spec, out, prompts, task_names, gens, methods, device, dtype, meter, log)
    if spec.stop_after == "decode":
        return summarize(out)
    return score_run(out, allow_code_exec=spec.allow_code_exec, data_dir=spec.data_dir, log=log)


def _gen_config(spec: RunSpec, task: str) -> GenConfig:
    p = load_task(task).protocol
    return GenConfig(gen_length=spec.gen_length or p.gen_length, block_length=spec.block_length or p.block_length,
                     early_stop=spec.early_stop, max_steps=spec.max_steps)


def decode_stage(spec, out, prompts, task_names, gens, methods, device, dtype, meter, log) -> None:
    """Stage 2: prompts.jsonl -> requests.jsonl (generations, NFE, latency, energy). No lm-eval."""
    oracle = spec.model in PSEUDO_MODELS
    model = None if oracle else load_model(spec.model, device=str(device), dtype=dtype)
    if model is not None:
        meter.measure_idle(2.0)
        info = json.loads(out.run_json.read_text())
        info["model"] = {"name": model.name, **model.info}
        # the machine that decodes is the one whose timings count (the build may have run elsewhere)
        if info.get("env", {}).get("host") != environment(device).get("host"):
            info.setdefault("build_env", info.get("env"))
        info["env"] = environment(device)
        info["energy"] = meter.info()
        out.write_json(out.run_json, info)
    done = {(r["task"], r["method"], r["doc_id"]) for r in out.load_requests()}
    log(f"run {out.path.name}: {len(prompts)} requests ({', '.join(task_names)}) x {len(methods[task_names[0]])} "
        f"methods, model {spec.model} on {device}" + (f" (resuming: {len(done)} samples already done)" if done else ""))
    gen_torch = torch.Generator(device=device)
    for task in task_names:
        mine = [p for p in prompts if p["task"] == task]
        for label, method in methods[task]:
            todo = [p for p in mine if (task, label, p["doc_id"]) not in done]
            if not todo:
                continue
            if oracle:
                out.append_requests([_oracle_line(spec, label, p) for p in todo])
                continue
            gen = gens[task]
            encoded = [model.tokenizer.encode(render_prompt(model, p["prompt"], p["messages"])) for p in todo]
            for _ in range(spec.warmup_batches):  # untimed: first-call allocations, kernels, caches
                gen_torch.manual_seed(spec.seed)
                decode(model, method, encoded[:spec.batch_size], gen, generator=gen_torch)
            gen_torch.manual_seed(spec.seed)
            bar = _progress(len(todo), f"{task} {label}", spec.progress)
            for batch, batch_ids in zip(_batched(todo, spec.batch_size), _batched(encoded, spec.batch_size)):
                with timed(device, meter) as w:
                    res = decode(model, method, batch_ids, gen, generator=gen_torch)
                out.append_requests(_request_lines(model, task, label, batch, res, w, meter))
                bar.update(len(batch))
            bar.close()


def _oracle_line(spec, label, p) -> dict:
    return {"task": p["task"], "doc_id": p["doc_id"], "model": spec.model, "method": label,
            "prompt_hash": p["prompt_hash"], "output": p["gold"], "extracted": None, "target": p.get("target"),
            "correct": None, "nfe": 0, "steps": 0, "gen_tokens": 0, "capped": False, "stop_hit": False,
            "batch_id": f"oracle-{p['task']}-{p['doc_id']}", "batch_size": 1, "batch_latency_s": 0.0,
            "batch_energy_j": None, "batch_energy_net_j": None, "energy_j": None}


def _request_lines(model, task, label, batch, res, w, meter) -> list[dict]:
    batch_id = uuid.uuid4().hex[:12]
    net = None
    if w.energy_j is not None and meter.idle_w is not None:
        net = w.energy_j - meter.idle_w * w.seconds
    lines = []
    for i, p in enumerate(batch):
        n = int(res.gen_tokens[i])
        text, stop_hit = cut_at_stops(model.tokenizer.decode(res.tokens[i, :n].tolist()), p["until"])
        lines.append({
            "task": task, "doc_id": p["doc_id"], "model": model.name, "method": label,
            "prompt_hash": p["prompt_hash"], "output": text, "extracted": None, "target": p.get("target"),
            "correct": None, "nfe": int(res.nfe[i]),
            "nfe_truncated": int(res.nfe_truncated[i]) if res.nfe_truncated is not None else 0,
            "steps": int(res.steps[i]), "gen_tokens": n,
            "capped": bool(res.capped[i]), "stop_hit": stop_hit,
            "batch_id": batch_id, "batch_size": len(batch), "batch_latency_s": w.seconds,
            "batch_energy_j": w.energy_j, "batch_energy_net_j": net,
            "energy_j": w.energy_j / len(batch) if w.energy_j is not None else None,
        })
    return lines


def _progress(total: int, label: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=label, unit="sample", disable=not enabled, leave=False, dynamic_ncols=True)
