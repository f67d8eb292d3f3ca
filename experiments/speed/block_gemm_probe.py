"""GPU probe: the matrix products of a block step at M tokens (Fast-dLLM v2 7B at batch 8: M = 256),
cuBLAS (the default), cuBLASLt, and Inductor's max-autotune (its Triton templates against ATen,
benchmarked on this GPU), per shape, each as a CUDA graph over `layers` distinct weights (as the
step reads them: no weight from L2), per layer and as TFLOPS. First the gate/up product with the
SwiGLU after it (cuBLAS, then models/layers.swiglu's compiled kernel) against one Triton kernel
that computes both halves' tiles and writes silu(g) * u (`swiglu_gemm`, a sweep of its tiles).

    python experiments/speed/block_gemm_probe.py [--M 256] [--layers 28] [--no-autotune]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from acceleration.graphs import _blas_library  # noqa: E402
from bench.bench_speed import graphed_us  # noqa: E402
from models.layers import swiglu  # noqa: E402

import triton  # noqa: E402
import triton.language as tl  # noqa: E402


@triton.jit
def swiglu_gemm(x, w, out, M, F, K, s_xm, s_wn, s_om,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr):
    """out[M, F] = silu(x @ w[:F].T) * (x @ w[F:].T), each product rounded to x's dtype first."""
    pn = tl.program_id(0)
    pm = tl.program_id(1)
    m = pm * BLOCK_M + tl.arange(0, BLOCK_M)
    n = pn * BLOCK_N + tl.arange(0, BLOCK_N)
    kk = tl.arange(0, BLOCK_K)
    xp = x + m[:, None] * s_xm + kk[None, :]
    gp = w + n[:, None].to(tl.int64) * s_wn + kk[None, :]
    up = gp + F * s_wn
    acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in tl.range(0, K, BLOCK_K, num_stages=STAGES):
        xt = tl.load(xp + k0, mask=m[:, None] < M, other=0.0)
        acc_g = tl.dot(xt, tl.trans(tl.load(gp + k0)), acc_g)
        acc_u = tl.dot(xt, tl.trans(tl.load(up + k0)), acc_u)
    dt = out.dtype.element_ty
    g = acc_g.to(dt).to(tl.float32)
    u = acc_u.to(dt).to(tl.float32)
    h = (g / (1.0 + tl.exp(-g)) * u).to(dt)
    tl.store(out + m[:, None] * s_om + n[None, :], h, mask=m[:, None] < M)


def swiglu_product(x, w, bm, bn, bk, stages, warps):
    M, K = x.shape
    F = w.shape[0] // 2
    out = x.new_empty(M, F)
    swiglu_gemm[(F // bn, triton.cdiv(M, bm))](x, w, out, M, F, K, x.stride(0), w.stride(0), out.stride(0),
                                               BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, STAGES=stages, num_warps=warps)
    return out


def swiglu_sweep(a, N, K):
    """cuBLAS's gate/up product + the compiled SwiGLU against swiglu_gemm's tiles."""
    ws = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(a.layers)]
    x = torch.randn(a.M, K, device="cuda", dtype=torch.bfloat16)
    ref = swiglu(F.linear(x, ws[0])).float()
    base = graphed_us(lambda: [swiglu(F.linear(x, w)) for w in ws]) / a.layers
    res = []
    for bm, bn, bk, stages, warps in [(128, 64, 64, 4, 8), (128, 128, 64, 3, 8), (256, 64, 64, 3, 8),
                                      (64, 128, 64, 4, 4), (128, 64, 128, 3, 8), (256, 32, 64, 4, 8),
                                      (64, 64, 128, 4, 4), (128, 32, 128, 4, 4)]:
        if bm > max(a.M, 64):
            continue
        try:
            err = (swiglu_product(x, ws[0], bm, bn, bk, stages, warps).float() - ref).abs().max().item()
            us = graphed_us(lambda: [swiglu_product(x, w, bm, bn, bk, stages, warps) for w in ws]) / a.layers
            res.append((us, f"{bm}x{bn}x{bk}/{stages} w{warps}", err))
        except Exception as e:   # out of shared memory or registers for this tile
            print(f"  {bm}x{bn}x{bk}/{stages} w{warps}: {type(e).__name__}", flush=True)
    res.sort()
    print(f"gate/up + SwiGLU [{a.M}x{K}]x[{K}x{N}]: cuBLAS + compiled SwiGLU {base:.1f} us; swiglu_gemm "
          + "; ".join(f"{t} {us:.1f} us (err {e:.2g})" for us, t, e in res), flush=True)

# (out features, in features) of Fast-dLLM v2 7B (Qwen2.5-7B) and SDAR-8B (Qwen3-8B)
SHAPES = {"fast-dllm-v2-7b": {"qkv": (4608, 3584), "o": (3584, 3584), "gate_up": (37888, 3584), "down": (3584, 18944)},
          "sdar-8b": {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (24576, 4096), "down": (4096, 12288)}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--M", type=int, default=256)
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--config", default="fast-dllm-v2-7b", choices=sorted(SHAPES))
    ap.add_argument("--no-autotune", action="store_true")
    a = ap.parse_args()
    print(torch.cuda.get_device_name(), f"M={a.M}, {a.layers} weights a shape, {a.config}", flush=True)
    swiglu_sweep(a, *SHAPES[a.config]["gate_up"])   # first: autotuning below may run long
    tuned = torch.compile(F.linear, mode="max-autotune-no-cudagraphs", dynamic=False)
    total = {}
    for name, (N, K) in SHAPES[a.config].items():
        ws = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(a.layers)]
        x = torch.randn(a.M, K, device="cuda", dtype=torch.bfloat16)
        flops = 2 * a.M * N * K
        ref = F.linear(x, ws[0]).float()
        line = [f"{name} [{a.M}x{K}]x[{K}x{N}]"]
        libs = [("cublas", None), ("cublaslt", None)] + ([] if a.no_autotune else [("autotune", tuned)])
        for lib, fn in libs:
            if fn is None:
                with _blas_library(lib):
                    us = graphed_us(lambda: [F.linear(x, w) for w in ws]) / a.layers
                err = 0.0
            else:
                try:
                    err = (fn(x, ws[0]).float() - ref).abs().max().item()
                    us = graphed_us(lambda: [fn(x, w) for w in ws]) / a.layers
                except Exception as e:   # Inductor's autotuning failed on this GPU or build
                    line.append(f"{lib} failed ({type(e).__name__})")
                    continue
            total[lib] = total.get(lib, 0.0) + us
            line.append(f"{lib} {us:.1f} us ({flops / us / 1e6:.0f} TFLOPS, err {err:.2g})")
        print("; ".join(line), flush=True)
    print("a layer's four products: " + "; ".join(f"{k} {v:.1f} us" for k, v in total.items()), flush=True)


if __name__ == "__main__":
    main()
