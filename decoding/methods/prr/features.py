"""The 11 controller features of PRR, per generated position (the reference code's set).

     0 global commit rate       (prompt + committed generated tokens) / (prompt + gen_length)
     1 global step              steps taken / total steps
     2 block start              (prompt + block start) / (prompt + gen_length)
     3 block length             block_length / (prompt + gen_length)
     4 block commit rate        committed tokens of the block / block_length
     5 in-block position        (position - block start) / block_length
     6 in-block step            steps taken in the block / steps per block
     7 stability                steps since the position's argmax last changed / steps per block
     8 top-1 probability
     9 margin                   top-1 - top-2 probability
    10 entropy                  H(p) / log V

Everything is computed from the step's tensors plus `History` (each row's previous argmax and the
step it last changed), which the method resets per batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

N_FEATURES = 11


@dataclass
class History:
    """Per row and generated position: the argmax of the last forward and the step it last changed."""
    argmax: torch.Tensor       # [B, N] (-1 before the first forward)
    changed_at: torch.Tensor   # [B, N]

    @classmethod
    def empty(cls, B: int, N: int, device) -> "History":
        return cls(torch.full((B, N), -1, dtype=torch.long, device=device),
                   torch.zeros((B, N), dtype=torch.long, device=device))

    def update(self, rows: torch.Tensor, x0: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Record this step's argmax; return steps since each position's argmax last changed."""
        changed = x0 != self.argmax[rows]
        at = torch.where(changed, step.unsqueeze(1), self.changed_at[rows])
        self.argmax[rows], self.changed_at[rows] = x0, at
        return step.unsqueeze(1) - at


def token_features(logits: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """[b, N, 3]: top-1 probability, top1 - top2 margin, entropy / log V (fp32)."""
    logp = torch.log_softmax(logits.float(), -1)
    top2 = logp.topk(2, dim=-1).values.exp()
    ent = -(logp.exp() * logp).sum(-1) / math.log(logits.shape[-1])
    return torch.stack([conf.float(), top2[..., 0] - top2[..., 1], ent], -1)


def step_features(*, candidates: torch.Tensor, block: torch.Tensor, step: torch.Tensor,
                  step_in_block: torch.Tensor, since_change: torch.Tensor, prompt_len: torch.Tensor,
                  block_length: int, total_steps: int, tok: torch.Tensor) -> torch.Tensor:
    """[b, N, 11] features (see the module docstring); `tok` is token_features(...)."""
    b, N = candidates.shape
    f = lambda t: t.float()
    total = f(prompt_len) + N                                         # [b]
    start = block * block_length
    committed_block = block_length - candidates.sum(1)                 # positions of the block not masked
    committed = start + committed_block
    spb = total_steps * block_length / N                               # steps per block
    pos = torch.arange(N, device=candidates.device).unsqueeze(0)
    per_row = torch.stack([(f(prompt_len) + f(committed)) / total, f(step) / total_steps,
                           (f(prompt_len) + f(start)) / total, block_length / total,
                           f(committed_block) / block_length], -1)    # [b, 5]
    per_pos = torch.stack([f(pos - start.unsqueeze(1)) / block_length,
                           (f(step_in_block) / spb).unsqueeze(1).expand(b, N),
                           f(since_change) / spb], -1)                 # [b, N, 3]
    return torch.cat([per_row.unsqueeze(1).expand(b, N, 5), per_pos, tok], -1)
