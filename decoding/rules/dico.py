"""DiCo: divide and conquer (arXiv 2602.23792). No code of the authors is public (searched: GitHub code,
issues, the paper's pages); only the abstract's three phases are known, so every concrete rule below
is OURS, chosen to follow the abstract, and each setting says so:

- divide: seeds are masked positions with conf >= tau_seed whose argmax has not changed for at least
  min_stable steps (the abstract's "confidence and trajectory"); each seed grows into a local cluster,
  the masked positions within `radius` of it; overlapping or adjacent members merge into one cluster
  (a maximal run of member positions).
- conquer: every cluster commits, in parallel, its members with conf >= tau_cluster and always its most
  confident member.
- finalize: once at most n_final masks remain in the block, or no seed exists, the position with the
  best compound score lam * margin + (1 - lam) * conf commits (margin = top-1 minus top-2 probability).
"""
from __future__ import annotations

import torch

from ..select import topk_commit


def dico_seeds(conf: torch.Tensor, run: torch.Tensor, candidates: torch.Tensor, tau_seed: float,
               min_stable: int) -> torch.Tensor:
    """Seed positions [B, G]: candidates with conf >= tau_seed and an argmax unchanged for `run` >=
    min_stable steps (run: steps since the position's argmax last changed)."""
    return candidates & (conf >= tau_seed) & (run >= min_stable)


def dico_clusters(seeds: torch.Tensor, candidates: torch.Tensor, radius: int) -> torch.Tensor:
    """Cluster id per position [B, G] (long; -1 outside every cluster): candidates within `radius`
    positions of a seed, a maximal run of them being one cluster, numbered from 0 left to right."""
    near = seeds.clone()
    for d in range(1, radius + 1):          # dilate by `radius` (a loop over offsets, not positions)
        near[:, d:] |= seeds[:, :-d]
        near[:, :-d] |= seeds[:, d:]
    member = near & candidates
    start = member & ~torch.cat([torch.zeros_like(member[:, :1]), member[:, :-1]], 1)
    ids = start.long().cumsum(1) - 1
    return torch.where(member, ids, torch.full_like(ids, -1))


def dico_conquer(conf: torch.Tensor, cluster: torch.Tensor, tau_cluster: float) -> torch.Tensor:
    """Commit [B, G]: in every cluster its members with conf >= tau_cluster, and its most confident
    member (ties: the leftmost)."""
    B, G = conf.shape
    member = cluster >= 0
    idx = cluster.clamp(min=0)
    score = conf.float().masked_fill(~member, float("-inf"))
    best = torch.full((B, G), float("-inf"), device=conf.device).scatter_reduce(1, idx, score, "amax")
    at_best = member & (score == best.gather(1, idx))
    pos = torch.arange(G, device=conf.device).expand(B, G)
    first = torch.full((B, G), G, device=conf.device).scatter_reduce(
        1, idx, torch.where(at_best, pos, G), "amin")
    top = at_best & (pos == first.gather(1, idx))
    return member & ((conf >= tau_cluster) | top)


def dico_finalize(conf: torch.Tensor, margin: torch.Tensor, candidates: torch.Tensor, lam: float,
                  k: torch.Tensor) -> torch.Tensor:
    """Commit [B, G]: the k[b] candidates with the best lam * margin + (1 - lam) * conf."""
    return topk_commit(lam * margin.float() + (1.0 - lam) * conf.float(), candidates, k)


def dico_decide(conf: torch.Tensor, margin: torch.Tensor, run: torch.Tensor, candidates: torch.Tensor, *,
                tau_seed: float, min_stable: int, radius: int, tau_cluster: float, n_final: int,
                lam: float) -> torch.Tensor:
    """One step of DiCo's three phases, per row: finalize (one token by the compound score) when at most
    n_final candidates remain or no seed exists; otherwise divide and conquer."""
    seeds = dico_seeds(conf, run, candidates, tau_seed, min_stable)
    conquer = dico_conquer(conf, dico_clusters(seeds, candidates, radius), tau_cluster)
    one = torch.ones(conf.shape[0], dtype=torch.long, device=conf.device)
    finalize = dico_finalize(conf, margin, candidates, lam, one)
    final_phase = (candidates.sum(1) <= n_final) | ~seeds.any(1)
    return torch.where(final_phase.unsqueeze(1), finalize, conquer)
