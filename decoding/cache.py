"""KV cache modes of the decode loop (METHODS.md section 2, Fast-dLLM).

    none    every step forwards the whole sequence.
    prefix  a row's first step in a block is a full forward that refreshes the row's cache; its
            later steps feed [block start, end) and attend to the cached K/V before the block.
    dual    same refresh; later steps feed only the block and attend to the cached K/V of
            everything else (prompt, earlier blocks, and the still-masked suffix), refreshed at
            the next block start.

Every forward counts one NFE for each row it carries, refreshes included; a window forward is one
NFE too. Models with a logit shift (Dream: position i is predicted from hidden state i-1) feed
one position more on the left, so the block's first position gets its own prediction; that
position's K/V are recomputed with the window (Fast-dLLM's Dream code instead commits the
block's first token at the refresh step).

`cache` is a setting every method accepts (`--methods threshold:cache=dual`). It is handled by the
registry and stored on the method (`Method.cache`), not copied into each method's Config: a
method only scores and selects; which forward the loop runs is the loop's business, and one
place validates it. Window steps compute token statistics only for the window's positions (the
StepOutput's `fresh`); x0 and conf elsewhere repeat the row's last full forward. A method reading
logits gets the window's rows only (StepOutput.logits_at); hidden states are zeros outside it.

The stepper holds the cache math only. Where a refresh or window forward of every row may replay
a CUDA graph, the ModelCalls object it is given (decoding/forward.py; acceleration/ provides the
graphed one, which also owns the KV cache across calls) runs it.
"""
from __future__ import annotations

import dataclasses

import torch

from models.base import ModelAdapter
from kernels.compiled import small_inputs_compiled
from models.layers import CacheCall
from .contract import Reads, StepOutput
from .select import token_stats

CACHE_MODES = ("none", "prefix", "dual")


class CacheStepper:
    """Runs the model forward of one loop step for the rows still decoding, with a KV cache."""

    def __init__(self, model: ModelAdapter, mode: str, batch: int, length: int, prompt_len: int,
                 gen_length: int, block_length: int, padded: bool, calls=None):
        if mode not in ("prefix", "dual"):
            raise ValueError(f"cache={mode!r}; choose one of {', '.join(CACHE_MODES)}")
        self.model, self.mode, self.B, self.L = model, mode, batch, length
        self.P, self.G, self.BL, self.padded = prompt_len, gen_length, block_length, padded
        self.shift = 1 if model.logit_shift else 0
        if self.shift and prompt_len == 0:
            raise ValueError("a logit-shifted model (Dream) needs a non-empty prompt to use a KV cache")
        dev = model.device
        self.x0 = torch.zeros((batch, gen_length), dtype=torch.long, device=dev)   # last full forward
        self.conf = torch.zeros((batch, gen_length), device=dev)
        self.calls = calls
        self.cache = calls.new_cache(batch, length) if calls is not None else model.new_cache(batch, length)

    def step(self, rows, xa, aa, block, step_in_block, method, reads: Reads, generator) -> StepOutput:
        b = rows.numel()
        refresh = step_in_block == 0
        n = int(refresh.sum())          # which forward to run: the one host sync of a cached step
        if n in (0, b):
            fn = self._refresh if n == b else self._windows
            return fn(rows, xa, aa, block, method, reads, generator)
        ri, wi = refresh.nonzero().squeeze(1), (~refresh).nonzero().squeeze(1)
        return _merge(b, [(ri, self._refresh(rows[ri], xa[ri], aa[ri], block[ri], method, reads, generator)),
                          (wi, self._windows(rows[wi], xa[wi], aa[wi], block[wi], method, reads, generator))])

    def _call(self, rows, pos=None, aa=None) -> CacheCall:
        all_rows = rows.numel() == self.B   # rows come sorted from nonzero(): all rows, in order
        return CacheCall(self.cache, rows=None if all_rows else rows, pos=pos,
                         key_mask=aa.bool() if (pos is not None and self.padded) else None)

    def _refresh(self, rows, xa, aa, block, method, reads, generator) -> StepOutput:
        out = self.refresh_forward(rows, xa, aa, reads.hidden)
        return self.refresh_output(rows, out.logits, out.hidden, method.temperature, reads, generator)

    def refresh_forward(self, rows, xa, aa, need_hidden: bool):
        """The refresh forward of `rows` (tokens xa, attention aa): their whole cache rows rewritten
        (a graph where `calls` keeps one for this many rows, else eager)."""
        call, mask = self._call(rows), aa if self.padded else None
        out = None
        if self.calls is not None:
            out = self.calls.refresh(self, xa, mask, need_hidden, call.rows)
        if out is None:
            with small_inputs_compiled():   # the kernels the captured refresh holds: the same numbers
                out = self.model.forward(xa, mask, output_hidden=need_hidden, kv=call, logits_from=self.P)
        return out

    def refresh_output(self, rows, logits, hidden, temperature, reads, generator) -> StepOutput:
        """A refresh forward's StepOutput (every position fresh; its logits and hidden states from
        the prompt's end, logits_from=P); keeps x0/conf for later windows."""
        x0, conf = token_stats(logits, temperature, generator)
        self.x0[rows], self.conf[rows] = x0, conf
        return StepOutput(x0, conf, torch.ones_like(x0, dtype=torch.bool),
                          logits if reads.logits else None, hidden)

    def _windows(self, rows, xa, aa, block, method, reads, generator) -> StepOutput:
        if self.mode == "dual":  # equal width for every row: one forward even if rows are in different blocks
            return self._window(rows, xa, aa, block, self.BL + self.shift, method, reads, generator)
        groups = [(block == k).nonzero().squeeze(1) for k in torch.unique(block).tolist()]
        if len(groups) == 1:
            return self._window(rows, xa, aa, block, None, method, reads, generator)
        return _merge(rows.numel(), [(g, self._window(rows[g], xa[g], aa[g], block[g], None, method, reads, generator))
                                     for g in groups])

    def _window(self, rows, xa, aa, block, width, method, reads, generator) -> StepOutput:
        out, pos = self._window_forward(rows, xa, aa, block, width, reads.hidden)
        return self.window_output(rows, out.logits, out.hidden, pos, method.temperature, reads, generator)

    def window_output(self, rows, lw, hw, pos, temperature, reads, generator) -> StepOutput:
        """A window forward's StepOutput: fresh at the window's generated positions; x0/conf
        elsewhere from the row's last refresh; logits/hidden (if read) zeros there."""
        s = self.shift
        lw = lw[:, s:]
        gpos = pos[:, s:] - self.P                                         # generated-region index
        x0w, confw = token_stats(lw, temperature, generator)
        x0 = self.x0[rows].scatter(1, gpos, x0w)
        conf = self.conf[rows].scatter(1, gpos, confw)
        fresh = torch.zeros_like(x0, dtype=torch.bool).scatter_(1, gpos, True)
        hidden = None
        if hw is not None:
            hw = hw[:, s:]
            hidden = hw.new_zeros((hw.shape[0], self.G, hw.shape[-1]))
            hidden.scatter_(1, gpos.unsqueeze(-1).expand_as(hw), hw)
        return StepOutput(x0, conf, fresh, lw if reads.logits else None, hidden, logits_at=gpos if reads.logits else None)

    def _window_forward(self, rows, xa, aa, block, width, need_hidden):
        """-> (model output, pos [b, W]: the window's sequence indices). A window of every row may
        replay a CUDA graph that also builds the window's inputs from the tokens, mask and blocks
        (ModelCalls.window)."""
        if width is None:                                                  # prefix: to the end
            width = self.L - (self.P + int(block[0]) * self.BL - self.shift)
        if rows.numel() == self.B and self.calls is not None:
            got = self.calls.window(self, xa, aa, block, width, need_hidden)
            if got is not None:
                return got
        return self.window_call(rows, xa, aa, block, width, need_hidden)

    def window_call(self, rows, xa, aa, block, width, need_hidden):
        """The window forward of `rows` at their blocks (a finished row's block past the last one
        is read as the last: a captured step runs every row)."""
        start = self.P + block.clamp(max=self.G // self.BL - 1) * self.BL - self.shift   # [b] sequence index
        pos = start.unsqueeze(1) + torch.arange(width, device=xa.device)   # [b, W]
        positions = pos
        if self.padded:
            positions = (aa.long().cumsum(-1) - 1).clamp(min=0).gather(1, pos)
        with small_inputs_compiled():   # the kernels the captured window holds: the same numbers
            out = self.model.forward(xa.gather(1, pos), None, output_hidden=need_hidden, positions=positions,
                                     kv=self._call(rows, pos, aa))
        return out, pos


def _merge(b: int, parts) -> StepOutput:
    """Reassemble per-group StepOutputs (each for batch indices i) into one of b rows."""
    def cat(name):
        ts = [(i, getattr(p, name)) for i, p in parts]
        if any(t is None for _, t in ts):
            return None
        first = ts[0][1]
        out = first.new_empty((b, *first.shape[1:]))
        for idx, t in ts:
            out[idx] = t
        return out
    parts = [(i, p if p.logits is None else dataclasses.replace(p, logits=p.dense_logits(), logits_at=None))
             for i, p in parts]
    return StepOutput(*(cat(n) for n in ("x0", "conf", "fresh", "logits", "hidden")))
