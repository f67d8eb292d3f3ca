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
place validates it. Window steps compute token statistics only for the window's positions; x0
and conf elsewhere repeat the row's last full forward, and logits/hidden there are zeros (only
built when the method reads them: Method.uses_logits / needs_hidden).
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from models.base import ModelAdapter
from models.layers import CacheCall
from acceleration.graphs import GraphedCall, launch_bound
from .select import token_stats

CACHE_MODES = ("none", "prefix", "dual")


class CacheStepper:
    """Runs the model forward of one loop step for the rows still decoding, with a KV cache."""

    def __init__(self, model: ModelAdapter, mode: str, batch: int, length: int, prompt_len: int,
                 gen_length: int, block_length: int, padded: bool):
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
        # Window forwards are small and launch-bound: on CUDA they replay a captured graph
        # (one per window shape, built on first use); so do refreshes of all rows when they are
        # launch-bound too (acceleration/graphs.py). A graph writes the cache tensors it was captured
        # with, so the model keeps the cache and its graphs per (batch, length) for the next
        # decode call of that shape (a capture costs more than many steps; every row's first step
        # refreshes its whole cache row, so nothing stale is read).
        self.cache, self.graphs = _cache_and_graphs(model, batch, length)

    def step(self, rows, xa, aa, block, step_in_block, method, generator):
        """-> x0 [b, G], conf [b, G], logits [b, G, V] or None, hidden [b, G, d] or None."""
        b = rows.numel()
        refresh = step_in_block == 0
        n = int(refresh.sum())          # which forward to run: the one host sync of a cached step
        if n in (0, b):
            fn = self._refresh if n == b else self._windows
            return fn(rows, xa, aa, block, method, generator)
        ri, wi = refresh.nonzero().squeeze(1), (~refresh).nonzero().squeeze(1)
        parts = [(ri, self._refresh(rows[ri], xa[ri], aa[ri], block[ri], method, generator)),
                 (wi, self._windows(rows[wi], xa[wi], aa[wi], block[wi], method, generator))]
        return tuple(_merge(b, [(i, p[k]) for i, p in parts]) for k in range(4))

    def _call(self, rows, pos=None, aa=None) -> CacheCall:
        all_rows = rows.numel() == self.B   # rows come sorted from nonzero(): all rows, in order
        return CacheCall(self.cache, rows=None if all_rows else rows, pos=pos,
                         key_mask=aa.bool() if (pos is not None and self.padded) else None)

    def _refresh(self, rows, xa, aa, block, method, generator):
        call, mask = self._call(rows), aa if self.padded else None
        if self.graphs is not None and call.rows is None and launch_bound(self.model, xa.numel()):
            out = self._refresh_graph(xa, mask, method.needs_hidden)(xa, mask)
        else:
            out = self.model.forward(xa, mask, output_hidden=method.needs_hidden, kv=call)
        logits = out.logits[:, self.P:]
        x0, conf = token_stats(logits, method.temperature, generator)
        logits = logits.float() if method.uses_logits else None
        self.x0[rows], self.conf[rows] = x0, conf
        hidden = out.hidden[:, self.P:] if out.hidden is not None else None
        return x0, conf, logits, hidden

    def _refresh_graph(self, xa, mask, need_hidden) -> GraphedCall:
        key = ("refresh", tuple(xa.shape), need_hidden, mask is not None)
        if key not in self.graphs:
            self.graphs[key] = _GraphedRefresh(self.model, self.cache, xa, mask, need_hidden)
        return self.graphs[key]

    def _windows(self, rows, xa, aa, block, method, generator):
        if self.mode == "dual":  # equal width for every row: one forward even if rows are in different blocks
            return self._window(rows, xa, aa, block, self.BL + self.shift, method, generator)
        groups = [(block == k).nonzero().squeeze(1) for k in torch.unique(block).tolist()]
        if len(groups) == 1:
            return self._window(rows, xa, aa, block, None, method, generator)
        parts = [(g, self._window(rows[g], xa[g], aa[g], block[g], None, method, generator)) for g in groups]
        return tuple(_merge(rows.numel(), [(i, p[k]) for i, p in parts]) for k in range(4))

    def _window(self, rows, xa, aa, block, width, method, generator):
        out, pos = self._window_forward(rows, xa, aa, block, width, method.needs_hidden)
        s = self.shift
        lw = out.logits[:, s:]
        gpos = pos[:, s:] - self.P                                         # generated-region index
        x0w, confw = token_stats(lw, method.temperature, generator)
        x0 = self.x0[rows].scatter(1, gpos, x0w)
        conf = self.conf[rows].scatter(1, gpos, confw)
        logits = hidden = None
        if method.uses_logits:
            logits = lw.new_zeros((lw.shape[0], self.G, lw.shape[-1]), dtype=torch.float32)
            logits.scatter_(1, gpos.unsqueeze(-1).expand_as(lw), lw.float())
        if out.hidden is not None:
            hw = out.hidden[:, s:]
            hidden = hw.new_zeros((hw.shape[0], self.G, hw.shape[-1]))
            hidden.scatter_(1, gpos.unsqueeze(-1).expand_as(hw), hw)
        return x0, conf, logits, hidden

    def _window_forward(self, rows, xa, aa, block, width, need_hidden):
        """-> (model output, pos [b, W]: the window's sequence indices). A window of every row
        replays a CUDA graph that also builds the window's inputs from the tokens, mask and blocks
        (a handful of tiny kernels that cost ~0.2 ms of host time per step when launched eagerly
        between the host sync and the forward, results/speed/REPORT.md)."""
        if width is None:                                                  # prefix: to the end
            width = self.L - (self.P + int(block[0]) * self.BL - self.shift)
        if self.graphs is not None and rows.numel() == self.B:   # all rows: the cache is static -> replay a graph
            key = ("window", tuple(xa.shape), width, need_hidden, self.padded)
            if key not in self.graphs:
                self.graphs[key] = _GraphedWindowStep(self, xa, aa, block, width, need_hidden)
            return self.graphs[key](xa, aa if self.padded else None, block)
        return self._window_call(rows, xa, aa, block, width, need_hidden)

    def _window_call(self, rows, xa, aa, block, width, need_hidden):
        """The window forward of `rows` at their blocks (a finished row's block past the last one
        is read as the last: a graphed step runs every row)."""
        start = self.P + block.clamp(max=self.G // self.BL - 1) * self.BL - self.shift   # [b] sequence index
        pos = start.unsqueeze(1) + torch.arange(width, device=xa.device)   # [b, W]
        positions = pos
        if self.padded:
            positions = (aa.long().cumsum(-1) - 1).clamp(min=0).gather(1, pos)
        out = self.model.forward(xa.gather(1, pos), None, output_hidden=need_hidden, positions=positions,
                                 kv=self._call(rows, pos, aa))
        return out, pos

    def current(self) -> bool:
        """Whether the model still keeps this stepper's cache and graphs (a graphed decode kept
        for the next call reads them; decoding/loop.py)."""
        kept = self.model.__dict__.get("_cache_graphs", {}).get((self.B, self.L))
        return kept is not None and kept[0] is self.cache and kept[1] is self.graphs

    def graph_kinds(self, x, attn, block) -> dict | None:
        """The dual cache's two kinds of step over every row, for a graphed loop (decoding/loop.py,
        _GraphedDecode): {"refresh" (where its forward is launch-bound), "window": (launch, stats)}.
        launch() replays the forward's graph on x; stats() -> (x0, conf) [B, G] reads the graph's
        static output (captured into the step's graph). None where the forwards are not graphed
        (CPU, prefix mode: its window narrows block by block). x, attn and block are the loop's
        own tensors, read at each launch; finished rows take their last block's window."""
        if self.mode != "dual" or self.graphs is None:
            return None
        every = torch.arange(self.B, device=x.device)
        mask = attn if self.padded else None
        kinds = {}
        if launch_bound(self.model, x.numel()):
            def stats_refresh():
                x0, conf = token_stats(self._refresh_graph(x, mask, False).out.logits[:, self.P:])
                self.x0.copy_(x0)
                self.conf.copy_(conf)
                return x0, conf
            kinds["refresh"] = (lambda: self._refresh_graph(x, mask, False)(x, mask), stats_refresh)
        window = {}

        def launch_window():
            window["out"], window["pos"] = self._window_forward(every, x, attn, block, self.BL + self.shift, False)

        def stats_window():
            gpos = window["pos"][:, self.shift:] - self.P
            x0w, confw = token_stats(window["out"].logits[:, self.shift:])
            return self.x0.scatter(1, gpos, x0w), self.conf.scatter(1, gpos, confw)
        kinds["window"] = (launch_window, stats_window)
        return kinds


CACHES_PER_MODEL = 2


def _cache_and_graphs(model, batch: int, length: int):
    """(KV cache, graphs by key or None where graphs do not apply)."""
    if model.device.type == "cuda" and model.cuda_graphs:
        return _shared_cache(model, batch, length)
    return model.new_cache(batch, length), None


def _shared_cache(model, batch: int, length: int):
    """The model's (KV cache, window/refresh graphs) for this shape, least recently used dropped."""
    store = model.__dict__.setdefault("_cache_graphs", OrderedDict())
    key = (batch, length)
    if key in store:
        store.move_to_end(key)
        return store[key]
    while len(store) >= CACHES_PER_MODEL:
        store.popitem(last=False)
    store[key] = (model.new_cache(batch, length), {})
    return store[key]


def _merge(b: int, parts):
    """Reassemble per-group tensors (each [n_i, ...] for batch indices i) into one [b, ...]."""
    if any(t is None for _, t in parts):
        return None
    first = parts[0][1]
    out = first.new_empty((b, *first.shape[1:]))
    for idx, t in parts:
        out[idx] = t
    return out


# Windows of at most this many tokens capture their matrix products through cuBLASLt: on an H200,
# LLaDA-8B dual-cache steps of 32 and 64 tokens took 3.6% and 3.2% less time than through the
# default cuBLAS path (3.4% and 2.8% with the Triton attention); at 128 and 256 tokens the two were
# within 1.3% in two runs (results/speed/window_attention_h200.txt).
LT_WINDOW_TOKENS = 64


def _GraphedWindow(model, cache, ids, positions, call, need_hidden) -> GraphedCall:
    """A window forward captured as a CUDA graph: call it with (ids, positions, pos, key_mask);
    the cache tensors themselves are static (written in place by the graph). The decode loop
    replays _GraphedWindowStep (this forward and the building of its inputs); bench/bench_speed.py
    times this one, the forward alone."""
    def window(ids, positions, pos, key_mask):
        kv = CacheCall(cache, rows=None, pos=pos, key_mask=key_mask)
        return model.forward(ids, None, output_hidden=need_hidden, positions=positions, kv=kv)
    blas = "cublaslt" if ids.numel() <= LT_WINDOW_TOKENS else None
    return GraphedCall(window, ids, positions, call.pos, call.key_mask, blas=blas)


def _GraphedWindowStep(stepper: CacheStepper, x, attn, block, width: int, need_hidden) -> GraphedCall:
    """A window forward of every row captured as a CUDA graph with the building of its inputs:
    call it with (tokens [B, L], mask [B, L] or None, blocks [B]) -> (output, pos)."""
    every = torch.arange(stepper.B, device=x.device)
    fn = lambda x, attn, block: stepper._window_call(every, x, attn, block, width, need_hidden)
    blas = "cublaslt" if x.shape[0] * width <= LT_WINDOW_TOKENS else None
    return GraphedCall(fn, x, attn if stepper.padded else None, block, blas=blas)


def _GraphedRefresh(model, cache, ids, mask, need_hidden) -> GraphedCall:
    """A refresh of every row (full forward storing all K/V) captured as a CUDA graph."""
    def refresh(ids, mask):
        return model.forward(ids, mask, output_hidden=need_hidden, kv=CacheCall(cache))
    return GraphedCall(refresh, ids, mask)
