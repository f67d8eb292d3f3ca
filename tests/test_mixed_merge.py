"""The merged dual-cache step's logits (acceleration/captured.py, merge_window_logits): for a method
that reads only its blocks' rows (Reads.logits_blocks), the compact buffer holds exactly the rows
the dense merge's block_rows would give, bit for bit."""
import dataclasses

import pytest
import torch

from acceleration.captured import merge_window_logits
from decoding.contract import Reads, StepOutput, positions_of_blocks


def _window(B=4, G=24, W=9, V=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    start = torch.tensor([0, 5, 15, 13])[:B]                          # the last window ends at G - 2
    at = start.unsqueeze(1) + torch.arange(W)
    logits = torch.randn((B, W, V), generator=g).to(torch.bfloat16)
    x0 = torch.zeros((B, G), dtype=torch.long)
    return StepOutput(x0, torch.zeros((B, G)), torch.zeros((B, G), dtype=torch.bool), logits, logits_at=at)


@pytest.mark.parametrize("blocks", [1, 2])
def test_compact_rows_are_the_dense_merge_at_the_blocks(blocks):
    w = _window()
    B, G = w.x0.shape
    V = w.logits.shape[-1]
    dense = StepOutput(w.x0, w.conf, w.fresh, torch.full((B, G, V), 7.0))
    merge_window_logits(dense, w)
    block = torch.tensor([0, 1, 2, 5])                                 # 5: the last block (G markers after it)
    at = positions_of_blocks((block + 1) * 4, G, 4, blocks)
    want = dataclasses.replace(dense, logits_at=None).rows_at(at)
    compact = StepOutput(w.x0, w.conf, w.fresh, torch.full((B, at.shape[1], V), 7.0), logits_at=at.clone())
    merge_window_logits(compact, w)
    assert torch.equal(compact.logits_at, want.logits_at)
    assert torch.equal(compact.logits.view(torch.int32), want.logits.view(torch.int32))   # +0.0 where no row
    assert compact.logits.abs().sum() > 0 and (compact.logits == 0).any()


def test_logits_blocks_must_not_be_negative():
    with pytest.raises(ValueError, match=r"Reads.logits_blocks=-1 must be >= 0"):
        Reads(logits=True, logits_blocks=-1)
