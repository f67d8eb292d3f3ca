"""Run by tests/test_block_attention.py under TRITON_INTERPRET=1: the block-step attention kernels
against SDPA on the CPU (fp32), and whole block-causal decodes with and without them. Prints one
JSON line."""
import json

import torch

from kernels import block_attention as ba
from kernels.block_attention import block_attention, sdpa
from models.block_cache import BlockKVCache
from triton_child import block_decodes_switched


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
    ref = sdpa(qkv, H, kv, step.additive_mask(torch.float32))
    ba.PACKED_BLOCK_M = 32     # tiles of 32 (head, query) rows: a kv head's heads over several tiles
    diff = {f"max_diff{'_packed' * packed}": (block_attention(qkv, H, kv, step.key_mask, packed) - ref).abs().max().item()
            for packed in (False, True)}
    programs, ba.PACKED_PROGRAMS = ba.PACKED_PROGRAMS, 1   # one chunk of keys: the packed pass writes the output
    diff["max_diff_packed_one_chunk"] = (block_attention(qkv, H, kv, step.key_mask, True) - ref).abs().max().item()
    ba.PACKED_PROGRAMS = programs
    return {**diff, "ref_max": ref.abs().max().item()}


if __name__ == "__main__":
    res = {f"B{B}_W{W}_H{H}_{Hkv}_hd{hd}": kernel_case(B, W, H, Hkv, hd, L, B + W + H)
           for B, W, H, Hkv, hd, L in ((1, 4, 4, 2, 16, 9), (2, 32, 6, 2, 32, 70), (3, 64, 7, 1, 16, 130))}
    res["decode"] = block_decodes_switched("DLLM_TRITON_ATTN", ba._trusted)
    ba.PACKED_FROM_BATCH = 1   # every step of one block through the packed kernel
    res["decode_packed"] = block_decodes_switched("DLLM_TRITON_ATTN", ba._trusted)
    print(json.dumps(res))
