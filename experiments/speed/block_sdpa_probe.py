"""GPU probe: a block-causal decode's step graph spends more time in attention than the same block
forward run alone (Fast-dLLM v2 7B at batch 1: cuDNN SDPA 1.09 ms over 28 layers in the step
against 0.57 ms alone, results/speed/block-causal/profile_fdv2_b1_h100_3b5ea2b.txt). This records
the first layer's attention inputs in both (shapes, strides, dtypes, the mask's layout and share
of True) and times SDPA alone on each recorded set, so a difference in the inputs shows; an
additive mask (models/block_cache.BlockStep.additive_mask) is also timed as the bool mask it
stands for, with the outputs compared.

    python experiments/speed/block_sdpa_probe.py --config fast-dllm-v2-7b --block 8
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import models.block_cache as block_cache  # noqa: E402
from acceleration import Decoder  # noqa: E402
from acceleration.captured import copy_tree  # noqa: E402
from bench.bench_speed import cuda_time  # noqa: E402
from decoding.base import GenConfig  # noqa: E402
from decoding.registry import build_method, parse_methods  # noqa: E402
from kernels.compiled import compiling_for_graph  # noqa: E402
from models import load_model  # noqa: E402

calls: list[tuple] = []
_sdpa = F.scaled_dot_product_attention


def _copy(t: torch.Tensor | None) -> torch.Tensor | None:
    """A copy with t's strides (a cache slice stays a strided view's layout)."""
    return None if t is None else torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device).copy_(t)


def recording(q, k, v, attn_mask=None, enable_gqa=False):
    calls.append(tuple(_copy(t) for t in (q, k, v, attn_mask)) + (enable_gqa,))
    return _sdpa(q, k, v, attn_mask=attn_mask, enable_gqa=enable_gqa)


def describe(name: str, rec: tuple) -> None:
    q, k, v, mask, gqa = rec
    m = "none" if mask is None else (f"{tuple(mask.shape)} {mask.dtype} stride {mask.stride()} "
                                     f"seen {(mask if mask.dtype == torch.bool else mask == 0).float().mean().item():.3f}")
    t = cuda_time(lambda: _sdpa(q, k, v, attn_mask=mask, enable_gqa=gqa), warmup=3, reps=50)
    print(f"{name}: q {tuple(q.shape)} {q.stride()} k {tuple(k.shape)} {k.stride()} v {v.stride()} "
          f"{q.dtype}; mask {m}; SDPA alone {t * 1e6:.1f} us", flush=True)
    if mask is not None and mask.dtype != torch.bool:   # the additive mask against the bool mask SDPA converts per call
        as_bool = mask == 0
        tb = cuda_time(lambda: _sdpa(q, k, v, attn_mask=as_bool, enable_gqa=gqa), warmup=3, reps=50)
        same = torch.equal(_sdpa(q, k, v, attn_mask=as_bool, enable_gqa=gqa), _sdpa(q, k, v, attn_mask=mask, enable_gqa=gqa))
        print(f"    the same mask as bool: SDPA alone {tb * 1e6:.1f} us; outputs bitwise equal: {same}", flush=True)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="fast-dllm-v2-7b")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--block", type=int, default=8)
    ap.add_argument("--spec", default="fixed")
    a = ap.parse_args()
    dev = torch.device("cuda")
    model = load_model(a.config, device="cuda", dtype=torch.bfloat16, no_weights=True)
    prompts = torch.randint(2000, 100000, (1, a.prompt), device=dev,
                            generator=torch.Generator(device=dev).manual_seed(0)).tolist()
    gen = GenConfig(gen_length=a.gen, block_length=a.block, early_stop=False)
    dec = Decoder(model)
    m = build_method(parse_methods(a.spec)[0], gen)
    dec(m, prompts, gen)
    (d,) = [d for d in dec.pool.decodes.values() if d.method is m]
    block_cache.F.scaled_dot_product_attention = recording
    try:
        for kind, fn in d.step_fns.items():
            calls.clear()
            with compiling_for_graph():
                fn(copy_tree(d.state), d.launched[kind])
            describe(f"decode step kind {kind}, layer 0 of {len(calls)}", calls[0])
        from bench.bench_speed_block import _prefilled, block_step
        net, bs = model.module, model.block_size
        pre = a.prompt // bs * bs
        cache = _prefilled(net, 1, pre + a.gen - bs, pre + a.gen + 2 * bs, dev, torch.Generator(device=dev).manual_seed(0))
        step, inputs = block_step(net, cache, torch.full((1, bs), model.mask_id, device=dev), 0, bs)
        calls.clear()
        with compiling_for_graph():
            step(*inputs)
        describe(f"block forward alone, layer 0 of {len(calls)}", calls[0])
    finally:
        block_cache.F.scaled_dot_product_attention = _sdpa


if __name__ == "__main__":
    main()
