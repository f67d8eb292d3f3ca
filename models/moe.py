"""Mixture-of-experts pieces of LLaDA2.x (Ling/BailingMoeV2 layout): the router and a grouped
expert product.

Routing (as LLaDA2MoeGate computes it): router logits in fp32; scores = sigmoid(logits); the
choice uses scores + expert_bias, group-limited: experts are split into n_group groups, a group's
score is the sum of its top-2 biased scores, the topk_group best groups stay eligible, and the
top_k experts among them are chosen; the weights are the *unbiased* sigmoid scores of the chosen
experts, normalised to sum 1 (+1e-20) when top_k > 1, times routed_scaling_factor. Shared experts
are a plain SwiGLU MLP added to the routed sum.

Expert product: the experts' weights live in two stacked tensors ([E, 2F, d] gate/up and
[E, d, F] down; each expert's gate_proj/up_proj/down_proj parameters are views into them, so the
checkpoint names are kept). The (token, slot) pairs are grouped by expert (kernels/moe_group.py:
a stable sort of the expert ids as uint8; on the GPU one Triton kernel up to 256 pairs),
multiplied by each expert's weights (on a CUDA bf16 input by two grouped matrix products, or up
to 256 pairs by two Triton kernels, kernels/moe_experts.py; elsewhere per active expert in a padded [A, C, d] buffer, A experts with work, C
their largest load), put back in their places and summed over the top_k slots in fp32, weighted,
as the reference does; the shared experts' output is added in the same pass. A single shared
expert of the routed experts' width (LLaDA2.x) is stacked as row E of the same tensors; on a CUDA
bf16 input and where the Triton kernels serve, its rows run through the expert products as T more
pairs after the routed ones (experts_with_shared_row: no separate launches for it; at batch 8 on an
H100, LLaDA2.0-mini's block step 9.30 -> 9.16 ms), elsewhere as its own SwiGLU MLP.

On the GPU the router product of a block step's few tokens is a Triton kernel of partial sums over
slices of d (kernels/moe_router.py), the expert choice one Triton kernel that adds them as it loads
them (kernels/moe_route.py), the weighted sum another
(kernels/moe_combine.py: 8.4 us a layer against the compiled reference's 13.7 at batch 8,
experiments/speed/moe_step_probe.py), SwiGLU a compiled kernel (kernels/compiled.py); on the CPU
the same functions run eagerly, the reference's order of operations.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kernels.compiled import on_gpu_compiled
from kernels.moe_combine import combine, combine_reference
from kernels.moe_combine import triton_ready as combine_kernel_ready
from kernels.moe_experts import expert_products
from kernels.moe_experts import triton_ready as experts_kernel_ready
from kernels.moe_group import expert_order, group_pairs, group_pairs_reference
from kernels.moe_group import triton_ready as group_kernel_ready
from kernels.moe_route import route_select, route_select_reference
from kernels.moe_route import triton_ready as route_kernel_ready
from kernels.moe_router import router_partials

from .layers import fuse_linears_, swiglu


def router_logits(x: torch.Tensor, weight: torch.Tensor, weight_fp32) -> torch.Tensor:
    """The fp32 router logits of x [T, d] (the reference casts x and the weight to fp32 first), or
    their partial sums [S, T, E] over S slices of d, which `route` adds in order. For bf16 x and
    weight on the GPU: a block step's few tokens through kernels/moe_router.py (the partial sums),
    else one bf16 matrix product accumulated and returned in fp32 (torch.mm's out_dtype); either way
    the same products (a product of two bf16 numbers is exact in fp32) without a cast of x, an fp32
    product and its split-K reduction. Elsewhere x.float() times `weight_fp32()`, the weight in fp32."""
    partials = router_partials(x, weight)
    if partials is not None:
        return partials
    if x.is_cuda and x.dtype == weight.dtype == torch.bfloat16:
        return torch.mm(x, weight.t(), out_dtype=torch.float32)
    return F.linear(x.float(), weight_fp32())


def route(logits: torch.Tensor, expert_bias: torch.Tensor, top_k: int, n_group: int, topk_group: int,
          scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 router logits [T, E] or their partial sums [S, T, E] (router_logits) -> (expert ids
    [T, top_k], fp32 weights [T, top_k]), the choice of
    kernels/moe_route.py: on the GPU one Triton kernel for it (DLLM_TRITON_ROUTE=0: the reference's
    steps, their elementwise work compiled around the top-k selections), on the CPU the reference's
    steps."""
    if route_kernel_ready(logits, logits.shape[-1], n_group):
        return route_select(logits, expert_bias, top_k, n_group, topk_group, scaling)
    return _route_steps(logits, expert_bias, top_k, n_group, topk_group, scaling)


_route_steps = on_gpu_compiled(route_select_reference)


def grouped_experts(x: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, gate_up: torch.Tensor,
                    down: torch.Tensor, shared: torch.Tensor | None = None) -> torch.Tensor:
    """sum_j w[t, j] * expert_{idx[t, j]}(x[t]) for x [T, d], idx/w [T, k], gate_up [E, 2F, d],
    down [E, d, F] -> [T, d] in x's dtype (the weighted sum in fp32), plus `shared` [T, d] (the
    shared experts' output) if given. On a CUDA bf16 input, the grouped matrix product
    (offsets_grouped_experts: no host sync, capturable in a CUDA graph); elsewhere the padded
    batched product."""
    if grouped_mm_serves(x):
        return offsets_grouped_experts(x, idx, w, gate_up, down, shared)
    return padded_grouped_experts(x, idx, w, gate_up, down, shared)


_combine_compiled = on_gpu_compiled(combine_reference, row_args=(0, 1, 2, 3))


def _combine_rows(rows: torch.Tensor, place: torch.Tensor, w: torch.Tensor,
                  shared: torch.Tensor | None) -> torch.Tensor:
    """The routed experts' outputs, rows [T * k, d] in grouped order, taken back to their (token,
    slot) places (place [T, k]: each pair's row), weighted by w [T, k] and summed in fp32, cast to
    the rows' dtype, plus the shared experts' output [T, d]: one Triton kernel on the GPU
    (kernels/moe_combine.py), else the compiled reference (one pass on the GPU)."""
    if combine_kernel_ready(rows):
        return combine(rows, place, w, shared)
    return _combine_compiled(rows, place, w, shared)


_group_by_expert = on_gpu_compiled(group_pairs_reference)   # the reference's kernels, fused where they can be


def grouped_mm_serves(x: torch.Tensor) -> bool:
    """Whether grouped_experts takes torch._grouped_mm for x: a CUDA bf16 x."""
    return x.is_cuda and x.dtype == torch.bfloat16 and hasattr(torch, "_grouped_mm")


def kernels_take(x: torch.Tensor, rows: int) -> bool:
    """Whether the expert kernels (kernels/moe_experts.py) serve `rows` pairs of x: a CUDA bf16 x,
    as grouped_experts takes the grouped products, or Triton's interpreter (the tests), within the
    kernels' bound."""
    return (x.dtype == torch.bfloat16 or not x.is_cuda) and experts_kernel_ready(rows, x)


def experts_with_shared_row(x, idx, w, gate_up, down) -> torch.Tensor:
    """grouped_experts plus the shared expert, held as gate_up/down's last row (E = rows - 1): its T
    rows (x's rows in order) go through the expert products as T more pairs after the routed ones
    (the Triton kernels or the grouped products: one launch of each product for both), and its
    output is added in the weighted sum (SparseMoE.forward takes this on a CUDA bf16 input and
    where the kernels serve)."""
    T, k = idx.shape
    flat, E = idx.reshape(-1), gate_up.shape[0] - 1
    token, offs, place = (group_pairs if group_kernel_ready(flat, E) else _group_by_expert)(flat, E, k, T)
    out = _expert_rows(x, token, offs, gate_up, down)
    return _combine_rows(out[:T * k], place.view(T, k), w, out[T * k:])


def _expert_rows(x, token, offs, gate_up, down) -> torch.Tensor:
    """The experts' outputs [P, d] of the grouped pairs (token [P], offs the experts' ends): the
    Triton expert kernels where they serve (kernels/moe_experts.py), else the gather of x's rows,
    torch._grouped_mm, the compiled SwiGLU and torch._grouped_mm again."""
    if experts_kernel_ready(token.numel(), x):
        return expert_products(x, token, offs, gate_up, down)
    h = torch._grouped_mm(x[token], gate_up.transpose(1, 2), offs=offs)
    return torch._grouped_mm(swiglu(h), down.transpose(1, 2), offs=offs)


def offsets_grouped_experts(x, idx, w, gate_up, down, shared=None) -> torch.Tensor:
    """grouped_experts through torch._grouped_mm: the (token, slot) pairs grouped by expert, each
    expert's rows multiplied by its weights (experts without rows read nothing), shapes fixed by
    T and k alone."""
    T, k = idx.shape
    flat, E = idx.reshape(-1), gate_up.shape[0]
    token, offs, place = (group_pairs if group_kernel_ready(flat, E) else _group_by_expert)(flat, E, k)
    return _combine_rows(_expert_rows(x, token, offs, gate_up, down), place.view(T, k), w, shared)


def padded_grouped_experts(x, idx, w, gate_up, down, shared=None) -> torch.Tensor:
    """grouped_experts as two batched products over a padded [A, C, d] layout (A experts with
    work, C their largest load: one host sync)."""
    T, k = idx.shape
    E = gate_up.shape[0]
    flat = idx.reshape(-1)
    order = expert_order(flat, E)
    counts = torch.bincount(flat, minlength=E)
    active = counts.nonzero().squeeze(1)                          # experts with work (one host sync)
    C = int(counts.max())
    start = torch.cumsum(counts, 0) - counts                      # first sorted slot of each expert
    e_sorted = flat[order]
    slot = torch.arange(T * k, device=x.device) - start[e_sorted]
    rank = torch.zeros(E, dtype=torch.long, device=x.device)
    rank[active] = torch.arange(active.numel(), device=x.device)
    buf = x.new_zeros(active.numel(), C, x.shape[1])
    buf[rank[e_sorted], slot] = x[order // k]
    h = torch.bmm(buf, gate_up[active].transpose(1, 2))
    out = torch.bmm(swiglu(h), down[active].transpose(1, 2))
    place = torch.empty_like(order).scatter_(0, order, torch.arange(T * k, device=x.device))
    return _combine_rows(out[rank[e_sorted], slot], place.view(T, k), w, shared)


class Expert(nn.Module):
    """A SwiGLU MLP: down(silu(gate(x)) * up(x)), the gate and up products as one (their weights
    fused on the first call, the parameters views into it) and silu * up in one pass. Routed
    experts never call it (grouped_experts reads their stacked weights)."""

    def __init__(self, d: int, f: int):
        super().__init__()
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        if not hasattr(self, "w_gate_up"):
            self.w_gate_up, _ = fuse_linears_(self.gate_proj, self.up_proj)
        return self.down_proj(swiglu(F.linear(x, self.w_gate_up)))


class Gate(nn.Module):
    def __init__(self, d: int, n_experts: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_experts, d))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)     # nn.Linear's default, as the reference's
        self.register_buffer("expert_bias", torch.zeros(n_experts))


class SparseMoE(nn.Module):
    """mlp.gate.{weight, expert_bias}, mlp.experts.N.{gate,up,down}_proj, mlp.shared_experts.*"""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.gate = Gate(c.hidden_size, c.num_experts)
        self.experts = nn.ModuleList(Expert(c.hidden_size, c.moe_intermediate_size) for _ in range(c.num_experts))
        if c.num_shared_experts:
            self.shared_experts = Expert(c.hidden_size, c.moe_intermediate_size * c.num_shared_experts)

    @torch.no_grad()
    def stack_(self) -> None:
        """Stack the experts' weights ([E, 2F, d] gate/up, [E, d, F] down); the per-expert
        parameters become views into them (state_dict names unchanged, no extra memory). A single
        shared expert of the routed experts' width is stacked too, as row E (`shared_row`): the
        expert kernels can then run it with the routed ones (experts_with_shared_row)."""
        ex = list(self.experts)
        c = self.c
        self.shared_row = c.num_shared_experts == 1
        if self.shared_row:
            ex.append(self.shared_experts)
        self.w_gate_up = torch.stack([torch.cat([e.gate_proj.weight, e.up_proj.weight]) for e in ex])
        self.w_down = torch.stack([e.down_proj.weight for e in ex])
        f = c.moe_intermediate_size
        for i, e in enumerate(ex):
            e.gate_proj.weight = nn.Parameter(self.w_gate_up[i, :f], requires_grad=False)
            e.up_proj.weight = nn.Parameter(self.w_gate_up[i, f:], requires_grad=False)
            e.down_proj.weight = nn.Parameter(self.w_down[i], requires_grad=False)
        if self.shared_row:   # its own forward's fused gate/up weight is that row
            self.shared_experts.w_gate_up = self.w_gate_up[c.num_experts]

    def router_weight(self) -> torch.Tensor:
        """The router's weight in fp32 (the reference routes in fp32), converted once per version of
        the weight rather than in every forward (2 MiB a layer for LLaDA2.0-mini)."""
        w = self.gate.weight
        if w.dtype == torch.float32:
            return w
        try:
            version = w._version
        except RuntimeError:   # an inference tensor (made under torch.inference_mode) has no version counter
            version = None
        key = (w.data_ptr(), version, w.dtype)
        if getattr(self, "_router_key", None) != key:
            self._router_fp32, self._router_key = w.detach().float(), key
        return self._router_fp32

    def forward(self, x):
        if not hasattr(self, "w_gate_up"):
            self.stack_()
        c, shape = self.c, x.shape
        h = x.reshape(-1, shape[-1])
        logits = router_logits(h, self.gate.weight, self.router_weight)
        idx, w = route(logits, self.gate.expert_bias, c.num_experts_per_tok, c.n_group, c.topk_group,
                       c.routed_scaling_factor)
        E = c.num_experts
        if self.shared_row and (grouped_mm_serves(h) or kernels_take(h, idx.numel() + h.shape[0])):
            return experts_with_shared_row(h, idx, w, self.w_gate_up, self.w_down).view(shape)
        shared = self.shared_experts(h) if c.num_shared_experts else None
        return grouped_experts(h, idx, w, self.w_gate_up[:E], self.w_down[:E], shared).view(shape)
