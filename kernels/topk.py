"""The largest values of long rows (a vocabulary), without a radix select over the whole row.

`torch.topk` over a few rows of a vocabulary (32 rows of 126464 at a block's positions) runs a
multi-block radix select per row, two or more kernels of tens of microseconds each, and inductor
leaves it to ATen inside a compiled step. These compute the same values another way:

- `top2_values`: the largest and second-largest value of each row, as two max reductions (the
  second skips the first's index), which inductor fuses into the step's other passes over the row.
- `topk_values`: the k largest values of each row, sorted descending, as a top-k of each tile of
  the row followed by a top-k of the tiles' winners. The k largest of a row are among the k
  largest of the tiles they lie in, so the values are exactly `x.topk(k).values`. The tiles' winners
  are a set, left unsorted (a sort of k values per tile saved); the second top-k sorts.

Both equal `x.topk(k, dim=-1).values` element for element (ties included: a value that occurs
twice is returned twice), tested on CPU. Imports nothing of this project.
"""
from __future__ import annotations

import torch

TILE = 2048   # tile length of `topk_values`; rows up to 4 tiles take torch.topk directly


def top2_values(x: torch.Tensor) -> torch.Tensor:
    """[..., 2]: the largest and second-largest value along the last dim (= x.topk(2).values)."""
    first, at = x.max(-1, keepdim=True)
    idx = torch.arange(x.shape[-1], device=x.device)
    second = x.masked_fill(idx == at, -torch.inf).amax(-1, keepdim=True)
    return torch.cat([first, second], -1)


def topk_values(x: torch.Tensor, k: int, tile: int = TILE) -> torch.Tensor:
    """[..., k]: the k largest values along the last dim, sorted descending (= x.topk(k).values),
    through a top-k per tile of `tile` elements and a top-k of the tiles' winners."""
    n = x.shape[-1]
    if k > tile or n <= 4 * tile:
        return x.topk(min(k, n), dim=-1).values
    tiles = -(-n // tile)
    padded = torch.nn.functional.pad(x, (0, tiles * tile - n), value=-torch.inf)
    lead = x.shape[:-1]
    winners = padded.reshape(*lead, tiles, tile).topk(k, dim=-1, sorted=False).values   # a set: no sort per tile
    return winners.reshape(*lead, tiles * k).topk(k, dim=-1).values
