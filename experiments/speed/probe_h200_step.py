"""Where the remaining dual-step and batch-1 loop time goes (results/speed/REPORT.md): matrix
product layouts, attention backends on the token-major cache, back-to-back graph launches, the
lookahead loop with one graph or two alternating ones, and the window step's kernels.
Run: PYTHONPATH=. python experiments/speed/probe_h200_step.py (LLaDA-8B only in the process).
Ran at commit 303c74c; the lookahead loop it compares (`methods/loop.py` `_Lookahead`) was removed
afterwards for want of a measurable gain (results/speed/REPORT.md).
"""
import statistics, time
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
from torch.profiler import profile, ProfilerActivity
import decoding.loop as loop
from models import load_model
from models.layers import CacheCall
from decoding.base import GenConfig
from decoding.cache import _GraphedWindow
from acceleration.graphs import GraphedCall
from decoding.registry import build_method, parse_methods

dev = "cuda"


def per_call(fns, reps=20):
    """Median GPU seconds per call over rounds that call each fn once (rotating buffers: no L2 reuse)."""
    for f in fns:
        f()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for f in fns:
            f()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / 1000 / len(fns))
    return statistics.median(ts)


print("== matrix products: x [M, K] times W^T; W stored [N, K] (as loaded) or as the transpose of a [K, N] tensor")
for K, N, what in ((4096, 12288, "qkv"), (4096, 4096, "attn_out"), (4096, 24576, "ff_proj+up"),
                   (12288, 4096, "ff_out"), (4096, 126464, "lm head")):
    copies = max(2, int(400e6 // (K * N * 2)))
    Ws = [torch.randn(N, K, device=dev, dtype=torch.bfloat16) for _ in range(copies)]
    WTs = [w.t().contiguous() for w in Ws]
    line = []
    for M in (32, 256):
        x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
        t_nk = per_call([lambda w=w: F.linear(x, w) for w in Ws])
        t_kn = per_call([lambda w=w: F.linear(x, w.t()) for w in WTs])
        gb = K * N * 2 / 1e9
        line.append(f"M={M}: [N,K] {t_nk * 1e6:.1f} us ({gb / t_nk / 1e3:.2f} TB/s), [K,N]^T {t_kn * 1e6:.1f} us ({gb / t_kn / 1e3:.2f} TB/s)")
    print(f"{what:11s} K={K} N={N}: " + "; ".join(line), flush=True)
    del Ws, WTs
torch.cuda.empty_cache()

print("== attention of a 32-token window against 768 cached keys (32 heads, hd 128), per layer, strided views")
for b in (1, 8):
    H, L, W, hd = 32, 768, 32, 128
    qkvs = [torch.randn(b, W, 3 * H, hd, device=dev, dtype=torch.bfloat16) for _ in range(32)]
    caches = [torch.randn(b, L, 2 * H, hd, device=dev, dtype=torch.bfloat16) for _ in range(32)]
    views = [(q[:, :, :H].transpose(1, 2), c[:, :, :H].transpose(1, 2), c[:, :, H:].transpose(1, 2)) for q, c in zip(qkvs, caches)]
    cont = [tuple(t.contiguous() for t in v) for v in views]
    for name, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
                     ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
        out = []
        for tag, vs in (("strided", views), ("contiguous", cont)):
            try:
                with sdpa_kernel(be):
                    t = per_call([lambda v=v: F.scaled_dot_product_attention(*v) for v in vs])
                out.append(f"{tag} {t * 1e6:.1f} us")
            except Exception as e:
                out.append(f"{tag} failed ({type(e).__name__})")
        print(f"b={b} {name}: " + ", ".join(out), flush=True)
    del qkvs, caches, views, cont
torch.cuda.empty_cache()

m = load_model("llada-8b", device=dev, dtype=torch.bfloat16, no_weights=True)
P, G, BL = 512, 256, 32
g = torch.Generator(device=dev).manual_seed(0)
prompt = torch.randint(2000, 100000, (1, P), device=dev, generator=g)
x = torch.cat([prompt, torch.full((1, G), m.mask_id, device=dev)], 1)

print("== graph launches, LLaDA-8B full forward at batch 1")
ga = GraphedCall(lambda ids: m.forward(ids, None).logits, x)
gb = GraphedCall(lambda ids: m.forward(ids, None).logits, x)
for tag, seq in (("same graph", [ga, ga]), ("two graphs alternating", [ga, gb])):
    torch.cuda.synchronize()
    host, t0 = [], time.perf_counter()
    for i in range(20):
        s = time.perf_counter()
        seq[i % 2](x)
        host.append(time.perf_counter() - s)
    torch.cuda.synchronize()
    total = time.perf_counter() - t0
    print(f"{tag}: 20 back-to-back calls, host time per call median {statistics.median(host) * 1e3:.3f} ms, "
          f"max {max(host) * 1e3:.3f} ms; wall per forward {total / 20 * 1e3:.3f} ms", flush=True)


class Alternating:
    def __init__(self, a, b):
        self.g, self.i = [a, b], 0

    def __call__(self, x, attn):
        self.i ^= 1
        return self.g[self.i](x, attn)


print("== decode loop at batch 1, 256 steps (fixed, early stop off)")
fwd_graphs = [GraphedCall(lambda ids, am: m.forward(ids, am), x, None) for _ in range(2)]
fwd = per_call([lambda: fwd_graphs[0](x, None)], reps=10)
gen = GenConfig(gen_length=G, block_length=BL, early_stop=False)
warm = GenConfig(gen_length=G, block_length=BL, early_stop=False, max_steps=G // BL)
real_judge = loop._Lookahead.surely_continues
for tag, graph_fn, judge in (("no lookahead (host sync before each forward)", lambda *a: fwd_graphs[0], lambda self: False),
                             ("lookahead, one graph", lambda *a: fwd_graphs[0], real_judge),
                             ("lookahead, two graphs alternating", lambda *a, alt=Alternating(*fwd_graphs): alt, real_judge),
                             ("no lookahead again", lambda *a: fwd_graphs[0], lambda self: False)):
    loop.full_forward_graph, loop._Lookahead.surely_continues = graph_fn, judge
    for spec in ("fixed", "threshold"):
        loop.decode(m, build_method(parse_methods(spec)[0], warm), prompt.tolist(), warm)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        r = loop.decode(m, build_method(parse_methods(spec)[0], gen), prompt.tolist(), gen)
        torch.cuda.synchronize()
        step = (time.perf_counter() - t0) / int(r.steps.max())
        print(f"{tag}, {spec}: {step * 1e3:.2f} ms/step, forward {fwd * 1e3:.2f} ms, overhead {100 * (step - fwd) / step:.2f}%", flush=True)

print("== dual window step kernels, batch 1 (graph)")
cache = m.new_cache(1, P + G)
m.forward(x, None, kv=CacheCall(cache))
pos = (P + torch.arange(BL, device=dev)).expand(1, BL)
ids = x.gather(1, pos)
gw = _GraphedWindow(m, cache, ids, pos, CacheCall(cache, pos=pos), False)
print(f"window step {per_call([lambda: gw(ids, pos, pos, None)], reps=30) * 1e3:.3f} ms", flush=True)
with profile(activities=[ProfilerActivity.CUDA]) as p:
    for _ in range(10):
        gw(ids, pos, pos, None)
    torch.cuda.synchronize()
ka = [e for e in p.key_averages() if e.self_device_time_total > 0 and not e.key.startswith("aten::")]
print(f"  GPU kernel time per call {sum(e.self_device_time_total for e in ka) / 10e3:.3f} ms, "
      f"{sum(e.count for e in ka) / 10:.0f} kernels")
for e in sorted(ka, key=lambda e: -e.self_device_time_total)[:16]:
    print(f"  {e.self_device_time_total / 10e3:7.3f} ms x{e.count / 10:6.1f}  {e.key[:96]}")
