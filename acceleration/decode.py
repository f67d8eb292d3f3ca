"""The fast entry point of decoding: `Decoder(model)(method, prompts, gen)` decodes exactly as the
reference loop decoding.loop.decode does (same tokens, NFE and counts), choosing once per call how:

- no GPU, graphs off (DLLM_CUDA_GRAPHS=0) or a trace asked for: the reference loop itself;
- a method whose step may be captured (acceleration/policy.py): a CapturedDecode, every step a
  forward graph plus a graph of decoding.loop.decide_and_apply (acceleration/captured.py);
- otherwise: the reference loop's eager steps, with launch-bound forwards replayed as graphs.

The Decoder owns the model's GraphPool (graphs and KV caches kept across calls); the harness
holds one Decoder per model.
"""
from __future__ import annotations

import torch

from decoding import loop
from decoding.base import GenConfig, Method
from .captured import CapturedDecode
from .policy import capture_blocker
from .pool import CAPTURED_DECODES, GraphedCalls, GraphPool


class Decoder:
    def __init__(self, model, pool: GraphPool | None = None):
        self.model = model
        self.pool = pool if pool is not None else GraphPool(model)

    @torch.no_grad()
    def __call__(self, method: Method, prompts: list[list[int]], gen: GenConfig,
                 generator: torch.Generator | None = None, trace: bool = False) -> loop.DecodeResult:
        model, pool = self.model, self.pool
        if trace or not pool.graphs_apply():
            return loop.decode(model, method, prompts, gen, generator, trace)
        calls = GraphedCalls(pool)
        if capture_blocker(method) is not None:
            return loop.decode(model, method, prompts, gen, generator, calls=calls)
        state = loop.new_state(model, method, prompts, gen)
        method.start(len(prompts), model.device, generator)
        captured = self._captured(calls, method, state, generator)
        if captured is None:
            return loop.decode(model, method, prompts, gen, generator, calls=calls)
        captured.run()
        return loop.result(captured.state, model.eos_ids)

    def _captured(self, calls, method, state, generator) -> CapturedDecode | None:
        """The pool's kept captured decode for these shapes and method settings (refilled with this
        call's state and method), or a new one; None where the forwards are not graphed."""
        store = self.pool.decodes
        key = (tuple(state.tokens.shape), state.P, state.gen, state.attn_fwd is not None, method.name,
               repr(sorted(method.settings().items())))
        for k in [k for k, d in store.items() if not d.current()]:   # its forward graphs or cache were dropped
            del store[k]
        kept = store.pop(key, None)
        if kept is not None:
            kept.load(method, state, generator)
        else:
            kept = CapturedDecode.build(self.pool, calls, self.model, method, state, generator)
            if kept is None:
                return None
        while len(store) >= CAPTURED_DECODES:
            store.popitem(last=False)
        store[key] = kept
        return kept


def decode(model, method: Method, prompts: list[list[int]], gen: GenConfig,
           generator: torch.Generator | None = None, trace: bool = False,
           decoder: Decoder | None = None) -> loop.DecodeResult:
    """Decoder(model)(...) for one call (graphs are then not kept for the next: hold a Decoder)."""
    return (decoder or Decoder(model))(method, prompts, gen, generator, trace)
