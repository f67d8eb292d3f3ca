"""Which methods' steps may be captured in a CUDA graph: decided here, once, from what a method
declares it reads (decoding.contract.Reads) and the forwards it plans, never by flags on methods.

A captured step runs the method's decide() and the loop's bookkeeping over every row (finished
rows masked) as one graph replayed each step, after the forward's own graph. That needs:
- no host work inside decide (Reads.host): a graph replays kernels, not Python;
- no random numbers (Reads.rng, a sampling temperature): the run's generator lives on the host;
- one forward per step with fixed shapes: no CFG (two forwards) and no truncated forwards
  (Reads.truncated: the fed length changes from step to step), and no prefix cache (its window
  narrows block by block);
Reading fp32 logits, hidden states or the history is allowed: they are static tensors of the
forward graph or of the state.
"""
from __future__ import annotations


def capture_blocker(method) -> str | None:
    """Why `method`'s step cannot be captured, or None if it can."""
    r = method.reads()
    if r.host:
        return "its decision syncs with the host (Reads.host)"
    if r.rng or method.temperature > 0:
        return "it draws random numbers (Reads.rng / temperature)"
    if method.cfg_scale > 0:
        return "classifier-free guidance runs two forwards per step"
    if r.truncated:
        return "it plans truncated forwards, whose length changes from step to step (Reads.truncated)"
    if method.cache == "prefix":
        return "the prefix cache's window narrows block by block"
    return None
