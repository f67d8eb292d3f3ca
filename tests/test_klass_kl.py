"""klass's Triton KL kernels (kernels/klass_kl.py) against their eager twin, on the CPU through
Triton's interpreter: the KL and the ring rows they write, and whole decodes token for token."""
import pytest
from triton_child import interpreted

pytest.importorskip("triton")


@pytest.fixture(scope="module")
def measured():
    return interpreted("klass_kl_child.py")


@pytest.mark.parametrize("case", ["8192_bfloat16", "9001_float32", "7_float32"])
def test_kernels_equal_the_eager_twin_and_write_the_rows_taken(measured, case):
    r = measured[case]
    assert r["kl"] < 1e-11, r            # float64, sums in another order
    assert r["ring"] < 1e-13, r          # log(p + eps) of the rows taken; the others untouched
    assert r["ring_changed"] > 1.0, r    # ... which the kernel did write
    assert r["kl_not_taken"] == 0.0, r   # rows not taken: no pass, kl 0


@pytest.mark.parametrize("spec", ["klass", "klass:cache=dual"])
def test_a_decode_with_the_kernels_equals_the_eager_twin(measured, spec):
    assert measured["decode"][spec]["equal"], measured["decode"][spec]
    assert min(measured["decode"][spec]["nfe"]) > 0
