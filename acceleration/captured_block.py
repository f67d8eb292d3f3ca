"""A captured decode of a block-causal model (SDAR/TraDo, LLaDA2.x, the CDLM student): each step
is one CUDA graph holding the block forward of every row against the exact block cache
(decoding/block_causal.py, BlockForward.feed_block), the token statistics, the method's decision
and the loop's bookkeeping (decoding.loop.decide_and_apply), so a step launches one graph and
syncs once. Same tokens and counts as the reference block loop.

A graph has fixed shapes: every row is fed (finished rows as padding, no NFE, nothing written),
the fed width is the block (a step inside a block) or two blocks (a step that also appends the
block just finished, `append=fold`), and attention reads every cache slot under the block-causal
mask (BlockKVCache.step with key_len = capacity: the slots past a row's end are masked out). The
step graph copies out [rows decoding, the width the next step feeds]; a step of any other width
(the first, which appends the prompt's whole blocks) runs eagerly through the same BlockForward.

Not captured (policy.block_capture_blocker): `append=separate` and logit-shifted models
(Fast-dLLM v2), whose appending forwards follow a step for some rows only.
"""
from __future__ import annotations

import torch

from decoding import block_causal
from .captured import CapturedDecode, Kind, fill_tree, method_tensors


class CapturedBlockDecode(CapturedDecode):
    @classmethod
    def build_block(cls, pool, model, method, state, lay, generator) -> "CapturedBlockDecode":
        B = state.tokens.shape[0]
        capacity = block_causal.block_capacity(state, lay, model.block_size)
        cache = pool.block_cache(B, capacity)
        forward = block_causal.BlockForward(model, method, state, lay, generator, cache=cache)
        every = torch.arange(B, device=state.tokens.device)

        def stats_of(width):
            def stats(s, launched):   # the block forward is part of the step graph
                act = ~s.rows.done
                return forward.output(every, forward.feed_block(s, act, width))
            return stats
        bs = model.block_size
        kinds = {w: Kind(lambda: None, stats_of(w), lambda: None) for w in (bs, 2 * bs)}
        kept = pool.caches[("block", B, capacity)]
        return cls(model, method, state, forward, kinds, lambda n_active, width: width if width in kinds else None,
                   lambda: pool.caches.get(("block", B, capacity)) is kept)

    def load(self, method, state, generator, lay=None) -> None:
        super().load(method, state, generator)
        f = self.forward
        fill_tree(f.lay, lay)
        f.start_cache(self.state)
        f.x0.fill_(self.model.eos_ids[0])
        f.conf.zero_()

    def eager_step(self, rows: torch.Tensor) -> None:
        block_causal.step(self.state, self.method, self.forward, rows)

    def count(self, state) -> None:
        """dcounts <- [rows still decoding, the width their next block forward feeds]."""
        act = ~state.rows.done
        self.dcounts.copy_(torch.stack([act.sum(), self.forward.width_needed(state, act)]))

    def guard(self, kind):
        return (self.dcounts[0] > 0) & (self.dcounts[1] == kind)

    def kept_by_warm_up(self) -> list[torch.Tensor]:
        f = self.forward
        return list(method_tensors(self.method).values()) + [f.cache.length, f.x0, f.conf]
