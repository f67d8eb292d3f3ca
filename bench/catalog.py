"""One line of description for every model, task and method name (`run_bench.py list`)."""
from __future__ import annotations

import sys

MODEL_LINES = {
    "tiny": "the built-in model (weights in models/tiny/, 256 positions): for the arith task, CPU-fast",
    "llada": "LLaDA from a checkpoint: --model-path hub id or directory (default GSAI-ML/LLaDA-8B-Instruct)",
    "dream": "Dream from a checkpoint: --model-path hub id or directory (default Dream-org/Dream-v0-Instruct-7B)",
    "oracle": "answers every request with its gold completion: checks the scoring pipeline, decodes nothing",
}
TASK_LINES = {
    "arith": "built-in synthetic arithmetic word problems, exact match of `#### N` (5000 test problems)",
    "gsm8k": "GSM8K test set, 1319 problems, 5-shot, lm-eval's prompts and strict match",
    "gsm8k_cot": "GSM8K test set, 1319 problems, 8-shot chain of thought (lm-eval's gsm8k_cot)",
    "mbpp": "MBPP test split, 500 problems, 3-shot, pass@1 in the sandbox (needs --allow-code-exec)",
    "humaneval": "HumanEval, 164 problems, 0-shot, pass@1 in the sandbox (needs --allow-code-exec)",
}


def model_line(name: str) -> str:
    if name in MODEL_LINES:
        return MODEL_LINES[name]
    family = "LLaDA" if name.startswith("llada") else "Dream" if name.startswith("dream") else name
    return f"{family} architecture {name}, random weights only (--no-weights): speed and energy without a download"


def task_line(name: str) -> str:
    return TASK_LINES.get(name, "an lm-eval generate_until task")


def method_line(cls) -> str:
    """The first line of the method module's docstring, without its leading "`name`: "."""
    doc = (sys.modules[cls.__module__].__doc__ or cls.__doc__ or "").strip()
    first = doc.splitlines()[0] if doc else ""
    if first.startswith("`") and "`: " in first:
        first = first.split("`: ", 1)[1]
    return first or "(no description)"
