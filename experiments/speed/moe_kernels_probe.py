"""GPU probe: the MoE layer's Triton kernels against their references at LLaDA2.0-mini's shapes
(256 experts, 8 groups, 4 kept, top 8): the router (kernels/moe_route.py: the same experts in the
same order, the weights' largest difference), the grouping of the pairs (kernels/moe_group.py:
equal outputs) and the experts' two products (kernels/moe_experts.py: the largest difference
against the grouped products), each timed under a CUDA graph beside its reference as the model
runs it on the GPU (compiled); then the expert products of 32 tokens routed among 27 and among 8
experts (as a decode's blocks route) for several tiles, on a grid of every expert and of the active
ones only, beside a copy of the active experts' bytes.

    python experiments/speed/moe_kernels_probe.py
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.bench_speed import graphed_us  # noqa: E402
from kernels.compiled import compiling_for_graph  # noqa: E402
from kernels.moe_experts import _expert_products_triton  # noqa: E402
from kernels.moe_group import _group_pairs_triton  # noqa: E402
from kernels.moe_route import _route_select_triton  # noqa: E402
from models.layers import swiglu  # noqa: E402
from models.moe import _group_by_expert, _route_steps  # noqa: E402


g = torch.Generator(device="cuda").manual_seed(0)
weight = 0.02 * torch.randn(256, 2048, device="cuda", generator=g)
bias = 0.05 * torch.randn(256, device="cuda", generator=g)
gate_up = (torch.randn(256, 1024, 2048, device="cuda", generator=g) / 2048 ** 0.5).bfloat16()   # F = 512
down = (torch.randn(256, 2048, 512, device="cuda", generator=g) / 512 ** 0.5).bfloat16()


def grouped_products(x, token, offs):   # as models/moe.py runs them without kernels/moe_experts.py
    h = torch._grouped_mm(x[token], gate_up.transpose(1, 2), offs=offs)
    return torch._grouped_mm(swiglu(h), down.transpose(1, 2), offs=offs)


for T in (32, 256):
    x = torch.randn(T, 2048, device="cuda", generator=g).bfloat16()
    logits = torch.nn.functional.linear(x.float(), weight)
    with compiling_for_graph():
        ref = _route_steps(logits, bias, 8, 8, 4, 2.5)
        ref_group = _group_by_expert(ref[0].reshape(-1), 256, 8)
    new = _route_select_triton(torch.nn.functional.linear(x.float(), weight), bias, 8, 8, 4, 2.5)
    new_group = _group_pairs_triton(ref[0].reshape(-1), 256, 8)
    same = (ref[0] == new[0]).all(-1).float().mean().item()
    flat = ref[0].reshape(-1)
    t = {"route, reference steps": graphed_us(lambda: _route_steps(logits, bias, 8, 8, 4, 2.5)),
         "route, kernel": graphed_us(lambda: _route_select_triton(torch.nn.functional.linear(x.float(), weight),
                                                                  bias, 8, 8, 4, 2.5)),
         "group, reference": graphed_us(lambda: _group_by_expert(flat, 256, 8)),
         "group, kernel": graphed_us(lambda: _group_pairs_triton(flat, 256, 8))}
    token, offs = ref_group[0], ref_group[1]
    want, got = grouped_products(x, token, offs).float(), _expert_products_triton(x, token, offs, gate_up, down).float()
    t["experts, grouped products"] = graphed_us(lambda: grouped_products(x, token, offs))
    t["experts, kernels"] = graphed_us(lambda: _expert_products_triton(x, token, offs, gate_up, down))
    for bn, bk, st in ((32, 128, 3), (64, 64, 4), (64, 256, 2), (128, 128, 3)):   # other tiles
        t[f"experts, kernels {bn}x{bk}/{st}"] = graphed_us(lambda: _expert_products_triton(x, token, offs, gate_up, down,
                                                                                           bn, bk, st))
    print(f"{T} tokens, {int((offs.diff(prepend=offs[:1] * 0) > 0).sum())} experts with pairs: expert products' max "
          f"difference {(got - want).abs().max().item():.3g} (outputs up to {want.abs().max().item():.3g})", flush=True)
    print(f"{T} tokens: route rows with the same experts in the same order {same:.4f}, max |w - ref| "
          f"{(ref[1] - new[1]).abs().max().item():.2e}; grouping equal "
          f"{all(torch.equal(a, b) for a, b in zip(ref_group, new_group))}; graphed: "
          + ", ".join(f"{k} {v:.1f} us" for k, v in t.items()), flush=True)

# A decode's block routes its 32 tokens to fewer experts than random tokens do (27.4 a layer on
# average in LLaDA2.0-mini's middle block, bench_speed's step_own_block): the expert products with
# each token's 8 experts drawn among A experts, every tile, narrower ones included.
for A in (27, 8):
    x = torch.randn(32, 2048, device="cuda", generator=g).bfloat16()
    pool = torch.randperm(256, device="cuda", generator=g)[:A]
    pick = torch.rand(32, A, device="cuda", generator=g).argsort(-1)[:, :8]
    token, offs, _ = _group_by_expert(pool[pick].reshape(-1), 256, 8)
    want = grouped_products(x, token, offs).float()
    t = {"grouped products": graphed_us(lambda: grouped_products(x, token, offs))}
    for bn, bk, st in ((64, 128, 3), (16, 128, 3), (32, 128, 3), (16, 256, 2), (32, 256, 2), (32, 64, 4)):
        got = _expert_products_triton(x, token, offs, gate_up, down, bn, bk, st).float()
        t[f"kernels {bn}x{bk}/{st} (max diff {(got - want).abs().max().item():.3g})"] = graphed_us(
            lambda: _expert_products_triton(x, token, offs, gate_up, down, bn, bk, st))
    # The same products with a grid of the active experts only (their weights copied apart, the ids
    # renumbered): what the programs of the experts without pairs cost; and a copy of those bytes.
    active = torch.unique(pool)
    rank = torch.full((256,), -1, dtype=torch.long, device="cuda")
    rank[active] = torch.arange(A, device="cuda")
    token_a, offs_a, _ = _group_by_expert(rank[pool[pick]].reshape(-1), A, 8)
    gate_up_a, down_a = gate_up[active].contiguous(), down[active].contiguous()
    got = _expert_products_triton(x, token_a, offs_a, gate_up_a, down_a).float()
    t[f"kernels, grid of the {A} active experts (max diff {(got - want).abs().max().item():.3g})"] = graphed_us(
        lambda: _expert_products_triton(x, token_a, offs_a, gate_up_a, down_a))
    flat_bytes = torch.cat([gate_up_a.reshape(-1), down_a.reshape(-1)])
    copy_us = graphed_us(lambda: flat_bytes.clone())
    t[f"copy of their {flat_bytes.numel() * 2 / 1e6:.0f} MB ({4 * flat_bytes.numel() / copy_us / 1e6:.2f} TB/s "
      "read + write)"] = copy_us
    print(f"32 tokens over {A} experts, expert products graphed: " + ", ".join(f"{k} {v:.1f} us" for k, v in t.items()),
          flush=True)
