"""Host turnaround around the LLaDA-8B dual-cache window graph at batch 1: replays back to back, with a
host sync after each, and with a sync plus a few eager input ops before each (what the loop did
before the window graph built its own inputs). Also checks for conditional graph nodes (absent in
torch 2.11). Run: PYTHONPATH=. python experiments/speed/window_turnaround_probe_h200_049a0c6.py"""
import time, statistics
import torch
print("torch", torch.__version__, "if-node API:", hasattr(torch.cuda.CUDAGraph, "begin_capture_to_if_node"),
      "while:", hasattr(torch.cuda.CUDAGraph, "begin_capture_to_while_node"), flush=True)
from models import load_model
from models.layers import CacheCall, compiling_for_graph
m = load_model("llada-8b", device="cuda", dtype=torch.bfloat16, no_weights=True)
P, G, BL, L = 512, 256, 32, 768
x = torch.randint(300, 30000, (1, L), device="cuda")
cache = m.new_cache(1, L)
m.forward(x, None, kv=CacheCall(cache))
block = torch.zeros(1, dtype=torch.long, device="cuda")
def prep():
    start = P + block * BL
    pos = start.unsqueeze(1) + torch.arange(BL, device="cuda")
    return x.gather(1, pos), pos
def window():
    ids, pos = prep()
    return m.forward(ids, None, positions=pos, kv=CacheCall(cache, pos=pos)).logits
pred = torch.ones((), dtype=torch.bool, device="cuda")
def capture(cond):
    with compiling_for_graph():
        s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            window()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            if cond:
                g.begin_capture_to_if_node(pred)
            out = window()
            if cond:
                g.end_capture_to_conditional_node()
    return g, out
gA, outA = capture(False)
N = 60
def per_step(fn):
    ts = []
    for _ in range(3):
        torch.cuda.synchronize(); t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(); ts.append((time.perf_counter() - t0) / N * 1e3)
    return min(ts)
ev = torch.cuda.Event()
def b2b(g): 
    for _ in range(N): g.replay()
def synced(g):
    for _ in range(N): g.replay(); ev.record(); ev.synchronize()
def synced_prep(g):   # as the loop now: sync, a few eager kernels, replay
    for _ in range(N):
        ev.record(); ev.synchronize(); a = block.clamp(max=7); s = P + a * BL; p = s.unsqueeze(1) + torch.arange(BL, device="cuda"); i = x.gather(1, p); g.replay()
host = torch.zeros(2, dtype=torch.long, pin_memory=True)
cnt = torch.zeros(2, dtype=torch.long, device="cuda")
evs = [torch.cuda.Event(), torch.cuda.Event()]
def pipelined(g):    # launch k+1, then wait for k
    g.replay(); host.copy_(cnt, non_blocking=True); evs[0].record()
    for k in range(N - 1):
        g.replay(); host.copy_(cnt, non_blocking=True); evs[(k + 1) % 2].record()
        evs[k % 2].synchronize(); host.tolist()
for name, fn in (("A plain back-to-back", lambda: b2b(gA)), ("A plain, sync each", lambda: synced(gA)),
                 ("A plain, sync + eager prep", lambda: synced_prep(gA)),
                 ("A pipelined", lambda: pipelined(gA))):
    print(f"{name}: {per_step(fn):.3f} ms/step", flush=True)
t0 = time.perf_counter()
for _ in range(N): gA.replay()
t1 = time.perf_counter(); torch.cuda.synchronize()
print(f"host time of a replay: plain {(t1 - t0) / N * 1e6:.1f} us", flush=True)
