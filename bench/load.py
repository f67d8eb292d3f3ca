"""The machine's load around each method's decode, so a timing taken on a busy machine is flagged
instead of printed as fact.

At the start and the end of each method's timed decode (warm-up excluded) the decode stage
records into loads.jsonl: the 1/5/15-minute load averages, the CPU count, and, on a GPU run, the
compute processes on each GPU in use (NVML) other than this one.

"Under load" (the summary row's `timing_under_load`): at the start or the end,

    1-minute load average > T + 0.5 * max(0, C - T)      or     another process computes on a GPU in use

where C is the machine's CPU count (os.cpu_count(): the load average is the whole machine's) and T
the CPU threads this run's decode keeps busy on this machine: on CPU, torch's intra-op threads
times the processes of the run on this machine (torchrun's LOCAL_WORLD_SIZE); on GPU, one launching
thread per process. Our own decode accounts for up to T of the load average; the rule flags the
run when other work takes more than half of the cores left over. (The 1-minute average lags:
load that starts during a short decode may only show at its end, which is also read.)

Where NVML reports process ids of another pid namespace (containers), this process is not found in
the GPU's list; the list then holds this process under another id, so "other" is the count less one.
A speedup is flagged when either its method or the baseline was timed under load
(`speedup_under_load`).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

LOADS = "loads.jsonl"


def decode_threads(device: torch.device) -> int:
    per_process = torch.get_num_threads() if device.type == "cpu" else 1
    return per_process * int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def snapshot(meter=None) -> dict:
    """Load averages, CPU count and other GPU processes now."""
    try:
        l1, l5, l15 = os.getloadavg()
    except OSError:   # not available on this platform
        l1 = l5 = l15 = None
    snap = {"time_unix": time.time(), "loadavg_1m": l1, "loadavg_5m": l5, "loadavg_15m": l15,
            "cpu_count": os.cpu_count(), "gpu_processes_other": None}
    backend = getattr(meter, "backend", None)
    if backend is not None and getattr(meter, "handles", None) and hasattr(backend, "compute_pids"):
        try:
            per_gpu = [backend.compute_pids(h) for h in meter.handles]
        except Exception as e:
            snap["gpu_processes_error"] = str(e)
        else:
            me = os.getpid()
            snap["gpu_pids"] = per_gpu
            snap["gpu_processes_other"] = sum(len([p for p in pids if p != me]) if me in pids else max(0, len(pids) - 1)
                                              for pids in per_gpu)
    return snap


def judge(start: dict, end: dict, threads: int) -> str | None:
    """Why the window was under load (the module doc's rule), or None."""
    for when, s in (("start", start), ("end", end)):
        c = s.get("cpu_count")
        if s.get("loadavg_1m") is not None and c:
            limit = threads + 0.5 * max(0, c - threads)
            if s["loadavg_1m"] > limit:
                return (f"1-min load average {s['loadavg_1m']:.2f} at the {when} > {limit:g} "
                        f"({threads} decode threads + half of the other {max(0, c - threads)} of {c} CPUs)")
        if s.get("gpu_processes_other"):
            return f"{s['gpu_processes_other']} other process(es) on the GPU(s) in use at the {when}"
    return None


def record(run_path: Path, task: str, method: str, session: str, launch: str | None, start: dict, end: dict,
           threads: int) -> dict:
    reason = judge(start, end, threads)
    line = {"task": task, "method": method, "session": session, "launch": launch or session,
            "rank": int(os.environ.get("RANK", "0")), "decode_threads": threads, "start": start, "end": end,
            "under_load": reason is not None, "load_reason": reason}
    with open(Path(run_path) / LOADS, "a") as f:
        f.write(json.dumps(line) + "\n")
    return line


def read(run_path: Path) -> list[dict]:
    p = Path(run_path) / LOADS
    if not p.exists():
        return []
    out = []
    for l in p.read_text().splitlines():
        try:
            out.append(json.loads(l))
        except json.JSONDecodeError:
            continue
    return out


def summary_fields(records: list[dict], task: str, method: str) -> dict:
    """timing_under_load / load_reason / decode_wall_s of one method (None without records).
    decode_wall_s: per launch (a process, or all ranks of one torchrun), the first start to the
    last end of the method's timed decode, summed over launches: with N ranks the wall time that
    N GPUs took, against decode_time_s, the decode time summed over them."""
    mine = [r for r in records if r["task"] == task and r["method"] == method]
    if not mine:
        return {"timing_under_load": None, "load_reason": None, "decode_wall_s": None}
    reasons = [r["load_reason"] for r in mine if r["under_load"]]
    launches: dict = {}
    for r in mine:
        launches.setdefault(r.get("launch") or r["session"], []).append(r)
    wall = sum(max(r["end"]["time_unix"] for r in rs) - min(r["start"]["time_unix"] for r in rs)
               for rs in launches.values())
    return {"timing_under_load": bool(reasons), "load_reason": reasons[0] if reasons else None, "decode_wall_s": wall}


def flag_speedups(rows: list[dict], baseline: str) -> None:
    base = next((r for r in rows if r["method"] == baseline), None)
    for r in rows:
        flags = [r.get("timing_under_load"), base.get("timing_under_load") if base else None]
        r["speedup_under_load"] = None if r.get("speedup") is None or all(f is None for f in flags) else any(flags)
