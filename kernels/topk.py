"""The largest values of long rows (a vocabulary), without a radix select over the whole row.

`torch.topk` over a few rows of a vocabulary (32 rows of 126464 at a block's positions) runs a
multi-block radix select per row, two or more kernels of tens of microseconds each, and inductor
leaves it to ATen inside a compiled step. These compute the same values another way:

- `top2_values`: the largest and second-largest value of each row, as two max reductions (the
  second skips the first's index), which inductor fuses into the step's other passes over the row.
- `topk_values`: the k largest values of each row, sorted descending, from the k chunks of the
  row with the largest maxima: a value of any other chunk is at most k chunk maxima, so the k
  largest values of the row lie in those k chunks (ties included: the values, not the positions,
  are what is returned). One max pass over the row, a top-k of its chunk maxima, a gather of k
  chunks and a top-k of their k * chunk elements: no radix select over the whole row.

Both equal `x.topk(k, dim=-1).values` element for element (ties included: a value that occurs
twice is returned twice), tested on CPU. Imports nothing of this project.
"""
from __future__ import annotations

import torch

CHUNK = 128   # chunk length of `topk_values` (divides every real vocabulary: 126464, 151936, 152064, 157184)


def top2_values(x: torch.Tensor) -> torch.Tensor:
    """[..., 2]: the largest and second-largest value along the last dim (= x.topk(2).values)."""
    first, at = x.max(-1, keepdim=True)
    idx = torch.arange(x.shape[-1], device=x.device)
    second = x.masked_fill(idx == at, -torch.inf).amax(-1, keepdim=True)
    return torch.cat([first, second], -1)


def topk_values(x: torch.Tensor, k: int, chunk: int = CHUNK) -> torch.Tensor:
    """[..., k]: the k largest values along the last dim, sorted descending (= x.topk(k).values),
    from the k chunks of `chunk` elements with the largest maxima. The chunk is the largest power of
    two up to `chunk` that divides the row; rows of fewer than 4k chunks, or chunks under 8 elements
    (a row length with no such divisor), take torch.topk directly."""
    n = x.shape[-1]
    while n % chunk:
        chunk //= 2
    chunks = n // chunk
    if chunks < 4 * k or chunk < 8:
        return x.topk(min(k, n), dim=-1).values
    lead = x.shape[:-1]
    c = x.reshape(*lead, chunks, chunk)
    best = c.amax(-1).topk(k, dim=-1, sorted=False).indices                          # [..., k] chunks
    picked = c.gather(-2, best.unsqueeze(-1).expand(*lead, k, chunk))                # [..., k, chunk]
    return picked.reshape(*lead, k * chunk).topk(k, dim=-1).values
