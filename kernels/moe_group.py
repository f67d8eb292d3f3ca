"""An MoE layer's (token, slot) pairs grouped by expert, for grouped matrix products, as one
operator.

For expert ids flat [P] (P = T * k pairs, pair p = token p // k, slot p % k) and E experts:

    order  = the stable argsort of flat (by expert, then by pair)
    token  = order // k                     [P] the token of each grouped pair
    offs   = cumsum(bincount(flat, E))      [E] int32, each expert's end in the grouped order
    place  = the inverse of order           [P] each pair's position in the grouped order

`group_pairs_reference` computes it in torch (a sort of the ids as the narrowest integers that hold
them, an index_add, a scatter: some six kernels a layer on the GPU). `group_pairs` is a custom
operator (torch.library, `dllm::moe_group_pairs`): on CUDA tensors with Triton and at most
MAX_PAIRS pairs (a block step's at batch 1: LLaDA2.0-mini feeds 32 tokens a row, 8 experts each),
one kernel with one program: a counting sort, in chunks of CHUNK pairs (each pair's place is its
expert's start, plus the pairs of that expert in earlier chunks, plus those before it in its chunk);
elsewhere the reference. One program's work grows with the pairs, while the reference takes some
six kernels whatever the count: under a CUDA graph on an H100 (experiments/speed/moe_kernels_probe.py,
results/speed/block-causal/kernels_check_h100_3a1dd5b.txt) the kernel takes 21.4 us against the
reference's 24.3 us at 256 pairs, and 125.8 us against 31.0 us at 2048; hence the bound. The
outputs are integers, equal to the reference's; the kernel serves only after its first call on a
device gave the reference's outputs. `DLLM_TRITON_ROUTE=0` turns it off with the router kernel
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

MAX_PAIRS = 256
CHUNK = 64


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


def group_pairs_reference(flat: torch.Tensor, n_experts: int, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token [P], offs [E] int32, place [P]) of expert ids flat [P] (module docstring); no host sync."""
    order = expert_order(flat, n_experts)
    counts = torch.zeros(n_experts, dtype=torch.int32, device=flat.device).index_add_(
        0, flat, torch.ones_like(flat, dtype=torch.int32))                  # bincount without its host sync
    place = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=flat.device))
    return order // k, counts.cumsum(0, dtype=torch.int32), place


def triton_ready(flat: torch.Tensor, n_experts: int) -> bool:
    """Whether group_pairs takes the Triton kernel for flat: Triton importable, a CUDA tensor (or
    the interpreter, TRITON_INTERPRET=1, as the tests run it on CPU), 1 to MAX_PAIRS pairs, at most
    4096 experts; DLLM_TRITON_ROUTE=0 turns it off."""
    if triton is None or os.environ.get("DLLM_TRITON_ROUTE", "1") == "0":
        return False
    if not (flat.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    return 0 < flat.numel() <= MAX_PAIRS and n_experts <= 4096


@torch.library.custom_op("dllm::moe_group_pairs", mutates_args=())
def group_pairs(flat: torch.Tensor, n_experts: int, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token [P], offs [E] int32, place [P]) of expert ids flat [P] (module docstring)."""
    if triton_ready(flat, n_experts) and _kernel_trusted(flat, n_experts, k):
        return _group_pairs_triton(flat, n_experts, k)
    return group_pairs_reference(flat, n_experts, k)


@group_pairs.register_fake
def _(flat, n_experts, k):
    P = flat.shape[0]
    return flat.new_empty(P), flat.new_empty(n_experts, dtype=torch.int32), flat.new_empty(P)


_trusted: dict[tuple, bool] = {}   # (device, E, k) -> the kernel gave the reference's outputs


def _kernel_trusted(flat: torch.Tensor, n_experts: int, k: int) -> bool:
    """Whether the kernel serves on this device (kernels/first_call.py): outputs equal to the
    reference's on its first input."""
    def compare():
        got, want = _group_pairs_triton(flat, n_experts, k), group_pairs_reference(flat, n_experts, k)
        return all(torch.equal(a, b) for a, b in zip(got, want)), "its outputs differ from the reference's"
    return agreed(_trusted, (flat.device, n_experts, k), flat, compare, "kernels.moe_group: the Triton grouping kernel",
                  "the reference groups the pairs", "DLLM_TRITON_ROUTE")


def _group_pairs_triton(flat, n_experts, k):
    P = flat.numel()
    flat = flat.contiguous()
    token = torch.empty(P, dtype=torch.long, device=flat.device)
    place = torch.empty(P, dtype=torch.long, device=flat.device)
    offs = torch.empty(n_experts, dtype=torch.int32, device=flat.device)
    _group_kernel[(1,)](flat, token, place, offs, P, n_experts, k,
                        E_P2=triton.next_power_of_2(n_experts), C=CHUNK, num_warps=4)
    return token, offs, place


if triton is not None:
    @triton.jit
    def _group_kernel(ids_ptr, token_ptr, place_ptr, offs_ptr, P, E, k, E_P2: tl.constexpr, C: tl.constexpr):
        """One program: the experts' counts and ends, then each pair's place, chunk by chunk."""
        e = tl.arange(0, E_P2)
        c = tl.arange(0, C)
        counts = tl.zeros((E_P2,), dtype=tl.int32)
        for c0 in range(0, P, C):                                  # pass 1: the experts' counts
            p = c0 + c
            ids = tl.load(ids_ptr + p, mask=p < P, other=E_P2).to(tl.int32)
            counts += tl.sum((ids[:, None] == e[None, :]).to(tl.int32), 0)
        ends = tl.cumsum(counts, 0)
        tl.store(offs_ptr + e, ends, mask=e < E)
        before = ends - counts                                     # start, plus the pairs placed so far
        for c0 in range(0, P, C):                                  # pass 2: each pair's place
            p = c0 + c
            inside = p < P
            ids = tl.load(ids_ptr + p, mask=inside, other=E_P2).to(tl.int32)
            hot = ids[:, None] == e[None, :]                       # [C, E_P2]
            base = tl.sum(tl.where(hot, before[None, :], 0), 1)
            same_earlier = (ids[:, None] == ids[None, :]) & (c[None, :] < c[:, None])
            at = base + tl.sum(same_earlier.to(tl.int32), 1)
            tl.store(place_ptr + p, at.to(tl.int64), mask=inside)
            tl.store(token_ptr + at, (p // k).to(tl.int64), mask=inside)
            before += tl.sum(hot.to(tl.int32), 0)
