"""GPU probe: the matrix products of a block step at M tokens (Fast-dLLM v2 7B at batch 8: M = 256),
cuBLAS (the default), cuBLASLt, and Inductor's max-autotune (its Triton templates against ATen,
benchmarked on this GPU), per shape, each as a CUDA graph over `layers` distinct weights (as the
step reads them: no weight from L2), per layer and as TFLOPS.

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
                for w in ws[:1]:
                    fn(x, w)
                err = (fn(x, ws[0]).float() - ref).abs().max().item()
                us = graphed_us(lambda: [fn(x, w) for w in ws]) / a.layers
            total[lib] = total.get(lib, 0.0) + us
            line.append(f"{lib} {us:.1f} us ({flops / us / 1e6:.0f} TFLOPS, err {err:.2g})")
        print("; ".join(line), flush=True)
    print("a layer's four products: " + "; ".join(f"{k} {v:.1f} us" for k, v in total.items()), flush=True)


if __name__ == "__main__":
    main()
