"""Probe (not adopted): prefetch the attention output projection's weight into L2 on a side stream while the
(latency-bound) window attention runs; window-step graph time with and without."""
import sys
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from bench.bench_speed import cuda_time
from models import load_model
from models.layers import CacheCall, qkv_attention
from models.llada import LLaDABlock
from decoding.cache import _GraphedWindow


@triton.jit
def _touch(w_ptr, out_ptr, n, BLOCK: tl.constexpr, ITERS: tl.constexpr):
    pid = tl.program_id(0)
    acc = tl.zeros((BLOCK,), tl.float32)
    for i in range(ITERS):
        offs = (pid * ITERS + i) * BLOCK + tl.arange(0, BLOCK)
        acc += tl.load(w_ptr + offs, mask=offs < n, other=0.0, eviction_policy="evict_last").to(tl.float32)
    tl.store(out_ptr + pid, tl.sum(acc))


def touch_triton(w, out, iters):
    n = w.numel()
    BLOCK = 4096
    grid = triton.cdiv(n, BLOCK * iters)
    _touch[(grid,)](w, out, n, BLOCK=BLOCK, ITERS=iters, num_warps=8)


MODE = {"mode": None, "iters": 8}
side = None
outs = {}


def forward(self, x, h, cos, sin, mask, layer, kv, next_norm):
    if not hasattr(self, "w_qkv"):
        self.fuse_()
    qkv = F.linear(h, self.w_qkv, self.b_qkv)
    mode = MODE["mode"]
    if mode is not None:
        cur = torch.cuda.current_stream()
        side.wait_stream(cur)
        with torch.cuda.stream(side):
            w = self.attn_out.weight
            if mode == "sum":
                outs[layer] = w.sum(dtype=torch.float32)
            else:
                o = outs.setdefault(layer, torch.empty(65536, device=w.device))
                touch_triton(w, o, MODE["iters"])
    a = qkv_attention(qkv, self.c.n_heads, self.c.kv_heads, cos, sin, layer, kv, mask)
    if mode is not None:
        cur.wait_stream(side)
    x, h = self.ff_norm.add(x, self.attn_out(a))
    return next_norm.add(x, self.ff_out(_swiglu(F.linear(h, self.w_gu, self.b_gu))))


from models.layers import swiglu as _swiglu
LLaDABlock.forward = forward

model = load_model("llada-8b", device="cuda", dtype=torch.bfloat16, no_weights=True)
side = torch.cuda.Stream()
P, G, BL = 512, 256, 32
L = P + G
print(torch.cuda.get_device_name(), "L2", torch.cuda.get_device_properties(0).L2_cache_size / 2**20, "MiB", flush=True)
for b in [int(v) for v in sys.argv[1].split(",")]:
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.cat([torch.randint(2000, 100000, (b, P), device="cuda", generator=g),
                   torch.full((b, G), model.mask_id, device="cuda")], 1)
    cache = model.new_cache(b, L)
    model.forward(x, None, kv=CacheCall(cache))
    pos = (P + torch.arange(BL, device="cuda")).expand(b, BL)
    ids = x.gather(1, pos)
    call = CacheCall(cache, pos=pos)
    res = {}
    for rnd in range(2):
        for mode, iters in ((None, 0), ("sum", 0), ("triton", 4), ("triton", 8), ("triton", 16)):
            MODE["mode"], MODE["iters"] = mode, iters
            graphed = _GraphedWindow(model, cache, ids, pos, call, False)
            t = cuda_time(lambda: graphed(ids, pos, pos, None), warmup=10, reps=60)
            res.setdefault((mode, iters), []).append(t)
            del graphed
    for k, v in res.items():
        print(f"b={b} prefetch {k}: " + ", ".join(f"{t * 1e3:.3f}" for t in v) + " ms", flush=True)
