"""Which methods' steps may be captured in a CUDA graph: decided here, once, from what a method
declares it reads (decoding.contract.Reads) and the forwards it plans, never by flags on methods.

A captured step runs the method's decide() and the loop's bookkeeping over every row (finished
rows masked) as one graph replayed each step, after the forward's own graph. That needs:
- no host work inside decide (Reads.host): a graph replays kernels, not Python;
- no random numbers (Reads.rng, a sampling temperature): the run's generator lives on the host;
- one forward per step with fixed shapes: no CFG (two forwards), no prefix cache (its window
  narrows block by block); a verification block (Reads.verify) is part of the forward's graph;
- truncated forwards (Reads.truncated: the fed length changes from step to step) run inside a
  step graph per length (acceleration/captured_truncated.py), or eagerly before the step graph,
  which reads their x0, conf and fresh from fixed buffers: such a method may not also read logits
  or hidden states (no fixed buffer holds them).
Reading logits, hidden states or the history is allowed otherwise: they are static tensors of
the forward graph or of the state.

Block-causal models (decoding/block_causal.py): a captured step holds the block forward too
(acceleration/captured_block.py), every step of a row one block forward of a fixed width, and a
block appended by a forward of its own (`append=separate`, Fast-dLLM v2) is a graph of its own.
A model whose block forward cannot take a fixed width (no `checked` argument: a backend without
the exact cache) is not captured (model_blocker).
"""
from __future__ import annotations

import inspect


def model_blocker(model) -> str | None:
    """Why no step of `model` is graphed (the reference loop decodes it), or None."""
    if getattr(model, "regime", "bidirectional") == "block_causal":
        fwd = getattr(model.module, "block_forward", None)
        if fwd is None or "checked" not in inspect.signature(fwd).parameters:
            return "this block-causal backend has no fixed-width block forward (models/block_cache.py)"
    return None


def capture_blocker(method) -> str | None:
    """Why `method`'s step cannot be captured, or None if it can."""
    r = method.reads()
    if r.host:
        return "its decision syncs with the host (Reads.host)"
    if r.rng or method.temperature > 0:
        return "it draws random numbers (Reads.rng / temperature)"
    if method.cfg_scale > 0:
        return "classifier-free guidance runs two forwards per step"
    if r.truncated and (r.logits or r.hidden):
        return "it plans truncated forwards (Reads.truncated) and reads their logits or hidden states"
    if method.cache == "prefix":
        return "the prefix cache's window narrows block by block"
    return None
