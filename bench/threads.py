"""CPU threads of the decode, chosen deliberately and recorded in run.json (`threads`).

On the CPU a decode runs with 1 intra-op thread unless told otherwise (`--threads N`, or an
OMP_NUM_THREADS set in the environment). torch's default, one thread per core, spins every
core on each small matrix product: on a machine whose cores other work also uses, the threads
wait on each other and a decode's wall time grows several-fold at random, which turns speedups
into noise. Measured on this project's 2-core machine at load average 6-7 from other work, the
tiny/arith run `OMP_NUM_THREADS=T python run_bench.py --limit 64 --methods fixed,threshold
--device cpu`: T=1 took 144 s wall and 41 s CPU (fixed 1.23 s/sample), T=2 (torch's default
here) 622 s wall and 197 s CPU (fixed 5.13 s/sample), identical tokens. On a GPU the threads only
serve the host side; torch's count is kept and recorded.
"""
from __future__ import annotations

import os

import torch


def apply_threads(requested: int | None, device: torch.device) -> dict:
    """Set torch's intra-op threads for this process; returns what run.json records."""
    env = os.environ.get("OMP_NUM_THREADS")
    if requested is not None:
        n, source = requested, "--threads"
    elif device.type == "cpu" and env and env.isdigit() and int(env) > 0:
        n, source = int(env), "OMP_NUM_THREADS"
    elif device.type == "cpu":
        n, source = 1, "default for CPU decodes (bench/threads.py)"
    else:
        n, source = torch.get_num_threads(), "torch default (GPU decode)"
    torch.set_num_threads(n)
    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads(), "source": source,
            "cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None, "omp_num_threads_env": env}
