"""CUDA-graph replay of launch-bound model forwards (GPU only; CPU runs never get here).

A forward of a few small matrix products is bound by the host launching its ~30 kernels per
layer, not by the GPU: LLaDA-8B at batch 1 x 768 tokens took 31 ms eagerly for about 17 ms of
GPU work (H100, results/speed/REPORT.md). Replaying a captured graph launches it all at once.

- `GraphedCall`: fn(*tensors) captured once for fixed input shapes; later calls copy their
  inputs into the captured (static) buffers and replay. The outputs are static too: valid until
  the next replay, so the loop consumes them within its step.
- `CapturedStep`: the rest of a step (token statistics, the method's decision, the loop's
  bookkeeping: decoding.loop.decide_and_apply) in a second graph, so a step launches two graphs
  and syncs once (acceleration/captured.py).
- `GuardedStep`: a whole step (forward and the rest) inside a conditional node of a graph: it
  runs only where a guard computed on the device holds, so the host may queue it before it
  knows whether the step is needed (acceleration/captured.py, steps queued ahead).
- `launch_bound`: whether a forward is small enough for its launches to dominate.
The graphs a model keeps across decode calls live in a GraphPool (acceleration/pool.py).
"""
from __future__ import annotations

import torch

from kernels.compiled import compiling_for_graph
from .guarded import GuardedStep  # noqa: F401  (acceleration/captured.py builds it as graphs.GuardedStep)

# A forward is launch-bound when its matrix work is below about 20 ms at the H100's measured bf16
# rate (parameters x tokens <= 8e12, i.e. 2 x 8e12 FLOP): then its ~1000 kernel launches (LLaDA-8B;
# ~30 per layer at ~25 us of host time each) take longer than the GPU needs for the work.
LAUNCH_BOUND_WORK = 8e12


class GraphedCall:
    def __init__(self, fn, *inputs: torch.Tensor | None, blas: str | None = None):
        """`blas`: the matrix-product library (torch.backends.cuda.preferred_blas_library) the
        warm-up and the capture use; the graph keeps the kernels it picked. None: the default."""
        self.fn, self.blas = fn, blas
        self.inputs = [t.clone() if t is not None else None for t in inputs]
        run = lambda: fn(*self.inputs)
        self.graph, self.out = _capture(run, run, blas)

    def __call__(self, *inputs: torch.Tensor | None):
        self._fill(inputs)
        self.graph.replay()
        return self.out

    def record(self, *inputs: torch.Tensor | None):
        """The call's kernels issued again (inside another graph's capture: GuardedStep), with the
        same matrix-product library; returns that call's own output tensors."""
        self._fill(inputs)
        with _blas_library(self.blas):
            return self.fn(*self.inputs)

    def _fill(self, inputs) -> None:
        for static, t in zip(self.inputs, inputs):
            if static is not None and t is not static:
                static.copy_(t)


class CapturedStep:
    """fn(state), captured once and replayed on the same state tensors, which it updates in place:
    a decode step's decision and bookkeeping (decoding/loop.py). Not a forward, so the forward
    timers (bench/measure.py) neither time nor count it. Its warm-up runs on a copy of the state
    (`copy_state`), so building it changes nothing."""

    def __init__(self, fn, state, copy_state):
        self.graph, _ = _capture(lambda: fn(copy_state(state)), lambda: fn(state))

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


def model_params(model) -> float:
    """Parameters of a model on one device; inf for a model spread over several devices (one
    stream capture cannot hold it)."""
    params = list(model.module.parameters())
    return sum(p.numel() for p in params) if len({p.device for p in params}) <= 1 else float("inf")


def launch_bound(model, tokens: int, n_params: float | None = None) -> bool:
    """Whether a forward over `tokens` tokens is launch-bound (`n_params`: model_params(model),
    if already known)."""
    n = model_params(model) if n_params is None else n_params
    return n * tokens <= LAUNCH_BOUND_WORK
