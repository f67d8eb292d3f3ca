"""GPU probe: where LLaDA2.0-mini's block step goes (6.8 ms at batch 1 against a 1.2 ms floor,
results/speed/block-causal/REPORT.md). Times the graphed block step (bench_speed's: a block of 32
against a 512-token prefix) with the MoE layer as it is and with its routing and expert product
compiled as one function (torch.compile, fullgraph: the elementwise work fused around the top-k,
sort and grouped products), for a block of masks and a block of random tokens (more distinct
experts); prints each variant's kernel count and top kernels, and how far its logits are from the
plain layer's.

    python experiments/speed/moe_step_probe.py [--config llada2-mini] [--batch 1] [--stacks]

`--stacks`: only the copies and indexed writes of the plain step, each by its Python callers.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import models.moe as moe  # noqa: E402
from bench.bench_speed import cuda_time  # noqa: E402
from bench.bench_speed_block import _prefilled, _tokens, block_step, graphed_block_step  # noqa: E402
from kernels.compiled import compiling_for_graph  # noqa: E402
from models import load_model  # noqa: E402


def moe_core(h, gate_w, bias, w_gate_up, w_down, top_k: int, n_group: int, topk_group: int, scaling: float):
    idx, w = moe.route(moe.router_logits(h, gate_w, gate_w.float), bias, top_k, n_group, topk_group, scaling)
    return moe.offsets_grouped_experts(h, idx, w, w_gate_up, w_down)   # what grouped_experts runs on a CUDA bf16 input


_compiled_core = torch.compile(moe_core, fullgraph=True, dynamic=False)


def compiled_forward(self, x):
    if not hasattr(self, "w_gate_up"):
        self.stack_()
    c, shape = self.c, x.shape
    h = x.reshape(-1, shape[-1])
    y = _compiled_core(h, self.gate.weight, self.gate.expert_bias, self.w_gate_up, self.w_down, c.num_experts_per_tok,
                       c.n_group, c.topk_group, c.routed_scaling_factor).view(shape)
    if c.num_shared_experts:
        y = y + self.shared_experts(x)
    return y


def kernels(fn, top: int) -> str:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    ev = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    lines = [f"{sum(e.count for e in ev)} kernels, {sum(e.device_time_total for e in ev) / 1e3:.3f} ms GPU"]
    for e in sorted(ev, key=lambda e: -e.device_time_total)[:top]:
        lines.append(f"      {e.device_time_total / 1e3:8.3f} ms  x{e.count:<4d} {e.key[:100]}")
    return "\n".join(lines)


COPIES = ("aten::copy_", "aten::_to_copy", "aten::clone", "aten::contiguous", "aten::index_put_", "aten::index")


def copies_by_caller(fn) -> str:
    """fn run once eagerly (with the graph's compiled kernels) under torch.profiler with Python
    stacks: each copy or indexed write by its callers in this repository, count and GPU time."""
    with compiling_for_graph(), torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA],
            with_stack=True, experimental_config=torch._C._profiler._ExperimentalConfig(verbose=True)) as prof:
        fn()
        torch.cuda.synchronize()
    lines = []
    for e in sorted(prof.key_averages(group_by_stack_n=8), key=lambda e: -e.device_time_total):
        if e.key in COPIES and e.device_time_total > 0:
            ours = [f for f in e.stack if "/experiments/" not in f and ("models/" in f or "kernels/" in f
                                                                         or "decoding/" in f or "bench/" in f)]
            lines.append(f"  {e.device_time_total / 1e3:7.3f} ms  x{e.count:<4d} {e.key}  <- {' <- '.join(ours[:3])}")
    return "copies and indexed writes by caller:\n" + "\n".join(lines)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="llada2-mini")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--top", type=int, default=14)
    ap.add_argument("--stacks", action="store_true",
                    help="also: the copies and indexed writes of the plain step with their Python callers, then stop")
    a = ap.parse_args()
    dev = torch.device("cuda")
    model = load_model(a.config, device="cuda", dtype=torch.bfloat16, no_weights=True)
    net, bs = model.module, model.block_size
    g = torch.Generator(device=dev).manual_seed(0)
    cache = _prefilled(net, a.batch, a.prompt, a.prompt + 4 * bs, dev, g)
    blocks = {"masks": torch.full((a.batch, bs), model.mask_id, device=dev),
              "random tokens": _tokens(net.cfg, (a.batch, bs), dev, g)}
    plain = moe.SparseMoE.forward
    if a.stacks:
        step, inputs = block_step(net, cache, blocks["masks"], 0, bs)
        with compiling_for_graph():
            step(*inputs)
        print(copies_by_caller(lambda: step(*inputs)), flush=True)
        return
    for what, blk in blocks.items():
        logits = {}
        for variant in ("plain", "compiled"):
            moe.SparseMoE.forward = plain if variant == "plain" else compiled_forward
            try:
                step, inputs = block_step(net, cache, blk, 0, bs)
                with compiling_for_graph():
                    logits[variant] = step(*inputs)[0].float()
                t = cuda_time(graphed_block_step(net, cache, blk, 0, bs), warmup=3, reps=30)

                def eager():
                    with compiling_for_graph():
                        step(*inputs)
                print(f"[{what}] {variant}: graphed block step {t * 1e3:.3f} ms; eager: {kernels(eager, a.top)}", flush=True)
            except Exception as e:   # a variant that does not compile is reported, not fatal
                print(f"[{what}] {variant}: {type(e).__name__}: {str(e).splitlines()[0][:200]}", flush=True)
        if len(logits) == 2:
            d = (logits["plain"] - logits["compiled"]).abs().max().item()
            agree = (logits["plain"].argmax(-1) == logits["compiled"].argmax(-1)).float().mean().item()
            print(f"[{what}] compiled against plain: max |logit diff| {d:.3g}, argmax agreement {agree:.3f}", flush=True)
    moe.SparseMoE.forward = plain


if __name__ == "__main__":
    main()
