"""The start of a block step's attention in one Triton kernel: the per-head RMSNorm of q and k
(Qwen3, SDAR, LLaDA2.x; optional), rotate-half RoPE on the first R dims of each q and k head
(LLaDA2.x rotates half of them), v copied through, and the fed K/V written into the block cache
at their slots. In torch these are the compiled passes of models/layers.py (`fused_qk_norm_rope`,
`fused_qkv_rope`: on an H100 four kernels a layer for LLaDA2.0-mini's norms and RoPE) and an
indexed write (`index_put_`), five kernels a layer; here one program per fed token does all of it.

Math as the torch passes: the norm in fp32 (x * rsqrt(mean(x^2) + eps)), then either cast to the
model dtype and scaled by the weight (LLaDA/Qwen2 order) or scaled in fp32 (`fp32_scale`, SDAR's),
the norm's output in the model dtype; RoPE in fp32 with the cos/sin tables in the model dtype,
rounded once to the model dtype (the eager pass rounds after each product: within one rounding
step of it). `ready()` says where it runs: Triton importable, CUDA tensors (or the interpreter,
TRITON_INTERPRET=1, as the tests run it), a power-of-two head dim, DLLM_TRITON_PROLOGUE not "0";
`trusted()`: it serves only after its first call on a device agreed with the torch passes
(kernels/first_call.py). Imports nothing of this project.
"""
from __future__ import annotations

import os
from typing import Callable

import torch

from .first_call import agreed

try:
    import triton
    import triton.language as tl
except ImportError:   # CPU installs: the torch passes serve
    triton = None


def ready(qkv: torch.Tensor) -> bool:
    """Whether the kernel can run on a projection like qkv [N, heads, hd]."""
    hd = qkv.shape[-1]
    if triton is None or os.environ.get("DLLM_TRITON_PROLOGUE", "1") == "0" or hd < 16 or hd & (hd - 1):
        return False
    return qkv.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def qk_rope_write(qkv: torch.Tensor, n_heads: int, n_kv: int, cos: torch.Tensor, sin: torch.Tensor,
                  norm: tuple[torch.Tensor, torch.Tensor, float, bool] | None, cache: torch.Tensor,
                  rows: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """qkv [N, H + 2 H_kv, hd] (N fed tokens, the projection's heads; any row stride), cos/sin
    [N, R] (R <= hd, even), norm (q weight [hd], k weight [hd], eps, fp32_scale) or None, cache
    [B, S, 2 H_kv, hd] (K heads then V heads) written at [rows[n], slots[n]] -> [N, H + 2 H_kv, hd],
    q and k normed and rotated, v as fed."""
    N, nh, hd = qkv.shape
    R = cos.shape[-1]
    assert nh == n_heads + 2 * n_kv and qkv.stride(-1) == 1 and cache.stride(-1) == 1 and R % 2 == 0 and R <= hd
    assert cache.shape[2] == 2 * n_kv and cache.shape[3] == hd
    out = qkv.new_empty((N, nh, hd))
    wq, wk, eps, fp32_scale = norm if norm is not None else (cos, cos, 0.0, False)   # weights unread without HAS_NORM
    cos, sin = cos.contiguous(), sin.contiguous()
    _qk_rope_write[(N,)](
        qkv, out, cos, sin, wq, wk, cache, rows, slots,
        qkv.stride(0), qkv.stride(1), cache.stride(0), cache.stride(1), cache.stride(2), float(eps),
        H=n_heads, HKV=n_kv, NH_P2=triton.next_power_of_2(nh), HD=hd, R=R,
        HAS_NORM=norm is not None, FP32_SCALE=bool(fp32_scale), num_warps=4)
    return out


_trusted: dict[tuple, bool] = {}   # (device, dtype, H, H_kv, hd, R, norm kind) -> agreed with the torch passes


def trusted(qkv: torch.Tensor, n_heads: int, n_kv: int, cos: torch.Tensor, sin: torch.Tensor,
            norm: tuple | None, cache: torch.Tensor, rows: torch.Tensor, slots: torch.Tensor,
            reference: Callable[[], torch.Tensor]) -> bool:
    """Whether the kernel serves these shapes on this device: on its first input its heads are
    within one rounding step of the model dtype (2e-2 relative to the largest |value| in bf16/fp16,
    1e-5 in fp32) of `reference()` (the torch passes' heads), and the cache rows it writes equal
    those heads' K/V. The check writes the cache as the call would."""
    def compare():
        got = qk_rope_write(qkv, n_heads, n_kv, cos, sin, norm, cache, rows, slots)
        ref = reference()
        tol = 1e-5 if qkv.dtype == torch.float32 else 2e-2
        err = (got.float() - ref.float()).abs().max().item()
        if err > tol * max(1.0, ref.float().abs().max().item()):
            return False, f"its heads differ from the torch passes' by {err:.3g}"
        pair = rows * cache.shape[1] + slots
        once = (pair[:, None] == pair[None, :]).sum(1) == 1     # a slot several tokens write (padding's) holds one of them
        if not torch.equal(cache[rows, slots][once], got[:, n_heads:][once]):
            return False, "the K/V it wrote are not its heads"
        return True, ""
    key = (qkv.device, qkv.dtype, n_heads, n_kv, qkv.shape[-1], cos.shape[-1],
           None if norm is None else bool(norm[3]))
    return agreed(_trusted, key, qkv, compare, "kernels.qk_rope_write: the Triton norm, RoPE and K/V write",
                  "the compiled passes and an indexed write serve", "DLLM_TRITON_PROLOGUE")


if triton is not None:
    @triton.jit
    def _qk_rope_write(qkv, out, cos, sin, wq, wk, cache, rows, slots,
                       s_xn, s_xh, s_cb, s_cs, s_ch, eps,
                       H: tl.constexpr, HKV: tl.constexpr, NH_P2: tl.constexpr, HD: tl.constexpr, R: tl.constexpr,
                       HAS_NORM: tl.constexpr, FP32_SCALE: tl.constexpr):
        """One fed token: its heads as a [NH_P2, HD] tile (rows: q heads, k heads, v heads)."""
        n = tl.program_id(0)
        h = tl.arange(0, NH_P2)[:, None]
        d = tl.arange(0, HD)[None, :]
        NH: tl.constexpr = H + 2 * HKV
        HALF: tl.constexpr = R // 2
        live = h < NH
        qk = h < H + HKV
        rot = qk & (d < R)
        partner = tl.where(d < HALF, d + HALF, d - HALF)      # the rotate-half partner of a rotated dim
        src = qkv + n * s_xn + h * s_xh
        x = tl.load(src + d, mask=live, other=0.0)
        xp = tl.load(src + partner, mask=rot, other=0.0)
        if HAS_NORM:
            xf = x.to(tl.float32)
            rstd = 1.0 / tl.sqrt(tl.sum(xf * xf, axis=1)[:, None] / HD + eps)
            w = tl.where(h < H, tl.load(wq + d), tl.load(wk + d))
            wp = tl.where(h < H, tl.load(wq + partner, mask=d < R, other=0.0),
                          tl.load(wk + partner, mask=d < R, other=0.0))
            y = tl.where(qk, _scaled(xf * rstd, w, FP32_SCALE, x.dtype), xf)
            yp = _scaled(xp.to(tl.float32) * rstd, wp, FP32_SCALE, x.dtype)
        else:
            y, yp = x.to(tl.float32), xp.to(tl.float32)
        c = tl.load(cos + n * R + d, mask=d < R, other=1.0).to(tl.float32)
        s = tl.load(sin + n * R + d, mask=d < R, other=0.0).to(tl.float32)
        rotated = y * c + tl.where(d < HALF, -yp, yp) * s
        res = tl.where(rot, rotated, y).to(x.dtype)
        tl.store(out + n * NH * HD + h * HD + d, res, mask=live)
        kv = live & (h >= H)
        dst = cache + tl.load(rows + n) * s_cb + tl.load(slots + n) * s_cs + (h - H) * s_ch + d
        tl.store(dst, res, mask=kv)

    @triton.jit
    def _scaled(normed, w, FP32_SCALE: tl.constexpr, dtype: tl.constexpr):
        """The norm's scale and its cast to the model dtype (the norm's output, as the torch
        passes hold it): SDAR scales in fp32, then casts; the LLaDA/Qwen2 order casts the normed
        value first, then scales."""
        if FP32_SCALE:
            return (normed * w.to(tl.float32)).to(dtype).to(tl.float32)
        return (normed.to(dtype).to(tl.float32) * w.to(tl.float32)).to(dtype).to(tl.float32)
