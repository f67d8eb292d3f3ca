"""RunSpec -> requests -> decode -> score -> result files.

Only the decode call sits inside the timed (and metered) window: tokenization, detokenization,
scoring and file writes happen outside it.
"""
from __future__ import annotations

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
from .measure import EnergyMeter, timed
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
    meter = EnergyMeter(device)
    meter.measure_idle(2.0)
    out.start({"run_id": run_id, "spec": spec.key(),
               "protocol": {**dataclasses.asdict(task.protocol), **dataclasses.asdict(gen)},
               "methods": {label: {"name": m.name, "settings": m.settings()} for label, m in methods},
               "model": {"name": model.name, **model.info}, "baseline": baseline,
               "env": environment(device), "energy": meter.info(),
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, resume=spec.resume)
    done = {(r["method"], r["doc_id"]) for r in out.load_requests()}
    log(f"run {run_id}: {len(docs)} {task.name} problems x {len(methods)} methods, model {model.name} on {device}"
        + (f" (resuming: {len(done)} samples already done)" if done else ""))

    gen_torch = torch.Generator(device=device)
    for label, method in methods:
        todo = [d for d in docs if (label, d.doc_id) not in done]
        if not todo:
            continue
        encoded = [model.tokenizer.encode(d.prompt) for d in todo]
        for _ in range(spec.warmup_batches):  # untimed: first-call allocations, kernels, caches
            gen_torch.manual_seed(spec.seed)
            decode(model, method, encoded[:spec.batch_size], gen, generator=gen_torch)
        gen_torch.manual_seed(spec.seed)
        bar = _progress(len(todo), label, spec.progress)
        for batch_docs, batch_ids in zip(_batched(todo, spec.batch_size), _batched(encoded, spec.batch_size)):
            with timed(device, meter) as w:
                res = decode(model, method, batch_ids, gen, generator=gen_torch)
            lines = _request_lines(spec, model, task, label, batch_docs, res, w, meter)
            out.append_requests(lines)
            bar.update(len(batch_docs))
        bar.close()

    summary = summarize(out, model.name, task.name, [label for label, _ in methods], baseline)
    return summary


def _request_lines(spec, model, task, label, docs, res, w, meter) -> list[dict]:
    batch_id = uuid.uuid4().hex[:12]
    net = None
    if w.energy_j is not None and meter.idle_w is not None:
        net = w.energy_j - meter.idle_w * w.seconds
    lines = []
    for i, d in enumerate(docs):
        n = int(res.gen_tokens[i])
        text = model.tokenizer.decode(res.tokens[i, :n].tolist())
        s = task.score(d, text)
        lines.append({
            "task": task.name, "doc_id": d.doc_id, "model": model.name, "method": label,
            "prompt_hash": hashlib.sha256(d.prompt.encode()).hexdigest()[:16],
            "output": text, "extracted": s["extracted"], "target": d.target, "correct": s["correct"],
            "nfe": int(res.nfe[i]), "nfe_truncated": int(res.nfe_truncated[i]), "steps": int(res.steps[i]), "gen_tokens": n, "capped": bool(res.capped[i]),
            "batch_id": batch_id, "batch_size": len(docs), "batch_latency_s": w.seconds,
            "batch_energy_j": w.energy_j, "batch_energy_net_j": net,
            "energy_j": w.energy_j / len(docs) if w.energy_j is not None else None,
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
               "path": str(out.path)}
    out.write_json(out.summary_json, summary)
    return summary


def _progress(total: int, label: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=label, unit="sample", disable=not enabled, leave=False, dynamic_ncols=True)
