"""Run a test child script under Triton's interpreter (TRITON_INTERPRET=1, CPU) and read the JSON
line it prints last: the Triton kernels' tests (test_window_attention.py, test_klass_kl.py, ...); and
what the children share (block_decodes_switched)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def interpreted(child: str) -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, str(ROOT / "tests" / child)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def block_decodes_switched(switch: str, trusted: dict) -> dict:
    """In a child: threshold decodes of the SDAR, LLaDA2 and Fast-dLLM v2 tiny models (two ragged
    prompts) with the environment switch `switch` "1", then "0" -> per model: whether tokens and
    NFE are equal, the NFE, and the verdicts in the kernel's first-call store `trusted` (cleared
    after each model)."""
    import torch

    from decoding.base import GenConfig
    from decoding.loop import decode
    from decoding.registry import build_method, parse_methods
    from models import load_model
    out = {}
    for name in ("sdar-tiny", "llada2-tiny", "fast-dllm-v2-tiny"):
        m = load_model(name, no_weights=True)
        gen = GenConfig(gen_length=16, block_length=m.block_size)
        runs = []
        for on in ("1", "0"):
            os.environ[switch] = on
            torch.manual_seed(0)
            r = decode(m, build_method(parse_methods("threshold")[0], gen), [[5, 6, 7, 8, 9], [10, 11, 12]], gen)
            runs.append((r.tokens.tolist(), r.nfe.tolist()))
        out[name] = {"equal": runs[0] == runs[1], "nfe": runs[0][1], "served": sorted(set(trusted.values()))}
        trusted.clear()
    return out


def first_call_verdict(monkeypatch, module, kernel_name: str, kernel, check, args) -> tuple[bool, list[str]]:
    """A kernel's first-call check (kernels/first_call.py) with `module.<kernel_name>` replaced by
    `kernel` and the module's verdicts cleared: `check(*args)` twice (the second must keep the
    first's verdict) -> (the verdict, the warnings raised)."""
    import warnings
    monkeypatch.setattr(module, kernel_name, kernel)
    monkeypatch.setattr(module, "_trusted", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        verdict = check(*args)
        assert check(*args) is verdict            # kept: checked once
    return verdict, [str(w.message) for w in caught]


def reported_once(msgs: list[str], says: str, switch: str) -> bool:
    """One warning, naming why (`says`) and the switch that turns the kernel off."""
    return len(msgs) == 1 and says in msgs[0] and f"{switch}=0" in msgs[0]


def child_fixture(child: str):
    """A module-scoped pytest fixture: the JSON line of `child` run under the interpreter (skipped
    without triton)."""
    import pytest

    @pytest.fixture(scope="module")
    def measured():
        pytest.importorskip("triton")
        return interpreted(child)
    return measured
