"""Reductions over a vocabulary in chunks (kernels/vocab_chunks.py) and the PRR token features built
on them: the same values as the whole-row reductions (maxima and first indices exactly, sums to
float rounding), ties included."""
import math

import pytest
import torch

from decoding.methods.prr.features import logit_features
from kernels.vocab_chunks import chunked, chunked_max, row_sum, vocab_chunks


def test_vocab_chunks_divide_the_vocabulary():
    assert vocab_chunks(126464) == 64 and vocab_chunks(152064) == 64
    assert vocab_chunks(1000) == 8 and vocab_chunks(999) == 1


@pytest.mark.parametrize("V", [126464, 1000, 999])
def test_chunked_max_is_the_max_and_its_first_index(V):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, V, generator=g).bfloat16().float()
    x[1, 7] = x[1, V - 2] = x[1].max() + 1        # a tie across chunks: the first index wins
    x[2, 4] = x[2, 5] = x[2].max() + 1            # a tie inside a chunk
    m, first = chunked_max(chunked(x))
    assert torch.equal(m, x.max(-1).values)
    assert first.tolist() == [int(torch.nonzero(r == r.max())[0]) for r in x]
    assert first[1] == 7 and first[2] == 4
    assert torch.allclose(row_sum(chunked(x)), x.sum(-1), rtol=1e-5, atol=1e-3)


def _whole_rows(logits, reference):
    """The features with whole-row reductions: log_softmax, topk(2), entropy."""
    V = logits.shape[-1]
    logp = torch.log_softmax(logits.float(), -1)
    p = logp.exp()
    p1, p2 = p.topk(2, -1).values.unbind(-1)
    if reference:
        ent = -(p * (p + 1e-6).log()).sum(-1) / (math.log(V) + 1e-6)
    else:
        ent = -(p * logp).sum(-1) / math.log(V)
    return torch.stack([p1, p1 - p2, ent], -1)


@pytest.mark.parametrize("convention", ["ours", "reference"])
@pytest.mark.parametrize("V", [126464, 999])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_prr_logit_features_equal_the_whole_row_formulas(convention, V, scale):
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(2, 5, V, generator=g) * scale).bfloat16()
    logits[0, 1, 3] = logits[0, 1, 9] = logits[0, 1].max() + 2     # a tied top-1: margin 0
    got = logit_features(logits, convention)
    want = _whole_rows(logits, convention == "reference")
    assert got.shape == (2, 5, 3)
    assert torch.allclose(got, want, rtol=0, atol=1e-5)
    assert got[0, 1, 1] == 0
    # the two conventions differ only in the entropy's smoothing
    other = logit_features(logits, "reference" if convention == "ours" else "ours")
    assert torch.equal(got[..., :2], other[..., :2])
