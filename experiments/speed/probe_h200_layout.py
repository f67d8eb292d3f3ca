"""GPU checks and measurements for the token-major KV cache, the fused add+norm and the lookahead
loop (results/speed/REPORT.md): compiled vs eager logits, window vs full-forward logits, host cost
of a graph launch, window-step kernels by profile. Run: PYTHONPATH=. python results/speed/probe_h200_layout.py
Ran at commit b4713f0.
"""
import os, statistics, time
import torch
from torch.profiler import profile, ProfilerActivity
from bench.bench_speed import cuda_time
from models import load_model
from models.layers import CacheCall
from decoding.cache import _GraphedWindow
from acceleration.graphs import full_forward_graph


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def kernels(p, n, top=22):
    ka = [e for e in p.key_averages() if e.self_device_time_total > 0 and not e.key.startswith("aten::")]
    tot = sum(e.self_device_time_total for e in ka) / n / 1e3
    cnt = sum(e.count for e in ka) / n
    print(f"  GPU kernel time per call {tot:.3f} ms, {cnt:.0f} kernels per call")
    for e in sorted(ka, key=lambda e: -e.self_device_time_total)[:top]:
        print(f"  {e.self_device_time_total / n / 1e3:7.3f} ms x{e.count / n:6.1f}  {e.key[:96]}")


# A. correctness on the GPU (llada-small, random weights)
for dtype in (torch.float32, torch.bfloat16):
    m = load_model("llada-small", device="cuda", dtype=dtype, no_weights=True)
    g = torch.Generator(device="cuda").manual_seed(0)
    P, G, BL = 200, 64, 16
    x = torch.randint(300, 30000, (4, P + G), device="cuda", generator=g)
    os.environ["DLLM_COMPILE"] = "0"
    eager = m.forward(x, None).logits
    os.environ["DLLM_COMPILE"] = "1"
    x_big = x.repeat(4, 4)[:, :2048 // 4 * 4]                 # >= 2048 tokens per call: the compiled path
    comp_big = m.forward(x_big, None).logits
    os.environ["DLLM_COMPILE"] = "0"
    eager_big = m.forward(x_big, None).logits
    os.environ["DLLM_COMPILE"] = "1"
    print(f"{str(dtype)[6:]}: compiled vs eager logits rel err {rel(comp_big, eager_big):.2e}; "
          f"argmax agree {(comp_big.argmax(-1) == eager_big.argmax(-1)).float().mean().item():.4f}")
    cache = m.new_cache(4, P + G)
    full = m.forward(x, None, kv=CacheCall(cache)).logits
    pos = (P + 16 + torch.arange(16, device="cuda")).expand(4, 16)   # a window fed what the refresh saw
    win = m.forward(x.gather(1, pos), None, positions=pos, kv=CacheCall(cache, pos=pos)).logits
    ref = full[:, P + 16:P + 32]
    print(f"{str(dtype)[6:]}: window vs full forward logits (window positions) rel err {rel(win, ref):.2e}; "
          f"argmax agree {(win.argmax(-1) == ref.argmax(-1)).float().mean().item():.4f}; "
          f"refresh logits vs no-cache rel err {rel(full, eager):.2e}")
    del m, cache
    torch.cuda.empty_cache()

# B. host cost of launching the graphs, LLaDA-8B batch 1
m = load_model("llada-8b", device="cuda", dtype=torch.bfloat16, no_weights=True)
P, G, BL = 512, 256, 32
for b in (1, 8):
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.cat([torch.randint(2000, 100000, (b, P), device="cuda", generator=g),
                   torch.full((b, G), m.mask_id, device="cuda")], 1)
    if b == 1:
        graph = full_forward_graph(m, x, None, False)
        graph(x, None)
        host = []
        for _ in range(20):
            torch.cuda.synchronize()
            t0 = time.perf_counter(); graph(x, None); host.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        back = []
        for _ in range(20):   # launched while the previous replay still runs
            t0 = time.perf_counter(); graph(x, None); back.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        print(f"b=1 full-forward graph: host time of a call (copy + replay) {statistics.median(host) * 1e3:.3f} ms "
              f"on an idle GPU, {statistics.median(back) * 1e3:.3f} ms behind a running one")
        del graph
    cache = m.new_cache(b, P + G)
    m.forward(x, None, kv=CacheCall(cache))
    pos = (P + torch.arange(BL, device="cuda")).expand(b, BL)
    ids = x.gather(1, pos)
    gw = _GraphedWindow(m, cache, ids, pos, CacheCall(cache, pos=pos), False)
    t = cuda_time(lambda: gw(ids, pos, pos, None), warmup=5, reps=30)
    host = []
    for _ in range(20):
        torch.cuda.synchronize()
        t0 = time.perf_counter(); gw(ids, pos, pos, None); host.append(time.perf_counter() - t0)
    torch.cuda.synchronize()
    print(f"b={b} window step (graph) {t * 1e3:.3f} ms; host time of a call {statistics.median(host) * 1e3:.3f} ms")
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(10):
            gw(ids, pos, pos, None)
        torch.cuda.synchronize()
    print(f"b={b} graphed window step kernels:")
    kernels(p, 10)
    del gw, cache
    torch.cuda.empty_cache()
