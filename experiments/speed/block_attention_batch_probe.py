"""GPU probe: a block step's attention alone, SDPA (what serves at batch 4 and 8 for blocks of 32)
against kernels/block_attention.py's Triton kernels at several program counts, on the shapes of
Fast-dLLM v2 7B (28 q heads, 4 kv), LLaDA2.0-mini (16 q heads, 4 kv) and SDAR-8B (32 q heads, 8 kv),
head dim 128, bf16, a cache of K slots of which the first `seen` are the prefix, the fed block seeing
itself. SDPA is timed as it serves (cuDNN on an H100) and forced to its memory-efficient kernel
(`sdpa[efficient]`), which also takes the additive mask. Each call is timed as a CUDA graph of 20 calls replayed (events), per call; the Triton
output's largest difference from SDPA's is printed beside it. `--packed` times instead the kernel that
packs a kv head's q heads into one program (`block_attention(..., packed=True)`) over a sweep of
its rows per program, keys per tile, program count and warps, beside the kernels as they serve;
with `--stages 2,3,4`, at batch 8 only, over software-pipelining stages and the sweep's fastest rows/warps
(`--packed-programs`: the program counts, 132 and 264 unless given).

    python experiments/speed/block_attention_batch_probe.py [--K 832] [--seen 640] [--packed [--stages 2,3,4]]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import kernels.block_attention as ba  # noqa: E402
from bench.bench_speed import cuda_time, graphed_us  # noqa: E402

SHAPES = {"fast-dllm-v2-7b": (28, 4), "llada2-mini": (16, 4), "sdar-8b": (32, 8)}


def graphed(fn, calls: int = 20):
    fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(calls):
            fn()
    return lambda: g.replay(), calls


def step_inputs(B, W, H, Hkv, K, seen, hd=128, dev="cuda"):
    """qkv, kv, the bool key mask and SDPA's additive mask of a block step after `seen` prefix keys."""
    g = torch.Generator(device=dev).manual_seed(0)
    qkv = torch.randn(B, W, H + 2 * Hkv, hd, device=dev, dtype=torch.bfloat16, generator=g)
    kv = torch.randn(B, K, 2 * Hkv, hd, device=dev, dtype=torch.bfloat16, generator=g)
    key_mask = torch.zeros(B, 1, W, K, dtype=torch.bool, device=dev)
    key_mask[..., :seen + W] = True
    mask = torch.zeros(key_mask.shape, dtype=torch.bfloat16, device=dev).masked_fill_(~key_mask, -65504.0)
    return qkv, kv, key_mask, mask


def packed_sweep(a):
    """The kernels as they serve (per head, or packed where `packs` says) against the packed one over its launch settings."""
    print(torch.cuda.get_device_name(), f"K={a.K}, prefix seen {a.seen}; packed sweep", flush=True)
    settings = [(m, n, p, w, ba.window_attention.NUM_STAGES) for m in (64, 128) for n in (32, 64)
                for p in (132, 264, 528) for w in (4, 8)]
    if a.stages:
        settings = [(64, n, p, 4, int(s)) for n in (32, 64) for p in a.packed_programs for s in a.stages.split(",")]
    for name, (H, Hkv) in SHAPES.items():
        for B in ((8,) if a.stages else (1, 8)):
            W = 4 if name == "sdar-8b" else 32
            qkv, kv, key_mask, mask = step_inputs(B, W, H, Hkv, a.K, a.seen)
            ref = ba.sdpa(qkv, H, kv, mask)
            base = graphed_us(lambda: ba.block_attention(qkv, H, kv, key_mask))
            times = []
            for m, n, p, w, st in settings:
                ba.PACKED_BLOCK_M, ba.PACKED_BLOCK_N, ba.PACKED_PROGRAMS, ba.PACKED_WARPS = m, n, p, w
                ba.window_attention.NUM_STAGES = st
                err = (ba.block_attention(qkv, H, kv, key_mask, True).float() - ref.float()).abs().max().item()
                times.append((graphed_us(lambda: ba.block_attention(qkv, H, kv, key_mask, True)), m, n, p, w, st, err))
            times.sort()
            best = "; ".join(f"{t:.1f} us m{m} n{n} p{p} w{w} s{st} (err {e:.2g})" for t, m, n, p, w, st, e in times[:4])
            print(f"{name} W={W} B={B}: as it serves {base:.1f} us; packed best {best}; worst {times[-1][0]:.1f}",
                  flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--K", type=int, default=832)
    ap.add_argument("--seen", type=int, default=640)
    ap.add_argument("--programs", default="264,528,1056")
    ap.add_argument("--packed", action="store_true")
    ap.add_argument("--stages", default="", help="with --packed: these pipelining stages, batch 8 only")
    ap.add_argument("--packed-programs", default="132,264", type=lambda t: [int(x) for x in t.split(",")],
                    help="with --stages: these program counts (64 at LLaDA2.0-mini's batch 8: one chunk of keys a program)")
    a = ap.parse_args()
    if a.packed:
        return packed_sweep(a)
    dev, hd = "cuda", 128
    print(torch.cuda.get_device_name(), f"K={a.K}, prefix seen {a.seen}", flush=True)
    for name, (H, Hkv) in SHAPES.items():
        for W in ((4, 8) if name == "sdar-8b" else (32, 64)):
            for B in (1, 2, 4, 8):
                g = torch.Generator(device=dev).manual_seed(0)
                qkv = torch.randn(B, W, H + 2 * Hkv, hd, device=dev, dtype=torch.bfloat16, generator=g)
                kv = torch.randn(B, a.K, 2 * Hkv, hd, device=dev, dtype=torch.bfloat16, generator=g)
                key_mask = torch.zeros(B, 1, W, a.K, dtype=torch.bool, device=dev)
                key_mask[..., :a.seen + W] = True
                mask = torch.zeros(key_mask.shape, dtype=torch.bfloat16, device=dev).masked_fill_(~key_mask, -65504.0)
                ref = ba.sdpa(qkv, H, kv, mask)
                fn, n = graphed(lambda: ba.sdpa(qkv, H, kv, mask))
                line = [f"{name} W={W} B={B}: sdpa {cuda_time(fn) / n * 1e6:.1f} us"]
                try:
                    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
                        err = (ba.sdpa(qkv, H, kv, mask).float() - ref.float()).abs().max().item()
                        fn, n = graphed(lambda: ba.sdpa(qkv, H, kv, mask))
                    line.append(f"sdpa[efficient] {cuda_time(fn) / n * 1e6:.1f} us (err {err:.2g})")
                except RuntimeError as e:   # no GQA or no such mask in this build's kernel
                    line.append(f"sdpa[efficient] not run ({str(e).splitlines()[0][:80]})")
                for p in (int(x) for x in a.programs.split(",")):
                    ba.MIN_PROGRAMS = ba.MIN_PROGRAMS_ONE_BLOCK = p
                    err = (ba.block_attention(qkv, H, kv, key_mask).float() - ref.float()).abs().max().item()
                    fn, n = graphed(lambda: ba.block_attention(qkv, H, kv, key_mask))
                    line.append(f"triton@{p} {cuda_time(fn) / n * 1e6:.1f} us (err {err:.2g})")
                print("; ".join(line), flush=True)


if __name__ == "__main__":
    main()
