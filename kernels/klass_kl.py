"""KLASS's full-vocabulary KL between a position's distributions at consecutive steps, with the
previous step's log(p + eps) kept in a float64 ring of rows and updated in place.

For logits rows [R, V] (any float dtype; their float64 softmax is the distribution p) and a ring
[S, V] float64 whose row slot[r] holds log(q + eps) of row r's previous distribution q, at the rows
taken (take[r]):

    kl[r]   = sum_v p(v) * (log(p(v) + eps) - ring[slot[r], v])          (float64)
    ring[slot[r]] = log(p + eps)

The other rows cost no pass over the vocabulary: their kl is 0 and their ring row is untouched.

That is the authors' KL(p_t || p_{t-1}) (shkim0116/KLASS): they keep p_{t-1} in float64 and take
log(p_{t-1} + eps) again each step; keeping that logarithm instead gives the same values and
leaves three float64 transcendentals per element (the log-sum-exp's exp, p's exp, log(p + eps))
where recomputing q from kept logits took five. A row whose ring row holds nothing yet gets a
meaningless kl (the caller masks it). Rows taken in one call must not share a slot.

`kl_ring` is a custom operator (torch.library, `dllm::klass_kl_ring`): on CUDA tensors with
Triton, two kernels over (row, chunk of the vocabulary) programs: the chunks' max and sum of
exp, then each chunk's share of the KL with the ring row read and written in the same pass (no
gather or scatter of [R, V] rows around it); elsewhere `kl_ring_reference`, its eager twin
(chunked two-stage reductions, kernels/vocab_chunks.py). In the second kernel a barrier separates
each iteration's reads of the ring from its writes: Triton may give a load and a store of the same
addresses different thread layouts, and orders global accesses only within the thread that makes
them (triton-lang/triton#10924); without the barrier the tile 2048 x 8 gave on an H100 a KL off by
up to 7.4e-4 relative with its ring rows right, and with it a KL within 3.9e-15 relative of the eager
twin's (results/speed/block-causal/REPORT.md). As an operator, a compiled step keeps it
as one opaque call that updates the ring in place. The two round sums in other orders (float64).
Imports nothing of this project but kernels/.
"""
from __future__ import annotations

import os

import torch

from .vocab_chunks import MAX_CHUNKS, chunked, row_sum

try:
    import triton
    import triton.language as tl
except ImportError:   # CPU installs: the eager twin serves
    triton = None


def kl_ring_reference(logits: torch.Tensor, ring: torch.Tensor, slot: torch.Tensor, take: torch.Tensor,
                      eps: float) -> torch.Tensor:
    """The operator's eager twin: kl [R] float64, ring updated in place (it computes every row and
    keeps the taken ones: no host sync, capturable)."""
    c = chunked(logits.double())
    m = c.amax(-1).amax(-1)
    lse = m + row_sum((c - m[:, None, None]).exp()).log()
    p = (c - lse[:, None, None]).exp()
    log_p = (p + eps).log()
    ring = ring.view(-1, ring.shape[-1])
    kept = ring[slot]
    kl = row_sum(p * (log_p - chunked(kept)))
    ring[slot] = torch.where(take[:, None], log_p.flatten(1), kept)
    return torch.where(take, kl, 0.0)


def triton_ready(x: torch.Tensor) -> bool:
    """Whether kl_ring takes the Triton kernels: Triton importable and a CUDA tensor (or the
    interpreter, TRITON_INTERPRET=1, as the tests run it on CPU); DLLM_TRITON_KL=0 turns them off."""
    if triton is None or os.environ.get("DLLM_TRITON_KL", "1") == "0":
        return False
    return x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


@torch.library.custom_op("dllm::klass_kl_ring", mutates_args=("ring",))
def kl_ring(logits: torch.Tensor, ring: torch.Tensor, slot: torch.Tensor, take: torch.Tensor,
            eps: float) -> torch.Tensor:
    """kl [R] float64 of logits rows [R, V] against ring rows ring[slot] (a contiguous float64
    ring [..., V], its rows numbered flat), the ring's rows slot[r] set to log(p + eps), at the rows
    where take[r]; 0 and the ring untouched elsewhere (module docstring)."""
    if triton_ready(logits) and logits.shape[0]:
        return _kl_ring_triton(logits, ring, slot, take, eps)
    return kl_ring_reference(logits, ring, slot, take, eps)


@kl_ring.register_fake
def _(logits, ring, slot, take, eps):
    return logits.new_empty(logits.shape[0], dtype=torch.float64)


# The tile: vocabulary entries a program takes per iteration (chunks of about 2 * BLOCK) and its warps.
# 512 x 2 took 643 us for 256 rows of 126464 under a CUDA graph on an H100, against 1176 us for 1024 x 4
# (experiments/speed/klass_kl_probe.py, results/speed/all-methods/REPORT.md); with the barrier 544 us
# against 541 us for 2048 x 8 on another H100, which is slower at 512 rows (1098 against 1076 us).
BLOCK = 512
WARPS = 2


def _kl_ring_triton(logits, ring, slot, take, eps, block: int | None = None, warps: int | None = None):
    block, warps = block or BLOCK, warps or WARPS
    R, V = logits.shape
    n = max(1, min(MAX_CHUNKS, triton.cdiv(V, 2 * block)))   # chunks of about 2 * block: rows x chunks programs
    chunk = triton.cdiv(V, n)
    ring = ring.view(-1, V)
    logits = logits if logits.stride(-1) == 1 else logits.contiguous()
    dev = logits.device
    m = torch.empty((R, n), dtype=torch.float64, device=dev)
    s = torch.empty((R, n), dtype=torch.float64, device=dev)
    part = torch.empty((R, n), dtype=torch.float64, device=dev)
    take = take.to(torch.int8)
    _chunk_lse[(R, n)](logits, logits.stride(0), take, m, s, V, chunk, n, BLOCK=block, num_warps=warps)
    _chunk_kl[(R, n)](logits, logits.stride(0), ring, ring.stride(0), slot, take, m, s, part,
                      V, chunk, n, eps, N_POW2=triton.next_power_of_2(n), BLOCK=block, num_warps=warps)
    return part.sum(-1)


if triton is not None:
    @triton.jit
    def _chunk_lse(x_ptr, x_stride, take_ptr, m_ptr, s_ptr, V, chunk, n, BLOCK: tl.constexpr):
        """Program (row r, chunk c): the chunk's max and sum of exp(x - max), float64 (no pass over
        a row not taken)."""
        r, c = tl.program_id(0), tl.program_id(1)
        row = x_ptr + r.to(tl.int64) * x_stride
        lo = c * chunk
        hi = tl.where(tl.load(take_ptr + r) != 0, tl.minimum(lo + chunk, V), lo)
        mx = tl.full([BLOCK], float("-inf"), tl.float64)
        for start in range(lo, hi, BLOCK):
            i = start + tl.arange(0, BLOCK)
            x = tl.load(row + i, mask=i < hi, other=float("-inf")).to(tl.float64)
            mx = tl.maximum(mx, x)
        m = tl.max(mx, 0)
        acc = tl.zeros([BLOCK], tl.float64)
        for start in range(lo, hi, BLOCK):
            i = start + tl.arange(0, BLOCK)
            x = tl.load(row + i, mask=i < hi, other=float("-inf")).to(tl.float64)
            acc += tl.where(i < hi, tl.exp(x - m), 0.0)
        tl.store(m_ptr + r * n + c, m)
        tl.store(s_ptr + r * n + c, tl.sum(acc, 0))

    @triton.jit
    def _chunk_kl(x_ptr, x_stride, ring_ptr, ring_stride, slot_ptr, take_ptr, m_ptr, s_ptr, part_ptr,
                  V, chunk, n, eps, N_POW2: tl.constexpr, BLOCK: tl.constexpr):
        """Program (row r, chunk c): the row's log-sum-exp from the chunks' (max, sum), then the
        chunk's share of the KL against ring row slot[r], writing log(p + eps) there (no pass over a
        row not taken: its share is 0)."""
        r, c = tl.program_id(0), tl.program_id(1)
        j = tl.arange(0, N_POW2)
        cm = tl.load(m_ptr + r * n + j, mask=j < n, other=float("-inf"))
        cs = tl.load(s_ptr + r * n + j, mask=j < n, other=0.0)
        M = tl.max(cm, 0)
        lse = M + tl.log(tl.sum(tl.where(j < n, cs * tl.exp(cm - M), 0.0), 0))
        row = x_ptr + r.to(tl.int64) * x_stride
        q_row = ring_ptr + tl.load(slot_ptr + r).to(tl.int64) * ring_stride
        lo = c * chunk
        hi = tl.where(tl.load(take_ptr + r) != 0, tl.minimum(lo + chunk, V), lo)
        acc = tl.zeros([BLOCK], tl.float64)
        for start in range(lo, hi, BLOCK):
            i = start + tl.arange(0, BLOCK)
            inside = i < hi
            x = tl.load(row + i, mask=inside, other=0.0).to(tl.float64)
            p = tl.exp(x - lse)
            log_p = tl.log(p + eps)
            log_q = tl.load(q_row + i, mask=inside, other=0.0)
            acc += tl.where(inside, p * (log_p - log_q), 0.0)
            tl.debug_barrier()   # every thread has read its ring entries before any is overwritten
            tl.store(q_row + i, log_p, mask=inside)
        tl.store(part_ptr + r * n + c, tl.sum(acc, 0))
