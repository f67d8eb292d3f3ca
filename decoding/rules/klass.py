"""KLASS: KL-adaptive stability sampling (arXiv 2511.05664; shkim0116/KLASS, src/model/llada_klass.py).

The authors' rule per step, for the masked positions of the current block:
    kl_t   = sum_v p_t(v) * (log(p_t(v) + eps) - log(p_{t-1}(v) + eps)),  eps = 1e-12, full vocabulary,
             computed at every position every step (p_{-1} = 0, so the first step is never stable)
    stable = the last H values of kl_t are all < kl_tol, and the in-block step >= H - 1
    ready  = masked & stable & conf > conf_tau
    commit = ready if any position of the row is ready, else LLaDA's quota: the top-quota[step] by conf.
`stable_run` keeps the history as one counter per position (consecutive steps with kl < kl_tol):
"the last H all < kl_tol" is exactly `run >= H`, since the first step's KL is never below kl_tol.
"""
from __future__ import annotations

import torch

from ..select import topk_commit

EPS = 1e-12   # the authors' smoothing inside both logarithms


def kl_full(logp: torch.Tensor, logp_prev: torch.Tensor | None, eps: float = EPS) -> torch.Tensor:
    """The authors' KL(p_t || p_{t-1}) per position, [B, G] in float64, from log-probabilities
    [B, G, V] (`logp_prev` None or -inf: no previous distribution, p_{t-1} = 0)."""
    p = logp.double().exp()
    prev = torch.zeros_like(p) if logp_prev is None else logp_prev.double().exp()
    return (p * ((p + eps).log() - (prev + eps).log())).sum(-1)


def topk_summary(logp: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The bounded summary of a distribution kept between steps: its k most likely token ids and their
    log-probabilities, ([B, G, k] long, [B, G, k] float)."""
    values, ids = logp.float().topk(k, dim=-1)
    return ids, values


def kl_topk(prev_ids: torch.Tensor, prev_logp: torch.Tensor, logp: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """KL(p_t || p_{t-1}) over k + 1 bins, [B, G] in float64: the k tokens of the previous step's
    top-k summary, and the rest of the vocabulary as one bin. Needs only the summary of the previous
    step, not its [B, G, V] distribution. By the data-processing inequality it is at most the
    full-vocabulary KL (up to the eps smoothing), and equal to it when the vocabulary outside the
    previous top-k is a single token or both distributions agree there up to scale; so a position can
    read as stable here and not under `kl_full` (docs/methods-fidelity.md)."""
    p_all = logp.double().exp()
    p = p_all.gather(-1, prev_ids)                                   # [B, G, k]
    q = prev_logp.double().exp()
    p_rest = (1.0 - p.sum(-1)).clamp_min(0.0)
    q_rest = (1.0 - q.sum(-1)).clamp_min(0.0)
    term = lambda a, b: a * ((a + eps).log() - (b + eps).log())
    return term(p, q).sum(-1) + term(p_rest, q_rest)


def stable_run(run: torch.Tensor, kl: torch.Tensor, kl_tol: float) -> torch.Tensor:
    """Consecutive steps, up to and including this one, with KL < kl_tol (the count restarts at 0)."""
    return torch.where(kl < kl_tol, run + 1, torch.zeros_like(run))


def klass_select(run: torch.Tensor, conf: torch.Tensor, candidates: torch.Tensor, quota: torch.Tensor,
                 h: int, conf_tau: float, step_in_block: torch.Tensor | None = None,
                 strict: bool = True) -> torch.Tensor:
    """KLASS's commit mask [B, G].

    run: stable_run after this step; conf: probability of the proposed token; candidates: masked
    positions of the row's current block; quota: [B] the fallback's token count (LLaDA: the quota of
    this in-block step; the authors' Dream sampler: 1). step_in_block: [B] steps already taken in the
    block; given, a position is stable only from step h - 1 of its block on (the LLaDA sampler's gate;
    None: no gate, as in the Dream sampler). strict: conf > conf_tau (LLaDA) or >= (Dream).
    """
    ok = conf > conf_tau if strict else conf >= conf_tau
    ready = candidates & ok & (run >= h)
    if step_in_block is not None:
        ready = ready & (step_in_block >= h - 1).unsqueeze(1)
    fallback = topk_commit(conf, candidates, quota)
    return torch.where(ready.any(1, keepdim=True), ready, fallback)
