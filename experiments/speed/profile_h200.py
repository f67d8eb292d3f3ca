"""Experiments: SDPA backend for the dual window step; where a b=1 decode step's overhead goes."""
import time, torch
from torch.nn.attention import sdpa_kernel, SDPBackend
from torch.profiler import profile, ProfilerActivity
from bench.bench_speed import cuda_time
from models import load_model
from models.layers import CacheCall
from decoding.cache import _GraphedWindow
from decoding.base import GenConfig
from decoding.loop import decode
from decoding.registry import build_method, parse_methods

def kernels(p, n, top=25):
    ka = [e for e in p.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA or "kernel" in e.key.lower() or e.key.startswith(("nvjet", "triton", "void", "cudnn", "Memcpy", "Memset"))]
    ka = [e for e in p.key_averages() if e.self_device_time_total > 0 and not e.key.startswith("aten::")]
    tot = sum(e.self_device_time_total for e in ka) / n / 1e3
    print(f"  GPU kernel time per iter {tot:.3f} ms")
    for e in sorted(ka, key=lambda e: -e.self_device_time_total)[:top]:
        print(f"  {e.self_device_time_total/n/1e3:7.3f} ms x{e.count/n:6.1f}  {e.key[:100]}")

m = load_model("llada-8b", device="cuda", dtype=torch.bfloat16, no_weights=True)
P, G, BL = 512, 256, 32
for b in (1, 8):
    g = torch.Generator(device="cuda").manual_seed(0)
    prompt = torch.randint(2000, 100000, (b, P), device="cuda", generator=g)
    x = torch.cat([prompt, torch.full((b, G), m.mask_id, device="cuda")], 1)
    cache = m.new_cache(b, P + G)
    m.forward(x, None, kv=CacheCall(cache))
    pos = (P + torch.arange(BL, device="cuda")).expand(b, BL)
    ids = x.gather(1, pos)
    call = CacheCall(cache, pos=pos)
    for name, be in (("default", None), ("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
        try:
            if be is None:
                gw = _GraphedWindow(m, cache, ids, pos, call, False)
            else:
                with sdpa_kernel(be):
                    gw = _GraphedWindow(m, cache, ids, pos, call, False)
            t = cuda_time(lambda: gw(ids, pos, pos, None), warmup=5, reps=30)
            print(f"b={b} window step, SDPA {name}: {t*1e3:.3f} ms", flush=True)
        except Exception as e:
            print(f"b={b} window step, SDPA {name}: failed {type(e).__name__}: {str(e)[:200]}")
    gw = _GraphedWindow(m, cache, ids, pos, call, False)
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(10): gw(ids, pos, pos, None)
        torch.cuda.synchronize()
    print(f"b={b} graphed window kernels:"); kernels(p, 10)
    del gw, cache
    torch.cuda.empty_cache()
# b=1 no-cache decode: per-step wall vs GPU kernel time
g = torch.Generator(device="cuda").manual_seed(0)
prompt = torch.randint(2000, 100000, (1, P), device="cuda", generator=g).tolist()
gen = GenConfig(gen_length=G, block_length=BL, early_stop=False, max_steps=G // BL)
for spec in ("fixed", "threshold"):
    decode(m, build_method(parse_methods(spec)[0], gen), prompt, gen)
    torch.cuda.synchronize(); t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as p:
        r = decode(m, build_method(parse_methods(spec)[0], gen), prompt, gen)
        torch.cuda.synchronize()
    steps = int(r.steps.max())
    print(f"b=1 decode {spec} ({steps} steps, profiled wall {(time.perf_counter()-t0)/steps*1e3:.2f} ms/step):"); kernels(p, steps, top=30)
