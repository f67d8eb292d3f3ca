"""Reductions over long rows (a vocabulary) in two stages: per chunk of the row, then over the
chunks, so that a few rows still spread over the GPU. A compiled reduction over whole rows runs
one program per row: at a block's 32 rows of LLaDA's 126464, 32 programs for a 132-SM GPU; split
into 64 chunks, 2048 programs. The values are the one-pass reduction's up to float rounding (sums
add in another order); maxima and first indices of the maximum are exact. Imports nothing of this
project.
"""
from __future__ import annotations

import torch

MAX_CHUNKS = 64


def vocab_chunks(vocab: int) -> int:
    """The largest power of two up to MAX_CHUNKS that divides `vocab` (64 for LLaDA's 126464 and
    Dream's 152064; 1 for an odd vocabulary: one chunk, the plain reduction)."""
    n = MAX_CHUNKS
    while vocab % n:
        n //= 2
    return n


def chunked(x: torch.Tensor) -> torch.Tensor:
    """x [..., V] as [..., n, V / n] (n = vocab_chunks(V)), a view."""
    V = x.shape[-1]
    n = vocab_chunks(V)
    return x.view(*x.shape[:-1], n, V // n)


def chunked_max(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(max [...], first index of it [...] in the whole row) of chunked rows c [..., n, V / n]."""
    chunk_max, chunk_arg = c.max(-1)                     # per chunk: max, first index of it
    at = chunk_max.argmax(-1, keepdim=True)              # first chunk holding the max
    first = at * c.shape[-1] + chunk_arg.gather(-1, at)
    return chunk_max.gather(-1, at).squeeze(-1), first.squeeze(-1)


def row_sum(c: torch.Tensor) -> torch.Tensor:
    """The sum of each whole row of chunked rows c [..., n, V / n]: per chunk, then over the chunks."""
    return c.sum(-1).sum(-1)
