"""WINO: wide-in narrow-out revocable decoding (arXiv 2507.18578; Feng-Hong/WINO-DLLM, LLaDA/decoding.py,
`decoding_wino`).

Each forward feeds the sequence plus a shadow block: block_length extra [MASK] tokens carrying the
current block's position ids, which see everything except their own twin position (and nothing sees
them). The shadow copy of position i predicts i with i hidden, so p_shadow(current token at i) is
that token's verified confidence. One forward = one NFE; the shadow block rides in it.
Per forward, in the current block (batch size 1 in the authors' code, row by row here):
    max_accept = min(max(int(0.7 * masked), 5), 20)
    commit     = masked & conf > tau_commit; above max_accept: the max_accept most confident;
                 none: the most confident masked position
    if more than one committed: remask = written & verified < tau_remask, and when that is
                 >= last_accept positions, only the (last_accept - 1) least verified of them
    last_accept (30 at each block start) <- number committed
`written` are the block's positions decoded before this forward; positions committed in this same
forward are not re-checked until the next one.
"""
from __future__ import annotations

import torch

from ..select import top1_commit, topk_commit

LAST_ACCEPT_AT_BLOCK_START = 30


def wino_max_accept(n_masked: torch.Tensor) -> torch.Tensor:
    """[B] commit cap: min(max(int(0.7 * n), 5), 20), computed as the authors do (float32 product,
    truncated)."""
    return (n_masked * 0.7).long().clamp(min=5, max=20)


def wino_decide(conf: torch.Tensor, verified: torch.Tensor, masked: torch.Tensor, written: torch.Tensor,
                last_accept: torch.Tensor, tau_commit: float = 0.6,
                tau_remask: float = 0.9) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(commit [B, G], remask [B, G], accepted [B]) for one forward.

    conf: probability of the proposed token at each position; verified: the shadow block's probability
    of the token currently written there (read only where `written`); masked: masked positions of the
    current block; written: decoded positions of the current block (not the prompt, not earlier
    blocks); last_accept: [B] tokens committed by the row's previous forward in this block
    (LAST_ACCEPT_AT_BLOCK_START at a block start). The caller keeps `accepted` as the next last_accept.
    """
    cap = wino_max_accept(masked.sum(1))
    above = masked & (conf > tau_commit)
    n_above = above.sum(1, keepdim=True)
    commit = torch.where(n_above > cap.unsqueeze(1), topk_commit(conf, masked, cap),
                         torch.where(n_above > 0, above, top1_commit(conf, masked)))
    accepted = commit.sum(1)
    low = written & (verified < tau_remask)
    n_low = low.sum(1)
    keep = torch.where(n_low >= last_accept, (last_accept - 1).clamp(min=0), n_low)
    remask = topk_commit(-verified.float(), low, keep) & (accepted > 1).unsqueeze(1)
    return commit, remask, accepted


def shadow_layout(seq_len: int, block_start: int, block_length: int,
                  device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The verification forward's extra positions: (position ids [seq_len + block_length], attention
    allowed [seq_len + block_length, seq_len + block_length] bool, query x key) for a sequence of
    seq_len positions (prompt and generated) whose current block starts at `block_start`. The last
    block_length inputs are [MASK] tokens: they take the block's position ids, attend to each other and
    to every real position except their own twin; no real position attends to them."""
    L, n = seq_len, block_length
    pos = torch.cat([torch.arange(L, device=device), torch.arange(block_start, block_start + n, device=device)])
    allowed = torch.ones((L + n, L + n), dtype=torch.bool, device=device)
    allowed[:, L:] = False
    allowed[L:, L:] = True
    allowed[L:, block_start:block_start + n] = ~torch.eye(n, dtype=torch.bool, device=device)
    return pos, allowed
