"""Probe: Triton swap-AB product out[M, N] = x[M, K] @ w[N, K]^T for small M (window steps),
against cuBLASLt, per LLaDA-8B shape, graphed, 32 distinct weights per shape."""
import sys, itertools, time
import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from acceleration.graphs import _blas_library


@triton.jit
def skinny(x, w, out, M, N, K, s_xm, s_wn, s_om, s_os, k_per,
           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
           PARTIAL: tl.constexpr, STAGES: tl.constexpr):
    pn = tl.program_id(0)
    ps = tl.program_id(1)
    n = pn * BLOCK_N + tl.arange(0, BLOCK_N)
    m = tl.arange(0, BLOCK_M)
    kk = tl.arange(0, BLOCK_K)
    k_lo = ps * k_per
    wp = w + n[:, None].to(tl.int64) * s_wn + (k_lo + kk)[None, :]
    xp = x + m[:, None] * s_xm + (k_lo + kk)[None, :]
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for k0 in tl.range(0, k_per, BLOCK_K, num_stages=STAGES):
        wt = tl.load(wp + k0)
        xt = tl.load(xp + k0, mask=m[:, None] < M, other=0.0)
        acc = tl.dot(wt, tl.trans(xt), acc)
    if PARTIAL:
        o = out + ps * s_os + m[None, :] * s_om + n[:, None]
        tl.store(o, acc, mask=m[None, :] < M)
    else:
        o = out + m[None, :] * s_om + n[:, None]
        tl.store(o, acc.to(out.dtype.element_ty), mask=m[None, :] < M)


def run(x, w, out, bn, bk, stages, warps, split):
    M, K = x.shape
    N = w.shape[0]
    k_per = K // split
    skinny[(N // bn, split)](x, w, out, M, N, K, x.stride(0), w.stride(0), out.stride(-2),
                             out.stride(0) if split > 1 else 0, k_per,
                             BLOCK_M=max(16, triton.next_power_of_2(M)), BLOCK_N=bn, BLOCK_K=bk,
                             PARTIAL=split > 1, STAGES=stages, num_warps=warps)


def timed(fn, n_w):
    fn(); torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    for _ in range(5):
        g.replay()
    torch.cuda.synchronize()
    ts = []
    for _ in range(30):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); g.replay(); b.record(); b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2] / n_w * 1e3


M = int(sys.argv[1]) if len(sys.argv) > 1 else 32
only = sys.argv[2].split(",") if len(sys.argv) > 2 else None
shapes = {"qkv": (12288, 4096), "o": (4096, 4096), "gate_up": (24576, 4096), "down": (4096, 12288), "head": (126464, 4096)}
splits = {"qkv": (1, 2), "o": (1, 2, 4), "gate_up": (1,), "down": (1, 2, 4), "head": (1,)}
dev = "cuda"
print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
for name, (N, K) in shapes.items():
    if only and name not in only:
        continue
    n_w = 1 if name == "head" else 32
    ws = [torch.randn(N, K, device=dev, dtype=torch.bfloat16) for _ in range(n_w)]
    x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
    ref = F.linear(x, ws[0]).float()
    gb = N * K * 2 / 1e9
    def lt():
        for w in ws:
            F.linear(x, w)
    with _blas_library("cublaslt"):
        base = min(timed(lt, n_w) for _ in range(2))
    print(f"M={M} {name} {N}x{K}: cublaslt {base:.1f} us ({gb / base * 1e3:.2f} TB/s)", flush=True)
    res = []
    for bn, (bk, st), warps, split in itertools.product((32, 64, 128), ((64, 6), (128, 4), (128, 6), (256, 3), (256, 4)), (4, 8), splits[name]):
        if warps == 8 and bn < 64:
            continue
        outs = [torch.empty((split, M, N) if split > 1 else (M, N), device=dev,
                            dtype=torch.float32 if split > 1 else torch.bfloat16) for _ in ws]
        try:
            run(x, ws[0], outs[0], bn, bk, st, warps, split)
            got = outs[0].float().sum(0) if split > 1 else outs[0].float()
            err = (got - ref).abs().max().item()
            def tr():
                for w, o in zip(ws, outs):
                    run(x, w, o, bn, bk, st, warps, split)
            t = min(timed(tr, n_w) for _ in range(2))
        except Exception as e:
            print(f"   bn={bn} bk={bk} st={st} w={warps} split={split}: failed {type(e).__name__}: {str(e)[:80]}", flush=True)
            continue
        res.append((t, bn, bk, st, warps, split, err))
        del outs
    res.sort()
    for t, bn, bk, st, warps, split, err in res[:6]:
        print(f"   triton bn={bn} bk={bk} st={st} w={warps} split={split}: {t:.1f} us ({gb / t * 1e3:.2f} TB/s, {base / t:.3f}x of cublaslt) err {err:.3g}", flush=True)
    del ws
