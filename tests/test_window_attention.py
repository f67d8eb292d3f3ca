"""The Triton window-step attention (kernels/window_attention.py) against the SDPA path, on
the CPU through Triton's interpreter: outputs, the K/V it writes into the cache, and whole cached
decodes token for token. (On the GPU: results/speed/window_attention_h200.txt.)"""
import pytest
from triton_child import interpreted

pytest.importorskip("triton")


@pytest.fixture(scope="module")
def measured():
    return interpreted("window_attention_child.py")


@pytest.mark.parametrize("case", ["mha", "gqa_mask_rows", "window_of_33", "long_sequence"])
def test_kernel_equals_sdpa_and_writes_the_same_cache(measured, case):
    r = measured[case]
    assert r["out"] < 1e-5, r          # fp32, IEEE products: summation order only
    assert r["cache"] < 1e-6, r        # the window's rotated K and its V, at the same rows and positions
    assert r["cache_changed"] > 0.1    # ... which the kernel did write


@pytest.mark.parametrize("case", ["llada_dual", "dream_prefix"])
def test_cached_decode_is_token_for_token_the_same(measured, case):
    assert measured[case]["equal"], measured[case]
    assert min(measured[case]["nfe"]) > 0


def test_which_path_a_window_step_takes(monkeypatch):
    import types

    import torch
    from kernels import window_attention as wa
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("DLLM_TRITON_ATTN", raising=False)
    assert not wa.available(torch.zeros(1, 32, 96, 128), 32)          # CPU tensors: SDPA
    gpu = lambda b, hd=128: types.SimpleNamespace(shape=(b, 32, 96, hd), is_cuda=True, device="cuda:0")
    monkeypatch.setattr(wa, "_gpu", lambda device: (132, 9))         # an H100/H200
    assert wa.available(gpu(1), 32) and wa.available(gpu(2), 32)      # 32 and 64 (row, head) pairs
    assert not wa.available(gpu(4), 32)                               # 128 > half of 132 SMs: SDPA
    assert not wa.available(gpu(1, hd=96), 32)                        # head dim not a power of two
    monkeypatch.setenv("DLLM_TRITON_ATTN", "0")
    assert not wa.available(gpu(1), 32)
    monkeypatch.delenv("DLLM_TRITON_ATTN")
    monkeypatch.setattr(wa, "_gpu", lambda device: (80, 7))          # a V100: no bf16 products
    assert not wa.available(gpu(1), 32)
