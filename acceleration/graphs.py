"""CUDA-graph replay of launch-bound model forwards (GPU only; CPU runs never get here).

A forward of a few small matrix products is bound by the host launching its ~30 kernels per
layer, not by the GPU: LLaDA-8B at batch 1 x 768 tokens took 31 ms eagerly for about 17 ms of
GPU work (H100, results/speed/REPORT.md). Replaying a captured graph launches it all at once.

- `GraphedCall`: fn(*tensors) captured once for fixed input shapes; later calls copy their
  inputs into the captured (static) buffers and replay. The outputs are static too: valid until
  the next replay, so the loop consumes them within its step.
- `full_forward_graph`: the no-cache loop's full forward, graphed when it is launch-bound
  (`launch_bound`). The graph always carries every row of the batch (rows that finished are
  computed and ignored), so one decode call needs one graph rather than one per number of rows
  still decoding; for a launch-bound forward the extra rows cost next to nothing. A few graphs
  are kept per model (least recently used dropped), as batches of the same shape recur.
- `CapturedStep`: the rest of a graphed no-cache step (token stats, the method's selection, the
  loop's bookkeeping) in a second graph, so a step launches two graphs and syncs once.
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from kernels.compiled import compiling_for_graph

# A forward is launch-bound when its matrix work is below about 20 ms at the H100's measured bf16
# rate (parameters x tokens <= 8e12, i.e. 2 x 8e12 FLOP): then its ~1000 kernel launches (LLaDA-8B;
# ~30 per layer at ~25 us of host time each) take longer than the GPU needs for the work.
LAUNCH_BOUND_WORK = 8e12
GRAPHS_PER_MODEL = 4


class GraphedCall:
    def __init__(self, fn, *inputs: torch.Tensor | None, blas: str | None = None):
        """`blas`: the matrix-product library (torch.backends.cuda.preferred_blas_library) the
        warm-up and the capture use; the graph keeps the kernels it picked. None: the default."""
        self.inputs = [t.clone() if t is not None else None for t in inputs]
        run = lambda: fn(*self.inputs)
        self.graph, self.out = _capture(run, run, blas)

    def __call__(self, *inputs: torch.Tensor | None):
        for static, t in zip(self.inputs, inputs):
            if static is not None and t is not static:
                static.copy_(t)
        self.graph.replay()
        return self.out


class CapturedStep:
    """fn(*state), captured once and replayed on the same state tensors, which it updates in place:
    a decode step's bookkeeping (decoding/loop.py). Not a forward, so the forward timers
    (bench/measure.py) neither time nor count it. Its warm-up runs on copies of the state, so
    building it changes nothing."""

    def __init__(self, fn, *state: torch.Tensor):
        self.graph, _ = _capture(lambda: fn(*[t.clone() for t in state]), lambda: fn(*state))

    def replay(self) -> None:
        self.graph.replay()


def _capture(warm_up, run, blas: str | None = None):
    """A CUDA graph of run(), after one warm-up call on a side stream (it compiles kernels and picks
    the product algorithms), and run()'s output (static: overwritten by each replay)."""
    with compiling_for_graph(), _blas_library(blas):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            warm_up()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = run()
    return graph, out


class _blas_library:
    def __init__(self, name: str | None):
        self.name = name

    def __enter__(self):
        if self.name is not None:
            self.saved = torch.backends.cuda.preferred_blas_library()
            torch.backends.cuda.preferred_blas_library(self.name)

    def __exit__(self, *exc):
        if self.name is not None:
            torch.backends.cuda.preferred_blas_library(self.saved)


def launch_bound(model, tokens: int) -> bool:
    """Whether a forward over `tokens` tokens is launch-bound; False for a model spread over
    several devices (one stream capture cannot hold it)."""
    n = getattr(model, "_n_params", None)
    if n is None:
        params = list(model.module.parameters())
        one_device = len({p.device for p in params}) <= 1
        n = model._n_params = sum(p.numel() for p in params) if one_device else float("inf")
    return n * tokens <= LAUNCH_BOUND_WORK


def full_forward_graph(model, x: torch.Tensor, attn: torch.Tensor | None, need_hidden: bool) -> GraphedCall | None:
    """The graph for model.forward(x, attn) over the whole batch, or None where graphs do not
    apply (CPU, graphs switched off on the adapter, or a forward big enough to hide its launches)."""
    if x.device.type != "cuda" or not model.cuda_graphs or not launch_bound(model, x.numel()):
        return None
    graphs = model.__dict__.setdefault("_full_graphs", OrderedDict())
    key = _full_graph_key(x, attn, need_hidden)
    if key in graphs:
        graphs.move_to_end(key)
        return graphs[key]
    while len(graphs) >= GRAPHS_PER_MODEL:
        graphs.popitem(last=False)
    graphs[key] = GraphedCall(lambda ids, am: model.forward(ids, am, output_hidden=need_hidden), x, attn)
    return graphs[key]


def kept_full_forward_graph(model, x: torch.Tensor, attn: torch.Tensor | None, need_hidden: bool) -> GraphedCall | None:
    """The graph full_forward_graph would return, if the model keeps one; never builds one."""
    return model.__dict__.get("_full_graphs", {}).get(_full_graph_key(x, attn, need_hidden))


def _full_graph_key(x, attn, need_hidden) -> tuple:
    return tuple(x.shape), attn is not None, need_hidden
