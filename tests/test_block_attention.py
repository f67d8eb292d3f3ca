"""The block-step attention kernels (kernels/block_attention.py) against SDPA, on the CPU through
Triton's interpreter (fp32): a step read over the whole cache capacity under the block-causal
mask with left padding and grouped kv heads (ratios 2, 3 and 7), and whole decodes of SDAR,
LLaDA2 and Fast-dLLM v2 tiny models token for token with and without them."""
import pytest
import torch
from triton_child import interpreted

from kernels import block_attention as ba


@pytest.fixture(scope="module")
def measured():
    pytest.importorskip("triton")
    return interpreted("block_attention_child.py")


@pytest.mark.parametrize("case", ["B1_W4_H4_2_hd16", "B2_W32_H6_2_hd32", "B3_W64_H7_1_hd16"])
def test_kernels_equal_sdpa_under_the_block_causal_mask(measured, case):
    r = measured[case]
    assert r["max_diff"] < 1e-5 and r["ref_max"] > 0.5, r
    assert r["max_diff_packed"] < 1e-5, r       # the q heads of a kv head in one program
    assert r["max_diff_packed_one_chunk"] < 1e-5, r   # ... every key in one chunk: no _combine


@pytest.mark.parametrize("packed", ["decode", "decode_packed"])
@pytest.mark.parametrize("model", ["sdar-tiny", "llada2-tiny", "fast-dllm-v2-tiny"])
def test_a_decode_with_the_kernels_equals_one_with_sdpa(measured, model, packed):
    r = measured[packed][model]
    assert r["equal"] and min(r["nfe"]) > 0, r
    assert r["served"] == [True], r        # the kernels did serve the "1" decode


@pytest.mark.parametrize("B, W, H, Hkv, from_batch, packs", [
    (8, 32, 28, 4, 4, True), (2, 32, 28, 4, 4, False), (8, 64, 28, 4, 4, False),
    (8, 32, 8, 8, 4, False), (8, 32, 28, 4, None, False),
])
def test_which_steps_the_packed_kernel_takes(monkeypatch, B, W, H, Hkv, from_batch, packs):
    monkeypatch.setattr(ba, "PACKED_FROM_BATCH", from_batch)
    assert ba.packs(B, W, H, Hkv) is packs


@pytest.mark.parametrize("kernel, served, says", [
    (lambda qkv, H, kv, km: ba.sdpa(qkv, H, kv, torch.zeros(km.shape).masked_fill(~km, -65504.0)), True, None),
    (lambda qkv, H, kv, km: ba.sdpa(qkv, H, kv, None), False, "differs from SDPA's"),
    (lambda *a: 1 / 0, False, "ZeroDivisionError"),
])
def test_the_kernels_serve_only_after_agreeing_with_sdpa_on_their_first_input(monkeypatch, kernel, served, says):
    import warnings
    monkeypatch.setattr(ba, "block_attention", kernel)
    monkeypatch.setattr(ba, "_trusted", {})
    g = torch.Generator().manual_seed(0)
    qkv, kv = torch.randn(1, 4, 8, 16, generator=g), torch.randn(1, 12, 4, 16, generator=g)
    km = torch.ones(1, 1, 4, 12, dtype=torch.bool)
    km[..., 8:] = False                                   # the last 4 slots hidden
    mask = torch.zeros(km.shape).masked_fill(~km, -65504.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ba.trusted(qkv, 4, kv, km, mask) is served
        assert ba.trusted(qkv, 4, kv, km, mask) is served        # kept: checked once
    msgs = [str(w.message) for w in caught]
    assert (msgs == []) if served else (len(msgs) == 1 and says in msgs[0] and "DLLM_TRITON_ATTN=0" in msgs[0])


@pytest.mark.parametrize("B, W, H, takes", [
    (1, 64, 28, True),     # SDPA would fill at most half the SMs
    (8, 4, 32, True),      # SDAR's narrow blocks, any batch
    (8, 32, 28, True),     # one block at batch up to 8 (faster than cuDNN's SDPA on an H100)
    (4, 64, 28, False),    # two blocks from batch 4 on: SDPA
    (16, 32, 28, False),   # one block past batch 8: SDPA
])
def test_which_step_attention_the_kernels_take_on_a_gpu(monkeypatch, B, W, H, takes):
    from kernels import window_attention as wa
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(wa, "supported", lambda qkv: True)
    monkeypatch.setattr(wa, "_gpu", lambda device: (132, 9))   # an H100's SMs
    assert ba.available(torch.empty(B, W, H + 8, 128), H) is takes
