"""The MoE layer's Triton kernels against their references, on the CPU through Triton's
interpreter: the router (kernels/moe_route.py: the same experts in the same order, the same weights
to fp32 rounding), the grouping of the pairs by expert (kernels/moe_group.py: equal outputs, up to
one expert holding half the pairs and 4096 pairs), and a whole llada2-tiny forward with them equal
to one without."""
import pytest
import torch
from triton_child import first_call_verdict, interpreted, reported_once

from kernels.moe_group import group_pairs, group_pairs_reference
from kernels.moe_route import route_select, route_select_reference, triton_ready

CASES = ["T5_E256_G8_TG4_K8", "T33_E32_G4_TG2_K4", "T3_E8_G4_TG2_K2", "T4_E16_G2_TG1_K1",
         "T5_E256_G8_TG4_K8_bias_bf16"]      # the expert bias in bf16, as a bf16 model holds it


@pytest.fixture(scope="module")
def measured():
    pytest.importorskip("triton")
    return interpreted("moe_kernels_child.py")


@pytest.mark.parametrize("case", CASES)
def test_kernel_chooses_the_reference_experts_with_its_weights(measured, case):
    r = measured[case]
    assert r["idx_equal"], r
    assert r["w"] < 1e-6, r
    assert r["w_sum"] < 1e-5, r          # normalised, times the scaling factor


@pytest.mark.parametrize("case", ["group_T1_k2_E8", "group_T32_k8_E256", "group_T37_k4_E32", "group_T512_k8_E256",
                                  "group_T32_k8_E256_extra32", "group_T7_k2_E8_extra70",
                                  "group_T256_k8_E256_extra256"])
def test_grouping_kernel_gives_the_reference_token_offsets_and_places(measured, case):
    assert measured[case] == {"equal": True, "dtypes": True}


@pytest.mark.parametrize("case, slices", [("partials_T5", 16), ("partials_T40", 4)])
def test_router_product_in_slices_sums_to_the_product_and_routes_as_the_reference(measured, case, slices):
    """kernels/moe_router.py: a block step's tokens (16 slices of d up to 32 tokens, 4 above) give
    partial sums whose in-order sum is the fp32 product, and the router kernel, adding them as it
    loads them, chooses the reference's experts with its weights."""
    r = measured[case]
    assert r["ready"] and r["slices"] == slices and r["shape"] == [int(case.split("T")[1]), 64], r
    assert r["err"] < 1e-5, r
    assert r["idx_equal"] and r["w"] < 1e-6 and r["same_as_summed"], r


def test_a_forward_with_the_kernels_equals_one_without(measured):
    r = measured["forward"]
    assert r["max_diff"] < 1e-4 and r["argmax_agree"] == 1.0, r


def test_route_select_off_the_gpu_is_the_reference_and_chooses_among_the_best_groups():
    """On the CPU the operator runs the reference's steps: experts only from the topk_group groups
    with the best top-2 sums, best first, weights of the unbiased scores normalised and scaled."""
    logits = torch.full((1, 8), -4.0)
    logits[0, [0, 1]] = torch.tensor([3.0, 2.9])     # group 0: two strong experts
    logits[0, 6] = 4.0                               # group 3: one stronger expert, a weak second
    bias = torch.zeros(8)
    assert not triton_ready(logits, 8, 4)
    idx, w = route_select(logits, bias, 2, 4, 1, 2.0)
    assert idx.tolist() == [[0, 1]]                  # group 0 sums higher, though expert 6 is the best
    assert torch.equal((idx, w)[1], route_select_reference(logits, bias, 2, 4, 1, 2.0)[1])
    s = torch.sigmoid(logits[0, [0, 1]])
    assert torch.allclose(w[0], s / s.sum() * 2.0)


@pytest.mark.parametrize("kernel, trusted, says", [
    (lambda *a: route_select_reference(*a), True, None),
    (lambda *a: (route_select_reference(*a)[0].flip(-1), route_select_reference(*a)[1]), False, "differs"),
    (lambda *a: 1 / 0, False, "ZeroDivisionError"),
])
def test_the_kernel_serves_only_after_agreeing_with_the_reference_on_its_first_input(monkeypatch, kernel, trusted, says):
    """A kernel that disagrees with the reference or does not build is reported once and the
    reference serves from then on."""
    import kernels.moe_route as mr
    logits = torch.randn(6, 32, generator=torch.Generator().manual_seed(0))
    args = (logits, torch.zeros(32), 4, 4, 2, 1.0)
    served, msgs = first_call_verdict(monkeypatch, mr, "_route_select_triton", kernel, mr._kernel_trusted, args)
    assert served is trusted
    assert (msgs == []) if trusted else reported_once(msgs, says, "DLLM_TRITON_ROUTE")


@pytest.mark.parametrize("kernel, trusted, says", [
    (lambda *a: group_pairs_reference(*a), True, None),
    (lambda *a: tuple(t.flip(0) for t in group_pairs_reference(*a)), False, "differ"),
    (lambda *a: 1 / 0, False, "ZeroDivisionError"),
])
def test_the_grouping_kernel_serves_only_after_giving_the_reference_outputs(monkeypatch, kernel, trusted, says):
    import kernels.moe_group as mg
    flat = torch.randint(0, 8, (12,), generator=torch.Generator().manual_seed(0))
    served, msgs = first_call_verdict(monkeypatch, mg, "_group_pairs_triton", kernel, mg._kernel_trusted, (flat, 8, 3))
    assert served is trusted
    assert (msgs == []) if trusted else reported_once(msgs, says, "DLLM_TRITON_ROUTE")


def test_router_partials_off_the_gpu_leave_the_product_to_torch():
    """Without a GPU (and outside the interpreter) the router product is torch's: router_logits
    gives the [T, E] logits, and route_select_reference reads partial sums as their in-order sum."""
    from kernels.moe_route import sum_partials
    from kernels.moe_router import router_partials
    from models.moe import router_logits
    x, w = torch.randn(3, 256), torch.randn(32, 256)
    assert router_partials(x, w) is None
    assert router_logits(x, w, lambda: w).shape == (3, 32)
    p = torch.randn(4, 3, 32)
    assert torch.equal(sum_partials(p), ((p[0] + p[1]) + p[2]) + p[3])
    bias = torch.zeros(32)
    assert all(torch.equal(a, b) for a, b in zip(route_select_reference(p, bias, 4, 4, 2, 1.0),
                                                 route_select_reference(sum_partials(p), bias, 4, 4, 2, 1.0)))


def test_group_pairs_off_the_gpu_is_the_reference():
    """Pairs of tokens 0..2 (k = 2) by expert: expert 1 holds pairs 1 and 4, expert 3 pairs 0, 2, 5."""
    flat = torch.tensor([3, 1, 3, 0, 1, 3])
    token, offs, place = group_pairs(flat, 4, 2)
    assert offs.tolist() == [1, 3, 3, 6] and offs.dtype == torch.int32
    assert token.tolist() == [1, 0, 2, 0, 1, 2]          # grouped: pair 3 | pairs 1, 4 | pairs 0, 2, 5
    assert place.tolist() == [3, 1, 4, 0, 2, 5]
    token, offs, place = group_pairs(flat, 4, 2, 3)      # and 3 rows of a shared expert, expert 4
    assert offs.tolist() == [1, 3, 3, 6, 9] and token.tolist() == [1, 0, 2, 0, 1, 2, 0, 1, 2]
    assert place.tolist() == [3, 1, 4, 0, 2, 5]


def test_the_grouping_kernel_builds_for_hopper():
    """The grouping kernel compiles for sm_90 without a GPU (Triton's ahead-of-time compiler), with
    the block sizes a block step of LLaDA2.0-mini at batch 1 gives it (256 pairs and the shared
    expert's 32 rows, 36 programs)."""
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import kernels.moe_group as mg
    fn = mg._group_kernel
    types = ["*i64", "*i64", "*i64", "*i32", "i32", "i32", "i32", "i32", "i32"]
    blocks = {"C": mg.CHUNK, "A": mg.SCAN, "EB": 8}        # 257 experts over 36 programs
    sig = {**dict(zip(fn.arg_names, types)), **{k: "constexpr" for k in blocks}}
    k = triton.compile(ASTSource(fn, sig, constexprs=blocks), target=GPUTarget("cuda", 90, 32),
                       options={"num_warps": 4})
    assert k.asm["cubin"]
