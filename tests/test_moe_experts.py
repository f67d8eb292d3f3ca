"""The routed experts' Triton kernels (kernels/moe_experts.py): under Triton's interpreter on the
CPU against the reference (pairs grouped by expert, experts without pairs, one expert with more
pairs than a tile, widths that are not multiples of the tiles); off the GPU the operator is the
reference; the kernels serve only after agreeing with it."""
import pytest
import torch
from triton_child import first_call_verdict, interpreted, reported_once

import kernels.moe_experts as me
from kernels.moe_group import group_pairs_reference

CASES = ["T5_k2_E8_d64_f32_float32", "T40_k2_E6_d96_f80_float32_crowd", "T3_k4_E16_d64_f64_float32"]


@pytest.fixture(scope="module")
def measured():
    pytest.importorskip("triton")
    return interpreted("moe_experts_child.py")


@pytest.mark.parametrize("case", CASES)
def test_kernels_give_the_reference_expert_products(measured, case):
    r = measured[case]
    assert r["max_diff"] < 1e-5 * r["scale"], r
    assert r["dtype"] == "torch.float32", r


def test_the_moe_layer_gives_the_same_sum_with_the_kernels_and_without(measured):
    """models/moe.py's grouped experts (256 pairs over 64 experts) with the kernels against
    torch's grouped products."""
    r = measured["layer"]
    assert r["max_diff"] < 1e-5 * r["scale"], r


def test_a_shared_expert_run_with_the_routed_ones_gives_its_own_mlp_sum(measured):
    """models/moe.py's experts_with_shared_row (the shared expert as the experts' last row, its rows
    as more pairs for the kernels) against the routed experts' grouped products plus the shared
    expert's SwiGLU MLP."""
    r = measured["shared_row"]
    assert r["max_diff"] < 1e-5 * r["scale"], r


def test_a_model_forward_with_the_kernels_equals_one_without(measured):
    """llada2-tiny (one shared expert a layer) with the expert kernels and without."""
    r = measured["model"]
    assert r["max_diff"] < 1e-4 * r["scale"] and r["argmax_agree"] == 1.0, r


def _inputs(T=6, k=2, E=5, d=8, f=4):
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, E, (T, k), generator=g)
    token, offs, _ = group_pairs_reference(idx.reshape(-1), E, k)
    return (torch.randn(T, d, generator=g), token, offs, torch.randn(E, 2 * f, d, generator=g),
            torch.randn(E, d, f, generator=g)), idx


def test_expert_products_off_the_gpu_are_each_pairs_swiglu_expert():
    """Pair p (grouped order) is token token[p] through its expert's SwiGLU MLP."""
    (x, token, offs, gate_up, down), idx = _inputs()
    out = me.expert_products(x, token, offs, gate_up, down)
    e = me.expert_of_pairs(offs, token.numel())
    assert torch.equal(e, idx.reshape(-1)[idx.reshape(-1).argsort(stable=True)])   # the grouped pairs' experts
    for p in range(token.numel()):
        gate, up = gate_up[e[p]].chunk(2)
        h = torch.nn.functional.silu(gate @ x[token[p]]) * (up @ x[token[p]])
        assert torch.allclose(out[p], down[e[p]] @ h, atol=1e-5)


@pytest.mark.parametrize("kernel, trusted, says", [
    (lambda *a: me.expert_products_reference(*a), True, None),
    (lambda *a: me.expert_products_reference(*a) * 1.1, False, "max difference"),
    (lambda *a: 1 / 0, False, "ZeroDivisionError"),
])
def test_the_kernels_serve_only_after_agreeing_with_the_reference(monkeypatch, kernel, trusted, says):
    args, _ = _inputs()
    served, msgs = first_call_verdict(monkeypatch, me, "_expert_products_triton", kernel, me._kernels_trusted, args)
    assert served is trusted
    assert (msgs == []) if trusted else reported_once(msgs, says, "DLLM_TRITON_EXPERTS")


def test_the_kernels_build_for_hopper_with_pipelined_weight_loads():
    """Both kernels compile for sm_90 without a GPU (Triton's ahead-of-time compiler, the integer
    arguments specialised as the JIT specialises LLaDA2.0-mini's), their weight tiles loaded by
    asynchronous copies in flight while the previous tile is multiplied."""
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    tiles = {"BLOCK_M": me.BLOCK_M, "BLOCK_N": me.BLOCK_N, "BLOCK_K": me.BLOCK_K, "IEEE": False}
    kernels = {me._swiglu_kernel: ["*bf16", "*i64", "*i32", "*bf16", "*bf16", "i32", "i32"],
               me._down_kernel: ["*bf16", "*i32", "*bf16", "*bf16", "i32", "i32"]}
    for fn, types in kernels.items():
        sig = {**dict(zip(fn.arg_names, types)), **{k: "constexpr" for k in tiles}}
        attrs = {(i,): [["tt.divisibility", 16]] for i in range(len(types))}
        k = triton.compile(ASTSource(fn, sig, constexprs=tiles, attrs=attrs), target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": 4, "num_stages": 3})
        assert k.asm["cubin"] and k.asm["ttgir"].count("async_copy_global_to_local") >= 2, fn.__name__


def test_a_shared_expert_run_through_the_grouped_products_gives_its_own_mlp_sum(monkeypatch):
    """models/moe.py's experts_with_shared_row where the Triton kernels do not serve (batch 8 on the
    GPU: torch._grouped_mm, here on the CPU): the shared expert's rows as one more group of the
    grouped products, against the routed experts' grouped products plus its own SwiGLU MLP."""
    from moe_experts_child import shared_row_and_own_mlp
    monkeypatch.setenv("DLLM_TRITON_EXPERTS", "0")     # restored after the test
    got, want = shared_row_and_own_mlp(24, 4, 16, 32, 24, 5, "0")
    assert got.shape == (24, 32)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
