"""The decode loop shared by every method.

    x = [left-padded prompt | MASK * gen_length]
    for each row, block by block:
        forward the rows still decoding (1 NFE each), token stats in fp32,
        commit = method.select(...) inside the row's current block, write x0 there,
        a row moves to its next block when its block has no masks, and stops once a completed
        block holds EOS (early_stop) or all blocks are done or the step cap is hit.

Rows progress independently; finished rows drop out of the forward batch, so they cost no
compute, and each row's NFE is counted separately (exception: a launch-bound full forward on GPU
replays a CUDA graph of the whole batch, acceleration/graphs.py, where the extra rows cost next to
nothing). Greedy decoding is deterministic. Token statistics read the logits in the model's dtype;
fp32 logits are built only for methods that read them (Method.uses_logits).
With a KV cache (method setting cache=prefix|dual) the forward is a refresh or a window forward
(decoding/cache.py). A step makes one host sync (which rows are still decoding; a cached step one
more: refresh or window), so the GPU queue never drains in the middle of a step. Where the full
forward is graphed and the method's selection allows it (Method.graph_step), the rest of the step
is graphed too (`_GraphedDecode`), and the model keeps it for the next call of the same shapes.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial

import torch

from models.base import ModelAdapter
from kernels.compiled import on_gpu_compiled
from .base import GenConfig, Method, StepContext
from .cache import CacheStepper
from acceleration.graphs import CapturedStep, full_forward_graph, kept_full_forward_graph
from .select import token_stats


@dataclass
class DecodeResult:
    tokens: torch.Tensor      # [B, gen_length] generated ids; positions after the first EOS hold EOS
    nfe: torch.Tensor         # [B] model forward calls per row (CFG counts two per step)
    steps: torch.Tensor       # [B] decode steps per row
    gen_tokens: torch.Tensor  # [B] generated tokens before the first EOS
    capped: torch.Tensor      # [B] the step cap ended the row (remaining masks took the last argmax)
    nfe_truncated: torch.Tensor | None = None  # [B] of nfe, forwards fed a truncated sequence (Method.extent)
    trace: list[list[dict]] | None = None  # per row, per step (when asked for)


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    P = max(map(len, prompts))
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    attn = torch.zeros((len(prompts), P), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, P - len(p):] = torch.tensor(p)
            attn[i, P - len(p):] = 1
    return ids, attn


def first_eos_index(tokens: torch.Tensor, eos_ids: tuple[int, ...]) -> torch.Tensor:
    """[B] index of the first EOS in each row, or the row length when there is none."""
    is_eos = torch.isin(tokens, torch.tensor(eos_ids, device=tokens.device))
    N = tokens.shape[-1]
    idx = torch.where(is_eos, torch.arange(N, device=tokens.device), N)
    return idx.min(-1).values


@dataclass
class _Rows:
    """Per-row decode progress (all [B])."""
    block: torch.Tensor
    step_in_block: torch.Tensor
    step: torch.Tensor
    nfe: torch.Tensor
    done: torch.Tensor
    capped: torch.Tensor
    nfe_truncated: torch.Tensor
    trace: list[list[dict]] | None = field(default=None)


@torch.no_grad()
def decode(model: ModelAdapter, method: Method, prompts: list[list[int]], gen: GenConfig,
           generator: torch.Generator | None = None, trace: bool = False) -> DecodeResult:
    dev = model.device
    p_ids, p_attn = left_pad(prompts, model.pad_id)
    B, P, G, BL = len(prompts), p_ids.shape[1], gen.gen_length, gen.block_length
    x = torch.cat([p_ids, torch.full((B, G), model.mask_id, dtype=torch.long)], 1).to(dev)
    attn = torch.cat([p_attn, torch.ones((B, G), dtype=torch.long)], 1).to(dev)
    zeros = torch.zeros(B, dtype=torch.long, device=dev)
    r = _Rows(block=zeros.clone(), step_in_block=zeros.clone(), step=zeros.clone(), nfe=zeros.clone(),
              done=torch.zeros(B, dtype=torch.bool, device=dev), capped=torch.zeros(B, dtype=torch.bool, device=dev),
              nfe_truncated=zeros.clone(),
              trace=[[] for _ in range(B)] if trace else None)
    method.start(B, dev, generator)
    padded = bool((p_attn == 0).any())
    stepper = None
    if method.cache != "none":  # KV cache: refresh or window forwards (decoding/cache.py)
        stepper = CacheStepper(model, method.cache, B, x.shape[1], P, G, BL, padded=padded)
    b = _Batch(model, method, gen, P, pos=torch.arange(G, device=dev), eos=torch.tensor(model.eos_ids, device=dev),
               step_cap=torch.tensor(gen.step_cap, device=dev),
               prompt_len=p_attn.sum(1).to(dev), attn=attn,
               attn_fwd=attn if padded else None,   # no padding: no mask (SDPA's flash kernel; same positions)
               generator=generator, stepper=stepper,
               reuse=_Reuse(torch.zeros((B, G), dtype=torch.long, device=dev), torch.zeros((B, G), device=dev)))

    graphed = _graphed_decode(b, r, x) if not trace and _graphable(method) else None
    if graphed is not None:
        graphed.run()
        return _result(graphed.b, graphed.r, graphed.xs)
    while True:
        rows = (~r.done).nonzero().squeeze(1)   # the loop's one host sync per step (it also ends the loop)
        if rows.numel() == 0:
            break
        _eager_step(b, r, x, rows)
    return _result(b, r, x)


def _eager_step(b: "_Batch", r: _Rows, x: torch.Tensor, rows: torch.Tensor) -> None:
    """One step for `rows` (the rows still decoding): their forward, token stats, the method's
    selection and the bookkeeping (_advance)."""
    model, method, P, G = b.model, b.method, b.P, b.gen.gen_length
    xa, aa = x[rows], b.attn[rows]
    fed = None
    if b.stepper is not None:   # KV cache (decoding/cache.py); truncated forwards are not combined with it
        x0, conf, logits, hidden = b.stepper.step(rows, xa, aa, r.block[rows], r.step_in_block[rows],
                                                  method, b.generator)
        r.nfe[rows] += 1
    else:
        fed = method.extent(rows)
        calls = 2 if method.cfg_scale > 0 else 1
        graph = None
        if fed is None and calls == 1:   # launch-bound full forwards replay a CUDA graph (acceleration/graphs.py)
            graph = full_forward_graph(model, x, b.attn_fwd, method.needs_hidden)
        if graph is not None:            # the graph carries every row; keep the ones decoding
            out = graph(x, b.attn_fwd)
            keep = slice(None) if rows.numel() == x.shape[0] else rows
            logits = out.logits[keep, P:]
            hidden = out.hidden[keep, P:] if out.hidden is not None else None
        else:
            xf, af = _truncate(xa, aa, P, fed)
            out = model.forward(xf, af if (fed is not None or b.attn_fwd is not None) else None,
                                output_hidden=method.needs_hidden)
            logits = out.logits[:, P:]
            hidden = out.hidden[:, P:] if out.hidden is not None else None
            if calls == 2:   # CFG: unconditional copy with the prompt tokens masked
                ux = xf.clone()
                ux[:, :P] = torch.where(af[:, :P].bool(), model.mask_id, ux[:, :P])
                un = model.forward(ux, af).logits[:, P:].float()
                logits = un + (method.cfg_scale + 1) * (logits.float() - un)
        r.nfe[rows] += calls
        x0, conf = token_stats(logits, method.temperature, b.generator)
        logits = logits.float() if method.uses_logits else None   # the model's dtype until a method reads it
        if fed is not None:
            x0, conf, logits, hidden = _reuse_beyond(b.reuse, rows, fed, x0, conf, logits, hidden, G)
            r.nfe_truncated[rows] += calls * (fed < G).long()
    _advance(b, r, x, rows, rows, xa[:, P:], x0, conf, logits, hidden, fed)


def _result(b: "_Batch", r: _Rows, x: torch.Tensor) -> DecodeResult:
    gen_x = x[:, b.P:]
    first = first_eos_index(gen_x, b.model.eos_ids)
    # Everything from the first EOS on (including masks of blocks never decoded) reads as EOS.
    tokens = torch.where(b.pos.unsqueeze(0) >= first.unsqueeze(1), b.model.eos_ids[0], gen_x)
    return DecodeResult(tokens=tokens.cpu(), nfe=r.nfe.cpu(), steps=r.step.cpu(), gen_tokens=first.cpu(),
                        capped=r.capped.cpu(), trace=r.trace, nfe_truncated=r.nfe_truncated.cpu())


# --- graphed steps -------------------------------------------------------------------------------
def _graphable(method: Method) -> bool:
    """Whether a step's selection may run inside a CUDA graph over every row: a per-row,
    sync-free, RNG-free select (Method.graph_step) on x0/conf alone, one forward per step."""
    return (method.graph_step and method.extent.__func__ is Method.extent and not method.uses_logits
            and not method.needs_hidden and method.temperature == 0 and method.cfg_scale == 0)


GRAPHED_DECODES_PER_MODEL = 4


def _graphed_decode(b: "_Batch", r: _Rows, x: torch.Tensor) -> "_GraphedDecode | None":
    """The graphed decode for this call: the model's kept one for the same shapes and method
    settings (refilled with this call's prompts), or a new one; None where the forwards are not
    graphed (CPU, or a forward too large to be launch-bound)."""
    if not b.model.cuda_graphs:
        return None
    m = b.method
    key = (x.shape[0], b.P, b.gen, b.attn_fwd is not None, m.name, repr(sorted(m.settings().items())))
    store = b.model.__dict__.setdefault("_graphed_decodes", OrderedDict())
    for k in [k for k, d in store.items() if not d.current()]:   # its forward graphs (or KV cache) were dropped
        del store[k]
    kept = store.pop(key, None)
    if kept is not None:
        kept.load(b, x)
    else:
        kept = _GraphedDecode.build(b, r, x)
        if kept is None:
            return None
    while len(store) >= GRAPHED_DECODES_PER_MODEL:
        store.popitem(last=False)
    store[key] = kept
    return kept


class _GraphedDecode:
    """A decode whose every step is CUDA graphs over every row, finished rows masked: the forward
    graph (timed as a forward) and a CapturedStep (token stats, select, and the bookkeeping as a
    few compiled kernels, _bookkeep_). Same tokens and counts as the eager loop, as select is per
    row (Method.graph_step). One host sync per step, on counts the step graph copies out.

    The kinds of step come from the forward: without a cache one (the full forward graph, whose
    input buffer holds the tokens meanwhile); with the dual cache a refresh and a window
    (CacheStepper.graph_kinds). A step whose rows need different kinds (some at a block start,
    some not) runs eagerly (_eager_step).

    The model keeps it for the next decode call of the same shapes and method settings: that call
    refills its state tensors (`load`), so the step graphs captured on them replay as they are
    (building them took 4-8 ms each on an H200, results/speed/REPORT.md). It is kept only while
    the forward graphs it reads are still the model's (`current`)."""

    def __init__(self, b, r, xs, kinds, choose, current, fwd=None):
        self.b, self.r, self.xs, self.kinds, self.choose, self.current = b, r, xs, kinds, choose, current
        self.fwd = fwd   # the full forward graph (no cache)
        self.counts = torch.zeros(2, dtype=torch.long, pin_memory=xs.is_cuda)  # rows decoding; of them at a block start
        self.every = torch.arange(xs.shape[0], device=xs.device)
        self.graphs: dict[str, CapturedStep] = {}

    @classmethod
    def build(cls, b: "_Batch", r: _Rows, x: torch.Tensor) -> "_GraphedDecode | None":
        if b.stepper is None:
            fwd = full_forward_graph(b.model, x, b.attn_fwd, False)
            if fwd is None:
                return None
            xs = fwd.inputs[0]   # the graph's input buffer holds the tokens: no copy per step
            xs.copy_(x)
            if b.attn_fwd is not None:
                fwd.inputs[1].copy_(b.attn_fwd)
            kinds = {"full": (lambda: fwd(*fwd.inputs), lambda: token_stats(fwd.out.logits[:, b.P:]))}
            return cls(b, r, xs, kinds, lambda n_active, n_start: "full",
                       lambda: kept_full_forward_graph(b.model, xs, b.attn_fwd, False) is fwd, fwd)
        kinds = b.stepper.graph_kinds(x, b.attn, r.block)
        if kinds is None:
            return None
        choose = lambda n_active, n_start: ("refresh" if n_start == n_active and "refresh" in kinds
                                            else "window" if n_start == 0 else None)
        return cls(b, r, x, kinds, choose, b.stepper.current)

    def load(self, b: "_Batch", x: torch.Tensor) -> None:
        """Refill with a new call's prompts (same shapes): tokens, masks, prompt lengths, counters."""
        self.xs.copy_(x)
        self.b.attn.copy_(b.attn)
        self.b.prompt_len.copy_(b.prompt_len)
        if self.fwd is not None and b.attn_fwd is not None:
            self.fwd.inputs[1].copy_(b.attn_fwd)
        for t in (self.r.block, self.r.step_in_block, self.r.step, self.r.nfe, self.r.done, self.r.capped):
            t.zero_()
        self.b.method.start(x.shape[0], x.device, None)

    def run(self) -> None:
        b, r, xs, counts = self.b, self.r, self.xs, self.counts
        synced = torch.cuda.Event() if xs.is_cuda else None
        _count(r, counts)
        while True:
            if synced is not None:
                synced.record()
                synced.synchronize()   # the step's one host sync
            n_active, n_start = counts.tolist()
            if n_active == 0:
                break
            kind = self.choose(n_active, n_start)
            if kind is None:
                _eager_step(b, r, xs, (~r.done).nonzero().squeeze(1))
                _count(r, counts)
                continue
            launch, stats = self.kinds[kind]
            launch()
            if kind not in self.graphs:
                self.graphs[kind] = CapturedStep(partial(self._step, stats), xs, r.block, r.step_in_block,
                                                 r.step, r.nfe, r.done, r.capped, counts)
            self.graphs[kind].replay()

    def _step(self, stats, xs, block, step_in_block, steps, nfe, done, capped, counts) -> None:
        """What the step graph holds (state passed in: its warm-up runs on copies)."""
        rows = _Rows(block, step_in_block, steps, nfe, done, capped, self.r.nfe_truncated)
        act = ~done
        nfe += act.long()
        x0, conf = stats()
        _advance(self.b, rows, xs, slice(None), self.every, xs[:, self.b.P:], x0, conf, None, None, None, act)
        _count(rows, counts)


def _count(r: _Rows, counts: torch.Tensor) -> None:
    """counts <- [rows still decoding, of them at the first step of a block] (to pinned host memory)."""
    act = ~r.done
    counts.copy_(torch.stack([act.sum(), (act & (r.step_in_block == 0)).sum()]), non_blocking=True)


@dataclass
class _Batch:
    """What stays fixed through one decode call."""
    model: ModelAdapter
    method: Method
    gen: GenConfig
    P: int                    # padded prompt length
    pos: torch.Tensor         # [G] generated positions 0..G-1
    eos: torch.Tensor         # EOS ids
    step_cap: torch.Tensor    # gen.step_cap as a tensor (a compiled step is not rebuilt for each cap)
    prompt_len: torch.Tensor  # [B] real (unpadded) prompt lengths
    attn: torch.Tensor        # [B, P + G] attention mask (0 on left padding)
    attn_fwd: torch.Tensor | None  # the mask a full forward takes: None without padding
    generator: torch.Generator | None
    stepper: CacheStepper | None   # the KV cache, if the method uses one
    reuse: "_Reuse"           # truncated forwards (Method.extent)


def _advance(b: _Batch, r: _Rows, x, rows, ctx_rows, gen_a, x0, conf, logits, hidden, fed, act=None) -> None:
    """One step's commit and bookkeeping for `rows` (an index tensor, or slice(None) for all):
    the method selects inside each row's block, x0 is written there, blocks and counters move on.
    Updates x and r in place. `act` ([b] bool, or None for all): the rows that take this step; a
    graphed step (acceleration/graphs.py, CapturedStep) runs every row and leaves finished ones as they are."""
    model, gen, pos = b.model, b.gen, b.pos
    masked = gen_a == model.mask_id
    in_block = (pos // gen.block_length) == r.block[rows].unsqueeze(1)
    candidates = masked & in_block if act is None else masked & in_block & act.unsqueeze(1)
    ctx = StepContext(rows=ctx_rows, x0=x0, conf=conf, logits=logits, candidates=candidates,
                      block=r.block[rows], step_in_block=r.step_in_block[rows], step=r.step[rows],
                      hidden=hidden, prompt_len=b.prompt_len[rows], fed=fed)
    commit = b.method.select(ctx) & candidates
    if r.trace is not None:
        _record(r.trace, ctx_rows, r.step[rows], masked, x0, conf, commit)
    state = [r.block, r.step_in_block, r.step, r.done, r.capped]
    views = [t[rows] for t in state]   # views of the state for slice(None), copies for an index
    x[rows, b.P:] = _bookkeep_(gen_a.contiguous(), x0, commit, in_block, act, *views, b.eos, pos, model.mask_id,
                               gen.block_length, gen.num_blocks, b.step_cap, gen.early_stop)
    if not isinstance(rows, slice):
        for t, v in zip(state, views):
            t[rows] = v


@on_gpu_compiled(row_args=(0, 1, 2, 3, 4, 5, 6, 7, 8, 9))
def _bookkeep_(gen_a, x0, commit, in_block, act, block, step_in_block, step, done, capped, eos, pos,
               mask_id: int, block_length: int, num_blocks: int, step_cap: torch.Tensor, early_stop: bool):
    """A step's commit and bookkeeping (all [b] or [b, G]): writes x0 where committed, moves
    counters and blocks on, marks rows done or capped; updates block .. capped in place and returns
    the row's new generated tokens. Rows outside `act` (None: all rows) are left as they are.
    Pure tensor code: a graphed step (acceleration/graphs.py) runs it as a few compiled kernels
    (on_gpu_compiled) instead of ~50 small ones."""
    gen_a = torch.where(commit, x0, gen_a)
    took = 1 if act is None else act.long()
    step += took
    step_in_block += took
    finished_block = ~((gen_a == mask_id) & in_block).any(1)
    if act is not None:
        finished_block &= act
    next_block = block + finished_block.long()
    upto = pos.unsqueeze(0) < (next_block * block_length).unsqueeze(1)
    has_eos = (torch.isin(gen_a, eos) & upto).any(1)
    row_done = next_block >= num_blocks
    if early_stop:
        row_done |= finished_block & has_eos
    cap = ~row_done & (step >= step_cap)
    if act is not None:
        row_done &= act
        cap &= act
    # fill what is left with the last proposal, at no extra NFE (no `if cap.any()`: a host sync)
    gen_a = torch.where(cap.unsqueeze(1) & (gen_a == mask_id), x0, gen_a)
    block.copy_(next_block)
    step_in_block.copy_(torch.where(finished_block, 0, step_in_block))
    capped |= cap
    done |= row_done | cap
    return gen_a


# --- truncated forwards (Method.extent; SlowFast's out-of-span reuse) ----------------------------
@dataclass
class _Reuse:
    """Per row: x0 and conf of the row's last full forward, for positions a truncated forward skips."""
    x0: torch.Tensor     # [B, G]
    conf: torch.Tensor   # [B, G]


def _truncate(xa, aa, P, fed):
    """Feed prompt + the first fed[i] generated positions of each row. The batch is cut at the
    longest row; a shorter row's extra positions are hidden from attention by its mask, so each row
    sees exactly what it would see alone."""
    if fed is None:
        return xa, aa
    L = P + int(fed.max())
    keep = torch.arange(L - P, device=xa.device).unsqueeze(0) < fed.unsqueeze(1)
    af = aa[:, :L].clone()
    af[:, P:] *= keep.long()
    return xa[:, :L], af


def _reuse_beyond(reuse, rows, fed, x0, conf, logits, hidden, G):
    """Pad a (possibly) truncated step to all G positions: beyond fed, x0/conf come from the row's
    last full forward and logits/hidden are zeros. Rows fed in full refresh the reuse store."""
    n = x0.shape[1]
    fresh = torch.arange(G, device=x0.device).unsqueeze(0) < fed.unsqueeze(1)
    pad = lambda t: torch.cat([t, t.new_zeros((t.shape[0], G - n, *t.shape[2:]))], 1) if n < G else t
    x0 = torch.where(fresh, pad(x0), reuse.x0[rows])
    conf = torch.where(fresh, pad(conf), reuse.conf[rows])
    logits = None if logits is None else pad(logits) * fresh.unsqueeze(-1)
    hidden = None if hidden is None else pad(hidden) * fresh.unsqueeze(-1)
    full = fed >= G
    reuse.x0[rows[full]], reuse.conf[rows[full]] = x0[full], conf[full]
    return x0, conf, logits, hidden


def _record(trace, rows, steps, masked, x0, conf, commit) -> None:
    """Per row and step: which positions were committed, and the argmax and top-1 probability at
    every position that was masked before the commit (training data for learned controllers)."""
    rows_l, steps_l = rows.tolist(), steps.tolist()
    masked, x0, conf, commit = masked.cpu(), x0.cpu(), conf.cpu(), commit.cpu()
    for i, (row, step) in enumerate(zip(rows_l, steps_l)):
        m = masked[i].nonzero().squeeze(1)
        trace[row].append({"step": step, "masked": m.tolist(), "argmax": x0[i, m].tolist(),
                           "p1": [round(v, 6) for v in conf[i, m].tolist()],
                           "commit": commit[i].nonzero().squeeze(1).tolist()})
