"""Run by tests/test_moe_combine.py under TRITON_INTERPRET=1: the experts' weighted sum as a Triton
kernel (kernels/moe_combine.py) against its reference on the CPU, in fp32 and fp16 (the interpreter casts to bf16 by truncation, the GPU to nearest), with and without
a shared expert's output; then threshold decodes of the tiny block-causal models with the kernel
and without. Prints one JSON line."""
import json

import torch
from triton_child import block_decodes_switched

import kernels.moe_combine as mc


def case(T, k, d, dtype, shared, seed):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(T * k, d, generator=g).to(dtype)
    place = torch.randperm(T * k, generator=g).view(T, k)
    w = torch.rand(T, k, generator=g)
    sh = torch.randn(T, d, generator=g).to(dtype) if shared else None
    got = mc._combine_triton(rows, place, w, sh)
    want = mc.combine_reference(rows, place, w, sh)
    return {"max_diff": (got.float() - want.float()).abs().max().item(), "scale": want.float().abs().max().item(),
            "dtype": str(got.dtype), "shape": list(got.shape)}


if __name__ == "__main__":
    res = {f"T{T}_k{k}_d{d}_{str(dt)[6:]}{'_shared' if s else ''}": case(T, k, d, dt, s, T + k)
           for T, k, d, dt, s in ((5, 8, 64, torch.float32, True), (7, 3, 1100, torch.float32, False),
                                  (4, 8, 2048, torch.float16, True), (3, 1, 96, torch.float16, False))}
    res["decode"] = block_decodes_switched("DLLM_TRITON_COMBINE", mc._trusted)
    print(json.dumps(res))
