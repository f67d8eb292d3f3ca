"""Run by tests/test_qk_rope_write.py under TRITON_INTERPRET=1: the norm, RoPE and K/V write kernel
against the torch passes and an indexed write on the CPU (fp32 and bf16), and whole block-causal
decodes with and without it. Prints one JSON line."""
import json
import os

import torch

from kernels import qk_rope_write as k
from models.block_cache import BlockKVCache
from models.layers import fused_qk_norm_rope, fused_qkv_rope, rope_cos_sin
from triton_child import block_decodes_switched


def kernel_case(H, Hk, hd, R, norm_kind, dtype, seed):
    """A block step of 6 tokens in 2 rows (the second left-padded by 2) after cached prefixes."""
    g = torch.Generator().manual_seed(seed)
    B, W = 2, 6
    cache = BlockKVCache.empty(1, B, Hk, 40, hd, 4, dtype, "cpu")
    cache.length.copy_(torch.tensor([8, 4]))
    valid = torch.ones(B, W, dtype=torch.bool)
    valid[1, :2] = False
    step = cache.step(valid, 0)
    qkv = (torch.randn(B, W, (H + 2 * Hk) * hd, generator=g) * 3).to(dtype)
    cos, sin = rope_cos_sin(step.positions, R, 10000.0, dtype)
    norm = None
    if norm_kind is not None:
        wq, wk = (1 + 0.5 * torch.randn(hd, generator=g)).to(dtype), (1 + 0.5 * torch.randn(hd, generator=g)).to(dtype)
        norm = (wq, wk, 1e-6, norm_kind == "fp32_scale")
        ref = fused_qk_norm_rope(qkv, H, Hk, wq, wk, 1e-6, norm[3], cos, sin)
    else:
        ref = fused_qkv_rope(qkv, H, Hk, cos, sin)
    want = cache.kv[0].clone()
    want.index_put_((step.rows, step.write_idx), ref[:, :, H:])
    rows, slots = step.flat_writes()
    got = k.qk_rope_write(qkv.view(B * W, H + 2 * Hk, hd), H, Hk, cos.reshape(B * W, R), sin.reshape(B * W, R),
                          norm, cache.kv[0], rows, slots).view(ref.shape)
    real = torch.ones(want.shape[1], dtype=torch.bool)
    real[-1] = False                                        # the padding's dump slot: any of its writers
    return {"max_diff": (got.float() - ref.float()).abs().max().item(), "ref_max": ref.float().abs().max().item(),
            "cache_diff": (cache.kv[0][:, real].float() - want[:, real].float()).abs().max().item(),
            "cache_holds_heads": torch.equal(cache.kv[0][step.rows, step.write_idx][valid], got[:, :, H:][valid]),
            "written": int((cache.kv[0][:, real] != 0).any(-1).any(-1).sum())}


if __name__ == "__main__":
    res = {}
    for H, Hk, hd, R, norm_kind in ((4, 2, 16, 8, "plain"), (6, 2, 32, 32, "fp32_scale"), (3, 1, 16, 16, None)):
        for dtype in (torch.float32, torch.bfloat16):
            res[f"H{H}_{Hk}_hd{hd}_R{R}_{norm_kind}_{str(dtype)[6:]}"] = kernel_case(H, Hk, hd, R, norm_kind, dtype, H + hd)
    os.environ["DLLM_TRITON_ATTN"] = "0"          # SDPA's attention either way: this kernel alone differs
    res["decode"] = block_decodes_switched("DLLM_TRITON_PROLOGUE", k._trusted)
    print(json.dumps(res))
