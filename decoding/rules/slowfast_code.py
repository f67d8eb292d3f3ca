"""SlowFast as the authors' LLaDA sampler computes it (LiangrunFlora/Slow-Fast-Sampling,
sampling_utils/generate_slow_fast_sampling.py; docs/methods-fidelity.md section 1), for
`slowfast:preset=code`. Per block, cycles of: K full forwards (phase 1: estimate the cycle's end
until it is determined, commit with the slow rule every time), then the span [cycle start, end)
until it has no mask (first forward full, then prompt + x[:block start + end]).

Ends are exclusive and relative to the block (the authors' `est_len`, `actual_sub_cycle_length`);
`start` is the cycle's start, relative to the block. All [B] per row.
"""
from __future__ import annotations

import torch

from ..select import top1_commit


def span_estimate(conf: torch.Tensor, masked: torch.Tensor, block_start: torch.Tensor, start: torch.Tensor,
                  block_length: int, tau_min: float) -> torch.Tensor:
    """[B] one phase-1 estimate of the cycle's end: 1 + the farthest masked position of
    [start, block end) with conf >= tau_min, or start + 1 if none (start if the scope is empty),
    clamped to [1, block_length]."""
    G = conf.shape[1]
    rel = torch.arange(G, device=conf.device).unsqueeze(0) - block_start.unsqueeze(1)
    scope = (rel >= start.unsqueeze(1)) & (rel < block_length)
    reach = scope & masked & (conf >= tau_min)
    far = torch.where(reach, rel, -1).max(1).values
    est = torch.where(far >= 0, far + 1, torch.where(start < block_length, start + 1, start))
    return est.clamp(1, block_length)


def push_estimate(hist: torch.Tensor, count: torch.Tensor, est: torch.Tensor,
                  take: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The last W estimates ([B, W], oldest first) and how many were pushed, for rows in `take`."""
    pushed = torch.cat([hist[:, 1:], est.to(hist.dtype).unsqueeze(1)], 1)
    return torch.where(take.unsqueeze(1), pushed, hist), torch.where(take, count + 1, count)


def decide_end(hist: torch.Tensor, count: torch.Tensor, sigma: float, last_step: bool, end: torch.Tensor,
               determined: torch.Tensor, take: torch.Tensor, block_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(end, determined) after a push, for rows in `take` with W estimates: population std < sigma ->
    the last estimate, determined; else int(mean) (floor), determined only at the K-th step."""
    W = hist.shape[1]
    full = take & (count >= W)
    h = hist.double()
    stable = h.std(1, unbiased=False) < sigma
    new_end = torch.where(stable, h[:, -1], h.mean(1).floor()).long().clamp(1, block_length)
    return (torch.where(full, new_end, end),
            torch.where(full, stable | torch.full_like(stable, last_step), determined))


def fallback_end(hist: torch.Tensor, count: torch.Tensor, end: torch.Tensor, determined: torch.Tensor,
                 block_length: int) -> torch.Tensor:
    """After K steps, for rows never determined (only when K < W): floor(mean of the pushed estimates),
    or block_length // 2 if none."""
    W = hist.shape[1]
    n = count.clamp(max=W)
    recent = torch.arange(W, device=hist.device).unsqueeze(0) >= (W - n).unsqueeze(1)
    mean = (hist.double() * recent).sum(1) / n.clamp(min=1)
    fb = torch.where(n > 0, mean.floor().long().clamp(1, block_length), block_length // 2)
    return torch.where(determined, end, fb)


def cycle_commit(conf: torch.Tensor, masked: torch.Tensor, block_start: torch.Tensor, lo: torch.Tensor,
                 hi: torch.Tensor, tau_high: float) -> torch.Tensor:
    """Commit [B, G] in block positions [lo, hi) (relative): every masked position with conf >=
    tau_high when more than one qualifies, else the most confident masked one (phase 1 uses
    hi = block_length, the fast phase hi = the cycle's end)."""
    rel = torch.arange(conf.shape[1], device=conf.device).unsqueeze(0) - block_start.unsqueeze(1)
    scope = masked & (rel >= lo.unsqueeze(1)) & (rel < hi.unsqueeze(1))
    high = scope & (conf >= tau_high)
    return torch.where((high.sum(1) > 1).unsqueeze(1), high, top1_commit(conf, scope))
