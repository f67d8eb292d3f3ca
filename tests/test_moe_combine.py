"""The experts' weighted sum (kernels/moe_combine.py): the Triton kernel under the interpreter on
the CPU against the reference (k not a power of two, widths that are not a multiple of its columns,
with and without the shared experts' output, fp32 and fp16); decodes with it and without give the
same tokens and NFE; off the GPU the operator is the reference; the kernel serves only after
agreeing with it."""
import pytest
import torch
from triton_child import child_fixture, first_call_verdict, reported_once

import kernels.moe_combine as mc

CASES = ["T5_k8_d64_float32_shared", "T7_k3_d1100_float32", "T4_k8_d2048_float16_shared", "T3_k1_d96_float16"]

measured = child_fixture("moe_combine_child.py")


@pytest.mark.parametrize("case", CASES)
def test_the_kernel_gives_the_reference_weighted_sum(measured, case):
    r = measured[case]
    ulp = 1e-6 if "float32" in case else torch.finfo(torch.float16).eps
    assert r["max_diff"] <= ulp * r["scale"], r
    assert r["dtype"] == "torch." + case.split("_")[3], r


def test_llada2_decodes_with_the_kernel_give_the_same_tokens_and_nfe(measured):
    for name, r in measured["decode"].items():
        assert r["equal"], (name, r)
    assert measured["decode"]["llada2-tiny"]["served"] == [True]   # the MoE model's layers took the kernel


def _inputs(T=6, k=3, d=8):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(T * k, d, generator=g), torch.randperm(T * k, generator=g).view(T, k),
            torch.rand(T, k, generator=g), torch.randn(T, d, generator=g))


def test_off_the_gpu_the_sum_is_each_tokens_weighted_rows_plus_its_shared_output():
    rows, place, w, shared = _inputs()
    out = mc.combine(rows, place, w, shared)
    for t in range(place.shape[0]):
        want = sum(w[t, j] * rows[place[t, j]] for j in range(place.shape[1])) + shared[t]
        assert torch.allclose(out[t], want, atol=1e-5)


@pytest.mark.parametrize("kernel, trusted, says", [
    (lambda *a: mc.combine_reference(*a), True, None),
    (lambda *a: mc.combine_reference(*a) * 1.01, False, "max difference"),
    (lambda *a: 1 / 0, False, "ZeroDivisionError"),
])
def test_the_kernel_serves_only_after_agreeing_with_the_reference(monkeypatch, kernel, trusted, says):
    served, msgs = first_call_verdict(monkeypatch, mc, "_combine_triton", kernel, mc._kernel_trusted, _inputs())
    assert served is trusted
    assert (msgs == []) if trusted else reported_once(msgs, says, "DLLM_TRITON_COMBINE")
