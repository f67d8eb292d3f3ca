"""Run by tests/test_moe_kernels.py under TRITON_INTERPRET=1: the MoE router's and grouping's Triton
kernels against their references on the CPU, and whole llada2-tiny forwards with and without them.
Prints one JSON line."""
import json
import os

import torch

from kernels.moe_group import _group_pairs_triton, group_pairs_reference
from kernels.moe_route import _route_select_triton, route_select_reference, sum_partials, triton_ready
from kernels.moe_router import _router_partials_triton
from kernels.moe_router import triton_ready as partials_ready


def kernel_case(T, E, G, TG, K, seed, bias_dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(T, E, generator=g)
    bias = (0.1 * torch.randn(E, generator=g)).to(bias_dtype)     # bf16: a bf16 model's buffer
    a_idx, a_w = route_select_reference(logits, bias, K, G, TG, 2.5)
    b_idx, b_w = _route_select_triton(logits, bias, K, G, TG, 2.5)
    return {"idx_equal": torch.equal(a_idx, b_idx), "w": (a_w - b_w).abs().max().item(),
            "w_sum": (b_w.sum(-1) - 2.5).abs().max().item() if K > 1 else 0.0}


def group_case(T, k, E, seed, extra=0):
    g = torch.Generator().manual_seed(seed)
    flat = torch.randint(0, E, (T * k,), generator=g)
    if T > 4:
        flat[: T * k // 2] = flat[0]                  # one expert with half the pairs
    got, want = _group_pairs_triton(flat, E, k, extra), group_pairs_reference(flat, E, k, extra)
    return {"equal": all(torch.equal(a, b) for a, b in zip(got, want)),
            "dtypes": [str(t.dtype) for t in got] == [str(t.dtype) for t in want]}


def partials_case(T, E, d, seed):
    """The router product as partial sums over slices of d (kernels/moe_router.py) against the fp32
    product, and the router kernel choosing from them (summed in order) as the reference does."""
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(T, d, generator=g), 0.05 * torch.randn(E, d, generator=g)
    bias = 0.1 * torch.randn(E, generator=g)
    p = _router_partials_triton(x, w)
    want = x @ w.t()
    idx, wt = _route_select_triton(p, bias, 8, 8, 4, 2.5)
    ref_idx, ref_w = route_select_reference(p, bias, 8, 8, 4, 2.5)
    return {"ready": partials_ready(x, w), "slices": p.shape[0], "shape": list(p.shape[1:]),
            "err": ((sum_partials(p) - want).abs().max() / want.abs().max()).item(),
            "idx_equal": torch.equal(idx, ref_idx), "w": (wt - ref_w).abs().max().item(),
            "same_as_summed": torch.equal(ref_idx, route_select_reference(sum_partials(p), bias, 8, 8, 4, 2.5)[0])}


def forward_case():
    from models import load_model
    m = load_model("llada2-tiny", no_weights=True)
    ids = torch.randint(5, 500, (2, 12), generator=torch.Generator().manual_seed(0))
    out = {}
    for kernel in ("1", "0"):
        os.environ["DLLM_TRITON_ROUTE"] = kernel
        assert triton_ready(ids.float(), 32, 4) == (kernel == "1")
        out[kernel] = m.module(ids)[0].float()
    return {"max_diff": (out["1"] - out["0"]).abs().max().item(),
            "argmax_agree": (out["1"].argmax(-1) == out["0"].argmax(-1)).float().mean().item()}


if __name__ == "__main__":
    res = {f"T{T}_E{E}_G{G}_TG{TG}_K{K}": kernel_case(T, E, G, TG, K, T + E)
           for T, E, G, TG, K in ((5, 256, 8, 4, 8), (33, 32, 4, 2, 4), (3, 8, 4, 2, 2), (4, 16, 2, 1, 1))}
    res["T5_E256_G8_TG4_K8_bias_bf16"] = kernel_case(5, 256, 8, 4, 8, 261, torch.bfloat16)
    res.update({f"group_T{T}_k{k}_E{E}": group_case(T, k, E, T * E)
                for T, k, E in ((1, 2, 8), (32, 8, 256), (37, 4, 32), (512, 8, 256))})
    res.update({f"group_T{T}_k{k}_E{E}_extra{x}": group_case(T, k, E, T * E, x)   # a shared expert's rows
                for T, k, E, x in ((32, 8, 256, 32), (7, 2, 8, 70), (256, 8, 256, 256))})
    res.update({f"partials_T{T}": partials_case(T, 64, 2048, T) for T in (5, 40)})
    res["forward"] = forward_case()
    print(json.dumps(res))
