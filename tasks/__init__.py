"""Task registry: the built-in arith task and the lm-eval tasks (GSM8K, GSM8K-CoT, MBPP, HumanEval).

Importing this needs no lm-eval: protocols and names are plain data; lm-eval is imported only
when requests are built or generations scored (tasks/lmeval_stages.py).
"""
from __future__ import annotations

from .arith_task import ArithTask
from .base import TaskProtocol
from .lmeval_tasks import LMEVAL_TASKS

TASKS = {"arith": ArithTask, **{name: d for name, d in LMEVAL_TASKS.items()}}


def load_task(name: str):
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(sorted(TASKS))}")
    if name in LMEVAL_TASKS:
        return LMEVAL_TASKS[name]
    return TASKS[name]()


def parse_tasks(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ValueError("no task given; e.g. --tasks gsm8k,mbpp")
    for n in names:
        load_task(n)
    if len(set(names)) != len(names):
        raise ValueError(f"a task is listed twice in {text!r}")
    return names


def task_protocol(name: str) -> TaskProtocol:
    return load_task(name).protocol


def is_lmeval(name: str) -> bool:
    return name in LMEVAL_TASKS
