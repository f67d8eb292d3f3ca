"""The Triton window-step attention (bench/models/window_attention.py) on the GPU.

  --parity  kernel vs RoPE + index_put + SDPA: outputs and the written cache (bf16 and fp32, MHA
            and GQA, key masks, a 33-token window);
  --sweep   launch settings, 32 layers' attention captured in one CUDA graph (cold K/V, as in a
            step), LLaDA-8B shapes at batch 1 and 8;
  --step    LLaDA-8B (random weights, bf16) dual-cache window step, prompt 512 + gen 256, block 32,
            as the decode loop replays it (CUDA graph), attention by SDPA or Triton, products by
            cuBLAS or cuBLASLt, batch 1, 2, 4, 8.
Run: PYTHONPATH=. python results/speed/window_attention_h200.py --parity --sweep --step
Record: window_attention_h200.txt, measured at 478bf27 (before the kernels were limited to batches
whose SDPA grid fills at most half the SMs, so its "as the loop builds it" at batch 4 used them;
and with a local copy of bench_speed.cuda_time taking one warm-up call instead of three).
"""
import os
import statistics
import sys

import torch

from bench.bench_speed import cuda_time
from models import window_attention as wa
from models.layers import CacheCall, KVCache, attend, fused_qkv_rope, rope_cos_sin

dev = "cuda"


def graph_time(fn, reps=30):
    """Median seconds of one replay of fn captured as a CUDA graph."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    for _ in range(3):
        g.replay()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / 1000)
    return statistics.median(ts)


print(torch.cuda.get_device_name(), "torch", torch.__version__, flush=True)
if "--parity" in sys.argv:
    print("== parity: Triton window attention vs RoPE + index_put + SDPA")
    for (B, L, H, HKV, hd, W, masked, dt) in [(1, 768, 32, 32, 128, 32, False, torch.bfloat16),
                                              (8, 768, 32, 32, 128, 32, False, torch.bfloat16),
                                              (3, 300, 28, 4, 128, 33, True, torch.bfloat16),
                                              (3, 300, 8, 2, 64, 33, True, torch.float32)]:
        torch.manual_seed(0)
        cache = torch.randn(B, L, 2 * HKV, hd, device=dev).to(dt)
        qkv = torch.randn(B, W, H + 2 * HKV, hd, device=dev).to(dt)
        pos = torch.tensor([100 + 7 * i for i in range(B)], device=dev)[:, None] + torch.arange(W, device=dev)
        cos, sin = rope_cos_sin(pos, hd, 500000.0, torch.float32)
        km = torch.ones(B, L, dtype=torch.bool, device=dev)
        if masked:
            km[1, :40] = False
            km[2, :90] = False
        c1, c2 = cache.clone(), cache.clone()
        ref = attend(fused_qkv_rope(qkv.flatten(2), H, HKV, cos, sin), H, 0,
                     CacheCall(KVCache([c1]), pos=pos, key_mask=km if masked else None), None)
        out = wa.window_attention(qkv, cos, sin, H, c2, torch.arange(B, device=dev), pos, km if masked else None)
        rel = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
        print(f"B={B} L={L} H={H}/{HKV} hd={hd} W={W} mask={masked} {dt}: out max abs "
              f"{(out.float() - ref.float()).abs().max().item():.3g}, rel {rel:.3g}; cache max abs "
              f"{(c1.float() - c2.float()).abs().max().item():.3g}", flush=True)

if "--sweep" in sys.argv:
    H, L, W, hd = 32, 768, 32, 128
    default = (wa.BLOCK_N, wa.CHUNK_TILES, wa.MIN_PROGRAMS, wa.NUM_WARPS, wa.NUM_STAGES)
    for b in (1, 8):
        print(f"== sweep, batch {b}: 32 layers in one graph, per layer (default {default})")
        qkvs = [torch.randn(b, W, 3 * H, hd, device=dev, dtype=torch.bfloat16) for _ in range(32)]
        caches = [torch.randn(b, L, 2 * H, hd, device=dev, dtype=torch.bfloat16) for _ in range(32)]
        pos = (512 + torch.arange(W, device=dev)).expand(b, W).contiguous()
        cos, sin = rope_cos_sin(pos, hd, 500000.0, torch.float32)
        rows = torch.arange(b, device=dev)
        kvb = b * L * 2 * H * hd * 2
        for cfg in [default, (64, 1, 528, 4, 2), (64, 2, 528, 4, 2), (64, 4, 264, 4, 3), (32, 2, 528, 4, 2),
                    (32, 4, 264, 4, 3), (32, 6, 264, 4, 3), (16, 8, 264, 4, 3), (32, 4, 264, 8, 3), (64, 12, 132, 4, 3)]:
            wa.BLOCK_N, wa.CHUNK_TILES, wa.MIN_PROGRAMS, wa.NUM_WARPS, wa.NUM_STAGES = cfg
            t = graph_time(lambda: [wa.window_attention(q, cos, sin, H, c, rows, pos, None) for q, c in zip(qkvs, caches)])
            print(f"  BLOCK_N, CHUNK_TILES, MIN_PROGRAMS, warps, stages = {cfg}: {t / 32 * 1e6:.2f} us "
                  f"({kvb / (t / 32) / 1e12:.2f} TB/s of K/V)", flush=True)
        wa.BLOCK_N, wa.CHUNK_TILES, wa.MIN_PROGRAMS, wa.NUM_WARPS, wa.NUM_STAGES = default
        del qkvs, caches
        torch.cuda.empty_cache()

if "--step" in sys.argv:
    from models import load_model
    from decoding.cache import _GraphedWindow
    from acceleration.graphs import GraphedCall
    import decoding.cache as mc
    m = load_model("llada-8b", device=dev, dtype=torch.bfloat16, no_weights=True)
    P, G, BL = 512, 256, 32
    print("== LLaDA-8B dual-cache window step (graph replay), ms")
    for b in (1, 2, 4, 8):
        g = torch.Generator(device=dev).manual_seed(0)
        x = torch.cat([torch.randint(2000, 100000, (b, P), device=dev, generator=g),
                       torch.full((b, G), m.mask_id, device=dev)], 1)
        cache = m.new_cache(b, P + G)
        m.forward(x, None, kv=CacheCall(cache))
        pos = (P + torch.arange(BL, device=dev)).expand(b, BL)
        ids = x.gather(1, pos)
        line = []
        for attn, flag in (("SDPA", "0"), ("Triton", "1")):
            for blas in ("cublas", "cublaslt"):
                os.environ["DLLM_TRITON_ATTN"] = flag
                window = lambda ids, positions, p, km: m.forward(ids, None, positions=positions,
                                                                  kv=CacheCall(cache, pos=p, key_mask=km))
                gw = GraphedCall(window, ids, pos, pos, None, blas=blas)
                line.append(f"{attn}+{blas} {cuda_time(lambda: gw(ids, pos, pos, None), reps=30) * 1e3:.3f}")
                del gw
        os.environ["DLLM_TRITON_ATTN"] = "1"
        gw = _GraphedWindow(m, cache, ids, pos, CacheCall(cache, pos=pos), False)   # what the loop builds
        line.append(f"as the loop builds it {cuda_time(lambda: gw(ids, pos, pos, None), reps=30) * 1e3:.3f}")
        del gw
        print(f"b={b}: " + ", ".join(line), flush=True)
