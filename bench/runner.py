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

import contextlib
import dataclasses
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from decoding.base import GenConfig
from decoding.block_causal import check_methods, model_gen
from acceleration import Decoder
from decoding.registry import build_method, parse_methods
from tasks import is_lmeval, load_task, parse_tasks
from tasks.sandbox import DEFAULT_TIMEOUT_S as DEFAULT_CODE_TIMEOUT, CodeExecutionNotAllowed
from . import load
from .accounting import committed_tokens, tokens_digest
from .build import build_prompts
from .env import environment
from .generate import cut_at_stops, render_prompt
from .measure import EnergyMeter, ForwardTimer, devices_in_use, timed
from models import load_model
from .results import RunDir
from .score import score_run, summarize
from .threads import apply_threads
from .validate import check_device, check_fits, check_spec, removed_on_failure


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
    time_forwards: bool = False      # sync + time every model forward (latency split; perturbs timing)
    baseline: str | None = None      # method label for speedup; None: the first method
    model_path: str | None = None    # llada/dream: hub id or local HF directory
    no_weights: bool = False         # random weights (speed/energy runs); accuracy not applicable
    model_backend: str = "native"    # native (ours, KV cache) or hf (the authors' remote code)
    chat: str = "none"               # none | single-turn | multiturn
    threads: int | None = None       # CPU intra-op threads of the decode; None: bench/threads.py's choice
    # data source and permissions: recorded in run.json but not part of the spec compared on
    # resume (a run may be built, decoded and scored on different machines)
    data_dir: str | None = None      # local data (the ../shared/data layout); None: the HF hub
    allow_code_exec: bool = False
    code_timeout: float = DEFAULT_CODE_TIMEOUT   # CPU seconds per generated program (MBPP/HumanEval)
    stop_after: str = "score"        # build | decode | score
    # where and how to write (not part of the spec compared on resume)
    out_dir: str = "results/runs"
    run_id: str | None = None
    resume: bool = False
    progress: bool = True

    def key(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("out_dir", "run_id", "resume", "progress", "data_dir", "allow_code_exec", "code_timeout",
                  "stop_after", "threads"):
            d.pop(k)
        return d


def check_code_timeout(seconds: float) -> None:
    if not seconds > 0:
        raise ValueError(f"--code-timeout {seconds}: give the CPU seconds a generated program may run, "
                         f"a positive number (default {DEFAULT_CODE_TIMEOUT:g}, lm-eval's)")


PSEUDO_MODELS = ("oracle",)   # return each request's gold completion: checks the scoring pipeline


def resolve_device(name: str) -> torch.device:
    check_device(name)
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


@dataclass
class Plan:
    """A validated run: what to decode, where, on which device. Making one writes nothing."""
    spec: RunSpec
    run_id: str
    out: RunDir
    task_names: list[str]
    gens: dict
    methods: dict            # task -> [(label, method)]
    baseline: str
    device: torch.device
    dtype: torch.dtype
    identity: dict
    protocols: dict


def plan_run(spec: RunSpec, device: torch.device | None = None) -> Plan:
    """Check every input (a one-line ValueError naming the fix) before any work or write."""
    check_spec(spec)
    if spec.batch_size <= 0:
        raise ValueError("--batch-size must be positive")
    if spec.limit is not None and spec.limit <= 0:
        raise ValueError("--limit must be positive")
    if spec.stop_after not in ("build", "decode", "score"):
        raise ValueError(f"--stop-after {spec.stop_after!r}: choose build, decode or score")
    check_code_timeout(spec.code_timeout)
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
    device = device if device is not None else resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    if spec.model not in PSEUDO_MODELS:
        from models import MODELS, is_student_dir
        if spec.model not in MODELS and not (spec.model_path is None and is_student_dir(spec.model)):
            names = ', '.join(sorted(MODELS) + list(PSEUDO_MODELS))
            if Path(spec.model).is_dir():
                raise ValueError(f"--model {spec.model} is a directory without a CDLM student's config.json "
                                 f"(\"regime\": \"block_causal\"); give a directory written by "
                                 f"`python -m training.cdlm_train --out DIR`, or a model name: {names}")
            raise ValueError(f"unknown model {spec.model!r}; available: {names}")

    run_id = spec.run_id or time.strftime("%Y%m%d-%H%M%S-") + hashlib.sha1(
        json.dumps(spec.key(), sort_keys=True).encode()).hexdigest()[:6]
    out = RunDir(Path(spec.out_dir) / run_id)
    first = methods[task_names[0]]
    protocols = {t: {**dataclasses.asdict(load_task(t).protocol), **dataclasses.asdict(gens[t]), "chat": spec.chat}
                 for t in task_names}
    identity = {"spec": spec.key(),
                "protocol": protocols[task_names[0]],   # the first task's; `protocols` has every task's
                "methods": {label: {"name": m.name, "settings": m.settings()} for label, m in first},
                "model": {"name": spec.model},
                "machine": {"device_type": device.type,
                            "gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None}}
    return Plan(spec, run_id, out, task_names, gens, methods, baseline, device, dtype, identity, protocols)


def prompts_for(plan: Plan) -> list[dict]:
    """Stage 1's requests: built now, or (resume) read from the run directory."""
    if plan.out.prompts_jsonl.exists() and plan.spec.resume:
        return plan.out.load_prompts()
    spec = plan.spec
    return build_prompts(plan.task_names, spec.limit, spec.data_dir, spec.chat)


def start_run(plan: Plan, prompts: list[dict], extra: dict | None = None) -> str:
    """Create (or, resuming, reopen) the run directory: run.json and prompts.jsonl. Returns the
    session id of this process."""
    spec, out = plan.spec, plan.out
    session = {"session": uuid.uuid4().hex[:12], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out.start({**plan.identity, "run_id": plan.run_id, "tasks": plan.task_names, "protocols": plan.protocols,
               "baseline": plan.baseline,
               "data": {"data_dir": spec.data_dir, "source": "local" if spec.data_dir else "hub"},
               "env": environment(plan.device), "energy": {"available": False, "reason": "not decoded yet"},
               "seeding": "torch.Generator on the run device, reseeded per batch with seed * 1000003 + batch index "
                          "(batches of batch_size over each task's docs in order)",
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {})},
              resume=spec.resume, session=session)
    if not out.prompts_jsonl.exists():
        out.write_prompts(prompts)
    return session["session"]


def run(spec: RunSpec, log=print) -> dict:
    """Build requests, decode every method on every task, score; returns the summary (also
    written to summary.json). Each stage reads and writes files in the run directory. A start
    that fails before decoding a sample leaves no directory behind (bench/validate.py)."""
    plan = plan_run(spec)
    with removed_on_failure(plan.out.path):
        return _run(plan, log)


def _run(plan: Plan, log) -> dict:
    spec, out = plan.spec, plan.out
    out.check(plan.identity, resume=spec.resume)   # before any work: never mix two runs in one directory
    if out.run_json.exists() and json.loads(out.run_json.read_text()).get("distributed"):
        w = json.loads(out.run_json.read_text())["distributed"]["world_size"]
        raise ValueError(f"{out.path} was decoded by torchrun with {w} ranks; continue it with "
                         f"torchrun --nproc-per-node {w} run_bench.py ... --resume")
    prompts = prompts_for(plan)
    session = start_run(plan, prompts)
    if spec.stop_after == "build":
        log(f"run {plan.run_id}: built {len(prompts)} requests in {out.prompts_jsonl}")
        return {"run_id": plan.run_id, "rows": [], "energy_note": None, "path": str(out.path)}

    decode_stage(spec, out, prompts, plan.task_names, plan.gens, plan.methods, plan.device, plan.dtype, session, log)
    if spec.stop_after == "decode":
        return summarize(out)
    return score_run(out, allow_code_exec=spec.allow_code_exec, data_dir=spec.data_dir, log=log,
                     code_timeout=spec.code_timeout)


def _gen_config(spec: RunSpec, task: str) -> GenConfig:
    p = load_task(task).protocol
    return GenConfig(gen_length=spec.gen_length or p.gen_length, block_length=spec.block_length or p.block_length,
                     early_stop=spec.early_stop, max_steps=spec.max_steps)


IDLE_SECONDS = 3.0   # idle power is measured this long before a GPU run


def decode_stage(spec, out, prompts, task_names, gens, methods, device, dtype, session, log, keep=None,
                 launch=None) -> None:
    """Stage 2: prompts.jsonl -> requests.jsonl (generations, NFE, latency, energy). No lm-eval.
    keep(task, batch_index): which batches this process decodes (bench/distributed.py); None: all.
    launch: the id shared by the ranks of one torchrun (loads.jsonl); None: this session."""
    oracle = spec.model in PSEUDO_MODELS
    threads = apply_threads(spec.threads, device)
    model = None if oracle else load_model(spec.model, device=str(device), dtype=dtype, path=spec.model_path,
                                           no_weights=spec.no_weights, backend=spec.model_backend, seed=spec.seed)
    if model is not None and model.regime == "block_causal":   # its own blocks; methods checked before any work
        gens, methods = _block_causal_plan(spec, model, task_names, gens, methods)
    devices = devices_in_use(model.module, device) if model is not None else [device]
    meter = EnergyMeter.for_devices(devices) if model is not None else EnergyMeter(None)
    warnings = check_fits(spec, model, methods, gens, prompts, _encode) if model is not None else []
    for w in warnings:
        log(f"warning: {w}")
    info = json.loads(out.run_json.read_text())
    info["threads"] = info["sessions"][-1]["threads"] = threads
    if warnings:
        info["warnings"] = warnings
    if model is not None:
        meter.measure_idle(IDLE_SECONDS)
        info["model_info"] = model.info
        # the machine that decodes is the one whose timings count (the build may have run elsewhere)
        env = environment(device)
        if info.get("env", {}).get("host") != env.get("host"):
            info.setdefault("build_env", info.get("env"))
        info["env"] = env
        info["energy"] = meter.info()
    else:
        info["energy"] = {"available": False, "reason": f"pseudo-model {spec.model!r}: nothing is decoded"}
    info["sessions"][-1]["energy"] = info["energy"]
    out.write_json(out.run_json, info)
    done = {(r["task"], r["method"], r["doc_id"]) for r in out.load_requests()}
    log(f"run {out.path.name}: {len(prompts)} requests ({', '.join(task_names)}) x {len(methods[task_names[0]])} "
        f"methods, model {spec.model} on {device}" + (f" (resuming: {len(done)} samples already done)" if done else ""))
    gen_torch = torch.Generator(device=device)
    decoder = Decoder(model) if model is not None else None   # keeps the model's graphs across batches
    fwd = ForwardTimer(model, devices) if spec.time_forwards and model is not None else None
    try:
        for task in task_names:
            mine = [p for p in prompts if p["task"] == task]
            for label, method in methods[task]:
                # Fixed batch boundaries and a per-batch seed: a resumed run redoes exactly the
                # batches an interrupted one lost, with the same inputs and random numbers.
                batches = [(i, b) for i, b in enumerate(_batched(mine, spec.batch_size))
                           if (keep is None or keep(task, i)) and any((task, label, p["doc_id"]) not in done for p in b)]
                if not batches:
                    continue
                if oracle:
                    out.append_requests([_oracle_line(spec, label, p) for _, b in batches for p in b])
                    continue
                _decode_method(spec, out, decoder, task, label, method, gens[task], batches, devices, meter,
                               fwd, gen_torch, session, launch)
    finally:
        meter.close()


def _block_causal_plan(spec, model, task_names, gens, methods):
    """A block-causal model decodes its own blocks (decoding/block_causal.py): the protocol takes
    the model's block size, the methods are rebuilt with it and checked against the model."""
    gens = {t: model_gen(model, gens[t], spec.block_length is not None) for t in task_names}
    methods = {t: [(label, build_method(parse_methods(label)[0], gens[t])) for label, _ in methods[t]]
               for t in task_names}
    for t in task_names:
        check_methods(model, [m for _, m in methods[t]], gens[t])
    return gens, methods


def _encode(model, batch: list[dict]) -> list[list[int]]:
    return [model.tokenizer.encode(render_prompt(model, p["prompt"], p["messages"])) for p in batch]


def warmup_gen(gen: GenConfig) -> GenConfig:
    """The warm-up decodes the first batch at its timed shapes but only about its first block: a
    step cap of one block's worth of single-token steps (at least one step per block, as GenConfig
    requires), so a run of one batch is not decoded twice over."""
    return dataclasses.replace(gen, max_steps=min(gen.step_cap, max(gen.block_length, gen.num_blocks)))


def _decode_method(spec, out, decoder, task, label, method, gen, batches, devices, meter, fwd, gen_torch, session,
                   launch=None):
    model = decoder.model
    for k in range(spec.warmup_batches):  # excluded from results, recorded in warmup.jsonl
        ids = _encode(model, batches[0][1])
        gen_torch.manual_seed(_batch_seed(spec.seed, batches[0][0]))
        wgen = warmup_gen(gen)
        with timed(devices, meter) as w:
            res = decoder(method, ids, wgen, generator=gen_torch)
        out.append_warmup({"task": task, "method": label, "warmup_index": k, "session": session,
                           "batch_size": len(ids), "max_steps": wgen.max_steps, "nfe": int(res.nfe.sum()),
                           "latency_s": w.seconds,
                           # a window under the counter's resolution has no trustworthy energy of its own
                           "energy_j": None if w.short else w.energy_j, "energy_short": w.short,
                           "peak_mem_bytes": w.peak_mem_bytes})
    bar = _progress(sum(len(b) for _, b in batches), f"{task} {label}", spec.progress)
    load_start = load.snapshot(meter)   # the machine's load around the timed decode (bench/load.py)
    for index, batch in batches:
        t_wall = time.perf_counter()   # Fast-dLLM's throughput window starts before tokenization
        batch_ids = _encode(model, batch)
        gen_torch.manual_seed(_batch_seed(spec.seed, index))
        if fwd is not None:
            fwd.take()
        with (fwd if fwd is not None else contextlib.nullcontext()), timed(devices, meter) as w:
            res = decoder(method, batch_ids, gen, generator=gen_torch)
        if fwd is not None:
            w.forward_s, w.forward_calls = fwd.take()
        lines = _request_lines(model, task, label, batch, res, w, meter, gen, batch_ids)
        for line in lines:
            line.update(batch_index=index, session=session, batch_wall_s=time.perf_counter() - t_wall)
        out.append_requests(lines)
        bar.update(len(batch))
    bar.close()
    load.record(out.path, task, label, session, launch, load_start, load.snapshot(meter),
                load.decode_threads(devices[0]))


def _batch_seed(seed: int, index: int) -> int:
    return seed * 1_000_003 + index


def _oracle_line(spec, label, p) -> dict:
    return {"task": p["task"], "doc_id": p["doc_id"], "model": spec.model, "method": label,
            "prompt_hash": p["prompt_hash"], "output": p["gold"], "extracted": None, "target": p.get("target"),
            "correct": None, "nfe": 0, "steps": 0, "gen_tokens": 0, "committed_tokens": 0, "capped": False, "stop_hit": False,
            "batch_id": f"oracle-{p['task']}-{p['doc_id']}", "batch_size": 1, "batch_latency_s": 0.0,
            "batch_energy_j": None, "batch_energy_net_j": None, "energy_j": None}


def _request_lines(model, task, label, batch, res, w, meter, gen, batch_ids) -> list[dict]:
    batch_id = uuid.uuid4().hex[:12]
    net = None
    if w.energy_j is not None and meter.idle_w is not None:
        net = w.energy_j - meter.idle_w * w.seconds
    temp = None
    if meter.backend is not None and meter.handles:
        try:
            temp = max(meter.backend.temperature_c(h) for h in meter.handles)
        except Exception:
            temp = None
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
            "committed_tokens": committed_tokens(n, gen.gen_length, gen.block_length, gen.early_stop,
                                                 bool(res.capped[i])),
            "prompt_tokens": len(batch_ids[i]), "tokens_sha": tokens_digest(res.tokens[i].tolist()),
            "remasks": int(res.remasks[i]), "edits": int(res.edits[i]),
            "capped": bool(res.capped[i]), "stop_hit": stop_hit,
            "batch_id": batch_id, "batch_size": len(batch), "batch_latency_s": w.seconds,
            "batch_t_start": w.t_start, "batch_t_end": w.t_end, "batch_cpu_s": w.cpu_s,
            "batch_energy_j": w.energy_j, "batch_energy_net_j": net, "batch_energy_j_per_gpu": w.energy_j_per_gpu,
            "batch_counter_start_j": w.counter_start_j, "batch_counter_end_j": w.counter_end_j,
            "batch_energy_short": w.short, "energy_min_window_s": meter.min_window_s, "idle_w": meter.idle_w,
            # a short window's own reading is not trusted: null here, attributed in the summary
            "energy_j": w.energy_j / len(batch) if w.energy_j is not None and not w.short else None,
            "batch_peak_mem_bytes": w.peak_mem_bytes, "gpu_temp_c": temp,
            "batch_forward_s": w.forward_s, "batch_forward_calls": w.forward_calls,
            "fastdllm_tokens": sum(1 for t in model.tokenizer.encode(text) if t not in model.eos_ids),
        })
    return lines


def _progress(total: int, label: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=label, unit="sample", disable=not enabled, leave=False, dynamic_ncols=True)
