"""The routed experts' two products of an MoE layer (LLaDA2.x) at a small batch, as two Triton kernels.

For the (token, slot) pairs grouped by expert (kernels/moe_group.py: token [P], offs [E] the
experts' ends in the grouped order; pair p belongs to expert e_p) and stacked weights gate_up
[E, 2F, d] (gate rows, then up rows) and down [E, d, F]:

    h[p]   = silu(x[token[p]] @ gate[e_p].T) * (x[token[p]] @ up[e_p].T)     [P, F]
    out[p] = h[p] @ down[e_p].T                                             [P, d]

`expert_products_reference` is what models/moe.py computes without these kernels (on the GPU the
gather of x's rows, torch._grouped_mm, a compiled SwiGLU, torch._grouped_mm again; elsewhere the same
products pair by pair). `expert_products` is a custom operator (torch.library, `dllm::moe_experts`):
on CUDA tensors with Triton and at most MAX_PAIRS rows (a block step at batch 1), two kernels
instead of some five, each with one program per (expert, tile of BLOCK_N output columns). A
program whose expert has no pair returns at once and reads nothing; the others stream their tile
of the expert's weights once per BLOCK_M of its pairs (fp32 accumulation). BLOCK_M is 32, the most
pairs an expert takes in a block step at batch 1 (a token picks an expert once; the shared expert
has one row a token), so every expert's weights are read once: with 16 the shared expert's were read
twice, and LLaDA2.0-mini's batch-1 block step took 3.094 ms against 2.702 (H100,
experiments/speed/expert_rows_ab.sh). The first kernel reads
x's rows through `token` (no gathered copy) and applies the SwiGLU to both halves' products
rounded to x's dtype, as the reference rounds its product before its SwiGLU. Sums run in another
order than cuBLAS/CUTLASS's, so outputs may differ from the reference's in the last bits of x's
dtype: the kernels serve on a device only after their first call there came within 3% of the
reference's largest output (kernels/first_call.py). On an H100 under a CUDA graph, at LLaDA2.0-mini's
shapes: 287 us against the grouped products' 352 us for 32 tokens routed to 138 experts; LLaDA2.0-mini's
block step at batch 1 3.80 ms against 3.87 without them (experiments/speed/moe_kernels_probe.py,
results/speed/block-causal/REPORT.md).
`DLLM_TRITON_EXPERTS=0` turns them off. Imports nothing of this project but kernels/.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .first_call import agreed
from .window_attention import triton

if triton is not None:
    import triton.language as tl

    from .window_attention import _dot

MAX_PAIRS = 288   # rows: 256 routed pairs and a shared expert's 32 (LLaDA2.0-mini's block step at batch 1)
BLOCK_M, BLOCK_N, BLOCK_K = 32, 64, 128   # the tiles (experiments/speed/moe_kernels_probe.py times others)
TOLERANCE = 3e-2   # of the reference's largest |output|


def expert_of_pairs(offs: torch.Tensor, n_pairs: int) -> torch.Tensor:
    """[P] the expert of each grouped pair, from the experts' ends offs [E]."""
    return torch.searchsorted(offs.long(), torch.arange(n_pairs, device=offs.device), right=True)


def expert_products_reference(x, token, offs, gate_up, down) -> torch.Tensor:
    """out [P, d] of the module docstring, rounded as models/moe.py rounds it: the gate/up product
    in x's dtype, the SwiGLU of it in fp32 rounded to x's dtype, the down product in x's dtype.
    torch._grouped_mm on a CUDA bf16 input, else pair by pair."""
    xs = x[token]
    if x.is_cuda and x.dtype == torch.bfloat16 and hasattr(torch, "_grouped_mm"):
        h = torch._grouped_mm(xs, gate_up.transpose(1, 2), offs=offs)
        return torch._grouped_mm(_swiglu(h), down.transpose(1, 2), offs=offs)
    e = expert_of_pairs(offs, xs.shape[0])
    h = torch.einsum("pk,pnk->pn", xs, gate_up[e])
    return torch.einsum("pk,pnk->pn", _swiglu(h), down[e])


def _swiglu(h: torch.Tensor) -> torch.Tensor:
    g, u = h.float().chunk(2, dim=-1)
    return (F.silu(g) * u).to(h.dtype)


def triton_ready(rows: int, x: torch.Tensor) -> bool:
    """Whether expert_products takes the kernels for `rows` pairs: Triton importable, CUDA tensors
    (or the interpreter, TRITON_INTERPRET=1, as the tests run it on CPU), 1 to MAX_PAIRS rows;
    DLLM_TRITON_EXPERTS=0 turns them off."""
    if triton is None or os.environ.get("DLLM_TRITON_EXPERTS", "1") == "0":
        return False
    if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    return 0 < rows <= MAX_PAIRS


@torch.library.custom_op("dllm::moe_experts", mutates_args=())
def expert_products(x: torch.Tensor, token: torch.Tensor, offs: torch.Tensor, gate_up: torch.Tensor,
                    down: torch.Tensor) -> torch.Tensor:
    """out [P, d] of the module docstring, pairs in grouped order."""
    if triton_ready(token.numel(), x) and _kernels_trusted(x, token, offs, gate_up, down):
        return _expert_products_triton(x, token, offs, gate_up, down)
    return expert_products_reference(x, token, offs, gate_up, down)


@expert_products.register_fake
def _(x, token, offs, gate_up, down):
    return x.new_empty(token.shape[0], down.shape[1])


_trusted: dict[tuple, bool] = {}   # (device, dtype, shapes) -> the kernels agreed with the reference


def _kernels_trusted(x, token, offs, gate_up, down) -> bool:
    def compare():
        got = _expert_products_triton(x, token, offs, gate_up, down).float()
        want = expert_products_reference(x, token, offs, gate_up, down).float()
        err, scale = (got - want).abs().max().item(), want.abs().max().item()
        return err <= TOLERANCE * scale + 1e-6, f"max difference {err:.3g} against outputs up to {scale:.3g}"
    key = (x.device, x.dtype, tuple(gate_up.shape), tuple(down.shape))
    return agreed(_trusted, key, x, compare, "kernels.moe_experts: the Triton expert products",
                  "torch's grouped products serve", "DLLM_TRITON_EXPERTS")


def _expert_products_triton(x, token, offs, gate_up, down, block_n: int = BLOCK_N, block_k: int = BLOCK_K,
                            stages: int = 3, block_m: int = BLOCK_M):
    E, F2, d = gate_up.shape
    f, P = F2 // 2, token.numel()
    x, token, offs = x.contiguous(), token.contiguous(), offs.contiguous()
    gate_up, down = gate_up.contiguous(), down.contiguous()
    tiles = dict(BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, IEEE=x.dtype == torch.float32, num_warps=4,
                 num_stages=stages)
    h = torch.empty(P, f, dtype=x.dtype, device=x.device)
    _swiglu_kernel[(E, triton.cdiv(f, block_n))](x, token, offs, gate_up, h, d, f, **tiles)
    out = torch.empty(P, d, dtype=x.dtype, device=x.device)
    _down_kernel[(E, triton.cdiv(d, block_n))](h, offs, down, out, f, d, **tiles)
    return out


if triton is not None:
    @triton.jit
    def _pairs_of(offs_ptr):
        """(first, end) of this program's expert in the grouped order."""
        e = tl.program_id(0)
        first = tl.load(offs_ptr + e - 1, mask=e > 0, other=0)
        return e, first, tl.load(offs_ptr + e)

    @triton.jit
    def _product_tile(a_rows, rows_in, w_cols, cols_in, K, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_K: tl.constexpr, IEEE: tl.constexpr):
        """[BLOCK_M, BLOCK_N] fp32: rows a_rows [BLOCK_M, 1] (pointers) times the weight rows w_cols
        [1, BLOCK_N] (pointers), over K (each weight tile loaded as [BLOCK_K, BLOCK_N], the dot's
        second operand as it is)."""
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        kk = tl.arange(0, BLOCK_K)
        for k0 in range(0, K, BLOCK_K):
            k = k0 + kk
            a = tl.load(a_rows + k[None, :], mask=rows_in[:, None] & (k[None, :] < K), other=0.0)
            w = tl.load(w_cols + k[:, None], mask=cols_in[None, :] & (k[:, None] < K), other=0.0)
            acc += _dot(a, w, IEEE)
        return acc

    @triton.jit
    def _swiglu_kernel(x_ptr, token_ptr, offs_ptr, w_ptr, h_ptr, K, Fh, BLOCK_M: tl.constexpr,
                       BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, IEEE: tl.constexpr):
        """h[p, n] = silu(g) * u of expert e_p's gate and up rows n (this program's tile)."""
        e, first, end = _pairs_of(offs_ptr)
        n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols_in = n < Fh
        gate_rows = w_ptr + e.to(tl.int64) * 2 * Fh * K + n[None, :].to(tl.int64) * K
        up_rows = gate_rows + Fh * K
        for m0 in range(first, end, BLOCK_M):
            m = m0 + tl.arange(0, BLOCK_M)
            rows_in = m < end
            tok = tl.load(token_ptr + m, mask=rows_in, other=0)
            a_rows = x_ptr + tok[:, None].to(tl.int64) * K
            g = _product_tile(a_rows, rows_in, gate_rows, cols_in, K, BLOCK_M, BLOCK_N, BLOCK_K, IEEE)
            u = _product_tile(a_rows, rows_in, up_rows, cols_in, K, BLOCK_M, BLOCK_N, BLOCK_K, IEEE)
            dt = h_ptr.dtype.element_ty
            g = g.to(dt).to(tl.float32)                  # the reference's product, in x's dtype
            u = u.to(dt).to(tl.float32)
            h = g / (1.0 + tl.exp(-g)) * u
            tl.store(h_ptr + m[:, None].to(tl.int64) * Fh + n[None, :], h.to(dt),
                     mask=rows_in[:, None] & cols_in[None, :])

    @triton.jit
    def _down_kernel(h_ptr, offs_ptr, w_ptr, out_ptr, K, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_K: tl.constexpr, IEEE: tl.constexpr):
        """out[p, n] = h[p] . down[e_p, n] for this program's tile of n."""
        e, first, end = _pairs_of(offs_ptr)
        n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols_in = n < N
        w_rows = w_ptr + e.to(tl.int64) * N * K + n[None, :].to(tl.int64) * K
        for m0 in range(first, end, BLOCK_M):
            m = m0 + tl.arange(0, BLOCK_M)
            rows_in = m < end
            acc = _product_tile(h_ptr + m[:, None].to(tl.int64) * K, rows_in, w_rows, cols_in, K, BLOCK_M, BLOCK_N,
                                BLOCK_K, IEEE)
            tl.store(out_ptr + m[:, None].to(tl.int64) * N + n[None, :], acc.to(out_ptr.dtype.element_ty),
                     mask=rows_in[:, None] & cols_in[None, :])
