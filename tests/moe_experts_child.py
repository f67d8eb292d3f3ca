"""Run by tests/test_moe_experts.py under TRITON_INTERPRET=1: the routed experts' Triton kernels
(kernels/moe_experts.py) against their reference on the CPU, in fp32 (the interpreter's bf16
products are not computed as the GPU computes them). Prints one JSON line."""
import json

import torch

from kernels.moe_experts import _expert_products_triton, expert_products_reference
from kernels.moe_group import group_pairs_reference


def case(T, k, E, d, f, dtype, crowd, seed):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, E, (T, k), generator=g)
    if crowd:
        idx[: T // 2, 0] = 1                          # one expert with more pairs than a BLOCK_M
    x = torch.randn(T, d, generator=g).to(dtype)
    gate_up = (torch.randn(E, 2 * f, d, generator=g) / d ** 0.5).to(dtype)
    down = (torch.randn(E, d, f, generator=g) / f ** 0.5).to(dtype)
    token, offs, _ = group_pairs_reference(idx.reshape(-1), E, k)
    got = _expert_products_triton(x, token, offs, gate_up, down).float()
    want = expert_products_reference(x, token, offs, gate_up, down).float()
    return {"max_diff": (got - want).abs().max().item(), "scale": want.abs().max().item(),
            "shape": list(got.shape), "dtype": str(_expert_products_triton(x, token, offs, gate_up, down).dtype)}


def layer_case():
    """models/moe.py's grouped experts (route output in, weighted sum out) with the kernels and
    without (torch._grouped_mm, which runs on the CPU too)."""
    import os

    from models.moe import offsets_grouped_experts
    g = torch.Generator().manual_seed(3)
    T, k, E, d, f = 32, 8, 64, 64, 48
    x = torch.randn(T, d, generator=g)
    idx = torch.stack([torch.randperm(E, generator=g)[:k] for _ in range(T)])
    w = torch.rand(T, k, generator=g)
    gate_up, down = torch.randn(E, 2 * f, d, generator=g) / 8, torch.randn(E, d, f, generator=g) / 7
    out = {}
    for kernel in ("1", "0"):
        os.environ["DLLM_TRITON_EXPERTS"] = kernel
        out[kernel] = offsets_grouped_experts(x, idx, w, gate_up, down)
    return {"max_diff": (out["1"] - out["0"]).abs().max().item(), "scale": out["0"].abs().max().item()}


def shared_row_and_own_mlp(T, k, E, d, f, seed, kernels: str):
    """(models/moe.py experts_with_shared_row: a shared expert stacked as the experts' last row and
    run with the routed pairs, by the Triton kernels with kernels "1" or the grouped products with
    "0"; the routed experts by the grouped products plus the shared expert as its own SwiGLU MLP)."""
    import os

    import torch.nn.functional as F

    from models.layers import swiglu
    from models.moe import experts_with_shared_row, offsets_grouped_experts
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, d, generator=g)
    idx = torch.stack([torch.randperm(E, generator=g)[:k] for _ in range(T)])
    w = torch.rand(T, k, generator=g)
    gate_up, down = torch.randn(E + 1, 2 * f, d, generator=g) / 8, torch.randn(E + 1, d, f, generator=g) / 7
    os.environ["DLLM_TRITON_EXPERTS"] = kernels
    got = experts_with_shared_row(x, idx, w, gate_up, down)
    os.environ["DLLM_TRITON_EXPERTS"] = "0"
    shared = F.linear(swiglu(F.linear(x, gate_up[E])), down[E])
    return got, offsets_grouped_experts(x, idx, w, gate_up[:E], down[:E], shared)


def shared_row_case():
    """The shared expert run by the kernels with the routed pairs against its own SwiGLU MLP."""
    got, want = shared_row_and_own_mlp(32, 8, 64, 64, 48, 4, "1")
    return {"max_diff": (got - want).abs().max().item(), "scale": want.abs().max().item()}


def model_case():
    """A whole llada2-tiny forward (its MoE layers' shared expert run with the routed ones by the
    kernels) against the same forward with DLLM_TRITON_EXPERTS=0."""
    import os

    from models import load_model
    m = load_model("llada2-tiny", no_weights=True)
    ids = torch.randint(5, 500, (1, 12), generator=torch.Generator().manual_seed(0))
    out = {}
    for kernel in ("1", "0"):
        os.environ["DLLM_TRITON_EXPERTS"] = kernel
        out[kernel] = m.module(ids)[0].float()
    return {"max_diff": (out["1"] - out["0"]).abs().max().item(), "scale": out["0"].abs().max().item(),
            "argmax_agree": (out["1"].argmax(-1) == out["0"].argmax(-1)).float().mean().item()}


if __name__ == "__main__":
    res = {f"T{T}_k{k}_E{E}_d{d}_f{f}_{str(dt)[6:]}{'_crowd' if c else ''}": case(T, k, E, d, f, dt, c, T + E)
           for T, k, E, d, f, dt, c in ((5, 2, 8, 64, 32, torch.float32, False),
                                        (40, 2, 6, 96, 80, torch.float32, True),
                                        (3, 4, 16, 64, 64, torch.float32, False))}
    res["layer"] = layer_case()
    res["shared_row"] = shared_row_case()
    res["model"] = model_case()
    print(json.dumps(res))
