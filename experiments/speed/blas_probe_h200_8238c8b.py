"""Per-shape matrix-product time at M tokens (LLaDA-8B window step), cuBLAS vs cuBLASLt, graphed."""
import sys
import torch
import torch.nn.functional as F
from acceleration.graphs import _blas_library

M = int(sys.argv[1]) if len(sys.argv) > 1 else 32
shapes = {"qkv": (12288, 4096), "o": (4096, 4096), "gate_up": (24576, 4096), "down": (4096, 12288), "head": (126464, 4096)}
dev = "cuda"
for name, (N, K) in shapes.items():
    n_w = 1 if name == "head" else 32
    ws = [torch.randn(N, K, device=dev, dtype=torch.bfloat16) for _ in range(n_w)]
    x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
    res = {}
    for rnd in range(2):
        for lib in ("cublas", "cublaslt"):
            with _blas_library(lib):
                for w in ws:
                    F.linear(x, w)
                torch.cuda.synchronize()
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    for w in ws:
                        F.linear(x, w)
            for _ in range(5):
                g.replay()
            torch.cuda.synchronize()
            ts = []
            for _ in range(30):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record(); g.replay(); b.record(); b.synchronize()
                ts.append(a.elapsed_time(b))
            ts.sort()
            res.setdefault(lib, []).append(ts[len(ts) // 2] / n_w)
    gb = N * K * 2 / 1e9
    print(f"M={M} {name} {N}x{K}: " + ", ".join(f"{lib} {min(v) * 1e3:.1f} us ({gb / (min(v) / 1e3) / 1e3:.2f} TB/s)" for lib, v in res.items()), flush=True)
    del ws
