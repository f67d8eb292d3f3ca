"""Probe: does programmatic dependent launch (PDL) between back-to-back Triton products at M=32
hide the per-kernel ramp? Chain of 32 x (qkv 12288x4096 -> o 4096x4096 -> gate_up+SwiGLU 24576x4096
-> down 4096x12288) with distinct weights, graphed; variants: no PDL, PDL (trigger at start, wait
before reading x), PDL + L2 prefetch of the first weight tiles before the wait. Also cuBLASLt and
the fused gate_up+SwiGLU against cuBLASLt gate_up + compiled SwiGLU."""
import sys
import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_wait, gdc_launch_dependents
from acceleration.graphs import _blas_library
from models.layers import swiglu, compiling_for_graph


@triton.jit
def _prefetch(ptrs):
    return tl.inline_asm_elementwise("prefetch.global.L2 [$1]; mov.u32 $0, 0;", "=r,l", [ptrs],
                                     dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def mm(x, w, out, M, N, K, s_xm, s_wn, s_om, F_OFF,
       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr,
       PDL: tl.constexpr, PREFETCH: tl.constexpr, SWIGLU: tl.constexpr):
    pn = tl.program_id(0)
    n = pn * BLOCK_N + tl.arange(0, BLOCK_N)
    m = tl.arange(0, BLOCK_M)
    kk = tl.arange(0, BLOCK_K)
    wp = w + n[:, None].to(tl.int64) * s_wn + kk[None, :]
    if PDL:
        gdc_launch_dependents()
        if PREFETCH > 0:
            pf = w + n[:, None].to(tl.int64) * s_wn + tl.arange(0, PREFETCH)[None, :] * 64
            _prefetch(pf)
            if SWIGLU:
                _prefetch(pf + F_OFF * s_wn)
        gdc_wait()
    xp = x + m[:, None] * s_xm + kk[None, :]
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    acc2 = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for k0 in tl.range(0, K, BLOCK_K, num_stages=STAGES):
        xt = tl.load(xp + k0, mask=m[:, None] < M, other=0.0)
        acc = tl.dot(tl.load(wp + k0), tl.trans(xt), acc)
        if SWIGLU:
            acc2 = tl.dot(tl.load(wp + F_OFF * s_wn + k0), tl.trans(xt), acc2)
    if SWIGLU:
        g = acc.to(out.dtype.element_ty).to(tl.float32)
        u = acc2.to(out.dtype.element_ty).to(tl.float32)
        acc = g / (1.0 + tl.exp(-g)) * u
    o = out + m[None, :] * s_om + n[:, None]
    tl.store(o, acc.to(out.dtype.element_ty), mask=m[None, :] < M)


CFG = dict(BLOCK_N=64, BLOCK_K=128, STAGES=4)


def run(x, w, out, pdl, prefetch, swiglu_=False, bn=64, stages=4):
    M, K = x.shape
    N = w.shape[0] // 2 if swiglu_ else w.shape[0]
    mm[(N // bn,)](x, w, out, M, N, K, x.stride(0), w.stride(0), out.stride(0), N,
                   BLOCK_M=32, BLOCK_N=bn, BLOCK_K=128, STAGES=stages, PDL=pdl, PREFETCH=prefetch,
                   SWIGLU=swiglu_, num_warps=4, launch_pdl=pdl)


def timed(fn, n):
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
    return ts[len(ts) // 2] / n * 1e3


dev = "cuda"
L = 32
D, FF, Q = 4096, 12288, 12288
layers = [dict(qkv=torch.randn(Q, D, device=dev, dtype=torch.bfloat16) * 0.02,
               o=torch.randn(D, D, device=dev, dtype=torch.bfloat16) * 0.02,
               gu=torch.randn(2 * FF, D, device=dev, dtype=torch.bfloat16) * 0.02,
               down=torch.randn(D, FF, device=dev, dtype=torch.bfloat16) * 0.02) for _ in range(L)]
x = torch.randn(32, D, device=dev, dtype=torch.bfloat16)
bq = torch.empty(32, Q, device=dev, dtype=torch.bfloat16)
bo = torch.empty(32, D, device=dev, dtype=torch.bfloat16)
bh = torch.empty(32, FF, device=dev, dtype=torch.bfloat16)
bd = torch.empty(32, D, device=dev, dtype=torch.bfloat16)

# correctness of the fused gate_up + SwiGLU
run(x, layers[0]["gu"], bh, False, 0, True)
ref = swiglu(F.linear(x, layers[0]["gu"]))
print("swiglu fused max abs err", (bh.float() - ref.float()).abs().max().item(), "ref max", ref.abs().max().item())


def chain_triton(pdl, prefetch):
    def f():
        for l in layers:
            run(x, l["qkv"], bq, pdl, prefetch)
            run(bq[:, :D], l["o"], bo, pdl, prefetch)
            run(bo, l["gu"], bh, pdl, prefetch, True)
            run(bh, l["down"], bd, pdl, prefetch)
    return f


def chain_lt():
    def f():
        for l in layers:
            F.linear(x, l["qkv"])
            F.linear(bq[:, :D], l["o"])
            h = swiglu(F.linear(bo, l["gu"]))
            F.linear(h, l["down"])
    return f


print(torch.cuda.get_device_name(), torch.__version__, triton.__version__)
for rnd in range(2):
    with _blas_library("cublaslt"), compiling_for_graph():
        print(f"round {rnd} cublaslt + compiled swiglu: {timed(chain_lt(), L):.1f} us/layer", flush=True)
    for pdl, pf in ((False, 0), (True, 0), (True, 4), (True, 16)):
        print(f"round {rnd} triton pdl={pdl} prefetch={pf}: {timed(chain_triton(pdl, pf), L):.1f} us/layer", flush=True)
# per product, no PDL vs PDL, 32 back to back of one shape
for name, N, K, sw in (("qkv", Q, D, False), ("o", D, D, False), ("gu+swiglu", 2 * FF, D, True), ("down", D, FF, False)):
    xs = torch.randn(32, K, device=dev, dtype=torch.bfloat16)
    ws = [l[{"qkv": "qkv", "o": "o", "gu+swiglu": "gu", "down": "down"}[name]] for l in layers]
    ob = torch.empty(32, N // 2 if sw else N, device=dev, dtype=torch.bfloat16)
    res = []
    for pdl, pf in ((False, 0), (True, 0), (True, 4)):
        def f():
            for w in ws:
                run(xs[:, :K], w, ob, pdl, pf, sw)
        res.append(f"pdl={pdl} pf={pf} {timed(f, L):.1f}")
    with _blas_library("cublaslt"), compiling_for_graph():
        def g():
            for w in ws:
                y = F.linear(xs[:, :K], w)
                if sw:
                    swiglu(y)
        res.append(f"cublaslt{'+swiglu' if sw else ''} {timed(g, L):.1f}")
    print(name, " | ".join(res), "us", flush=True)
