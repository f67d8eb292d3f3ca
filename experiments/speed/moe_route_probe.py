"""GPU probe: the MoE router's Triton kernel (kernels/moe_route.py) against the reference's steps at
LLaDA2.0-mini's shapes (256 experts, 8 groups, 4 kept, top 8): the same experts in the same order,
the weights' largest difference, and each one's time under a CUDA graph (the reference's steps as
the model runs them on the GPU: compiled around the top-k selections).

    python experiments/speed/moe_route_probe.py
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.bench_speed import cuda_time  # noqa: E402
from kernels.compiled import compiling_for_graph  # noqa: E402
from kernels.moe_route import _route_select_triton  # noqa: E402
from models.moe import _route_steps  # noqa: E402

g = torch.Generator(device="cuda").manual_seed(0)
weight = 0.02 * torch.randn(256, 2048, device="cuda", generator=g)
bias = 0.05 * torch.randn(256, device="cuda", generator=g)
for T in (32, 256):
    x = torch.randn(T, 2048, device="cuda", generator=g).bfloat16()
    logits = torch.nn.functional.linear(x.float(), weight)
    with compiling_for_graph():
        ref = _route_steps(x, weight, bias, 8, 8, 4, 2.5)
    new = _route_select_triton(logits, bias, 8, 8, 4, 2.5)
    same = (ref[0] == new[0]).all(-1).float().mean().item()
    times = {}
    for name, fn in (("reference steps", lambda: _route_steps(x, weight, bias, 8, 8, 4, 2.5)),
                     ("kernel", lambda: _route_select_triton(torch.nn.functional.linear(x.float(), weight),
                                                             bias, 8, 8, 4, 2.5))):
        with compiling_for_graph():
            fn()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
        times[name] = cuda_time(graph.replay, warmup=5, reps=50)
    print(f"{T} tokens: rows with the same experts in the same order {same:.4f}, max |w - ref| "
          f"{(ref[1] - new[1]).abs().max().item():.2e}; graphed: " +
          ", ".join(f"{k} {v * 1e6:.1f} us" for k, v in times.items()), flush=True)
