"""One line of description for every model, task and method name (`run_bench.py list`)."""
from __future__ import annotations

import sys

MODEL_LINES = {
    "tiny": "the built-in model (weights in models/tiny/, 256 positions): for the arith task, CPU-fast",
    "oracle": "answers every request with its gold completion: checks the scoring pipeline, decodes nothing",
    "tiny-block": "the built-in weights under block-causal attention (untrained CDLM student); --model-path or "
                  "--model <dir>: a student written by python -m training.cdlm_train",
    "tiny-cdlm": "the committed CDLM student of the built-in model (models/tiny-cdlm/, block 16): threshold is "
                 "CDLM's decoder",
    "cdlm-llada": "a CDLM student of LLaDA from a checkpoint (--model-path; LLaDA's weights and names) under CDLM's "
                  "block-causal attention, blocks of 32 from the generation start",
    "cdlm-dream": "a CDLM student of Dream from a checkpoint (--model-path; Dream's weights and names) under CDLM's "
                  "block-causal attention, blocks of 32 from the generation start",
}
# checkpoint families, longest name first (a named config starts with its family's name)
FAMILY_NAMES = {"fast-dllm-v2": "Fast-dLLM v2 (block-causal)", "llada2": "LLaDA2 (MoE, block-causal)",
                "llada": "LLaDA", "dream": "Dream", "sdar": "SDAR (block-causal)",
                "trado": "TraDo (block-causal, SDAR architecture)"}


def _hub(family: str) -> str | None:
    from models.real import FAMILIES
    try:
        from models.block_causal_real import FAMILIES as BLOCK
    except ImportError:
        BLOCK = {}
    spec = FAMILIES.get(family) or BLOCK.get(family) or {}
    return spec.get("hub")


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
    if name.startswith(("cdlm-llada-", "cdlm-dream-")):
        return (f"{'LLaDA' if 'llada' in name else 'Dream'} architecture {name[len('cdlm-'):]} under CDLM's "
                f"block-causal attention, random weights only (--no-weights)")
    family = next((f for f in FAMILY_NAMES if name == f or name.startswith(f + "-")), None)
    if family is None:
        return "a registered model (models/__init__.py)"
    if name == family:
        return (f"{FAMILY_NAMES[family]} from a checkpoint: --model-path hub id or directory "
                f"(default {_hub(family)}); --no-weights for its default architecture with random weights")
    return f"{FAMILY_NAMES[family]} architecture {name}, random weights only (--no-weights): speed and energy without a download"


def task_line(name: str) -> str:
    return TASK_LINES.get(name, "an lm-eval generate_until task")


def method_line(cls) -> str:
    """The first line of the method module's docstring, without its leading "`name`: "."""
    doc = (sys.modules[cls.__module__].__doc__ or cls.__doc__ or "").strip()
    first = doc.splitlines()[0] if doc else ""
    if first.startswith("`") and "`: " in first:
        first = first.split("`: ", 1)[1]
    return first or "(no description)"
