"""Timeline of batch-1 decode steps (llada-8b random bf16, P512 G256 BL32) under torch.profiler: chrome
traces to $OUT, summarized by dual_timeline_summary.py. (The recorded run asked for 6 steps of the
no-cache spec, fewer than its 8 blocks, and stopped there, after the two dual-cache traces.)"""
import os, sys, time, gzip, shutil
import torch
from torch.profiler import profile, ProfilerActivity
from models import load_model
from decoding.base import GenConfig
from decoding.loop import decode
from decoding.registry import build_method, parse_methods

out_dir = os.environ.get("OUT", ".")
m = load_model("llada-8b", device="cuda", dtype=torch.bfloat16, no_weights=True)
g = torch.Generator().manual_seed(0)
prompts = torch.randint(300, 30000, (int(os.environ.get("B", "1")), 512), generator=g).tolist()
for spec, steps in (("threshold:cache=dual", 40), ("fixed:cache=dual", 40), ("threshold", 8)):
    gen = GenConfig(gen_length=256, block_length=32, early_stop=False, max_steps=steps)
    for _ in range(2):
        decode(m, build_method(parse_methods(spec)[0], gen), prompts, gen)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    r = decode(m, build_method(parse_methods(spec)[0], gen), prompts, gen)
    torch.cuda.synchronize()
    t_plain = time.perf_counter() - t0
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as p:
        r = decode(m, build_method(parse_methods(spec)[0], gen), prompts, gen)
        torch.cuda.synchronize()
    name = spec.replace(":", "_").replace("=", "")
    path = f"{out_dir}/trace_{name}.json"
    p.export_chrome_trace(path)
    with open(path, "rb") as f, gzip.open(path + ".gz", "wb") as z:
        shutil.copyfileobj(f, z)
    os.remove(path)
    print(spec, "steps", int(r.steps.max()), f"unprofiled {t_plain / int(r.steps.max()) * 1e3:.3f} ms/step", flush=True)
