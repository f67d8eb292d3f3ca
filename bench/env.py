"""The environment a run records in run.json, so that it can be reproduced."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


PACKAGES = ("dllm-bench", "torch", "transformers", "accelerate", "tokenizers", "safetensors", "lm_eval",
            "datasets", "numpy", "pandas", "tabulate", "nvidia-ml-py", "matplotlib")


# Environment variables that change how a decode runs on GPU (docs/metrics.md, "Speed switches").
SPEED_SWITCHES = ("DLLM_CUDA_GRAPHS", "DLLM_COMPILE", "DLLM_COMPILE_STEP", "DLLM_QUEUE_AHEAD", "DLLM_TRUNCATED_STEPS", "DLLM_MIXED_STEPS", "DLLM_TRITON_ATTN",
                  "DLLM_TRITON_KL", "DLLM_TRITON_ROUTE", "DLLM_TRITON_EXPERTS",
                  "DLLM_BENCH_ENERGY")


def environment(device: torch.device) -> dict:
    status = _git("status", "--porcelain", "--untracked-files=no")
    commit, top = _git("rev-parse", "HEAD"), _git("rev-parse", "--show-toplevel")
    if top is not None and Path(top).resolve() != ROOT:
        # a copy inside another repository (e.g. an ignored folder): that repo's commit is not ours
        commit, status = None, None
    env = {
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "git_toplevel": top,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_threads": torch.get_num_threads(),
        "packages": {p: _version(p) for p in PACKAGES},
        "argv": list(sys.argv),
        "device": str(device),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "speed_switches": {k: os.environ.get(k) for k in SPEED_SWITCHES},   # None: unset (on)
    }
    if device.type == "cuda":
        env.update(gpu_name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   gpu_count_visible=torch.cuda.device_count(),
                   gpu_memory_gb=torch.cuda.get_device_properties(device).total_memory / 2**30,
                   gpu_capability=".".join(map(str, torch.cuda.get_device_capability(device))))
        try:
            import pynvml
            pynvml.nvmlInit()
            env["driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception as e:
            env["driver"] = f"unknown ({e})"
    return env
