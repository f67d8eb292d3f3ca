"""The block step's norm, RoPE and K/V write kernel (kernels/qk_rope_write.py) against the torch
passes and an indexed write, on the CPU through Triton's interpreter: q/k norms in both orders
(LLaDA/Qwen2, SDAR's fp32 scale) and none, partial and full RoPE, fp32 and bf16, left padding;
and whole decodes of SDAR, LLaDA2 and Fast-dLLM v2 tiny models token for token with and without it."""
import warnings

import pytest
import torch
from triton_child import interpreted

from kernels import qk_rope_write as k

CASES = ["H4_2_hd16_R8_plain", "H6_2_hd32_R32_fp32_scale", "H3_1_hd16_R16_None"]


@pytest.fixture(scope="module")
def measured():
    pytest.importorskip("triton")
    return interpreted("qk_rope_write_child.py")


@pytest.mark.parametrize("case", CASES)
def test_the_kernel_computes_the_torch_passes_heads_and_writes_their_kv(measured, case):
    r32, r16 = measured[case + "_float32"], measured[case + "_bfloat16"]
    assert r32["max_diff"] <= 1e-6 * r32["ref_max"] and r32["cache_diff"] <= 1e-6 * r32["ref_max"], r32
    # bf16: the passes round after each product, the kernel once: within one rounding step (2^-8 relative)
    assert r16["max_diff"] <= r16["ref_max"] / 128 and r16["cache_diff"] <= r16["ref_max"] / 128, r16
    for r in (r32, r16):
        assert r["cache_holds_heads"] and r["written"] == 10, r   # the 10 real tokens' slots, nothing else


@pytest.mark.parametrize("model", ["sdar-tiny", "llada2-tiny", "fast-dllm-v2-tiny"])
def test_a_decode_with_the_kernel_equals_one_without(measured, model):
    r = measured["decode"][model]
    assert r["equal"] and min(r["nfe"]) > 0, r
    assert r["served"] == [True], r                  # the kernel did serve the "1" decode


def test_the_kernel_serves_only_after_agreeing_with_the_torch_passes(monkeypatch):
    monkeypatch.setattr(k, "_trusted", {})
    N, H, Hk, hd = 3, 2, 1, 16
    qkv = torch.randn(N, H + 2 * Hk, hd)
    cos, sin = torch.ones(N, hd), torch.zeros(N, hd)
    cache = torch.zeros(1, 8, 2 * Hk, hd)
    rows, slots = torch.zeros(N, dtype=torch.long), torch.arange(N)

    def written_heads(*a):                       # a stand-in kernel: the heads as fed, K/V written
        cache[rows, slots] = qkv[:, H:]
        return qkv.clone()
    monkeypatch.setattr(k, "qk_rope_write", written_heads)
    assert k.trusted(qkv, H, Hk, cos, sin, None, cache, rows, slots, reference=qkv.clone)
    monkeypatch.setattr(k, "_trusted", {})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert not k.trusted(qkv, H, Hk, cos, sin, None, cache, rows, slots, reference=lambda: qkv + 1)
    assert "differ from the torch passes" in str(w[-1].message) and "DLLM_TRITON_PROLOGUE=0" in str(w[-1].message)


@pytest.mark.parametrize("B", [1, 3])
def test_the_kernels_row_and_slot_per_fed_token_are_contiguous(B):
    """The kernel reads rows[n] and slots[n] at n: at batch 1 an expanded row index would be a
    stride-0 view (on the GPU an illegal memory access)."""
    from models.block_cache import BlockKVCache
    cache = BlockKVCache.empty(1, B, 1, 16, 16, 4, torch.float32, "cpu")
    rows, slots = cache.step(torch.ones(B, 4, dtype=torch.bool), 0).flat_writes()
    assert rows.is_contiguous() and rows.stride() == (1,) and slots.stride() == (1,)
    assert rows.tolist() == [b for b in range(B) for _ in range(4)] and slots.tolist() == list(range(4)) * B
