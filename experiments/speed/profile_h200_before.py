"""Call-1 diagnostics: kernel-time breakdown of llada-8b forwards, graph vs eager parity."""
import sys, time, torch
from torch.profiler import profile, ProfilerActivity
from models import load_model
from models.layers import CacheCall
from decoding.cache import _GraphedWindow
from decoding.base import GenConfig
from decoding.loop import decode
from decoding.registry import build_method, parse_methods

def prof(name, fn, n=3):
    for _ in range(2): fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        for _ in range(n): fn()
        torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / n
    ka = p.key_averages()
    gpu = sum(e.self_device_time_total for e in ka) / n / 1e3
    print(f"\n=== {name}: wall/iter {wall*1e3:.2f} ms (profiled), kernel time/iter {gpu:.2f} ms", flush=True)
    rows = sorted([e for e in ka if e.self_device_time_total > 0], key=lambda e: -e.self_device_time_total)[:14]
    for e in rows:
        print(f"  {e.self_device_time_total/n/1e3:8.3f} ms  x{e.count//n:4d}  {e.key[:110]}")

def parity():
    for dtype in (torch.float32, torch.bfloat16):
        m = load_model("llada-small", device="cuda", dtype=dtype, no_weights=True)
        g = torch.Generator().manual_seed(1)
        prompts = [torch.randint(300, 30000, (n,), generator=g).tolist() for n in (40, 40, 40, 40)]
        prompts_pad = [torch.randint(300, 30000, (n,), generator=g).tolist() for n in (40, 31, 25, 40)]
        gen = GenConfig(gen_length=64, block_length=16, early_stop=False)
        for spec in ("threshold:cache=dual", "fixed:cache=dual", "threshold:cache=prefix"):
            for pr, tag in ((prompts, "equal"), (prompts_pad, "padded")):
                res = []
                for graphs in (True, False):
                    m.cuda_graphs = graphs
                    meth = build_method(parse_methods(spec)[0], gen)
                    res.append(decode(m, meth, pr, gen))
                a, b = res
                same = torch.equal(a.tokens, b.tokens); nfe = torch.equal(a.nfe, b.nfe)
                diff = (a.tokens != b.tokens).sum().item()
                print(f"parity {dtype} {spec} {tag}: tokens equal {same} ({diff} differ of {a.tokens.numel()}), nfe equal {nfe}", flush=True)

def main():
    pass
    torch.backends.cuda.matmul.allow_tf32 = True
    model = load_model("llada-8b", device="cuda", dtype=torch.bfloat16, no_weights=True)
    P, G, BL = 512, 256, 32
    for b in (1, 8):
        g = torch.Generator(device="cuda").manual_seed(0)
        prompt = torch.randint(2000, 100000, (b, P), device="cuda", generator=g)
        x = torch.cat([prompt, torch.full((b, G), model.mask_id, device="cuda")], 1)
        attn = torch.ones_like(x)
        prof(f"b={b} full forward (mask)", lambda: model.forward(x, attn))
        prof(f"b={b} full forward (no mask)", lambda: model.forward(x, None))
        cache = model.new_cache(b, P + G)
        model.forward(x, attn, kv=CacheCall(cache))
        pos = (P + torch.arange(BL, device="cuda")).expand(b, BL)
        ids = x.gather(1, pos)
        call = CacheCall(cache, pos=pos)
        prof(f"b={b} dual window eager", lambda: model.forward(ids, None, positions=pos, kv=call))
        gw = _GraphedWindow(model, cache, ids, pos, call, False)
        prof(f"b={b} dual window graph", lambda: gw(ids, pos, pos, None), n=10)
        del cache, gw
        logits = torch.randn(b, G, 126464, device="cuda", dtype=torch.bfloat16)
        from decoding.select import token_stats
        prof(f"b={b} token_stats (float + softmax + gather + argmax)", lambda: token_stats(logits[:, :].float()), n=5)
        gen = GenConfig(gen_length=64, block_length=32, early_stop=False)
        meth = build_method(parse_methods("fixed")[0], gen)
        prof(f"b={b} decode fixed 64 steps (no cache)", lambda: decode(model, meth, prompt.tolist(), gen), n=1)
        torch.cuda.empty_cache()

main()
