"""Compiled GPU fast paths for small elementwise and reduction functions (norms, RoPE, SwiGLU,
token statistics, a step's bookkeeping): `on_gpu_compiled` runs the plain function through
torch.compile on CUDA tensors and the function itself everywhere else, so the eager function is
the reference twin of its compiled kernel. Imports nothing of this project.
"""
from __future__ import annotations

import dataclasses
import os

import torch


COMPILE_MIN_TOKENS = 2048
# A reduction over a vocabulary compiles for any input holding one real vocabulary row (LLaDA's
# 126464, Dream's 152064), however few rows: the reference loop then computes a cache window's
# token statistics with the kernels its captured step holds (the same numbers), and the guards'
# host time is small beside a pass over that many elements.
VOCAB_ROWS_COMPILED = 1 << 16
_graph_capture = [0]   # > 0 while a CUDA graph is warmed up and captured (acceleration/graphs.py)


def building_graph() -> bool:
    """True while a CUDA graph is warmed up and captured."""
    return _graph_capture[0] > 0


_small_compiled = [0]   # > 0 inside small_inputs_compiled


class compiling_for_graph:
    """Inside: compiled kernels also for small inputs (a captured graph pays no per-call cost)."""
    def __enter__(self):
        _graph_capture[0] += 1

    def __exit__(self, *exc):
        _graph_capture[0] -= 1


class small_inputs_compiled:
    """Inside: compiled kernels also for small inputs, outside a graph too, so that an eager call
    computes with the kernels a captured graph of the same call holds (the same numbers; fused
    kernels round differently from the eager function's passes in bf16)."""
    def __enter__(self):
        _small_compiled[0] += 1

    def __exit__(self, *exc):
        _small_compiled[0] -= 1


def on_gpu_compiled(fn=None, *, min_numel: int | None = None, row_args: tuple[int, ...] = (0,)):
    """Run `fn` (a small elementwise/reduction function whose first argument has the tokens in
    dim 0 and fixed feature dims after it) through torch.compile on CUDA tensors, so its several
    passes become one kernel; eager elsewhere (CPU tests, no compiler needed).

    Callers flatten batch and length into dim 0 so that only that dim varies: torch.compile's
    automatic dynamic shapes then make dim 0 alone symbolic and the kernels index the feature dims
    with constants. (With every dim symbolic, dynamic=True, the index arithmetic used integer
    divisions by runtime values: RoPE and SwiGLU ran at 0.5 and 1.3 TB/s on an H200.)
    A compiled call costs tens of microseconds of host time (guards), which outweighs the saved
    memory passes on small inputs: below COMPILE_MIN_TOKENS tokens it runs eager, except while a
    CUDA graph is captured; `min_numel` replaces that test by one on x's element count (for
    functions whose rows are long, like a reduction over the vocabulary). DLLM_COMPILE=0 turns it off.
    `row_args`: the positional arguments whose dim 0 is the tokens dim (a dataclass argument: all
    its tensor fields); it is marked dynamic from
    the first call, so the first compile (in a warm-up) serves every later size; otherwise the second
    size recompiles, seconds of work that landed inside a timed decode call."""
    if fn is None:
        return lambda f: on_gpu_compiled(f, min_numel=min_numel, row_args=row_args)
    compiled = None

    def small(x):
        return x.numel() < min_numel if min_numel is not None else x.shape[0] < COMPILE_MIN_TOKENS

    def wrapper(x, *args):
        nonlocal compiled
        if torch.compiler.is_compiling():   # inside a function being compiled whole: traced with it
            return fn(x, *args)
        if (not x.is_cuda or os.environ.get("DLLM_COMPILE", "1") == "0"
                or (small(x) and not _graph_capture[0] and not _small_compiled[0])):
            return fn(x, *args)
        if compiled is None:
            compiled = torch.compile(fn, fullgraph=True)
        if x.shape[0] > 1:
            for i in row_args:
                for t in _tensors((x, *args)[i]):
                    torch._dynamo.mark_dynamic(t, 0)
        # No automatic dynamic shapes: a second model of another width in the same process must
        # recompile with its own constant feature dims (automatic dynamic made them symbolic: the
        # RoPE kernel then ran 10x slower, measured on the H200).
        with torch._dynamo.config.patch(automatic_dynamic_shapes=False):
            return compiled(x, *args)

    wrapper.__doc__, wrapper.__name__, wrapper.__qualname__ = fn.__doc__, fn.__name__, fn.__qualname__
    wrapper.__wrapped__, wrapper.row_args = fn, row_args   # for tests: what it compiles, and how
    return wrapper


def _tensors(arg) -> list:
    """The tensors of an argument: itself, or a dataclass's tensor fields (none for other values)."""
    if dataclasses.is_dataclass(arg):
        return [v for v in vars(arg).values() if isinstance(v, torch.Tensor)]
    return [arg] if isinstance(arg, torch.Tensor) else []
