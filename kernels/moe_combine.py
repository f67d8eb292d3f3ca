"""The routed experts' weighted sum of an MoE layer (LLaDA2.x), as one operator:

    out[t] = bf16( sum_j fp32(rows[place[t, j]]) * w[t, j] )  (+ shared[t], added in x's dtype)

for the experts' outputs rows [P, d] in grouped order (kernels/moe_group.py), each (token, slot)
pair's row place [T, k] and its fp32 weight w [T, k]: the reference's weighted sum over the top_k
slots in fp32, cast to the rows' dtype, then the shared experts' output added.

`combine_reference` is that computation in torch (models/moe.py compiles it on the GPU: a gather of
the rows by index and a reduction). `combine` is a custom operator (torch.library,
`dllm::moe_combine`): on CUDA tensors with Triton, one kernel with a program per (token, BLOCK_D
columns) that loads the token's k rows as one [k, BLOCK_D] tile and sums it over the slots, as the
compiled reduction does; elsewhere the reference. The kernel serves on a device only after its first
call there came within one unit in the last place of the rows' dtype of the reference's output,
relative to its largest |output| (kernels/first_call.py). On an H100 under a CUDA graph, in
LLaDA2.0-mini's block step at batch 8 (256 tokens, 8 slots, 2048 columns): 8.4 us a layer against
the compiled reference's 13.7 (0.160 against 0.260 ms in 19 layers, `python
experiments/speed/moe_step_probe.py --config llada2-mini --batch 8`); the step 9.16 -> 9.13 ms
(`bash experiments/speed/moe_combine_ab.sh 8`). `DLLM_TRITON_COMBINE=0` turns it off.
Imports nothing of this project.
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

BLOCK_D = 512   # columns a program sums


def combine_reference(rows: torch.Tensor, place: torch.Tensor, w: torch.Tensor,
                      shared: torch.Tensor | None = None) -> torch.Tensor:
    """rows [P, d], place [T, k] (each pair's row), fp32 w [T, k], shared [T, d] or None -> [T, d]
    in rows' dtype."""
    out = (rows[place].float() * w[..., None]).sum(1).to(rows.dtype)
    return out if shared is None else out + shared


def triton_ready(rows: torch.Tensor) -> bool:
    """Whether combine takes the kernel: Triton importable, a CUDA tensor (or the interpreter,
    TRITON_INTERPRET=1, as the tests run it on CPU); DLLM_TRITON_COMBINE=0 turns it off."""
    if triton is None or os.environ.get("DLLM_TRITON_COMBINE", "1") == "0":
        return False
    return rows.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


@torch.library.custom_op("dllm::moe_combine", mutates_args=())
def combine(rows: torch.Tensor, place: torch.Tensor, w: torch.Tensor,
            shared: torch.Tensor | None = None) -> torch.Tensor:
    """[T, d] of the module docstring."""
    if triton_ready(rows) and _kernel_trusted(rows, place, w, shared):
        return _combine_triton(rows, place, w, shared)
    return combine_reference(rows, place, w, shared)


@combine.register_fake
def _(rows, place, w, shared=None):
    return rows.new_empty(place.shape[0], rows.shape[1])


_trusted: dict[tuple, bool] = {}   # (device, dtype, k, d, shared) -> the kernel agreed with the reference


def _kernel_trusted(rows, place, w, shared) -> bool:
    def compare():
        got = _combine_triton(rows, place, w, shared).float()
        want = combine_reference(rows, place, w, shared).float()
        err, scale = (got - want).abs().max().item(), want.abs().max().item()
        ulp = torch.finfo(rows.dtype).eps
        return err <= ulp * scale + 1e-6, f"max difference {err:.3g} against outputs up to {scale:.3g}"
    key = (rows.device, rows.dtype, place.shape[1], rows.shape[1], shared is not None)
    return agreed(_trusted, key, rows, compare, "kernels.moe_combine: the Triton weighted sum",
                  "the reference sums the experts' rows", "DLLM_TRITON_COMBINE")


def _combine_triton(rows, place, w, shared):
    T, k = place.shape
    d = rows.shape[1]
    rows, place, w = rows.contiguous(), place.contiguous(), w.contiguous().float()
    out = rows.new_empty(T, d)
    has_shared = shared is not None
    sh = shared.contiguous() if has_shared else out
    block_d = min(BLOCK_D, triton.next_power_of_2(d))
    _combine_kernel[(T, triton.cdiv(d, block_d))](rows, place, w, sh, out, d, k, KP=triton.next_power_of_2(k),
                                                  BLOCK_D=block_d, SHARED=has_shared, num_warps=4)
    return out


if triton is not None:
    @triton.jit
    def _combine_kernel(rows_ptr, place_ptr, w_ptr, shared_ptr, out_ptr, d, k, KP: tl.constexpr,
                        BLOCK_D: tl.constexpr, SHARED: tl.constexpr):
        """Program (t, c): columns [c BLOCK_D, (c + 1) BLOCK_D) of token t."""
        t = tl.program_id(0)
        cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        j = tl.arange(0, KP)
        live = j < k
        p = tl.load(place_ptr + t * k + j, mask=live, other=0)
        wj = tl.load(w_ptr + t * k + j, mask=live, other=0.0)
        inside = live[:, None] & (cols[None, :] < d)
        x = tl.load(rows_ptr + p[:, None] * d + cols[None, :], mask=inside, other=0.0).to(tl.float32)
        o = tl.sum(x * wj[:, None], axis=0).to(out_ptr.dtype.element_ty)
        if SHARED:
            s = tl.load(shared_ptr + t * d + cols, mask=cols < d, other=0.0)
            o = (o.to(tl.float32) + s.to(tl.float32)).to(out_ptr.dtype.element_ty)
        tl.store(out_ptr + t * d + cols, o, mask=cols < d)
