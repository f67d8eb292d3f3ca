"""kernels/topk.py: the same values as torch.topk, ties and -inf included."""
import pytest
import torch

from kernels.topk import top2_values, topk_values


def _rows(n, dtype, ties):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(3, 5, n, generator=g)
    if ties:   # few distinct values: the maximum and the 50th value occur many times
        x = (x * 2).round()
    x[0, 0, : n // 3] = -torch.inf
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("ties", [False, True])
def test_top2_values_equal_topk(dtype, ties):
    for n in (2, 7, 126464):
        x = _rows(n, dtype, ties)
        assert torch.equal(top2_values(x), x.topk(2, dim=-1).values)


def test_top2_values_repeat_a_tied_maximum():
    x = torch.tensor([[1.0, 3.0, 0.0, 3.0]])
    assert top2_values(x).tolist() == [[3.0, 3.0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n", [60, 8192, 8193, 126464])
def test_topk_values_equal_topk(dtype, ties, n):
    x = _rows(n, dtype, ties)
    assert torch.equal(topk_values(x, 50), x.topk(50, dim=-1).values)


@pytest.mark.parametrize("n,chunk", [(1000, 64), (1000, 8), (1536, 16)])
def test_topk_values_take_the_largest_power_of_two_chunk_dividing_the_row(n, chunk):
    x = _rows(n, torch.float32, ties=False)
    assert torch.equal(topk_values(x, 10, chunk=chunk), x.topk(10, dim=-1).values)


def test_topk_values_find_values_crowded_into_few_chunks():
    """The 50 largest all in two chunks, the other chunks' maxima just below them: the chunk maxima
    pick those two chunks, and the values equal torch.topk's."""
    x = torch.randn(2, 126464, generator=torch.Generator().manual_seed(0))
    x[:, 256:384] = 10 + torch.arange(128.0)
    x[:, 1024:1152] = 10.5 + torch.arange(128.0)
    assert torch.equal(topk_values(x, 50), x.topk(50, dim=-1).values)


def test_topk_values_trace_as_one_graph():
    x = _rows(9000, torch.float32, ties=True)
    compiled = torch.compile(lambda t: (topk_values(t, 50), top2_values(t)), fullgraph=True, backend="aot_eager")
    top, two = compiled(x)
    assert torch.equal(top, x.topk(50, dim=-1).values) and torch.equal(two, x.topk(2, dim=-1).values)
