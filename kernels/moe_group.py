"""An MoE layer's (token, slot) pairs grouped by expert, for grouped matrix products, as one
operator.

For expert ids flat [P] (P = T * k pairs, pair p = token p // k, slot p % k) and E experts:

    order  = the stable argsort of flat (by expert, then by pair)
    token  = order // k                     [P] the token of each grouped pair
    offs   = cumsum(bincount(flat, E))      [E] int32, each expert's end in the grouped order
    place  = the inverse of order           [P] each pair's position in the grouped order

With `extra` = S > 0 rows of one more expert E (the shared expert run as a routed one: tokens
0 .. S-1 in order), token gets S more entries (0 .. S-1) after the grouped pairs and offs one more
end (P + S).

`group_pairs_reference` computes it in torch (a sort of the ids as the narrowest integers that hold
them, an index_add, a scatter: some six kernels a layer on the GPU). `group_pairs` is a custom
operator (torch.library, `dllm::moe_group_pairs`): on CUDA tensors with Triton and at most
MAX_PAIRS pairs (a block step's at batch 8: LLaDA2.0-mini feeds 32 tokens a row, 8 experts each),
one kernel with a program per CHUNK pairs: a pair's place is the number of pairs of smaller
experts plus those of its expert before it, an expert's end the number of pairs of experts up to
it, each program counting over every id for its pairs and its share of the experts; elsewhere the
reference. Under a CUDA graph on an H100 a launch took 2.7 us at 288 pairs (a block step at batch 1
with the shared expert's rows) and 7.1 us at 2304 (batch 8) with a program per 8 pairs, against 5.8
us with a program per 64 and 8.7 us with a program per 16 (`python
experiments/speed/router_knobs_probe.py`, results/speed/block-causal/REPORT.md). The outputs are integers,
equal to the reference's; the kernel serves only after its first call on a device gave the
reference's outputs. `DLLM_TRITON_ROUTE=0` turns it off with the router kernel
(kernels/moe_route.py). Imports nothing of this project.
"""
from __future__ import annotations

import os

import torch

from .first_call import agreed

try:
    import triton
    import triton.language as tl
except ImportError:   # CPU installs: the reference serves
    triton = None

MAX_PAIRS = 2048   # a block step at batch 8 (8 rows x 32 tokens x 8 experts)
CHUNK = 8     # pairs placed by one program (more programs, each counting over every id for fewer pairs)
SCAN = 256    # ids read at a time


def expert_order(flat: torch.Tensor, n_experts: int) -> torch.Tensor:
    """The stable argsort of expert ids `flat`: the (token, slot) pairs grouped by expert, in
    token order within an expert. The ids are sorted as the narrowest integers that hold them (uint8
    up to 256 experts): the same permutation, and on the GPU a radix sort of 8 key bits instead of
    64."""
    if n_experts <= 256:
        flat = flat.to(torch.uint8)
    elif n_experts <= 1 << 15:
        flat = flat.to(torch.int16)
    return flat.argsort(stable=True)


def group_pairs_reference(flat: torch.Tensor, n_experts: int, k: int,
                          extra: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token [P + extra], offs [E (+ 1 with extra)] int32, place [P]) of expert ids flat [P]
    (module docstring); no host sync."""
    order = expert_order(flat, n_experts)
    counts = torch.zeros(n_experts, dtype=torch.int32, device=flat.device).index_add_(
        0, flat, torch.ones_like(flat, dtype=torch.int32))                  # bincount without its host sync
    place = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=flat.device))
    token, offs = order // k, counts.cumsum(0, dtype=torch.int32)
    if extra:
        token = torch.cat([token, torch.arange(extra, device=flat.device)])
        offs = torch.cat([offs, offs.new_full((1,), flat.numel() + extra)])
    return token, offs, place


def triton_ready(flat: torch.Tensor, n_experts: int) -> bool:
    """Whether group_pairs takes the Triton kernel for flat: Triton importable, a CUDA tensor (or
    the interpreter, TRITON_INTERPRET=1, as the tests run it on CPU), 1 to MAX_PAIRS pairs (extra
    rows not counted), at most 4096 experts; DLLM_TRITON_ROUTE=0 turns it off."""
    if triton is None or os.environ.get("DLLM_TRITON_ROUTE", "1") == "0":
        return False
    if not (flat.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    return 0 < flat.numel() <= MAX_PAIRS and n_experts <= 4096


@torch.library.custom_op("dllm::moe_group_pairs", mutates_args=())
def group_pairs(flat: torch.Tensor, n_experts: int, k: int,
                extra: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token [P + extra], offs [E (+ 1 with extra)] int32, place [P]) of expert ids flat [P]
    (module docstring)."""
    if triton_ready(flat, n_experts) and _kernel_trusted(flat, n_experts, k, extra):
        return _group_pairs_triton(flat, n_experts, k, extra)
    return group_pairs_reference(flat, n_experts, k, extra)


@group_pairs.register_fake
def _(flat, n_experts, k, extra=0):
    P = flat.shape[0]
    return (flat.new_empty(P + extra), flat.new_empty(n_experts + (1 if extra else 0), dtype=torch.int32),
            flat.new_empty(P))


_trusted: dict[tuple, bool] = {}   # (device, E, k, extra) -> the kernel gave the reference's outputs


def _kernel_trusted(flat: torch.Tensor, n_experts: int, k: int, extra: int = 0) -> bool:
    """Whether the kernel serves on this device (kernels/first_call.py): outputs equal to the
    reference's on its first input."""
    def compare():
        got = _group_pairs_triton(flat, n_experts, k, extra)
        want = group_pairs_reference(flat, n_experts, k, extra)
        return all(torch.equal(a, b) for a, b in zip(got, want)), "its outputs differ from the reference's"
    return agreed(_trusted, (flat.device, n_experts, k, extra), flat, compare,
                  "kernels.moe_group: the Triton grouping kernel", "the reference groups the pairs", "DLLM_TRITON_ROUTE")


def _group_pairs_triton(flat, n_experts, k, extra=0):
    P = flat.numel()
    Q, E2 = P + extra, n_experts + (1 if extra else 0)       # the extra rows: expert n_experts's pairs
    flat = flat.contiguous()
    token = torch.empty(Q, dtype=torch.long, device=flat.device)
    place = torch.empty(P, dtype=torch.long, device=flat.device)
    offs = torch.empty(E2, dtype=torch.int32, device=flat.device)
    grid = triton.cdiv(Q, CHUNK)
    _group_kernel[(grid,)](flat, token, place, offs, P, Q, n_experts, E2, k, C=CHUNK, A=SCAN,
                           EB=triton.next_power_of_2(triton.cdiv(E2, grid)), num_warps=4)
    return token, offs, place


if triton is not None:
    @triton.jit
    def _ids(ids_ptr, q, P, Q, E):
        """The expert of pair q: its id below P, E for the extra rows [P, Q), past every expert at Q
        and beyond (counts nowhere)."""
        ids = tl.load(ids_ptr + q, mask=q < P, other=0).to(tl.int32)
        return tl.where(q < P, ids, tl.where(q < Q, E, 1 << 30))

    @triton.jit
    def _group_kernel(ids_ptr, token_ptr, place_ptr, offs_ptr, P, Q, E, E2, k, C: tl.constexpr, A: tl.constexpr,
                      EB: tl.constexpr):
        """Program i: the places of pairs [i C, (i + 1) C) (the pairs of smaller experts, plus those
        of the same expert before the pair) and the ends of experts [i EB, (i + 1) EB) (the pairs of
        experts up to each), every id read in chunks of A; pairs [P, Q) are the extra rows."""
        i = tl.program_id(0)
        p = i * C + tl.arange(0, C)
        mine = _ids(ids_ptr, p, P, Q, E)
        e = i * EB + tl.arange(0, EB)
        at = tl.zeros((C,), dtype=tl.int32)
        ends = tl.zeros((EB,), dtype=tl.int32)
        for a0 in range(0, Q, A):
            q = a0 + tl.arange(0, A)
            ids = _ids(ids_ptr, q, P, Q, E)
            before = (ids[None, :] < mine[:, None]) | ((ids[None, :] == mine[:, None]) & (q[None, :] < p[:, None]))
            at += tl.sum(before.to(tl.int32), 1)
            ends += tl.sum((ids[None, :] <= e[:, None]).to(tl.int32), 1)
        tl.store(place_ptr + p, at.to(tl.int64), mask=p < P)
        tl.store(token_ptr + at, tl.where(p < P, p // k, p - P).to(tl.int64), mask=p < Q)
        tl.store(offs_ptr + e, ends, mask=e < E2)
