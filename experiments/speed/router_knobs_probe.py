"""GPU probe: the MoE layer's three small router kernels at LLaDA2.0-mini's shapes (256 experts, 8
groups, 4 kept, top 8; 2048 wide), a block step at batch 1 (32 tokens, 288 pairs with the shared
expert's rows) and at batch 8 (256 tokens, 2304 pairs), each launched 20 times in one CUDA graph
(microseconds a launch, as back-to-back kernels of a step run):

  - the router product: torch.mm with fp32 output (what models/moe.py runs) against a split-K Triton
    product writing S fp32 partial sums (their sum is what a route kernel would read);
  - the route kernel (kernels/moe_route.py) at 1, 2, 4 and 8 warps;
  - the grouping kernel (kernels/moe_group.py) at chunks of 8 to 64 pairs and 1, 2, 4 warps.

Every variant's output is checked against what serves today.

    python experiments/speed/router_knobs_probe.py
"""
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.bench_speed import graphed_us  # noqa: E402
from kernels import moe_group as mg  # noqa: E402
from kernels import moe_route as mr  # noqa: E402

REPS = 20


def per_launch_us(fn) -> float:
    return graphed_us(lambda: [fn() for _ in range(REPS)]) / REPS


@triton.jit
def _router_partials(x_ptr, w_ptr, out_ptr, T, D: tl.constexpr, E: tl.constexpr, S: tl.constexpr,
                     BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """Program (m, n, s): x[m tile] . w[n tile]^T over the s-th of S slices of D -> out[s, m, n] fp32."""
    m, n, s = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rm = m * BM + tl.arange(0, BM)
    rn = n * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(s * (D // S), (s + 1) * (D // S), BK):
        a = tl.load(x_ptr + rm[:, None] * D + (k0 + rk)[None, :], mask=rm[:, None] < T, other=0.0)
        b = tl.load(w_ptr + rn[None, :] * D + (k0 + rk)[:, None])
        acc += tl.dot(a, b)
    tl.store(out_ptr + (s * T + rm[:, None]) * E + rn[None, :], acc, mask=rm[:, None] < T)


def router_partials(x, w, S, BN, BK=128):
    T, D = x.shape
    E = w.shape[0]
    BM = 32 if T <= 32 else 64
    out = torch.empty((S, T, E), dtype=torch.float32, device=x.device)
    _router_partials[(triton.cdiv(T, BM), E // BN, S)](x, w, out, T, D=D, E=E, S=S, BM=BM, BN=BN, BK=BK)
    return out


g = torch.Generator(device="cuda").manual_seed(0)
weight = (0.02 * torch.randn(256, 2048, device="cuda", generator=g)).bfloat16()
bias = (0.05 * torch.randn(256, device="cuda", generator=g)).bfloat16()

for T in (32, 256):
    x = torch.randn(T, 2048, device="cuda", generator=g).bfloat16()
    logits = torch.mm(x, weight.t(), out_dtype=torch.float32)
    line = {"router mm": per_launch_us(lambda: torch.mm(x, weight.t(), out_dtype=torch.float32))}
    for S in (1, 4, 8, 16):
        for BN in (32, 64):
            p = router_partials(x, weight, S, BN)
            err = (p.sum(0) - logits).abs().max().item()
            line[f"partials S{S} BN{BN} (err {err:.1e})"] = per_launch_us(lambda: router_partials(x, weight, S, BN))
    print(f"{T} tokens, router product: " + ", ".join(f"{k} {v:.2f}" for k, v in line.items()), flush=True)

    want_idx, want_w = mr._route_select_triton(logits, bias, 8, 8, 4, 2.5)
    line = {}
    for warps in (1, 2, 4, 8):
        idx = torch.empty((T, 8), dtype=torch.long, device="cuda")
        w = torch.empty((T, 8), dtype=torch.float32, device="cuda")

        def run():
            mr._route_kernel[(T,)](logits, bias, idx, w, T, 1, 2.5, E=256, G=8, TG=4, K=8, KP=8, num_warps=warps)
        run()
        ok = torch.equal(idx, want_idx) and torch.equal(w, want_w)
        line[f"{warps} warps (same {ok})"] = per_launch_us(run)
    print(f"{T} tokens, route kernel: " + ", ".join(f"{k} {v:.2f}" for k, v in line.items()), flush=True)

    flat = want_idx.reshape(-1)
    P, Q, E2 = flat.numel(), flat.numel() + T, 257
    want = mg.group_pairs_reference(flat, 256, 8, T)
    line = {}
    for chunk in (8, 16, 32, 64):
        for warps in (1, 2, 4):
            token = torch.empty(Q, dtype=torch.long, device="cuda")
            place = torch.empty(P, dtype=torch.long, device="cuda")
            offs = torch.empty(E2, dtype=torch.int32, device="cuda")
            grid = triton.cdiv(Q, chunk)

            def run():
                mg._group_kernel[(grid,)](flat, token, place, offs, P, Q, 256, E2, 8, C=chunk, A=mg.SCAN,
                                          EB=triton.next_power_of_2(triton.cdiv(E2, grid)), num_warps=warps)
            run()
            ok = all(torch.equal(a, b) for a, b in zip((token, offs, place), want))
            line[f"C{chunk} {warps}w (same {ok})"] = per_launch_us(run)
    print(f"{Q} pairs, grouping kernel (serving: C{mg.CHUNK} 4w): "
          + ", ".join(f"{k} {v:.2f}" for k, v in line.items()), flush=True)

# The expert products of a block step at batch 1 as the model runs them: 32 tokens routed among 27
# experts (a decode's block) and the shared expert's 32 rows as expert 256, at BLOCK_M 16 (a program
# passes over its expert's weights once per 16 of its rows: twice for the shared expert) and 32.
from kernels.moe_experts import _expert_products_triton  # noqa: E402

gate_up = (torch.randn(257, 1024, 2048, device="cuda", generator=g) / 2048 ** 0.5).bfloat16()
down = (torch.randn(257, 2048, 512, device="cuda", generator=g) / 512 ** 0.5).bfloat16()
x = torch.randn(32, 2048, device="cuda", generator=g).bfloat16()
pool = torch.randperm(256, device="cuda", generator=g)[:27]
pick = torch.rand(32, 27, device="cuda", generator=g).argsort(-1)[:, :8]
token, offs, _ = mg.group_pairs_reference(pool[pick].reshape(-1), 256, 8, 32)
want = _expert_products_triton(x, token, offs, gate_up, down).float()
line = {}
for bm, bn, bk, st in ((16, 64, 128, 3), (32, 64, 128, 3), (32, 32, 128, 3), (32, 64, 64, 4)):
    got = _expert_products_triton(x, token, offs, gate_up, down, bn, bk, st, bm).float()
    line[f"M{bm} {bn}x{bk}/{st} (diff {(got - want).abs().max().item():.2g})"] = graphed_us(
        lambda: _expert_products_triton(x, token, offs, gate_up, down, bn, bk, st, bm))
print("expert products, 32 tokens over 27 experts + 32 shared rows, graphed: "
      + ", ".join(f"{k} {v:.1f} us" for k, v in line.items()), flush=True)
