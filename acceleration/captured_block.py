"""A captured decode of a block-causal model (SDAR/TraDo, LLaDA2.x, Fast-dLLM v2, the CDLM student):
each step is one CUDA graph holding the block forward of every row against the exact block cache
(decoding/block_causal.py, BlockForward.feed_block), the token statistics, the method's decision
and the loop's bookkeeping (decoding.loop.decide_and_apply), so a step launches one graph and
syncs once. Same tokens and counts as the reference block loop.

A graph has fixed shapes: every row is fed (finished rows as padding, no NFE, nothing written),
the fed width is the block (a step inside a block) or two blocks (a step that also appends the
block just finished, `append=fold`), and attention reads every cache slot under the block-causal
mask (BlockKVCache.step with key_len = capacity: the slots past a row's end are masked out). The
step graph copies out [rows decoding or appending, the kind of the next launch]; a step of any
other width (the first, which appends the prompt's whole blocks) runs eagerly through the same
BlockForward.

`append=separate` and Fast-dLLM v2 append a finished block by a forward of its own: the step graph
marks the rows whose block it finished (`pending`, BlockForward.finished_blocks, with Fast-dLLM
v2's stop rule) and the next launch is the append graph (kind APPEND): that forward for the
pending rows, the others fed as padding (BlockForward.append, which writes Fast-dLLM v2's next AR
token). The prompt's prefill forward runs eagerly before the first step.
"""
from __future__ import annotations

import torch

from decoding import block_causal
from . import graphs
from .captured import CapturedDecode, Kind, copy_tree, fill_tree, method_tensors


APPEND = -1   # the kind of the append graph (a step's kind is the width its block forward feeds)


class CapturedBlockDecode(CapturedDecode):
    # the block bookkeeping (finished blocks, Fast-dLLM v2's stop rule, the next width) fuses with
    # the decide: it reads the generated region and the per-row counters only
    settle_in_compiled_step = True

    @classmethod
    def build_block(cls, pool, model, method, state, lay, generator) -> "CapturedBlockDecode":
        B = state.tokens.shape[0]
        capacity = block_causal.block_capacity(state, lay, model.block_size)
        cache = pool.block_cache(B, capacity)
        forward = block_causal.BlockForward(model, method, state, lay, generator, cache=cache)
        separate = forward.separate
        block_before = torch.zeros_like(state.rows.block) if separate else None

        def stats_of(width):
            def stats(s, launched):   # the block forward is part of the step graph
                act = ~s.rows.done
                if separate:
                    block_before.copy_(s.rows.block)
                return forward.block_stats(None, forward.feed_block(s, act, width))   # placed compiled
            return stats
        bs = model.block_size
        kinds = {w: Kind(lambda: None, stats_of(w), lambda: None) for w in (bs, 2 * bs)}
        if separate:   # the append graph holds its own forward
            kinds[APPEND] = Kind(lambda: None, None, lambda: None)
        kept = pool.caches[("block", B, capacity)]
        d = cls(model, method, state, forward, kinds, lambda n_active, width: width if width in kinds else None,
                lambda: pool.caches.get(("block", B, capacity)) is kept)
        d.block_before = block_before
        d.pending = torch.zeros(B, dtype=torch.bool, device=state.tokens.device) if separate else None
        return d

    def load(self, method, state, generator, lay=None) -> None:
        super().load(method, state, generator)
        f = self.forward
        fill_tree(f.lay, lay)
        f.start_cache(self.state)
        f.x0.fill_(self.model.eos_ids[0])
        f.conf.zero_()
        if self.pending is not None:
            self.pending.zero_()

    def run(self) -> None:
        self.forward.prefill(self.state)   # separate: the prompt's whole blocks (eager, once)
        super().run()

    def eager_step(self, rows: torch.Tensor) -> None:
        block_causal.step(self.state, self.method, self.forward, rows)

    def next_kinds(self, last) -> tuple:
        """After an append graph, the next block's step (one block wide: appends are separate).
        After a block step, the step that starts the next block (the append graph, or the step
        two blocks wide that folds the append in), then a step one block wide: whichever comes
        next runs, and where the start of a block ran, the step after it too."""
        bs = self.model.block_size
        if last is None:
            return ()
        if last == APPEND:
            return (bs,)
        return (APPEND if self.pending is not None else 2 * bs, bs)

    def capture_step(self, kind, launched) -> graphs.CapturedStep:
        if kind != APPEND:
            return super().capture_step(kind, launched)

        def step(state, launched):
            self.forward.append(state, self.pending, self.model.block_size)
            self.pending.zero_()
            self.count(state)
        self.step_fns[kind], self.launched[kind] = step, None
        return graphs.CapturedStep(lambda state: step(state, None), self.state, copy_tree)

    def after_decide(self, state) -> None:
        """separate: the rows whose block this step finished wait for the append graph."""
        if self.pending is not None:
            self.pending.copy_(self.forward.finished_blocks(state, self.every, self.block_before))

    def count(self, state) -> None:
        """dcounts <- [rows still decoding or waiting for an append, the next launch's kind: APPEND
        while a row waits for one, else the width the next block forward of the decoding rows feeds]."""
        act = ~state.rows.done
        width = self.forward.width_needed(state, act)
        if self.pending is None:
            self.dcounts.copy_(torch.stack([act.sum(), width]))
            return
        kind = torch.where(self.pending.any(), APPEND, width)
        self.dcounts.copy_(torch.stack([(act | self.pending).sum(), kind]))

    def guard(self, kind):
        return (self.dcounts[0] > 0) & (self.dcounts[1] == kind)

    def placed(self, out):
        """The block's statistics (BlockForward.block_stats) placed in the generated region: index
        math and scatters, compiled with the decide."""
        return self.forward.place(None, out)

    def kept_by_warm_up(self) -> list[torch.Tensor]:
        f = self.forward
        extra = [t for t in (self.pending, self.block_before) if t is not None]
        return list(method_tensors(self.method).values()) + [f.cache.length, f.x0, f.conf] + extra
