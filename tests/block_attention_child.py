"""Run by tests/test_block_attention.py under TRITON_INTERPRET=1: the block-step attention kernels
against SDPA on the CPU (fp32), and whole block-causal decodes with and without them. Prints one
JSON line."""
import json
import os

import torch

from kernels.block_attention import block_attention, sdpa
from models.block_cache import BlockKVCache


def kernel_case(B, W, H, Hkv, hd, length, seed):
    """A block step of W tokens after `length` cached ones (rows shorter by their index, padding
    first), read over the whole cache capacity as a captured step reads it."""
    g = torch.Generator().manual_seed(seed)
    cache = BlockKVCache.empty(1, B, Hkv, length + W + 40, hd, 4, torch.float32, "cpu")
    cache.length.copy_(torch.tensor([length - 4 * i for i in range(B)]))
    valid = torch.ones(B, W, dtype=torch.bool)
    valid[1:, :2] = False                                   # left padding in the other rows
    step = cache.step(valid, 0, key_len=cache.capacity)
    cache.kv[0].copy_(torch.randn(cache.kv[0].shape, generator=g))
    qkv = torch.randn(B, W, H + 2 * Hkv, hd, generator=g)
    kv = cache.kv[0][:, :step.key_len]
    got = block_attention(qkv, H, kv, step.key_mask)
    ref = sdpa(qkv, H, kv, step.additive_mask(torch.float32))
    return {"max_diff": (got - ref).abs().max().item(), "ref_max": ref.abs().max().item()}


def decode_case():
    from decoding.base import GenConfig
    from kernels import block_attention as ba
    from decoding.loop import decode
    from decoding.registry import build_method, parse_methods
    from models import load_model
    out = {}
    for name in ("sdar-tiny", "llada2-tiny", "fast-dllm-v2-tiny"):
        m = load_model(name, no_weights=True)
        gen = GenConfig(gen_length=16, block_length=m.block_size)
        runs = []
        for kernels in ("1", "0"):
            os.environ["DLLM_TRITON_ATTN"] = kernels
            torch.manual_seed(0)
            r = decode(m, build_method(parse_methods("threshold")[0], gen), [[5, 6, 7, 8, 9], [10, 11, 12]], gen)
            runs.append((r.tokens.tolist(), r.nfe.tolist()))
        out[name] = {"equal": runs[0] == runs[1], "nfe": runs[0][1], "kernels_served": sorted(set(ba._trusted.values()))}
        ba._trusted.clear()
    return out


if __name__ == "__main__":
    res = {f"B{B}_W{W}_H{H}_{Hkv}_hd{hd}": kernel_case(B, W, H, Hkv, hd, L, B + W + H)
           for B, W, H, Hkv, hd, L in ((1, 4, 4, 2, 16, 9), (2, 32, 6, 2, 32, 70), (3, 64, 7, 1, 16, 130))}
    res["decode"] = decode_case()
    print(json.dumps(res))
