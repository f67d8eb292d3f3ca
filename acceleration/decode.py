"""The fast entry point of decoding: `Decoder(model)(method, prompts, gen)` decodes exactly as the
reference loop decoding.loop.decode does (same tokens, NFE and counts), choosing once per call how:

- no GPU, graphs off (DLLM_CUDA_GRAPHS=0), a trace asked for, or a model whose steps are never
  graphed (policy.model_blocker): the reference loop itself;
- a block-causal model: a CapturedBlockDecode (acceleration/captured_block.py) where the method's
  step and the model's block forwards may be captured, else the reference block loop;
- a method whose step may be captured (acceleration/policy.py): a CapturedDecode, every step a
  forward graph plus a graph of decoding.loop.decide_and_apply (acceleration/captured.py);
- otherwise: the reference loop's eager steps, with launch-bound forwards replayed as graphs.

The Decoder owns the model's GraphPool (graphs and KV caches kept across calls); the harness
holds one Decoder per model.
"""
from __future__ import annotations

import dataclasses

import torch

from decoding import block_causal, loop
from decoding.base import GenConfig, Method
from .captured import CapturedDecode
from .captured_block import CapturedBlockDecode
from .policy import capture_blocker, model_blocker
from .pool import CAPTURED_DECODES, GraphedCalls, GraphPool


class Decoder:
    def __init__(self, model, pool: GraphPool | None = None):
        self.model = model
        self.pool = pool if pool is not None else GraphPool(model)

    @torch.no_grad()
    def __call__(self, method: Method, prompts: list[list[int]], gen: GenConfig,
                 generator: torch.Generator | None = None, trace: bool = False) -> loop.DecodeResult:
        model, pool = self.model, self.pool
        if trace or not pool.graphs_apply() or model_blocker(model) is not None:
            return loop.decode(model, method, prompts, gen, generator, trace)
        if model.regime == "block_causal":
            return self._block(method, prompts, gen, generator)
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

    def _block(self, method, prompts, gen, generator) -> loop.DecodeResult:
        """A block-causal model: a CapturedBlockDecode where the steps may be captured, else the
        reference block loop."""
        model = self.model
        if capture_blocker(method) is not None:
            return loop.decode(model, method, prompts, gen, generator)
        block_causal.check(model, method, gen)
        state, lay = block_causal.new_block_state(model, method, prompts, gen)
        method.start(len(prompts), model.device, generator)
        key = ("block", tuple(state.tokens.shape), state.P, shape_key(state.gen), lay.num_blocks,
               block_causal.block_capacity(state, lay, model.block_size), method.name,
               repr(sorted(method.settings().items())))
        kept = self._kept(key, method)
        if kept is not None:
            kept.load(method, state, generator, lay)
        else:
            kept = CapturedBlockDecode.build_block(self.pool, model, method, state, lay, generator)
        self._keep(key, kept)
        kept.run()
        return loop.result(kept.state, model.eos_ids)

    def _kept(self, key, method):
        """The kept captured decode for `key` that can take `method` (None: build one)."""
        store = self.pool.decodes
        for k in [k for k, d in store.items() if not d.current()]:   # its forward graphs or cache were dropped
            del store[k]
        kept = store.pop(key, None)
        return kept if kept is not None and kept.fits(method) else None

    def _keep(self, key, decode) -> None:
        store = self.pool.decodes
        while len(store) >= CAPTURED_DECODES:
            store.popitem(last=False)
        store[key] = decode

    def _captured(self, calls, method, state, generator) -> CapturedDecode | None:
        """The pool's kept captured decode for these shapes and method settings (refilled with this
        call's state and method), or a new one; None where the forwards are not graphed."""
        key = (tuple(state.tokens.shape), state.P, shape_key(state.gen), state.attn_fwd is not None, method.name,
               repr(sorted(method.settings().items())))
        kept = self._kept(key, method)
        if kept is not None:
            kept.load(method, state, generator)
        else:
            kept = CapturedDecode.build(self.pool, calls, self.model, method, state, generator)
            if kept is None:
                return None
        self._keep(key, kept)
        return kept


def shape_key(gen: GenConfig) -> GenConfig:
    """The generation settings a kept captured decode depends on: all but the step cap, which the
    state holds as a tensor (decoding.state.Constants.step_cap, refilled by `load`). A decode
    capped for a warm-up keeps its graphs for the uncapped decode that follows."""
    return dataclasses.replace(gen, max_steps=None)


def decode(model, method: Method, prompts: list[list[int]], gen: GenConfig,
           generator: torch.Generator | None = None, trace: bool = False,
           decoder: Decoder | None = None) -> loop.DecodeResult:
    """Decoder(model)(...) for one call (graphs are then not kept for the next: hold a Decoder)."""
    return (decoder or Decoder(model))(method, prompts, gen, generator, trace)
