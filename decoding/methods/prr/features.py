"""The 11 controller features of PRR, per generated position (the reference code's set,
huaxueye/PRR prr_inference.py `compute_features_v2`).

     0 global commit rate       (prompt + committed generated tokens) / (prompt + gen_length)
     1 global step              step / total steps
     2 block start              (prompt + block start) / (prompt + gen_length)
     3 block length             block_length / (prompt + gen_length)
     4 block commit rate        committed tokens of the block / block_length
     5 in-block position        (position - block start) / block_length
     6 in-block step            steps taken in the block / steps per block
     7 since last change        steps since ... / steps per block
     8 top-1 probability
     9 margin                   top-1 - top-2 probability
    10 entropy                  H(p) / log V

Two conventions (`FEATURE_SETS`), chosen by the caller (decoding/methods/prr/method.py):

    reference  as compute_features_v2: feature 1 is nominal, block * steps_per_block + step in block;
               feature 7 counts in-block steps since the position's commit (reset every block), so
               a still-masked position reads the in-block step (= feature 6); feature 8 is the max
               probability; feature 10 is -sum p log(p + 1e-6) / (log V + 1e-6).
    ours       feature 1 counts the steps the row actually took; feature 7 counts steps since the
               position's argmax last changed (the loop's history, across blocks); feature 8 is the
               probability of the proposed token; feature 10 is the exact entropy / log V.

The two differ only in features 1, 7, 8 (with a temperature) and 10; `step_features` takes the
step and the "since" counts already in the chosen convention (`convention_counts`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kernels.compiled import VOCAB_ROWS_COMPILED, on_gpu_compiled
from kernels.vocab_chunks import chunked, chunked_max, row_sum

N_FEATURES = 11
FEATURE_SETS = ("reference", "ours")
REF_EPS = 1e-6   # the reference's smoothing of the entropy (inside the log and on log V)


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


def token_features(logits: torch.Tensor, conf: torch.Tensor, convention: str = "ours") -> torch.Tensor:
    """[b, N, 3]: top-1 probability, top1 - top2 margin, normalized entropy (fp32). `reference`: the
    max probability and -sum p log(p + 1e-6) / (log V + 1e-6); `ours`: conf (the probability of
    the proposed token) and the exact entropy / log V."""
    return with_conf(logit_features(logits, convention), conf, convention)


def with_conf(lf: torch.Tensor, conf: torch.Tensor, convention: str) -> torch.Tensor:
    """token_features from logit_features: `ours` reads feature 8 from conf."""
    if convention == "reference":
        return lf
    return torch.cat([conf.float().unsqueeze(-1), lf[..., 1:]], -1)


def logit_features(logits: torch.Tensor, convention: str = "ours") -> torch.Tensor:
    """[..., 3]: the max probability, the top1 - top2 margin and the normalized entropy of each
    logits row (the entropy as `convention` defines it), in fp32; one fused kernel on the GPU."""
    flat = logits.reshape(-1, logits.shape[-1])
    return _logit_features_rows(flat, convention == "reference").view(*logits.shape[:-1], 3)


@on_gpu_compiled(min_numel=VOCAB_ROWS_COMPILED)
def _logit_features_rows(logits: torch.Tensor, reference: bool) -> torch.Tensor:
    """Each reduction over a row runs per chunk of the vocabulary, then over the chunks
    (kernels/vocab_chunks.py): the log-sum-exp, the top-2 and the entropy of a block's 32 rows as
    thousands of programs, not 32. With d = l - max and S = sum(exp(d)): log p = d - log S, the top
    two probabilities exp(d1 - log S) and exp(d2 - log S), and the exact entropy
    log S - sum(exp(d) d) / S."""
    V = logits.shape[-1]
    c = chunked(logits.float())                                  # [R, n, V / n]
    m, first = chunked_max(c)
    d = c - m[:, None, None]
    e = d.exp()
    total = row_sum(e)
    log_s = total.log()                                          # [R]
    idx = torch.arange(V, device=c.device).view(c.shape[1:])
    second = d.masked_fill(idx == first[:, None, None], -torch.inf).amax(-1).amax(-1)   # d of the top-2
    p1, p2 = (-log_s).exp(), (second - log_s).exp()
    if reference:
        p = (d - log_s[:, None, None]).exp()
        ent = -row_sum(p * (p + REF_EPS).log()) / (math.log(V) + REF_EPS)
    else:
        ent = (log_s - row_sum(e * d) / total) / math.log(V)
    return torch.stack([p1, p1 - p2, ent], -1)


def convention_counts(convention: str, *, x0, candidates, block, step, step_in_block, steps_per_block: int,
                      argmax_prev=None, stable_prev=None, commit_step=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(step [b], since [b, N]) for `step_features` in a convention. reference: the nominal step
    block * steps_per_block + step_in_block, and since = the in-block step for masked positions (the
    reference's last_flip_step is reset to 0 at the block start and set only by a commit), steps since
    the commit for written ones (commit_step: the loop's history, -1 while masked). ours: the steps
    the row took, and steps since the argmax last changed (argmax_prev / stable_prev: the loop's
    history before this step)."""
    if convention == "reference":
        nominal = block * steps_per_block + step_in_block
        since = torch.where((commit_step < 0) | candidates, step_in_block.unsqueeze(1),
                            step.unsqueeze(1) - commit_step)
        return nominal, since
    return step, torch.where(x0 != argmax_prev, 0, stable_prev + 1)


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
