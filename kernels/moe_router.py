"""The MoE router's product x [T, d] . weight [E, d]^T in fp32 as S partial sums over slices of d, for a
block step's few tokens: one Triton kernel with a program per (tile of BLOCK_M tokens, tile of
BLOCK_N experts, slice of d). Their sum, taken in slice order by the router kernel as it loads them
(kernels/moe_route.py), is the router logits.

cuBLAS runs this product (32 tokens x 2048 x 256 experts, LLaDA2.0-mini's block step at batch 1) as a
few thread blocks that each walk the whole of d: 5.0 us under a CUDA graph on an H100, against 2.3 us
for 16 slices of 128 (5.5 against 3.3 us for 256 tokens in 4 slices;
experiments/speed/router_knobs_probe.py). Each product of two bf16 numbers is exact in fp32; the sums
run in another order than cuBLAS's.

`router_partials(x, weight)` -> [S, T, E] fp32 on CUDA bf16 inputs (or fp32 under Triton's
interpreter, TRITON_INTERPRET=1, as the tests run it) of at most MAX_TOKENS tokens with d a multiple
of S * BLOCK_K and E of BLOCK_N, None elsewhere (the caller takes torch's product). The kernel serves only after its first
call on a device summed within 1e-4 (relative to the largest logit) of the fp32 product
(kernels/first_call.py). `DLLM_TRITON_ROUTE=0` turns it off with the router kernel. Imports nothing
of this project.
"""
from __future__ import annotations

import os

import torch

from .first_call import agreed
from .moe_route import sum_partials

try:
    import triton
    import triton.language as tl
except ImportError:   # CPU installs: torch's product serves
    triton = None

BLOCK_N, BLOCK_K = 32, 128
FEW_TOKENS = 32                  # up to this many tokens: a tile of 32 rows, 16 slices of d;
SLICES_FEW, SLICES_MANY = 16, 4  # more: tiles of 64 rows, 4 slices (the fastest of the probe's)
MAX_TOKENS = 256                 # a block step at batch 8; more (a prefill) take torch's product
TOLERANCE = 1e-4


def slices_for(T: int) -> int:
    return SLICES_FEW if T <= FEW_TOKENS else SLICES_MANY


def triton_ready(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether router_partials takes the kernel: Triton importable, CUDA bf16 x and weight (or the
    interpreter with equal dtypes), shapes it tiles; DLLM_TRITON_ROUTE=0 turns it off."""
    if triton is None or os.environ.get("DLLM_TRITON_ROUTE", "1") == "0" or x.dim() != 2 \
            or not 0 < x.shape[0] <= MAX_TOKENS:
        return False
    interpreted = os.environ.get("TRITON_INTERPRET") == "1" and not x.is_cuda and x.dtype == weight.dtype
    if not (interpreted or (x.is_cuda and x.dtype == weight.dtype == torch.bfloat16)):
        return False
    E, d = weight.shape
    return E % BLOCK_N == 0 and d % (slices_for(x.shape[0]) * BLOCK_K) == 0


def router_partials(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor | None:
    """x [T, d], weight [E, d] -> [S, T, E] fp32 partial sums (module docstring), or None where the
    kernel does not serve."""
    if not (triton_ready(x, weight) and _kernel_trusted(x, weight)):
        return None
    return _router_partials_triton(x, weight)


_trusted: dict[tuple, bool] = {}   # (device, dtype, E, d, S) -> its sums agreed with the fp32 product


def _kernel_trusted(x: torch.Tensor, weight: torch.Tensor) -> bool:
    def compare():
        got = sum_partials(_router_partials_triton(x, weight))
        want = x.float() @ weight.float().t()
        err = (got - want).abs().max().item()
        return err <= TOLERANCE * max(1.0, want.abs().max().item()), f"its sums differ from the product by {err:.3g}"
    return agreed(_trusted, (x.device, x.dtype, *weight.shape, slices_for(x.shape[0])), x, compare,
                  "kernels.moe_router: the Triton router product", "torch's product serves", "DLLM_TRITON_ROUTE")


def _router_partials_triton(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    T, d = x.shape
    E = weight.shape[0]
    S = slices_for(T)
    block_m = 32 if T <= FEW_TOKENS else 64
    x, weight = x.contiguous(), weight.contiguous()
    out = torch.empty((S, T, E), dtype=torch.float32, device=x.device)
    _partials_kernel[(triton.cdiv(T, block_m), E // BLOCK_N, S)](
        x, weight, out, T, D=d, E=E, SLICE=d // S, BLOCK_M=block_m, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K,
        IEEE=x.dtype == torch.float32)
    return out


if triton is not None:
    @triton.jit
    def _partials_kernel(x_ptr, w_ptr, out_ptr, T, D: tl.constexpr, E: tl.constexpr, SLICE: tl.constexpr,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, IEEE: tl.constexpr):
        """Program (m, n, s): rows m's tile of x times expert tile n's weight rows over d's slice s ->
        out[s, m tile, n tile]."""
        m, n, s = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        rm = m * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = n * BLOCK_N + tl.arange(0, BLOCK_N)
        rk = tl.arange(0, BLOCK_K)
        rows = rm[:, None] < T
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(s * SLICE, (s + 1) * SLICE, BLOCK_K):
            a = tl.load(x_ptr + rm[:, None] * D + (k0 + rk)[None, :], mask=rows, other=0.0)
            b = tl.load(w_ptr + rn[None, :] * D + (k0 + rk)[:, None])
            if IEEE:
                acc += tl.dot(a, b, input_precision="ieee")
            else:
                acc += tl.dot(a, b)
        tl.store(out_ptr + (s * T + rm[:, None]) * E + rn[None, :], acc, mask=rows)
