"""Data parallel over GPUs: `torchrun --nproc-per-node N run_bench.py ...`.

Each rank decodes its shard of the requests on its own device (cuda:LOCAL_RANK, or the CPU) and
meters its own GPU; rank 0 then merges the shards into one run directory, which is scored like a
single-process run.

Sharding: the batches of the single-process run are kept as they are (each task's requests in
order, cut every --batch-size: the boundaries and per-batch seeds `--resume` relies on) and dealt
out round-robin: the k-th batch of the run (tasks in order, then batch index) goes to rank
k mod N. Every sample is decoded in the same batch, with the same padding and the same seed, as
in a single-process run, so tokens and NFE are the same sample for sample (sampling methods
included). Round-robin rather than contiguous chunks: neighbouring requests tend to be alike
(same task, similar lengths), so dealing spreads long and short batches over the ranks; no rank
gets more than one batch more than another. Re-batching by length would balance better but
change the batches, and so the tokens.

Files: the run directory holds run.json (with `distributed`), prompts.jsonl (rank 0 builds),
and shards/rank<r>/ (each a run directory of its own: run.json with the rank's environment and
energy meter, requests.jsonl, warmup.jsonl, loads.jsonl). After every rank is done, rank 0
writes the merged requests.jsonl (single-process order), warmup.jsonl and loads.jsonl, and
run.json's energy (every GPU's idle power, listed and summed); the summary then sums energy and
decode time over the GPUs. `--resume` continues each rank's shard (same N required).

The ranks coordinate through a gloo process group (barriers and one broadcast; no tensors
move), so no NCCL is needed on the GPUs.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .results import RunDir

BARRIER_TIMEOUT = datetime.timedelta(hours=24)   # the slowest rank's decode; torchrun ends all ranks if one fails


class ReportedByRankZero(Exception):
    """An input error every rank found; rank 0 prints it, the others exit with status 2 quietly."""


@dataclass(frozen=True)
class Ranks:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @classmethod
    def from_env(cls) -> "Ranks | None":
        """The torchrun environment, or None outside torchrun."""
        if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
            return None
        world = int(os.environ["WORLD_SIZE"])
        return cls(rank=int(os.environ["RANK"]), world_size=world,
                   local_rank=int(os.environ.get("LOCAL_RANK", os.environ["RANK"])),
                   local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", world)))


def rank_device(name: str, ranks: Ranks) -> torch.device:
    """cuda:LOCAL_RANK on a GPU run (auto with a GPU, or cuda), else the CPU."""
    from .runner import resolve_device
    if name.startswith("cuda:") and ranks.world_size > 1:
        raise ValueError(f"--device {name} names one GPU, but under torchrun each rank takes cuda:LOCAL_RANK; "
                         f"use --device cuda (or auto)")
    if name not in ("cuda", "auto") or (name == "auto" and not torch.cuda.is_available()):
        return resolve_device(name)
    if not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for a GPU but torch sees none; use --device cpu")
    have = torch.cuda.device_count()
    if have < ranks.local_world_size:
        raise ValueError(f"torchrun started {ranks.local_world_size} processes on this machine but torch sees "
                         f"{have} GPU(s); use --nproc-per-node {have} or fewer (or --device cpu)")
    return torch.device("cuda", ranks.local_rank)


def batch_owner(prompts: list[dict], task_names: list[str], batch_size: int, world_size: int) -> dict:
    """{(task, batch index): rank}: the run's batches dealt out round-robin (module doc)."""
    owner, k = {}, 0
    for task in task_names:
        n = sum(1 for p in prompts if p["task"] == task)
        for i in range((n + batch_size - 1) // batch_size):
            owner[(task, i)] = k % world_size
            k += 1
    return owner


def check_shardable(n_batches: int, n_requests: int, world_size: int, batch_size: int) -> None:
    if world_size > n_batches:
        raise ValueError(f"torchrun started {world_size} ranks for {n_requests} requests in {n_batches} batch(es) "
                         f"of --batch-size {batch_size}: a rank would have nothing to decode; use "
                         f"--nproc-per-node {n_batches} or fewer, a smaller --batch-size or a larger --limit")


def shard_dir(out: RunDir, rank: int) -> RunDir:
    return RunDir(out.path / "shards" / f"rank{rank}")


def run_distributed(spec, ranks: Ranks, log=print) -> dict | None:
    """One rank's part of a torchrun run; rank 0 returns the merged run's summary, others None."""
    import torch.distributed as dist
    from . import runner
    spec = dataclasses.replace(spec, progress=spec.progress and ranks.rank == 0)
    say = (lambda m: log(f"[rank {ranks.rank}] {m}")) if ranks.world_size > 1 else log
    try:   # the same checks on every rank, before any process group or work
        device = rank_device(spec.device, ranks)
        if device.type == "cuda":
            torch.cuda.set_device(device)   # no CUDA context of this rank on another rank's GPU
        plan = runner.plan_run(spec, device)
    except Exception as e:
        if ranks.rank != 0 and isinstance(e, (ValueError, FileNotFoundError)):
            raise ReportedByRankZero(str(e)) from e
        raise
    if not dist.is_initialized():   # once per process: a sweep runs several points in one group
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    import uuid
    error = [None, uuid.uuid4().hex[:12]]   # rank 0's error, or none; the launch id all ranks record
    if ranks.rank == 0:
        try:
            _prepare(plan, ranks)
        except (ValueError, FileNotFoundError) as e:
            error[0] = str(e)
    dist.broadcast_object_list(error, src=0)
    if error[0] is not None:
        if ranks.rank == 0:
            raise ValueError(error[0])
        raise ReportedByRankZero(error[0])
    if spec.stop_after == "build":
        return {"run_id": plan.run_id, "rows": [], "energy_note": None, "path": str(plan.out.path)} \
            if ranks.rank == 0 else None
    prompts = plan.out.load_prompts()
    owner = batch_owner(prompts, plan.task_names, spec.batch_size, ranks.world_size)
    shard = shard_dir(plan.out, ranks.rank)
    session = _start_shard(plan, shard, ranks)
    runner.decode_stage(spec, shard, prompts, plan.task_names, plan.gens, plan.methods, plan.device,
                        plan.dtype, session, say, keep=lambda task, i: owner[(task, i)] == ranks.rank,
                        launch=error[1])
    dist.barrier()
    if ranks.rank != 0:
        return None
    merge_shards(plan.out, ranks.world_size, prompts)
    from .score import score_run, summarize
    if spec.stop_after == "decode":
        return summarize(plan.out)
    return score_run(plan.out, allow_code_exec=spec.allow_code_exec, data_dir=spec.data_dir, log=log,
                     code_timeout=spec.code_timeout)


def finish() -> None:
    """End this process's process group (after the last run or sweep point)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _prepare(plan, ranks: Ranks) -> None:
    """Rank 0: check the directory, build the requests, check they fill every rank, write run.json
    and prompts.jsonl. Nothing is written when a check fails."""
    from . import runner
    out, spec = plan.out, plan.spec
    out.check(plan.identity, resume=spec.resume)
    if out.run_json.exists():
        old = (json.loads(out.run_json.read_text()).get("distributed") or {}).get("world_size")
        if old != ranks.world_size:
            how = f"torchrun --nproc-per-node {old}" if old else "python run_bench.py (one process)"
            raise ValueError(f"{out.path} was decoded with {old or 1} rank(s), not {ranks.world_size}: "
                             f"the shards would not match; resume it with {how}")
    prompts = runner.prompts_for(plan)
    owner = batch_owner(prompts, plan.task_names, spec.batch_size, ranks.world_size)
    check_shardable(len(owner), len(prompts), ranks.world_size, spec.batch_size)
    runner.start_run(plan, prompts, extra={"distributed": {
        "world_size": ranks.world_size, "backend": "gloo (coordination only)",
        "sharding": "batch k of the run (tasks in order, then batch index) on rank k mod world_size"}})


def _start_shard(plan, shard: RunDir, ranks: Ranks) -> str:
    import uuid
    import time
    from .env import environment
    identity = {**plan.identity, "shard": {"rank": ranks.rank, "world_size": ranks.world_size}}
    if shard.run_json.exists():
        old = json.loads(shard.run_json.read_text()).get("shard")
        if old != identity["shard"]:
            raise ValueError(f"{shard.path} is the shard of another sharding ({old}); choose another --run-id")
    session = {"session": uuid.uuid4().hex[:12], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "rank": ranks.rank}
    shard.start({**identity, "run_id": plan.run_id, "env": environment(plan.device),
                 "energy": {"available": False, "reason": "not decoded yet"}}, resume=plan.spec.resume,
                session=session)
    return session["session"]


def merge_shards(out: RunDir, world_size: int, prompts: list[dict]) -> None:
    """Rank 0: the shards' request lines, warm-ups and load records into the run directory, in a
    single-process run's order; every GPU's energy meter into run.json. Refuses shards of another
    run (a different spec, protocol, methods, model or machine) and a shard with samples missing."""
    info = json.loads(out.run_json.read_text())
    shards = [shard_dir(out, r) for r in range(world_size)]
    infos = []
    for r, sd in enumerate(shards):
        if not sd.run_json.exists():
            raise ValueError(f"{sd.path} is missing: rank {r} has not decoded; rerun with --resume")
        s = json.loads(sd.run_json.read_text())
        for part in RunDir.IDENTITY:
            if s.get(part) != info.get(part):
                raise ValueError(f"{sd.path} holds a shard of a run with a different {part}; refusing to merge it "
                                 f"into {out.path}")
        if (s.get("shard") or {}).get("world_size") != world_size:
            raise ValueError(f"{sd.path} was sharded over {(s.get('shard') or {}).get('world_size')} ranks, "
                             f"not {world_size}; refusing to merge it")
        infos.append(s)
    tasks, labels = info["tasks"], list(info["methods"])
    pos = {(p["task"], p["doc_id"]): i for i, p in enumerate(prompts)}
    lines = [l for sd in shards for l in sd.load_requests()]
    have = {(l["task"], l["method"], l["doc_id"]) for l in lines}
    missing = [k for k in ((t, m, p["doc_id"]) for t in tasks for m in labels for p in prompts if p["task"] == t)
               if k not in have]
    if missing:
        raise ValueError(f"the shards lack {len(missing)} sample(s), e.g. {missing[0]}; rerun with --resume")
    lines.sort(key=lambda l: (tasks.index(l["task"]), labels.index(l["method"]), pos[(l["task"], l["doc_id"])]))
    out.rewrite_requests(lines)
    for name in ("warmup.jsonl", "loads.jsonl"):
        text = "".join((sd.path / name).read_text() for sd in shards if (sd.path / name).exists())
        if text:
            tmp = out.path / (name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, out.path / name)
    info["energy"] = merge_energy([s["energy"] for s in infos])
    info["env"] = infos[0]["env"]
    if infos[0].get("model_info") is not None:
        info["model_info"] = infos[0]["model_info"]
    info["distributed"]["ranks"] = [{"rank": r, "host": s["env"].get("host"), "device": s["env"].get("device"),
                                     "gpu_name": s["env"].get("gpu_name"), "sessions": s.get("sessions"),
                                     "energy": s["energy"]} for r, s in enumerate(infos)]
    out.write_json(out.run_json, info)


def merge_energy(energies: list[dict]) -> dict:
    """One meter's record for all ranks' GPUs: every GPU listed, idle power per GPU and summed."""
    if not all(e.get("available") for e in energies):
        reasons = sorted({e.get("reason") or "" for e in energies if not e.get("available")})
        return {"available": False, "reason": "; ".join(reasons), "gpus": None}
    gpus = [g for e in energies for g in (e.get("gpus") or [])]
    per_gpu = [w for e in energies for w in (e.get("idle_w_per_gpu") or [])]
    windows = [e.get("min_window_s") for e in energies if e.get("min_window_s") is not None]
    return {"available": True, "mode": ",".join(sorted({e["mode"] for e in energies})), "gpus": gpus,
            "idle_w": sum(per_gpu), "idle_w_per_gpu": per_gpu,
            "idle_measured_s": [e.get("idle_measured_s") for e in energies],
            "counter_update_period_s": [e.get("counter_update_period_s") for e in energies],
            "min_window_s": max(windows) if windows else None, "per_rank": energies}
