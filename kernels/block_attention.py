"""Attention of a block-causal model's block step (SDAR/TraDo, LLaDA2.x, Fast-dLLM v2) in two Triton
kernels, at small batch or narrow blocks.

A block step feeds W tokens (a block, two when it folds the finished one in) whose K/V are already
in the cache; the queries read the first K cache slots under the step's key mask [B, 1, W, K]
(block-causal, padding). Through `scaled_dot_product_attention` that is one cuDNN kernel of
23 us a layer at batch 1 (Fast-dLLM v2 7B on an H100: 0.646 ms in 28 layers of a 6.65 ms step,
results/speed/block-causal/REPORT.md), with a thread block per (row, head, 64 queries): 28 of 132
SMs. Here (flash-decoding, as kernels/window_attention.py does for LLaDA's cache windows):

  1. `_attend_chunk`, one program per (row, q head, chunk of keys): one flash-attention pass over
     the chunk under the mask, keeping the unnormalized output, its running max and its sum; or,
     for a step of one block at batch PACKED_FROM_BATCH (8) or more (`packs`), `_attend_packed`,
     one program per (row, kv head, tile of PACKED_BLOCK_M (q head, query) rows, chunk of keys):
     the same pass for all the q heads of a kv head, each K/V tile read once for them;
  2. `_combine` (kernels/window_attention.py): merges the chunks of each (row, head) and writes
     [B, W, H * hd].

Math as SDPA's: scores and softmax in fp32, probabilities cast to the value dtype for the second
product; fp32 models use IEEE products (no TF32). A hidden key counts for nothing (SDPA adds
-65504 to its score, whose exponential underflows to 0 beside any seen key; every query sees at
least its own position). `available()` says whether a step may use the kernels: Triton, CUDA
tensors (or the interpreter, TRITON_INTERPRET=1, as the tests run it), a power-of-two head dim,
SDPA's own kernel filling at most half the SMs (batch 1 and 2 here), a step of at most 16 tokens
(SDAR's blocks of 4, at any batch) or a step of one block of at most 32 tokens at batch up to 8
(then with ~4 programs an SM), and `DLLM_TRITON_ATTN` not "0" (the switch of the window
kernels too). The kernels serve only after their first call on a
device agreed with SDPA on that call's input (`trusted`). With them, the middle block step of a
threshold decode on an H100 (prompt 512, gen 256) took 6.90 ms instead of SDPA's 7.38 (SDAR-8B,
batch 1) and 6.12 instead of 6.56 (Fast-dLLM v2 7B, batch 1) (`bash
experiments/speed/pending_gpu_kernels.sh speed`); at batch 8, with the one-block rule and its ~4
programs an SM against the tree before them, 8.33 ms instead of 8.66 (Fast-dLLM v2 7B), 7.14 instead of 7.40 (SDAR-8B) and
9.31 instead of 9.41 (LLaDA2.0-mini) (`bash experiments/speed/pending_gpu_block_attention_b8.sh`;
results/speed/block-causal/REPORT.md). The packed kernel at batch 8, alone (K = 832, graphed,
`python experiments/speed/block_attention_batch_probe.py --packed`): 25.9 us a call against the
per-head kernel's 40.7 (Fast-dLLM v2 7B), 22.4 against 27.2 (LLaDA2.0-mini); for SDAR-8B's block of
4, 16.7 us at the sweep's best settings and 24.7 at its worst, against 30.1; at batch 1 the per-head kernel is as fast or faster
(13.7 against 15.3 us, Fast-dLLM v2). In the middle block step at batch 8 against the tree without
it, same call: 8.07 ms instead of 8.52 (Fast-dLLM v2 7B) and 7.05 instead of 7.37 (SDAR-8B)
(`bash experiments/speed/packed_attention_ab.sh`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import window_attention
from .first_call import agreed
from .window_attention import triton

if triton is not None:
    import triton.language as tl

    from .window_attention import (_combine, _head_program, _kv_tile, _softmax_start, _softmax_store,
                                   _softmax_tile)

BLOCK_N = 32          # keys per tile
MIN_PROGRAMS = 264    # ~2 per SM of an H100/H200: steps wider than ONE_BLOCK
MIN_PROGRAMS_ONE_BLOCK = 528   # ~4 per SM: steps of at most ONE_BLOCK tokens (faster at batch 1-8)
MAX_CHUNKS = 16       # the combine holds the chunks of a row in registers
# The packed kernel (`_attend_packed`): the q heads of a kv head share a program, up to PACKED_BLOCK_M
# (head, query) rows, so each K/V tile is read once per PACKED_BLOCK_M rows instead of once per head.
# Its tiles: the fastest at Fast-dLLM v2's batch 8 of a sweep on an H100 (block_attention_batch_probe.py
# --packed: rows 64/128, keys 32/64, 132/264/528 programs, 4/8 warps).
PACKED_BLOCK_M, PACKED_BLOCK_N, PACKED_PROGRAMS, PACKED_WARPS = 64, 64, 132, 4
PACKED_FROM_BATCH = 8   # a step of one block at this batch or more takes it (None: no step does); timed at 1 and 8


NARROW = 16   # fed tokens up to which SDPA's 64-query tiles are mostly empty: the kernels at any batch
ONE_BLOCK, MAX_BATCH = 32, 8   # a step of one block of 32 at batch up to 8: the kernels too


def available(qkv: torch.Tensor, n_heads: int) -> bool:
    """Whether a block step's attention over qkv [B, W, H + 2 H_kv, hd] takes these kernels: where
    they can run (window_attention.supported) and either SDPA's kernel would fill at most half the
    SMs (as for the window kernels), or the step feeds at most NARROW tokens (SDAR's block of 4: SDPA
    computes 64 query rows for every 4), or at most ONE_BLOCK tokens at batch up to MAX_BATCH (where
    they beat cuDNN's SDPA at every shape timed: experiments/speed/block_attention_batch_probe.py)."""
    B, W = qkv.shape[:2]
    return window_attention.supported(qkv) and (W <= NARROW or (W <= ONE_BLOCK and B <= MAX_BATCH)
                                                or window_attention.available(qkv, n_heads))


def sdpa(qkv: torch.Tensor, n_heads: int, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reference: SDPA over token-major qkv [B, W, H + 2 H_kv, hd] and kv [B, K, 2 H_kv, hd]
    under the additive mask [B, 1, W, K] -> [B, W, H * hd]."""
    B, W = qkv.shape[:2]
    n_kv = kv.shape[2] // 2
    q = qkv[:, :, :n_heads].transpose(1, 2)
    k, v = kv[:, :, :n_kv].transpose(1, 2), kv[:, :, n_kv:].transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=n_heads != n_kv)
    return out.transpose(1, 2).reshape(B, W, -1)


def _chunking(K: int, per_row: int, block_n: int) -> tuple[int, int]:
    """(keys per chunk, chunks) for K keys split into about per_row chunks of whole tiles, at most
    MAX_CHUNKS."""
    chunk = triton.cdiv(triton.cdiv(K, max(1, per_row)), block_n) * block_n
    chunk = max(chunk, triton.cdiv(K, MAX_CHUNKS * block_n) * block_n)
    return chunk, triton.cdiv(K, chunk)


def packs(B: int, W: int, n_heads: int, n_kv: int) -> bool:
    """Whether block_attention packs a kv head's q heads into one program for this step: a step of
    at most ONE_BLOCK tokens at batch PACKED_FROM_BATCH or more, with grouped kv heads."""
    return PACKED_FROM_BATCH is not None and B >= PACKED_FROM_BATCH and W <= ONE_BLOCK and n_heads > n_kv


def block_attention(qkv: torch.Tensor, n_heads: int, kv: torch.Tensor, key_mask: torch.Tensor,
                    packed: bool | None = None) -> torch.Tensor:
    """qkv [B, W, H + 2 H_kv, hd] (RoPE applied), kv [B, K, 2 H_kv, hd] (a view of the cache's first
    K slots), key_mask [B, 1, W, K] bool (True: seen) -> [B, W, H * hd]. `packed`: the q heads of
    each kv head in one program (`_attend_packed`) instead of a program per q head; None: as
    `packs` says."""
    B, W, nh, hd = qkv.shape
    n_kv = kv.shape[2] // 2
    if packed is None:
        packed = packs(B, W, n_heads, n_kv)
    K = kv.shape[1]
    assert qkv.stride(-1) == 1 and kv.stride(-1) == 1 and key_mask.shape == (B, 1, W, K) and key_mask.stride(-1) == 1
    block_m = max(16, triton.next_power_of_2(W))
    km = key_mask.view(torch.uint8)
    args = (qkv.stride(0), qkv.stride(1), qkv.stride(2), kv.stride(0), kv.stride(1), kv.stride(2),
            km.stride(0), km.stride(2), W, K)
    scale = 1.0 / math.sqrt(hd) * 1.4426950408889634
    if packed:
        rows_m = min(PACKED_BLOCK_M, max(16, triton.next_power_of_2(W * (n_heads // n_kv))))
        tiles_m = triton.cdiv(W * (n_heads // n_kv), rows_m)
        chunk, splits = _chunking(K, PACKED_PROGRAMS // (B * n_kv * tiles_m), PACKED_BLOCK_N)
        o_part, ml_part = _parts(B * n_heads, splits, block_m, hd, qkv.device)
        out = qkv.new_empty((B, W, n_heads * hd))
        _attend_packed[(B * n_kv * tiles_m, splits)](
            qkv, kv, km, o_part, ml_part, out, out.stride(0), out.stride(1), *args, chunk, scale, H=n_heads,
            HKV=n_kv, HALF=hd // 2, BLOCK_M=rows_m, TILES_M=tiles_m, PART_M=block_m, BLOCK_N=PACKED_BLOCK_N,
            IEEE=qkv.dtype == torch.float32, DIRECT=splits == 1, num_warps=PACKED_WARPS,
            num_stages=window_attention.NUM_STAGES)
        if splits == 1:   # one chunk of keys: the output, normalized, written by the pass itself
            return out
    else:
        per_head = (MIN_PROGRAMS_ONE_BLOCK if W <= ONE_BLOCK else MIN_PROGRAMS) // (B * n_heads)
        chunk, splits = _chunking(K, per_head, BLOCK_N)
        o_part, ml_part = _parts(B * n_heads, splits, block_m, hd, qkv.device)
        _attend_chunk[(B * n_heads, splits)](
            qkv, kv, km, o_part, ml_part, *args, chunk, scale, H=n_heads, HKV=n_kv, HALF=hd // 2,
            BLOCK_M=block_m, BLOCK_N=BLOCK_N, IEEE=qkv.dtype == torch.float32,
            num_warps=window_attention.NUM_WARPS, num_stages=window_attention.NUM_STAGES)
        out = qkv.new_empty((B, W, n_heads * hd))
    rows = window_attention.COMBINE_ROWS
    _combine[(B * n_heads, triton.cdiv(W, rows))](
        o_part, ml_part, out, out.stride(0), out.stride(1), W,
        H=n_heads, HD=hd, SPLITS=splits, SPLITS_P2=triton.next_power_of_2(splits), BLOCK_M=block_m,
        ROWS=rows, num_warps=2)
    return out


def _parts(heads: int, splits: int, block_m: int, hd: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunks' unnormalized outputs [heads, splits, block_m, hd] and (max, sum) [heads, splits,
    2, block_m], fp32, as _combine reads them."""
    return (torch.empty((heads, splits, block_m, hd), dtype=torch.float32, device=device),
            torch.empty((heads, splits, 2, block_m), dtype=torch.float32, device=device))


_trusted: dict[tuple, bool] = {}   # (device, dtype, H, H_kv, hd, packed) -> the kernels agreed with SDPA


def trusted(qkv: torch.Tensor, n_heads: int, kv: torch.Tensor, key_mask: torch.Tensor,
            mask: torch.Tensor) -> bool:
    """Whether the kernels serve these heads on this device (kernels/first_call.py): outputs within
    1e-5 (fp32) or 2e-2 (bf16, fp16) of SDPA's (additive `mask`), relative to the largest |output|,
    on their first input (the packed kernel and the per-head one each on theirs)."""
    def compare():
        got, ref = block_attention(qkv, n_heads, kv, key_mask), sdpa(qkv, n_heads, kv, mask)
        tol = 1e-5 if qkv.dtype == torch.float32 else 2e-2
        err = (got.float() - ref.float()).abs().max().item()
        return err <= tol * max(1.0, ref.float().abs().max().item()), f"its output differs from SDPA's by {err:.3g}"
    key = (qkv.device, qkv.dtype, n_heads, kv.shape[2] // 2, qkv.shape[-1], packs(*qkv.shape[:2], n_heads, kv.shape[2] // 2))
    return agreed(_trusted, key, qkv, compare,
                  "kernels.block_attention: the Triton block attention", "SDPA serves", "DLLM_TRITON_ATTN")


if triton is not None:
    @triton.jit
    def _chunk_pass(src, qm, kv_row, hk, mask_rows, lo, K, chunk, s_kl, s_kh, qk_scale,
                    HKV: tl.constexpr, HALF: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    IEEE: tl.constexpr):
        """A flash-attention pass of the query rows at `src` (qm: the live ones) over the keys
        [lo, min(lo + chunk, K)) of kv head hk of one cache row (kv_row), under the key mask whose
        rows for these queries start at mask_rows [BLOCK_M, 1]. Out: the unnormalized output halves,
        the running max and sum."""
        d = tl.arange(0, HALF)
        q1 = tl.load(src, mask=qm, other=0.0)
        q2 = tl.load(src + HALF, mask=qm, other=0.0)
        k_base = kv_row + hk * s_kh
        v_base = kv_row + (HKV + hk) * s_kh
        acc1, acc2, m_i, l_i = _softmax_start(BLOCK_M, HALF)
        hi = tl.minimum(lo + chunk, K)
        for n0 in range(lo, hi, BLOCK_N):
            n = n0 + tl.arange(0, BLOCK_N)
            inside = n < hi
            k1, k2, v1, v2 = _kv_tile(k_base, v_base, n, s_kl, d, inside[:, None], HALF)
            seen = tl.load(mask_rows + n[None, :], mask=qm & inside[None, :], other=0) != 0
            acc1, acc2, m_i, l_i = _softmax_tile(q1, q2, k1, k2, v1, v2, seen, acc1, acc2, m_i, l_i, qk_scale,
                                                 IEEE)
        return acc1, acc2, m_i, l_i

    @triton.jit
    def _attend_chunk(qkv, kv, key_mask, o_part, ml_part,
                      s_xb, s_xw, s_xh, s_kb, s_kl, s_kh, s_mb, s_mw, W, K, chunk, qk_scale,
                      H: tl.constexpr, HKV: tl.constexpr, HALF: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr, IEEE: tl.constexpr):
        """One (row, q head, chunk of keys): a flash-attention pass over the chunk's keys under the
        key mask. Out: the unnormalized output, its max and its sum."""
        bh, sp, n_part, bi, h, hk = _head_program(H, HKV)
        m = tl.arange(0, BLOCK_M)
        d = tl.arange(0, HALF)
        qm = m[:, None] < W
        src = qkv + bi * s_xb + m[:, None] * s_xw + h * s_xh + d[None, :]
        acc1, acc2, m_i, l_i = _chunk_pass(src, qm, kv + bi * s_kb, hk, key_mask + bi * s_mb + m[:, None] * s_mw,
                                           sp * chunk, K, chunk, s_kl, s_kh, qk_scale,
                                           HKV, HALF, BLOCK_M, BLOCK_N, IEEE)
        _softmax_store(o_part, ml_part, bh * n_part + sp, m, d, acc1, acc2, m_i, l_i, BLOCK_M, HALF)

    @triton.jit
    def _attend_packed(qkv, kv, key_mask, o_part, ml_part, out, s_ob, s_ow,
                       s_xb, s_xw, s_xh, s_kb, s_kl, s_kh, s_mb, s_mw, W, K, chunk, qk_scale,
                       H: tl.constexpr, HKV: tl.constexpr, HALF: tl.constexpr, BLOCK_M: tl.constexpr,
                       TILES_M: tl.constexpr, PART_M: tl.constexpr, BLOCK_N: tl.constexpr, IEEE: tl.constexpr,
                       DIRECT: tl.constexpr):
        """One (row, kv head, tile of BLOCK_M (q head, query) rows, chunk of keys): row r of the tile is
        query r % W of the kv head's q head r // W; a flash-attention pass over the chunk's keys, each
        K/V tile read once for all of them. Out: as _attend_chunk's, per (row, q head); or, DIRECT (one
        chunk holds every key), the output itself, divided by its sum as _combine divides one chunk's,
        in out [B, W, H * hd]."""
        pid = tl.program_id(0)
        sp = tl.program_id(1)
        n_part = tl.num_programs(1)
        bk = pid // TILES_M
        bi = bk // HKV
        hk = bk % HKV
        r = (pid % TILES_M) * BLOCK_M + tl.arange(0, BLOCK_M)
        g = r // W
        w = r - g * W
        live = g < H // HKV
        h = hk * (H // HKV) + g
        d = tl.arange(0, HALF)
        qm = live[:, None]
        src = qkv + bi * s_xb + w[:, None] * s_xw + h[:, None] * s_xh + d[None, :]
        acc1, acc2, m_i, l_i = _chunk_pass(src, qm, kv + bi * s_kb, hk, key_mask + bi * s_mb + w[:, None] * s_mw,
                                           sp * chunk, K, chunk, s_kl, s_kh, qk_scale,
                                           HKV, HALF, BLOCK_M, BLOCK_N, IEEE)
        if DIRECT:
            dst = out + bi * s_ob + w[:, None] * s_ow + h[:, None] * 2 * HALF + d[None, :]
            tl.store(dst, (acc1 / l_i[:, None]).to(out.dtype.element_ty), mask=qm)
            tl.store(dst + HALF, (acc2 / l_i[:, None]).to(out.dtype.element_ty), mask=qm)
        else:
            part = (bi * H + h) * n_part + sp                  # _combine's layout: [B * H, splits, PART_M, hd]
            o = o_part + part[:, None] * PART_M * 2 * HALF + w[:, None] * 2 * HALF + d[None, :]
            tl.store(o, acc1, mask=qm)
            tl.store(o + HALF, acc2, mask=qm)
            ml = ml_part + part * 2 * PART_M + w
            tl.store(ml, m_i, mask=live)
            tl.store(ml + PART_M, l_i, mask=live)
