"""RunSpec -> requests -> decode -> score -> result files.

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
from dataclasses import dataclass, field
from pathlib import Path

import torch

from methods.base import GenConfig
from methods.loop import decode
from methods.registry import build_method, parse_methods
from tasks import load_task
from . import metrics
from .env import environment
from .measure import EnergyMeter, ForwardTimer, devices_in_use, timed
from .models import load_model
from .results import RunDir


@dataclass
class RunSpec:
    model: str = "tiny"
    task: str = "arith"
    methods: str = "fixed,threshold"
    limit: int | None = 200
    seed: int = 0
    batch_size: int = 32
    gen_length: int | None = None    # None: the task's protocol
    block_length: int | None = None
    early_stop: bool = True
    max_steps: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    warmup_batches: int = 1
    time_forwards: bool = False      # sync + time every model forward (latency split; perturbs timing)
    baseline: str | None = None      # method label for speedup; None: the first method
    # where and how to write (not part of the spec compared on resume)
    out_dir: str = "results/runs"
    run_id: str | None = None
    resume: bool = False
    progress: bool = True

    def key(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("out_dir", "run_id", "resume", "progress"):
            d.pop(k)
        return d


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
    """Run every method of the spec; returns the summary (also written to summary.json)."""
    if spec.batch_size <= 0:
        raise ValueError("--batch-size must be positive")
    if spec.limit is not None and spec.limit <= 0:
        raise ValueError("--limit must be positive")
    method_specs = parse_methods(spec.methods)
    task = load_task(spec.task)
    gen = GenConfig(gen_length=spec.gen_length or task.protocol.gen_length,
                    block_length=spec.block_length or task.protocol.block_length,
                    early_stop=spec.early_stop, max_steps=spec.max_steps)
    methods = [(m.label, build_method(m, gen)) for m in method_specs]   # validate all before any work
    baseline = spec.baseline or methods[0][0]
    if baseline not in [label for label, _ in methods]:
        raise ValueError(f"--baseline {baseline!r} is not one of the methods run: {[l for l, _ in methods]}")
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    docs = task.docs(spec.limit)
    model = load_model(spec.model, device=str(device), dtype=dtype)

    run_id = spec.run_id or time.strftime("%Y%m%d-%H%M%S-") + hashlib.sha1(
        json.dumps(spec.key(), sort_keys=True).encode()).hexdigest()[:6]
    out = RunDir(Path(spec.out_dir) / run_id)
    out.check(run_json_identity(spec, task, gen, methods, model, device), resume=spec.resume)  # before idle wait
    devices = devices_in_use(model.module, device)
    meter = EnergyMeter.for_devices(devices)
    meter.measure_idle(IDLE_SECONDS)
    session = uuid.uuid4().hex[:12]
    env = environment(device)
    out.start({**run_json_identity(spec, task, gen, methods, model, device),
               "run_id": run_id, "baseline": baseline, "env": env, "energy": meter.info(),
               "seeding": "torch.Generator on the run device, reseeded per batch with seed * 1000003 + batch index "
                          "(batches of batch_size over the task's docs in order)",
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
              session={"session": session, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "host": env["host"], "argv": env.get("argv"), "energy": meter.info()}, resume=spec.resume)
    done = {(r["method"], r["doc_id"]) for r in out.load_requests()}
    log(f"run {run_id}: {len(docs)} {task.name} problems x {len(methods)} methods, model {model.name} on {device}"
        + (f" (resuming: {len(done)} samples already done)" if done else ""))

    gen_torch = torch.Generator(device=device)
    fwd = ForwardTimer(model, devices) if spec.time_forwards else None
    try:
        for label, method in methods:
            # Fixed batch boundaries and a per-batch seed: a resumed run redoes exactly the batches
            # an interrupted one lost, with the same inputs and random numbers.
            batches = [(i, b) for i, b in enumerate(_batched(docs, spec.batch_size))
                       if any((label, d.doc_id) not in done for d in b)]
            if not batches:
                continue
            for k in range(spec.warmup_batches):  # excluded from results, recorded in warmup.jsonl
                ids = [model.tokenizer.encode(d.prompt) for d in batches[0][1]]
                gen_torch.manual_seed(_batch_seed(spec.seed, batches[0][0]))
                with timed(devices, meter) as w:
                    decode(model, method, ids, gen, generator=gen_torch)
                out.append_warmup({"method": label, "warmup_index": k, "session": session, "batch_size": len(ids),
                                   "latency_s": w.seconds, "energy_j": w.energy_j,
                                   "peak_mem_bytes": w.peak_mem_bytes})
            bar = _progress(sum(len(b) for _, b in batches), label, spec.progress)
            for index, batch_docs in batches:
                t_wall = time.perf_counter()   # Fast-dLLM's throughput window starts before tokenization
                batch_ids = [model.tokenizer.encode(d.prompt) for d in batch_docs]
                gen_torch.manual_seed(_batch_seed(spec.seed, index))
                if fwd is not None:
                    fwd.take()
                with (fwd if fwd is not None else contextlib.nullcontext()), timed(devices, meter) as w:
                    res = decode(model, method, batch_ids, gen, generator=gen_torch)
                if fwd is not None:
                    w.forward_s, w.forward_calls = fwd.take()
                lines = _request_lines(spec, model, task, label, batch_docs, res, w, meter)
                for line in lines:
                    line.update(batch_index=index, session=session, batch_wall_s=time.perf_counter() - t_wall)
                out.append_requests(lines)
                bar.update(len(batch_docs))
            bar.close()
    finally:
        meter.close()

    summary = summarize(out, model.name, task.name, [label for label, _ in methods], baseline)
    return summary


IDLE_SECONDS = 3.0   # idle power is measured this long before a GPU run


def run_json_identity(spec, task, gen, methods, model, device) -> dict:
    """What must be equal for two sessions to write into one run directory."""
    return {"spec": spec.key(),
            "protocol": {**dataclasses.asdict(task.protocol), **dataclasses.asdict(gen)},
            "methods": {label: {"name": m.name, "settings": m.settings()} for label, m in methods},
            "model": {"name": model.name, **model.info},
            "machine": {"device_type": device.type,
                        "gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None}}


def _batch_seed(seed: int, index: int) -> int:
    return seed * 1_000_003 + index


def _request_lines(spec, model, task, label, docs, res, w, meter) -> list[dict]:
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
    for i, d in enumerate(docs):
        n = int(res.gen_tokens[i])
        text = model.tokenizer.decode(res.tokens[i, :n].tolist())
        s = task.score(d, text)
        lines.append({
            "task": task.name, "doc_id": d.doc_id, "model": model.name, "method": label,
            "prompt_hash": hashlib.sha256(d.prompt.encode()).hexdigest()[:16],
            "output": text, "extracted": s["extracted"], "target": d.target, "correct": s["correct"],
            "nfe": int(res.nfe[i]), "steps": int(res.steps[i]), "gen_tokens": n, "capped": bool(res.capped[i]),
            "batch_id": batch_id, "batch_size": len(docs), "batch_latency_s": w.seconds,
            "batch_t_start": w.t_start, "batch_t_end": w.t_end, "batch_cpu_s": w.cpu_s,
            "batch_energy_j": w.energy_j, "batch_energy_net_j": net, "batch_energy_j_per_gpu": w.energy_j_per_gpu,
            "batch_counter_start_j": w.counter_start_j, "batch_counter_end_j": w.counter_end_j,
            "batch_energy_short": w.short, "energy_min_window_s": meter.min_window_s, "idle_w": meter.idle_w,
            # a short window's own reading is not trusted: null here, attributed in the summary
            "energy_j": w.energy_j / len(docs) if w.energy_j is not None and not w.short else None,
            "batch_peak_mem_bytes": w.peak_mem_bytes, "gpu_temp_c": temp,
            "batch_forward_s": w.forward_s, "batch_forward_calls": w.forward_calls,
            "fastdllm_tokens": sum(1 for t in model.tokenizer.encode(text) if t not in model.eos_ids),
        })
    return lines


def summarize(out: RunDir, model: str, task: str, labels: list[str], baseline: str) -> dict:
    """summary.json from requests.jsonl alone (so it can be rebuilt without rerunning)."""
    reqs = out.load_requests()
    rows = []
    for label in labels:
        mine = [r for r in reqs if r["method"] == label]
        if mine:
            rows.append({"model": model, "task": task, "method": label, **metrics.summarize_method(mine)})
    metrics.add_speedup(rows, baseline)
    info = json.loads(out.run_json.read_text())
    summary = {"run_id": info["run_id"], "baseline": baseline, "rows": rows,
               "energy_note": None if info["energy"]["available"] else info["energy"]["reason"],
               "machine": info.get("machine"), "path": str(out.path)}
    out.write_json(out.summary_json, summary)
    return summary


def _progress(total: int, label: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=label, unit="sample", disable=not enabled, leave=False, dynamic_ncols=True)
