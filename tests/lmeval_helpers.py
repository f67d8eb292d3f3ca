"""Shared helpers for the lm-eval task tests: where the real data lives."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    for c in (os.environ.get("DLLM_DATA_DIR"), ROOT.parent / "shared" / "data", "/work/shared/data"):
        if c and (Path(c) / "gsm8k" / "test.jsonl").exists():
            return Path(c)
    pytest.skip("real GSM8K/MBPP/HumanEval data not found (set DLLM_DATA_DIR to the ../shared/data layout)")

for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_k, "1")   # the tests never reach the hub
