"""klass's Triton KL kernels (kernels/klass_kl.py) against their eager twin, on the CPU through
Triton's interpreter: the KL and the ring rows they write, and whole decodes token for token."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def measured():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, str(ROOT / "tests" / "klass_kl_child.py")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["8192_bfloat16", "9001_float32", "7_float32"])
def test_kernels_equal_the_eager_twin_and_write_the_fresh_rows(measured, case):
    r = measured[case]
    assert r["kl"] < 1e-11, r            # float64, sums in another order
    assert r["ring"] < 1e-13, r          # log(p + eps) of the fresh rows; the others untouched
    assert r["ring_changed"] > 1.0, r    # ... which the kernel did write


@pytest.mark.parametrize("spec", ["klass", "klass:cache=dual"])
def test_a_decode_with_the_kernels_equals_the_eager_twin(measured, spec):
    assert measured["decode"][spec]["equal"], measured["decode"][spec]
    assert min(measured["decode"][spec]["nfe"]) > 0
