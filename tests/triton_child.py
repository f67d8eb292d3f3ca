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
