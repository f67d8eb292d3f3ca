"""Task registry."""
from __future__ import annotations

from .arith_task import ArithTask

TASKS = {"arith": ArithTask}


def load_task(name: str):
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(sorted(TASKS))}")
    return TASKS[name]()
