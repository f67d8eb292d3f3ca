"""Attention of a KV-cache window step (prefix/dual cache) in two Triton kernels.

A window step feeds W tokens (a dual-cache block: 32) that attend to all L cached keys. Through
`scaled_dot_product_attention` that step ran RoPE, an indexed K/V write and an attention kernel
that put only H x ceil(W / 64) thread blocks (32 at batch 1) on the GPU: 19 us per LLaDA-8B layer
at batch 1 for 12.6 MB of K/V (H200). Here (flash-decoding):

  1. `_attend_split`, one program per (row, q head, part): RoPE on the q of the fused q/k/v
     projection, then one flash-attention pass over the part's keys, keeping the unnormalized
     output, its running max and its sum. A part is a chunk of the cache without the window's
     positions, or (the last part) the window's own keys: k rotated from the projection and
     written to the cache with v by one q head per kv head (no program reads a cache entry that
     another one writes).
  2. `_combine`: merges the chunks of each (row, head) and writes [b, W, H * hd].

Math as in the SDPA path: RoPE in fp32 cast to the model dtype, scores and softmax in fp32,
probabilities cast to the value dtype for the second product; fp32 models use IEEE products (no
TF32). On CPU the kernels run under TRITON_INTERPRET=1 (the tests do so); `available()` says
whether the forward may use them (CUDA tensors or the interpreter, Triton importable, a
power-of-two head dim, DLLM_TRITON_ATTN not "0").
"""
from __future__ import annotations

import functools
import math
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:   # CPU installs: the SDPA path serves
    triton = None


def available(qkv: torch.Tensor, n_heads: int) -> bool:
    """Whether a window step's attention takes these kernels: qkv [b, W, H + 2 H_kv, hd] on a
    GPU of compute capability 8.0 or newer (or under the interpreter), a power-of-two head dim,
    and SDPA's own kernel (one program per row, head and 64 queries) would fill at most half the
    GPU's SMs. On an H200 at LLaDA-8B's 32-token window these made the dual-cache step 5.4% and
    3.1% faster at batch 1 and 2; at batch 4 and 8 both paths were within 1.4%
    (results/speed/window_attention_h200.txt). DLLM_TRITON_ATTN=0 turns them off."""
    b, W = qkv.shape[:2]
    return supported(qkv) and (os.environ.get("TRITON_INTERPRET") == "1"
                               or 2 * b * n_heads * -(-W // 64) <= _gpu(qkv.device)[0])


def supported(qkv: torch.Tensor) -> bool:
    """Whether these kernels can run on qkv [b, W, heads, hd] at all: Triton importable, a
    power-of-two head dim of at least 16, a GPU of compute capability 8.0 or newer (bf16
    products) or the interpreter, DLLM_TRITON_ATTN not "0"."""
    hd = qkv.shape[-1]
    if triton is None or os.environ.get("DLLM_TRITON_ATTN", "1") == "0" or hd < 16 or hd & (hd - 1):
        return False
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    return qkv.is_cuda and _gpu(qkv.device)[1] >= 8


@functools.lru_cache(maxsize=None)
def _gpu(device) -> tuple[int, int]:
    props = torch.cuda.get_device_properties(device)
    return props.multi_processor_count, props.major


# Launch settings: the fastest of a sweep on an H200 at LLaDA-8B's batch-1 window
# (results/speed/window_attention_h200.txt, --sweep).
BLOCK_N = 32         # keys per tile
CHUNK_TILES = 4      # most tiles per cache chunk (one program each)
MIN_PROGRAMS = 264   # ~2 per SM of an H100/H200: chunks enough to fill the GPU at batch 1
COMBINE_ROWS = 4     # query rows per combine program
NUM_WARPS, NUM_STAGES = 2, 3
MAX_PARTS = 16       # cache chunks + the window's own part


def window_attention(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_heads: int,
                     cache: torch.Tensor, rows: torch.Tensor, pos: torch.Tensor,
                     key_mask: torch.Tensor | None) -> torch.Tensor:
    """qkv [b, W, H + 2 H_kv, hd] (no RoPE yet), cos/sin [b, W, 1, hd], cache [B, L, 2 H_kv, hd]
    (written at [rows, pos]), rows [b] cache rows, pos [b, W] sequence indices of the window,
    contiguous (pos[:, 0] + arange(W), as the cache modes feed it), key_mask [b, L] bool or None
    -> [b, W, H * hd]."""
    b, W, nh, hd = qkv.shape
    n_kv = (nh - n_heads) // 2
    L = cache.shape[1]
    assert qkv.stride(-1) == 1 and cache.stride(-1) == 1 and cache.shape[2] == 2 * n_kv
    cos, sin = cos.reshape(b, W, hd), sin.reshape(b, W, hd)
    per_head = max(1, MIN_PROGRAMS // (b * n_heads))
    chunk = min(CHUNK_TILES * BLOCK_N, triton.cdiv(triton.cdiv(L, per_head), BLOCK_N) * BLOCK_N)
    # longer chunks on long sequences: the combine holds at most 16 parts in registers
    chunk = max(chunk, triton.cdiv(L, (MAX_PARTS - 1) * BLOCK_N) * BLOCK_N)
    splits = triton.cdiv(L, chunk) + 1       # the cache chunks, then the window's own keys
    block_m = max(16, triton.next_power_of_2(W))
    o_part = torch.empty((b * n_heads, splits, block_m, hd), dtype=torch.float32, device=qkv.device)
    ml_part = torch.empty((b * n_heads, splits, 2, block_m), dtype=torch.float32, device=qkv.device)
    km = key_mask if key_mask is not None else pos   # any tensor: not read without HAS_MASK
    _attend_split[(b * n_heads, splits)](
        qkv, cos, sin, cache, rows, pos, km, o_part, ml_part,
        qkv.stride(0), qkv.stride(1), qkv.stride(2), cos.stride(0), cos.stride(1),
        sin.stride(0), sin.stride(1), cache.stride(0), cache.stride(1), cache.stride(2),
        pos.stride(0), km.stride(0), W, L, chunk, 1.0 / math.sqrt(hd) * 1.4426950408889634,
        H=n_heads, HKV=n_kv, HALF=hd // 2, BLOCK_M=block_m, BLOCK_N=BLOCK_N,
        HAS_MASK=key_mask is not None, IEEE=qkv.dtype == torch.float32,
        num_warps=NUM_WARPS, num_stages=NUM_STAGES)
    out = qkv.new_empty((b, W, n_heads * hd))
    _combine[(b * n_heads, triton.cdiv(W, COMBINE_ROWS))](
        o_part, ml_part, out, out.stride(0), out.stride(1), W,
        H=n_heads, HD=hd, SPLITS=splits, SPLITS_P2=triton.next_power_of_2(splits), BLOCK_M=block_m,
        ROWS=COMBINE_ROWS, num_warps=2)
    return out


if triton is not None:
    @triton.jit
    def _rotate(x1, x2, c, s, dtype):
        """Rotate-half RoPE of the two halves of head vectors, in fp32, cast to the model dtype."""
        return (x1 * c - x2 * s).to(dtype), (x2 * c + x1 * s).to(dtype)

    @triton.jit
    def _dot(a, b, IEEE: tl.constexpr):
        if IEEE:
            return tl.dot(a, b, input_precision="ieee")
        return tl.dot(a, b)

    @triton.jit
    def _head_program(H: tl.constexpr, HKV: tl.constexpr):
        """(row x q head, part, parts, row, q head, kv head) of a (row, q head, part) program."""
        bh = tl.program_id(0)
        h = bh % H
        return bh, tl.program_id(1), tl.num_programs(1), bh // H, h, h // (H // HKV)

    @triton.jit
    def _softmax_start(BLOCK_M: tl.constexpr, HALF: tl.constexpr):
        """An online softmax's start: output halves (the V columns), running max and sum."""
        return (tl.zeros((BLOCK_M, HALF), dtype=tl.float32), tl.zeros((BLOCK_M, HALF), dtype=tl.float32),
                tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32), tl.zeros((BLOCK_M,), dtype=tl.float32))

    @triton.jit
    def _softmax_store(o_part, ml_part, part, m, d, acc1, acc2, m_i, l_i, BLOCK_M: tl.constexpr, HALF: tl.constexpr):
        """A part's unnormalized output, max and sum, for _combine."""
        o = o_part + part * BLOCK_M * 2 * HALF + m[:, None] * 2 * HALF + d[None, :]
        tl.store(o, acc1)
        tl.store(o + HALF, acc2)
        ml = ml_part + part * 2 * BLOCK_M
        tl.store(ml + m, m_i)
        tl.store(ml + BLOCK_M + m, l_i)

    @triton.jit
    def _kv_tile(k_base, v_base, n, s_kl, d, ld, HALF: tl.constexpr):
        """The cached K and V of keys n (rows s_kl apart), each in two halves of the head dim."""
        kp = k_base + n[:, None] * s_kl + d[None, :]
        vp = v_base + n[:, None] * s_kl + d[None, :]
        return (tl.load(kp, mask=ld, other=0.0), tl.load(kp + HALF, mask=ld, other=0.0),
                tl.load(vp, mask=ld, other=0.0), tl.load(vp + HALF, mask=ld, other=0.0))

    @triton.jit
    def _softmax_tile(q1, q2, k1, k2, v1, v2, seen, acc1, acc2, m_i, l_i, qk_scale, IEEE: tl.constexpr):
        """One online-softmax step over a tile of keys (k and v in two halves of the head dim);
        `seen`: [BLOCK_M, BLOCK_N] or [1, BLOCK_N], the keys each query reads."""
        sc = _dot(q1, tl.trans(k1), IEEE) + _dot(q2, tl.trans(k2), IEEE)
        sc = tl.where(seen, sc * qk_scale, float("-inf"))   # log2 units
        m_new = tl.maximum(m_i, tl.max(sc, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)         # no valid key yet
        p = tl.math.exp2(sc - m_use[:, None])
        alpha = tl.math.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        p = p.to(v1.dtype)
        acc1 = acc1 * alpha[:, None] + _dot(p, v1, IEEE)
        acc2 = acc2 * alpha[:, None] + _dot(p, v2, IEEE)
        return acc1, acc2, m_new, l_i

    @triton.jit
    def _attend_split(qkv, cos, sin, cache, rows, pos, key_mask, o_part, ml_part,
                      s_xb, s_xw, s_xh, s_cb, s_cw, s_sb, s_sw, s_kb, s_kl, s_kh, s_pb, s_mb,
                      W, L, chunk, qk_scale,
                      H: tl.constexpr, HKV: tl.constexpr, HALF: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr, HAS_MASK: tl.constexpr, IEEE: tl.constexpr):
        """One (row, q head, part): RoPE on q, then a flash-attention pass over the part's keys:
        a chunk of the cache without the window's positions, or (the last part) the window's own
        keys, rotated from the projection and written to the cache with their v by the first q
        head of each kv head. Out: the unnormalized output, its max and its sum."""
        bh, sp, n_part, bi, h, hk = _head_program(H, HKV)
        dt = cache.dtype.element_ty
        r = tl.load(rows + bi).to(tl.int64)
        st = tl.load(pos + bi * s_pb)                  # the window is [st, st + W)
        m = tl.arange(0, BLOCK_M)
        d = tl.arange(0, HALF)
        qm = m[:, None] < W
        src = qkv + bi * s_xb + m[:, None] * s_xw + h * s_xh + d[None, :]
        tab = bi * s_cb + m[:, None] * s_cw + d[None, :]
        q1, q2 = _rotate(tl.load(src, mask=qm, other=0.0).to(tl.float32),
                         tl.load(src + HALF, mask=qm, other=0.0).to(tl.float32),
                         tl.load(cos + tab, mask=qm, other=0.0).to(tl.float32),
                         tl.load(sin + tab, mask=qm, other=0.0).to(tl.float32), dt)
        k_base = cache + r * s_kb + hk * s_kh
        v_base = cache + r * s_kb + (HKV + hk) * s_kh
        acc1, acc2, m_i, l_i = _softmax_start(BLOCK_M, HALF)
        if sp < n_part - 1:                            # a chunk of cached keys
            lo = sp * chunk
            hi = tl.minimum(lo + chunk, L)
            for n0 in range(lo, hi, BLOCK_N):
                n = n0 + tl.arange(0, BLOCK_N)
                inside = n < hi
                valid = inside & ((n < st) | (n >= st + W))
                k1, k2, v1, v2 = _kv_tile(k_base, v_base, n, s_kl, d, valid[:, None], HALF)
                if HAS_MASK:
                    valid = valid & (tl.load(key_mask + bi * s_mb + n, mask=inside, other=0) != 0)
                acc1, acc2, m_i, l_i = _softmax_tile(q1, q2, k1, k2, v1, v2, valid[None, :], acc1, acc2, m_i, l_i,
                                                     qk_scale, IEEE)
        else:                                          # the window's own keys
            for w0 in range(0, W, BLOCK_N):
                w = w0 + tl.arange(0, BLOCK_N)
                win = w < W
                fw = win[:, None]
                f = qkv + bi * s_xb + w[:, None] * s_xw + d[None, :]
                t = bi * s_cb + w[:, None] * s_cw + d[None, :]
                k1, k2 = _rotate(tl.load(f + (H + hk) * s_xh, mask=fw, other=0.0).to(tl.float32),
                                 tl.load(f + (H + hk) * s_xh + HALF, mask=fw, other=0.0).to(tl.float32),
                                 tl.load(cos + t, mask=fw, other=0.0).to(tl.float32),
                                 tl.load(sin + t, mask=fw, other=0.0).to(tl.float32), dt)
                v1 = tl.load(f + (H + HKV + hk) * s_xh, mask=fw, other=0.0)
                v2 = tl.load(f + (H + HKV + hk) * s_xh + HALF, mask=fw, other=0.0)
                if h % (H // HKV) == 0:                # one writer per kv head
                    kp = k_base + (st + w)[:, None] * s_kl + d[None, :]
                    vp = v_base + (st + w)[:, None] * s_kl + d[None, :]
                    tl.store(kp, k1, mask=fw)
                    tl.store(kp + HALF, k2, mask=fw)
                    tl.store(vp, v1, mask=fw)
                    tl.store(vp + HALF, v2, mask=fw)
                valid = win
                if HAS_MASK:
                    valid = valid & (tl.load(key_mask + bi * s_mb + st + w, mask=win, other=0) != 0)
                acc1, acc2, m_i, l_i = _softmax_tile(q1, q2, k1, k2, v1, v2, valid[None, :], acc1, acc2, m_i, l_i,
                                                     qk_scale, IEEE)
        _softmax_store(o_part, ml_part, bh * n_part + sp, m, d, acc1, acc2, m_i, l_i, BLOCK_M, HALF)

    @triton.jit
    def _combine(o_part, ml_part, out, s_ob, s_ow, W,
                 H: tl.constexpr, HD: tl.constexpr, SPLITS: tl.constexpr, SPLITS_P2: tl.constexpr,
                 BLOCK_M: tl.constexpr, ROWS: tl.constexpr):
        """Merge the chunks of ROWS query rows of one (row, head): weights exp2(max_s - max)."""
        bh = tl.program_id(0)
        bi = bh // H
        h = bh % H
        s = tl.arange(0, SPLITS_P2)
        m = tl.program_id(1) * ROWS + tl.arange(0, ROWS)
        d = tl.arange(0, HD)
        ml = ml_part + bh * SPLITS * 2 * BLOCK_M + s[:, None] * 2 * BLOCK_M + m[None, :]
        sm = s[:, None] < SPLITS
        mx = tl.load(ml, mask=sm, other=float("-inf"))
        ls = tl.load(ml + BLOCK_M, mask=sm, other=0.0)
        top = tl.max(mx, 0)
        top = tl.where(top == float("-inf"), 0.0, top)
        wgt = tl.math.exp2(mx - top[None, :])                           # [SPLITS_P2, ROWS]
        o = tl.load(o_part + bh * SPLITS * BLOCK_M * HD + s[:, None, None] * BLOCK_M * HD
                    + m[None, :, None] * HD + d[None, None, :], mask=sm[:, :, None], other=0.0)
        acc = tl.sum(wgt[:, :, None] * o, 0) / tl.sum(wgt * ls, 0)[:, None]
        dst = out + bi * s_ob + m[:, None] * s_ow + h * HD + d[None, :]
        tl.store(dst, acc.to(out.dtype.element_ty), mask=m[:, None] < W)
