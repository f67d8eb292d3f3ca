"""The expert choice of a group-limited MoE router (LLaDA2.x, Ling/BailingMoeV2), from its fp32
router logits (or their partial sums over slices of the hidden size, kernels/moe_router.py, added
in order first), as one operator:

    scores = sigmoid(logits)                      [T, E]
    biased = scores + expert_bias
    group score = the sum of a group's top-2 biased scores (E experts in n_group groups)
    eligible = the experts of the topk_group best groups
    idx = the top_k eligible experts by biased score (best first)
    w = scores[idx] / (sum + 1e-20) * scaling      (normalised when top_k > 1)

`route_select_reference` is that computation in torch (the reference's order of operations: three
top-k selections, a scatter, a gather). `route_select` is a custom operator (torch.library,
`dllm::moe_route_select`): on CUDA tensors with Triton, one kernel with one program per token that
does the whole choice in registers in one warp (the top-k selections as repeated arg-max: ties go
to the lower expert id), instead of some ten kernels a layer (on an H100 under a CUDA graph, 23.4 us against the
reference's 46.1 for 32 tokens: experiments/speed/moe_kernels_probe.py); elsewhere the reference. The kernel serves only
after its first call on a device agreed with the reference on that call's input
(`_kernel_trusted`). `DLLM_TRITON_ROUTE=0`
turns the kernel off. The kernel needs E and n_group powers of two with at least two experts a
group (LLaDA2.0-mini: 256 experts, 8 groups); other shapes take the reference.
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


def sum_partials(partials: torch.Tensor) -> torch.Tensor:
    """[S, T, E] partial sums of the router logits (kernels/moe_router.py) -> [T, E], the slices added
    in order, as the kernel adds them."""
    out = partials[0]
    for s in range(1, partials.shape[0]):
        out = out + partials[s]
    return out


def route_select_reference(logits: torch.Tensor, expert_bias: torch.Tensor, top_k: int, n_group: int,
                           topk_group: int, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 router logits [T, E] (or their partial sums [S, T, E]) -> (expert ids [T, top_k] int64,
    fp32 weights [T, top_k])."""
    if logits.dim() == 3:
        logits = sum_partials(logits)
    T = logits.shape[0]
    scores = torch.sigmoid(logits)
    biased = scores + expert_bias
    # the sum of two values is the same in either order: their top-2 need not be sorted (one sort less a layer)
    group_scores = biased.view(T, n_group, -1).topk(2, dim=-1, sorted=False)[0].sum(-1)
    groups = group_scores.topk(topk_group, dim=-1, sorted=False)[1]
    keep = torch.zeros_like(group_scores).scatter_(1, groups, 1.0).bool()
    keep = keep[:, :, None].expand(T, n_group, scores.shape[1] // n_group).reshape(T, -1)
    idx = biased.masked_fill(~keep, float("-inf")).topk(top_k, dim=-1)[1]
    w = scores.gather(1, idx)
    if top_k > 1:
        w = w / (w.sum(-1, keepdim=True) + 1e-20)
    return idx, w * scaling


WARPS = 1   # one warp a token: 3.7 us for 32 tokens against 5.2 at 4 warps (H100, router_knobs_probe.py)


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def triton_ready(x: torch.Tensor, n_experts: int, n_group: int) -> bool:
    """Whether route_select takes the Triton kernel for tensors like x: Triton importable, a CUDA
    tensor (or the interpreter, TRITON_INTERPRET=1, as the tests run it on CPU), shapes it handles;
    DLLM_TRITON_ROUTE=0 turns it off."""
    if triton is None or os.environ.get("DLLM_TRITON_ROUTE", "1") == "0":
        return False
    if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    return _pow2(n_experts) and _pow2(n_group) and n_experts // n_group >= 2 and n_experts <= 4096


@torch.library.custom_op("dllm::moe_route_select", mutates_args=())
def route_select(logits: torch.Tensor, expert_bias: torch.Tensor, top_k: int, n_group: int, topk_group: int,
                 scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 router logits [T, E] or their partial sums [S, T, E] -> (expert ids [T, top_k] int64, fp32
    weights [T, top_k]) (module docstring)."""
    args = (logits, expert_bias, top_k, n_group, topk_group, scaling)
    if triton_ready(logits, logits.shape[-1], n_group) and logits.shape[-2] and _kernel_trusted(*args):
        return _route_select_triton(*args)
    return route_select_reference(*args)


_trusted: dict[tuple, bool] = {}   # (device, E, top_k, n_group, topk_group, slices) -> the kernel agreed with the reference


def _kernel_trusted(logits, expert_bias, top_k, n_group, topk_group, scaling) -> bool:
    """Whether the kernel serves these shapes on this device (kernels/first_call.py): the same
    experts for every token of its first input as the reference, weights within 1e-5."""
    def compare():
        idx, w = _route_select_triton(logits, expert_bias, top_k, n_group, topk_group, scaling)
        ref_idx, ref_w = route_select_reference(logits, expert_bias, top_k, n_group, topk_group, scaling)
        return (torch.equal(idx, ref_idx) and torch.allclose(w, ref_w, rtol=0, atol=1e-5),
                "its choice differs from the reference's")
    slices = logits.shape[0] if logits.dim() == 3 else 0
    return agreed(_trusted, (logits.device, logits.shape[-1], top_k, n_group, topk_group, slices), logits, compare,
                  "kernels.moe_route: the Triton router kernel", "the reference's steps choose the experts",
                  "DLLM_TRITON_ROUTE")


@route_select.register_fake
def _(logits, expert_bias, top_k, n_group, topk_group, scaling):
    T = logits.shape[-2]
    return (logits.new_empty((T, top_k), dtype=torch.long), logits.new_empty((T, top_k), dtype=torch.float32))


def _route_select_triton(logits, expert_bias, top_k, n_group, topk_group, scaling):
    T, E = logits.shape[-2:]
    S = logits.shape[0] if logits.dim() == 3 else 1
    logits = logits.float().contiguous()     # no copy for the router's fp32 logits
    bias = expert_bias.contiguous()           # its dtype as stored: the kernel loads it as fp32
    idx = torch.empty((T, top_k), dtype=torch.long, device=logits.device)
    w = torch.empty((T, top_k), dtype=torch.float32, device=logits.device)
    _route_kernel[(T,)](logits, bias, idx, w, T, S, scaling, E=E, G=n_group, TG=topk_group, K=top_k,
                        KP=triton.next_power_of_2(top_k), num_warps=WARPS)
    return idx, w


if triton is not None:
    @triton.jit
    def _route_kernel(logit_ptr, bias_ptr, idx_ptr, w_ptr, T, S, scaling, E: tl.constexpr, G: tl.constexpr,
                      TG: tl.constexpr, K: tl.constexpr, KP: tl.constexpr):
        """Program t: token t's top-K experts among the TG best of G groups, and their weights; its
        logits the sum of S slices [S, T, E] taken in order (S = 1: the logits themselves)."""
        t = tl.program_id(0).to(tl.int64)
        e = tl.arange(0, E)
        logit = tl.load(logit_ptr + t * E + e)
        for i in range(1, S):
            logit += tl.load(logit_ptr + (i * T + t) * E + e)
        s = tl.sigmoid(logit)
        b = s + tl.load(bias_ptr + e).to(tl.float32)
        b2 = tl.reshape(b, (G, E // G))
        col = tl.arange(0, E // G)
        first = tl.argmax(b2, 1)                                            # each group's best
        m1 = tl.max(b2, 1)
        m2 = tl.max(tl.where(col[None, :] == first[:, None], float("-inf"), b2), 1)   # and its second
        gs = m1 + m2
        g = tl.arange(0, G)
        keep = tl.zeros((G,), dtype=tl.int1)
        for _ in tl.static_range(TG):                                       # the TG best groups
            best = tl.argmax(gs, 0)
            keep = keep | (g == best)
            gs = tl.where(g == best, float("-inf"), gs)
        cand = tl.reshape(tl.where(keep[:, None], b2, float("-inf")), (E,))
        k = tl.arange(0, KP)
        ids = tl.zeros((KP,), dtype=tl.int64)
        ws = tl.zeros((KP,), dtype=tl.float32)
        for j in tl.static_range(K):                                        # the K best eligible experts
            i = tl.argmax(cand, 0)
            ids = tl.where(k == j, i.to(tl.int64), ids)
            ws = tl.where(k == j, tl.sum(tl.where(e == i, s, 0.0), 0), ws)
            cand = tl.where(e == i, float("-inf"), cand)
        if K > 1:
            ws = ws / (tl.sum(ws, 0) + 1e-20)
        tl.store(idx_ptr + t * K + k, ids, mask=k < K)
        tl.store(w_ptr + t * K + k, ws * scaling, mask=k < K)
