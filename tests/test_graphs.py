"""CUDA-graph policy and the loop's graph branch, checked on CPU (graphs themselves need a GPU;
their token-for-token parity with eager forwards is recorded in results/speed/REPORT.md)."""
import torch

import methods.loop as loop
from bench.measure import ForwardTimer
from bench.models.llada import LLaDA, LLaDAConfig
from bench.models.layers import compiling_for_graph
from methods.graphs import GraphedCall, full_forward_graph, launch_bound
from methods.base import GenConfig

from decoding import encode, method


class _Adapter:   # what launch_bound reads of a ModelAdapter
    def __init__(self, module):
        self.module = module


def test_launch_bound_graphs_llada8b_at_batch_1_not_batch_8():
    with torch.device("meta"):
        net = LLaDA(LLaDAConfig())          # the 8B architecture, no memory
    m = _Adapter(net)
    assert launch_bound(m, 1 * 768)         # ~17 ms of GPU work behind ~1000 launches: graph it
    assert not launch_bound(m, 8 * 768)     # ~150 ms of GPU work hides its launches: eager


def test_no_graph_on_cpu(builtin_model):
    x = torch.zeros((2, 10), dtype=torch.long)
    assert full_forward_graph(builtin_model, x, None, False) is None


def test_graph_branch_of_the_loop_equals_the_eager_branch(builtin_model, prompts, monkeypatch):
    # The graph branch forwards every row of the batch (finished rows too) and keeps the rows still
    # decoding; stand in an eager call for the graph and compare with the normal path.
    prompts = encode(builtin_model, prompts)
    gen = GenConfig(gen_length=48, block_length=16)

    class EagerStandIn:
        def __init__(self, model, need_hidden):
            self.model, self.need_hidden = model, need_hidden

        def __call__(self, x, attn):
            return self.model.forward(x.clone(), attn, output_hidden=self.need_hidden)

    for spec in ("fixed", "threshold", "prr", "eb"):
        eager = loop.decode(builtin_model, method(spec, gen), prompts, gen)
        monkeypatch.setattr(loop, "full_forward_graph", lambda model, x, attn, need: EagerStandIn(model, need))
        graphed = loop.decode(builtin_model, method(spec, gen), prompts, gen)
        monkeypatch.undo()
        assert torch.equal(eager.tokens, graphed.tokens) and torch.equal(eager.nfe, graphed.nfe), spec
        if spec == "threshold":
            assert eager.steps.min() < eager.steps.max(), "rows should finish at different steps"


def test_forward_timer_counts_graph_replays_not_graph_building(builtin_model):
    class FakeGraph:
        replays = 0

        def replay(self):
            FakeGraph.replays += 1

    g = GraphedCall.__new__(GraphedCall)          # a captured call without a GPU
    g.inputs, g.graph, g.out = [torch.zeros(2)], FakeGraph(), "out"
    x = torch.zeros((1, 6), dtype=torch.long)
    with ForwardTimer(builtin_model, []) as t:
        assert g(torch.ones(2)) == "out" and torch.equal(g.inputs[0], torch.ones(2))
        builtin_model.forward(x)                     # an eager forward: timed
        with compiling_for_graph():
            builtin_model.forward(x)                 # a graph's warm-up or capture: not a decode forward
    seconds, calls = t.take()
    assert calls == 2 and seconds > 0 and FakeGraph.replays == 1
    assert GraphedCall.__call__.__name__ == "__call__" and "forward" not in builtin_model.__dict__


def test_cache_kept_across_decode_calls_reads_nothing_stale(builtin_model, prompts, monkeypatch):
    # On a GPU the model keeps the KV cache (and its captured graphs) of a (batch, length) for the
    # next decode call. Stand that in on CPU: a second batch decoded on the first batch's cache
    # gives exactly what it gives on a fresh cache.
    import methods.cache as cache
    first = encode(builtin_model, prompts)[:4]
    second = first[1:] + first[:1]         # other prompt in every row, same (batch, length)
    key = (4, max(map(len, first)) + 48)
    gen = GenConfig(gen_length=48, block_length=16)
    for spec in ("threshold:cache=dual", "fixed:cache=prefix"):
        fresh = loop.decode(builtin_model, method(spec, gen), second, gen)
        monkeypatch.setattr(cache, "_cache_and_graphs", lambda m, n, L: (cache._shared_cache(m, n, L)[0], None))
        loop.decode(builtin_model, method(spec, gen), first, gen)
        kept = builtin_model._cache_graphs[key][0]
        reused = loop.decode(builtin_model, method(spec, gen), second, gen)
        assert builtin_model._cache_graphs[key][0] is kept
        monkeypatch.undo()
        del builtin_model._cache_graphs
        assert torch.equal(fresh.tokens, reused.tokens) and torch.equal(fresh.nfe, reused.nfe), spec


def test_shared_cache_keeps_the_most_recent_shapes():
    from methods.cache import CACHES_PER_MODEL, _shared_cache

    class Model:
        def new_cache(self, batch, length):
            return object()

    m = Model()
    first = _shared_cache(m, 1, 10)
    assert _shared_cache(m, 1, 10) is first            # same shape: the same cache and graphs
    for n in range(2, 2 + CACHES_PER_MODEL):
        _shared_cache(m, n, 10)
    assert (1, 10) not in m._cache_graphs and len(m._cache_graphs) == CACHES_PER_MODEL
