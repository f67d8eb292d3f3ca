"""Per-step math of the decoding methods: pure functions over tensors, testable on CPU.

Shapes: B rows, N generated positions. `candidates` marks the positions a method may commit at
this step (masked and inside the row's current block). Every selector returns a bool [B, N] commit
mask that is a subset of `candidates`.
"""
from __future__ import annotations

import torch

from kernels.compiled import VOCAB_ROWS_COMPILED, on_gpu_compiled
from kernels.vocab_chunks import chunked, chunked_max

NEG_INF = float("-inf")


def token_stats(logits: torch.Tensor, temperature: float = 0.0,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Proposed token and its probability at every position.

    x0 = argmax(logits + T * Gumbel noise) (greedy at T = 0; the noise in float64 as LLaDA does),
    conf = softmax(logits)[x0] in float32. Takes logits in any float dtype (bf16 straight from the
    model: the argmax is the same, as bf16 -> fp32 is exact).
    """
    if temperature > 0:
        u = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
        x0 = (logits.double() + temperature * gumbel).argmax(-1)
        return x0, chosen_prob(logits, x0)
    x0, conf = _greedy_rows(logits.reshape(-1, logits.shape[-1]))
    return x0.view(logits.shape[:-1]), conf.view(logits.shape[:-1])


@on_gpu_compiled(min_numel=VOCAB_ROWS_COMPILED)
def _greedy_rows(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """argmax and its probability 1 / sum(exp(l - max)) (l[argmax] is the max exactly): on GPU the
    max and argmax share one pass over the logits, the sum a second (ATen's argmax alone took
    52 us at [256, 126464] on an H200, as long as a pass of the fused kernels). The argmax runs in
    two stages, per chunk of the vocabulary and then over the chunks, so that a window of a few
    positions still spreads over the GPU (one program per row took 30 us at [32, 126464]); the
    first maximal index is kept, as a single argmax keeps it."""
    lf = logits.float()
    m, x0 = chunked_max(chunked(lf))
    return x0, 1.0 / (lf - m.unsqueeze(-1)).exp().sum(-1)


def chosen_prob(logits: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """softmax(logits)[x0] in fp32 without materializing the [.., V] probabilities:
    exp(l[x0] - max) / sum(exp(l - max)). On GPU one fused pass over the (bf16) logits; the
    float copy + full softmax it replaces moved about 5 GB per step at [8, 256, 126464]."""
    return _chosen_prob_rows(logits.reshape(-1, logits.shape[-1]), x0.reshape(-1)).view(x0.shape)


@on_gpu_compiled(min_numel=1 << 22, row_args=(0, 1))   # >= 4M logits (LLaDA: 32 positions): one kernel pays off
def _chosen_prob_rows(logits: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    lf = logits.float()
    m = lf.amax(-1, keepdim=True)
    s = (lf - m).exp().sum(-1)
    return (lf.gather(-1, x0.unsqueeze(-1)) - m).squeeze(-1).exp() / s


def quota_schedule(block_length: int, steps: int) -> torch.Tensor:
    """LLaDA's per-block quota: the first (M % S) steps commit M // S + 1 tokens, the rest M // S."""
    base, rem = divmod(block_length, steps)
    return torch.tensor([base + (t < rem) for t in range(steps)], dtype=torch.long)


def topk_commit(scores: torch.Tensor, candidates: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Commit the k[b] highest-scoring candidates of each row (fewer if a row has fewer).

    Ties break towards the lower position (stable sort), so the result is deterministic.
    """
    s = scores.float().masked_fill(~candidates, NEG_INF)
    order = torch.sort(s, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(s.shape[-1], device=s.device).expand_as(order))
    return candidates & (rank < k.view(-1, 1))


def top1_commit(scores: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Commit the highest-scoring candidate of each row (none if a row has none): topk_commit with
    k = 1 (ties towards the lower position: argmax keeps the first maximal index) without a sort."""
    s = scores.float().masked_fill(~candidates, NEG_INF)
    best = torch.zeros_like(candidates).scatter_(-1, s.argmax(-1, keepdim=True), True)
    return candidates & best


def threshold_commit(conf: torch.Tensor, candidates: torch.Tensor, tau: float) -> torch.Tensor:
    """Fast-dLLM: every candidate with confidence >= tau, and always the most confident one."""
    return top1_commit(conf, candidates) | (candidates & (conf >= tau))


def factor_commit(conf: torch.Tensor, candidates: torch.Tensor, factor: float) -> torch.Tensor:
    """Fast-dLLM factor rule: with candidates sorted c1 >= c2 >= ..., commit the largest prefix n
    such that (m + 1) * (1 - c_m) <= factor for every m <= n (m counted from 1); at least one."""
    s = conf.float().masked_fill(~candidates, NEG_INF)
    sorted_c, order = torch.sort(s, dim=-1, descending=True, stable=True)
    m = torch.arange(1, s.shape[-1] + 1, device=s.device, dtype=torch.float32)
    ok = ((m + 1) * (1 - sorted_c) <= factor) & torch.isfinite(sorted_c)
    prefix = ok.long().cumprod(-1).sum(-1).clamp(min=1)   # length of the all-ok prefix, >= 1
    return topk_commit(conf, candidates, prefix)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of softmax(logits) over the last dim, in fp32 (one fused kernel on
    the GPU, reading the logits in their own dtype)."""
    return _entropy_rows(logits.reshape(-1, logits.shape[-1])).view(logits.shape[:-1])


@on_gpu_compiled(min_numel=VOCAB_ROWS_COMPILED)
def _entropy_rows(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def entropy_budget_commit(ent: torch.Tensor, candidates: torch.Tensor, gamma: float) -> torch.Tensor:
    """EB-Sampler: with candidates sorted by entropy H1 <= H2 <= ..., commit the largest prefix S
    with sum(H in S) - max(H in S) <= gamma; at least one (the lowest-entropy candidate)."""
    h = ent.float().masked_fill(~candidates, float("inf"))
    sorted_h, _ = torch.sort(h, dim=-1, stable=True)
    finite = torch.isfinite(sorted_h)
    csum = torch.where(finite, sorted_h, 0.0).cumsum(-1)
    # sorted ascending, so the max of a prefix is its last element
    ok = (csum - sorted_h <= gamma) & finite
    n = ok.long().cumprod(-1).sum(-1).clamp(min=1)
    return topk_commit(-h.masked_fill(~candidates, 0.0), candidates, n)


def local_leap_commit(conf: torch.Tensor, candidates: torch.Tensor, tau_anchor: float,
                      tau_relaxed: float, radius: int) -> torch.Tensor:
    """LocalLeap: candidates with confidence >= tau_anchor are anchors (and commit); candidates
    within `radius` positions of an anchor commit at the relaxed threshold tau_relaxed; the most
    confident candidate always commits."""
    anchor = candidates & (conf >= tau_anchor)
    near = anchor.clone()
    for d in range(1, radius + 1):          # dilate the anchor mask by `radius` positions
        near[:, d:] |= anchor[:, :-d]
        near[:, :-d] |= anchor[:, d:]
    relaxed = candidates & near & (conf >= tau_relaxed)
    return top1_commit(conf, candidates) | anchor | relaxed
