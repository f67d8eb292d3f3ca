"""LLaDA2.1 token editing: mask-to-token (M2T) plus token-to-token (T2T) thresholds (arXiv 2602.08676;
`generate` of the HF remote code inclusionAI/LLaDA2.1-*, modeling_llada2_moe.py).

Per forward of the current block (one NFE; the authors' code re-runs the window [0, block end) with a
block-causal mask):
    M2T: commit   = masked & conf > tau_mask; fewer than min_commit (1): the min_commit most confident
    T2T: edit     = written & not prompt & argmax != current token & conf > tau_edit
         both from the same forward; the block's tokens at commit | edit become the argmax.
    The block ends after a forward whose block had no masks before it and made no edit ("settled"),
    or before a forward when max_post_steps forwards have already run on a mask-free block.
Only the current block is ever edited; prompt tokens that share the first generated block are not.
conf is the probability of the argmax in both rules.
"""
from __future__ import annotations

import torch

from ..select import topk_commit


def edit_decide(x0: torch.Tensor, conf: torch.Tensor, tokens: torch.Tensor, masked: torch.Tensor,
                editable: torch.Tensor, tau_mask: float = 0.7, tau_edit: float = 0.5,
                min_commit: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(commit [B, G], edit [B, G]); the new tokens are x0 at commit | edit.

    x0, conf: proposed token and its probability; tokens: the tokens the forward read; masked: masked
    positions of the current block; editable: written, non-prompt positions of the current block."""
    above = masked & (conf > tau_mask)
    k = torch.clamp(masked.sum(1), max=min_commit)
    commit = torch.where((above.sum(1) >= min_commit).unsqueeze(1), above, topk_commit(conf, masked, k))
    edit = editable & ~masked & (x0 != tokens) & (conf > tau_edit)
    return commit, edit


def edit_block_next(had_mask: torch.Tensor, has_mask: torch.Tensor, edited: torch.Tensor,
                    post_steps: torch.Tensor, max_post_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """After a forward: (block done [B], post_steps [B] for the next forward).

    had_mask: the block had masks before this forward; has_mask: it has masks after this step's commits;
    edited: this step edited a token. post_steps counts the forwards run on a mask-free block (the
    authors' counter: raised at the top of an iteration whose block has no masks, the block ends before
    that forward once it exceeds max_post_steps)."""
    settled = ~had_mask & ~edited
    post = torch.where(has_mask, post_steps, post_steps + 1)
    return settled | (post > max_post_steps), post
