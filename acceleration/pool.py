"""GraphPool: the CUDA graphs and KV caches one model keeps across decode calls, owned by the caller
(through acceleration.Decoder), and GraphedCalls: the model calls of a step, run as graphs.

- full forwards: graphed when launch-bound (acceleration/graphs.py). The graph always carries
  every row of the batch (finished rows are computed and ignored), so a decode needs one graph,
  not one per number of rows still decoding; for a launch-bound forward the extra rows cost next
  to nothing. A few are kept, least recently used dropped, as batches of the same shape recur.
- KV caches, one per (batch, length), with their refresh and window graphs: a graph writes the
  cache tensors it was captured with, so cache and graphs are kept together (a capture costs
  more than many steps; every row's first step refreshes its whole cache row, so nothing stale
  is read).
- captured decodes (acceleration/captured.py), kept for the next call of the same shapes and
  method settings while the forward graphs and cache they read are still kept.
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from decoding.forward import ModelCalls, verify_inputs
from models.base import ModelOutput
from models.layers import CacheCall
from . import graphs
from .graphs import model_params

FULL_GRAPHS = 12   # a few batch shapes, or the fed lengths of truncated forwards (TRUNCATED_BUCKET)
TRUNCATED_BUCKET = 32
CACHES = 2
CAPTURED_DECODES = 4
# Windows of at most this many tokens capture their matrix products through cuBLASLt: on an H200,
# LLaDA-8B dual-cache steps of 32 and 64 tokens took 3.6% and 3.2% less time than through the
# default cuBLAS path (3.4% and 2.8% with the Triton attention); at 128 and 256 tokens the two were
# within 1.3% in two runs (results/speed/window_attention_h200.txt).
LT_WINDOW_TOKENS = 64


class GraphPool:
    def __init__(self, model):
        self.model = model
        self.full_graphs: OrderedDict = OrderedDict()   # (shape, masked, hidden) -> GraphedCall
        self.caches: OrderedDict = OrderedDict()        # (batch, length) or ("block", batch, capacity) -> (KV cache, {key: GraphedCall})
        self.decodes: OrderedDict = OrderedDict()       # (shapes, method settings) -> CapturedDecode
        self._n_params = None

    def graphs_apply(self) -> bool:
        """Whether this model's forwards may replay CUDA graphs (a GPU, and graphs not switched off
        with DLLM_CUDA_GRAPHS=0)."""
        return self.model.device.type == "cuda" and self.model.cuda_graphs

    def launch_bound(self, tokens: int) -> bool:
        if self._n_params is None:
            self._n_params = model_params(self.model)
        return graphs.launch_bound(self.model, tokens, self._n_params)

    def full_graph(self, x: torch.Tensor, attn: torch.Tensor | None, need_hidden: bool, logits_from: int = 0):
        """The graph of model.forward(x, attn, logits_from=...) over the whole batch, or None where it
        does not pay (a forward big enough to hide its launches)."""
        if not self.launch_bound(x.numel()):
            return None
        model = self.model
        fn = lambda ids, am: model.forward(ids, am, output_hidden=need_hidden, logits_from=logits_from)
        return self._kept_or_built((tuple(x.shape), attn is not None, need_hidden, logits_from),
                                   lambda: graphs.GraphedCall(fn, x, attn))

    def _kept_or_built(self, key, build):
        """The full-forward-sized graph kept under `key`, else build() kept there (least recently
        used dropped beyond FULL_GRAPHS)."""
        if key in self.full_graphs:
            self.full_graphs.move_to_end(key)
            return self.full_graphs[key]
        while len(self.full_graphs) >= FULL_GRAPHS:
            self.full_graphs.popitem(last=False)
        self.full_graphs[key] = build()
        return self.full_graphs[key]

    def verify_graph(self, x, attn, block, P: int, BL: int, mask_id: int, need_hidden: bool):
        """The graph of a verification forward of every row (decoding.forward.verify_inputs, built
        inside the graph from the tokens, mask and blocks; then the model): call it with (tokens,
        mask, blocks) -> (output, twin). None where it does not pay. Kept with the full graphs."""
        if not self.launch_bound(x.shape[0] * (x.shape[1] + BL)):
            return None
        model = self.model

        def verify(x, attn, block):
            ids, mask, positions, twin = verify_inputs(x, attn, block, P, BL, mask_id)
            return model.forward(ids, mask, output_hidden=need_hidden, positions=positions), twin
        return self._kept_or_built(self._verify_key(x, BL, need_hidden), lambda: graphs.GraphedCall(verify, x, attn, block))

    @staticmethod
    def _verify_key(x, BL, need_hidden):
        return ("verify", tuple(x.shape), BL, need_hidden)

    def kept_verify_graph(self, x, BL, need_hidden):
        """The graph verify_graph would return, if kept; never builds one."""
        return self.full_graphs.get(self._verify_key(x, BL, need_hidden))

    def kept_full_graph(self, x, attn, need_hidden, logits_from: int = 0):
        """The graph full_graph would return, if kept; never builds one."""
        return self.full_graphs.get((tuple(x.shape), attn is not None, need_hidden, logits_from))

    def cache(self, batch: int, length: int):
        """The kept (KV cache, its graphs) for this shape, least recently used dropped."""
        key = (batch, length)
        if key in self.caches:
            self.caches.move_to_end(key)
            return self.caches[key]
        while len(self.caches) >= CACHES:
            self.caches.popitem(last=False)
        self.caches[key] = (self.model.new_cache(batch, length), {})
        return self.caches[key]

    def block_cache(self, batch: int, capacity: int):
        """The kept block-causal cache (models/block_cache.py) of this shape, emptied; kept with the
        other caches (a captured block decode's graphs write it)."""
        key = ("block", batch, capacity)
        if key in self.caches:
            self.caches.move_to_end(key)
        else:
            while len(self.caches) >= CACHES:
                self.caches.popitem(last=False)
            self.caches[key] = (self.model.module.new_block_cache(batch, capacity), {})
        cache = self.caches[key][0]
        cache.length.zero_()
        return cache

    def cache_graphs(self, cache) -> dict:
        """The graphs kept with this KV cache (a stepper's cache is the pool's while it decodes)."""
        for c, g in self.caches.values():
            if c is cache:
                return g
        raise RuntimeError("a KV cache not kept by this GraphPool was given to its graphed calls")

    def clear(self) -> None:
        self.full_graphs.clear()
        self.caches.clear()
        self.decodes.clear()


class GraphedCalls(ModelCalls):
    """A step's model calls as CUDA graphs from a GraphPool, where they are launch-bound."""

    def __init__(self, pool: GraphPool):
        super().__init__(pool.model)
        self.pool = pool

    def new_cache(self, batch, length):
        return self.pool.cache(batch, length)[0]

    def full(self, x, attn, P, need_hidden):
        g = self.pool.full_graph(x, attn, need_hidden, P)
        return None if g is None else g(x, attn)

    def verify(self, x, attn, block, P, BL, mask_id, need_hidden):
        g = self.pool.verify_graph(x, attn, block, P, BL, mask_id, need_hidden)
        return None if g is None else g(x, attn, block)

    def truncated(self, x, attn, padded, P, rows, fed, need_hidden):
        """A truncated forward as the full-forward graph of every row at the fed length rounded up
        to TRUNCATED_BUCKET tokens (a few graphs serve every length): each row sees its prompt and
        first fed[i] generated positions (the rest hidden by the mask, as decoding.forward.truncate
        hides a shorter row's; no mask where nothing is hidden), and the rows `rows` are returned.
        None where it does not pay."""
        B = x.shape[0]
        n, lo = torch.stack(torch.aminmax(fed)[::-1]).tolist()   # one sync, as the reference's truncate
        L = min(P + -(-n // TRUNCATED_BUCKET) * TRUNCATED_BUCKET, x.shape[1])
        if not self.pool.launch_bound(B * L):
            return None
        if not padded and lo == L - P:   # every row decoding fed to the cut: a full forward of length L
            out = self.pool.full_graph(x[:, :L], None, need_hidden, P)(x[:, :L], None)
        else:
            every = torch.zeros(B, dtype=fed.dtype, device=fed.device).index_copy(0, rows, fed)
            am = attn[:, :L].clone()
            am[:, P:] *= (torch.arange(L - P, device=x.device).unsqueeze(0) < every.unsqueeze(1)).to(am.dtype)
            out = self.pool.full_graph(x[:, :L], am, need_hidden, P)(x[:, :L], am)
        keep = slice(None) if rows.numel() == B else rows   # every row: no copy of the logits
        return ModelOutput(out.logits[keep], None if out.hidden is None else out.hidden[keep])

    def refresh_graph(self, stepper, x, mask, need_hidden, rows=None):
        """A refresh (a full forward storing all K/V) of every row, or of one cache row `rows` ([1],
        an input: a dual-cache step where one row starts a block), as a graph; None where it does
        not pay. Refreshes of 2 or more of the rows run eagerly: a graph per row count would keep
        that many more [k, L, V] logits buffers."""
        if not self.pool.launch_bound(x.numel()) or (rows is not None and rows.numel() > 1):
            return None
        store = self.pool.cache_graphs(stepper.cache)
        key = ("refresh", tuple(x.shape), stepper.P, need_hidden, mask is not None, rows is None)
        if key not in store:
            model, cache = self.model, stepper.cache
            fn = lambda ids, m, r=None: model.forward(ids, m, output_hidden=need_hidden, kv=CacheCall(cache, rows=r),
                                                      logits_from=stepper.P)
            store[key] = graphs.GraphedCall(fn, x, mask) if rows is None else graphs.GraphedCall(fn, x, mask, rows)
        return store[key]

    def refresh(self, stepper, x, mask, need_hidden, rows=None):
        g = self.refresh_graph(stepper, x, mask, need_hidden, rows)
        return None if g is None else g(x, mask) if rows is None else g(x, mask, rows)

    def window_graph(self, stepper, x, attn, block, width, need_hidden):
        """A window forward of every row captured with the building of its inputs from the tokens,
        mask and blocks (a handful of tiny kernels that cost ~0.2 ms of host time per step when
        launched eagerly between the host sync and the forward, results/speed/REPORT.md):
        call it with (tokens [B, L], mask [B, L] or None, blocks [B]) -> (output, pos)."""
        store = self.pool.cache_graphs(stepper.cache)
        key = ("window", tuple(x.shape), width, need_hidden, stepper.padded)
        if key not in store:
            every = torch.arange(stepper.B, device=x.device)
            fn = lambda x, attn, block: stepper.window_call(every, x, attn, block, width, need_hidden)
            blas = "cublaslt" if x.shape[0] * width <= LT_WINDOW_TOKENS else None
            store[key] = graphs.GraphedCall(fn, x, attn if stepper.padded else None, block, blas=blas)
        return store[key]

    def window(self, stepper, x, attn, block, width, need_hidden):
        return self.window_graph(stepper, x, attn, block, width, need_hidden)(x, attn if stepper.padded else None, block)


def graphed_window(model, cache, ids, positions, call, need_hidden):
    """A window forward alone captured as a CUDA graph: call it with (ids, positions, pos, key_mask);
    the cache tensors are static (written in place by the graph). bench/bench_speed.py times it."""
    def window(ids, positions, pos, key_mask):
        kv = CacheCall(cache, rows=None, pos=pos, key_mask=key_mask)
        return model.forward(ids, None, output_hidden=need_hidden, positions=positions, kv=kv)
    blas = "cublaslt" if ids.numel() <= LT_WINDOW_TOKENS else None
    return graphs.GraphedCall(window, ids, positions, call.pos, call.key_mask, blas=blas)
