"""Block-causal models (SDAR/TraDo, LLaDA2.x, Fast-dLLM v2, CDLM students) in the decode loop.

Attention is causal across the model's blocks and bidirectional inside one, so the loop decodes
one model block at a time and keeps the finished blocks' K/V in the model's exact cache
(models/block_cache.py): written once, by the forward that feeds the finished block, never
recomputed. Every method decodes inside the current block as with a bidirectional model (same
plan/decide contract, same bookkeeping: decoding/state.py).

Layout (as the authors' generate functions lay it out): blocks are counted from each row's first
prompt token; the prompt's whole blocks go to the cache; the prompt's tail (P mod block tokens)
shares the first decoded block with the first masks; a row decodes up to the end of the block
holding position P + gen_length - 1, i.e. ceil((P + gen_length) / block) * block - P tokens
(gen_length rounded up to the row's block boundary). In the state, generated index j of row b is
at position P_b + j and in block (j + shift_b) // block (Counters.shift); rows whose region is one
block shorter start one block later, so every row ends at the same block count. On CDLM's grid
(ModelAdapter.block_grid "generation") the blocks start at each row's generation start instead: the
whole prompt is one block, cached before (or with) the first decoded block, and there is no tail.

Forwards and NFE, `append` (a setting every method accepts, `threshold:append=separate`):
  fold      (default) every forward is a denoising step: a row's first forward in a block also
            feeds the blocks to append before it (the prompt's whole blocks at the first block,
            the finished previous block later) with commit, which writes their K/V exactly as a
            forward of their own would. NFE = denoising steps.
  separate  SDAR's block_diffusion_generate: one prefill forward of the prompt's whole blocks,
            then the denoising steps, then one more forward per finished block (the last and the
            EOS block included) that stores its K/V. NFE = steps + prefill + finished blocks,
            exactly the reference's forwards. Tokens are the same as with fold.
LLaDA2's generate recomputes the whole prefix at every step, so its forwards are the denoising
steps: fold's count.

A logit-shifted model (position i is predicted from hidden state i - 1) reads the prediction of a
block's first position from the last position before the block, computed by the forward that fed
it and kept for the block's later steps (it cannot change: that position does not see the current
block). Fast-dLLM v2 (ModelAdapter.ar_blocks) writes that prediction as the block's first token
(its appending forwards, separate, and its stop rule); a CDLM Dream student decodes it as a masked
position like the others (FedBlock.stale_first; append=fold only).

Rows that finished are fed as padding (no NFE, nothing written): the forward keeps its shape.
Capped rows (the step cap): the current block's masks take the last proposal; later blocks,
never computed, read EOS.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from kernels.compiled import small_inputs_compiled
from models.base import ModelAdapter
from .base import GenConfig, Method, step_cap
from .contract import History, Plan, StepOutput
from .select import token_stats
from .state import Constants, Counters, DecodeState

APPEND_MODES = ("fold", "separate")


def check(model: ModelAdapter, method: Method, gen: GenConfig) -> None:
    """One-line errors for a method or protocol that cannot run on a block-causal model (before any work)."""
    name, bs = model.name, model.block_size
    if method.name == "slowfast" or method.reads().truncated:
        raise ValueError(f"{method.name} does not apply to block-causal model {name}: its truncated forwards span "
                         f"blocks that the model decodes one at a time; use fixed, threshold, eb, localleap or prr")
    if method.reads().verify:
        raise ValueError(f"{method.name} does not apply to block-causal model {name}: its verification block "
                         f"(Reads.verify) is fed beside the whole sequence, which a block forward does not feed; "
                         f"use fixed, threshold, eb, localleap, prr, klass, dico or edit")
    if method.cache != "none":
        raise ValueError(f"{method.name}: cache={method.cache} means nothing new for block-causal model {name} (its "
                         f"finished blocks' K/V are already cached exactly); drop cache={method.cache}")
    if method.cfg_scale > 0:
        raise ValueError(f"{method.name}: cfg_scale > 0 is not supported on block-causal model {name} (the "
                         f"unconditional copy would need a second cache); use cfg_scale=0")
    if method.block_append not in APPEND_MODES:
        raise ValueError(f"{method.name}: append={method.block_append!r}; choose one of {', '.join(APPEND_MODES)}")
    if bs % gen.block_length:
        raise ValueError(f"block-causal model {name} decodes its own blocks of {bs} tokens, or sub-blocks that divide "
                         f"them; got block_length {gen.block_length}: use --block-length {default_block(model)} "
                         f"(or leave it unset)")
    if model.logit_shift and not model.ar_blocks and method.block_append == "separate":
        raise ValueError(f"{method.name}: append=separate does not apply to logit-shifted model {name} (a block's "
                         f"first position is predicted by the forward that feeds the block before it); drop append=separate")
    if model.ar_blocks and gen.gen_length < bs:
        raise ValueError(f"{name} decodes gen_length // {bs} blocks (Fast-dLLM v2's generate); gen_length "
                         f"{gen.gen_length} < {bs}: use --gen-length {bs} or more")
    if not hasattr(model.module, "block_forward"):
        raise ValueError(f"{name}: this backend has no block cache (block_forward) to decode with; "
                         f"use --model-backend native")


# the loop's block (the sub-block methods commit in) where a family's reference decodes sub-blocks
SUB_BLOCKS = {"fast-dllm-v2": 8}   # Fast-dLLM v2's eval: small_block_size 8 inside bd_size 32


def default_block(model: ModelAdapter) -> int:
    return min(SUB_BLOCKS.get(model.info.get("family"), model.block_size), model.block_size)


def model_gen(model: ModelAdapter, gen: GenConfig, block_length_given: bool) -> GenConfig:
    """The protocol a run decodes `model` with: a block-causal model's blocks are its own, so a
    task's default block_length gives way to the model's block (Fast-dLLM v2: its sub-block of 8);
    one the user gave must divide the model's block."""
    if model.regime != "block_causal":
        return gen
    bs, want = model.block_size, default_block(model)
    if block_length_given:
        if bs % gen.block_length:
            raise ValueError(f"block-causal model {model.name} decodes its own blocks of {bs} tokens, or sub-blocks "
                             f"that divide them; --block-length {gen.block_length}: use {want} (or leave it unset)")
        return gen
    if gen.gen_length % bs:
        raise ValueError(f"gen_length ({gen.gen_length}) must be a multiple of block-causal model {model.name}'s "
                         f"block size ({bs}); e.g. --gen-length {-(-gen.gen_length // bs) * bs}")
    return dataclasses.replace(gen, block_length=want)


@dataclass
class BlockLayout:
    """Where each row's blocks fall in the generated region (all [B] unless noted)."""
    shift: torch.Tensor        # generated index j is in block (j + shift) // block
    end: torch.Tensor          # one past the row's last generated index
    num_blocks: int            # blocks every row ends at (rows start at block shift // block)
    width: int                 # G: the region's width (the longest row's)


def check_methods(model: ModelAdapter, methods, gen: GenConfig) -> None:
    """check() for every method of a run; bidirectional models: nothing to check."""
    if model.regime == "block_causal":
        for m in methods:
            check(model, m, gen)


def block_layout(prompt_len: torch.Tensor, gen_length: int, bs: int, ar_blocks: bool = False,
                 prompt_block: bool = False) -> BlockLayout:
    """SDAR/LLaDA2: ceil((tail + gen_length) / bs) blocks from the tail's block. `ar_blocks` (Fast-dLLM
    v2): gen_length // bs blocks, and one position more for the token the last block's appending
    forward proposes (AR style). `prompt_block` (CDLM's grid): no tail, the blocks start at the
    generation start."""
    tail = torch.zeros_like(prompt_len) if prompt_block else prompt_len % bs
    if ar_blocks:
        nb = torch.full_like(tail, gen_length // bs)
    else:
        nb = (tail + gen_length + bs - 1) // bs              # blocks the row decodes (the tail's block first)
    NB = int(nb.max())
    shift = tail + (NB - nb) * bs
    end = NB * bs - shift + int(ar_blocks)
    return BlockLayout(shift, end, NB, int(end.max()))


def new_block_state(model: ModelAdapter, method: Method, prompts: list[list[int]], gen: GenConfig,
                    trace: bool = False) -> tuple[DecodeState, BlockLayout]:
    from .loop import left_pad
    dev, reads, bs = model.device, method.reads(), model.block_size
    if model.logit_shift and any(len(p) == 0 for p in prompts):
        raise ValueError(f"logit-shifted model {model.name} needs a non-empty prompt (its first token is predicted "
                         f"from the one before)")
    p_ids, p_attn = left_pad(prompts, model.pad_id)
    B, P = p_ids.shape
    prompt_len = p_attn.sum(1)
    sub, ar = gen.block_length, bool(model.ar_blocks)
    lay = block_layout(prompt_len, gen.gen_length, bs, ar_blocks=ar, prompt_block=model.block_grid == "generation")
    G = lay.width
    # masks up to the row's end (the last, AR position: EOS until the last appending forward writes it)
    region = torch.where(torch.arange(G).unsqueeze(0) < (lay.end - int(ar)).unsqueeze(1), model.mask_id, model.eos_ids[0])
    z = lambda dt=torch.long: torch.zeros(B, dtype=dt, device=dev)
    k = Constants(eos=torch.tensor(model.eos_ids, device=dev), pos=torch.arange(G, device=dev),
                  step_cap=torch.tensor(step_cap(method, gen, G, lay.num_blocks * bs // sub), device=dev),
                  mask_id=model.mask_id, block_length=sub, num_blocks=lay.num_blocks * bs // sub,
                  early_stop=gen.early_stop)
    lay = BlockLayout(lay.shift.to(dev), lay.end.to(dev), lay.num_blocks, G)
    # the counters' own copy of the shifts: a compiled captured step reads both, and aliased
    # inputs would make its guards differ between the real state and the copies it warms up on
    rows = Counters(lay.shift // sub, z(), z(), z(torch.bool), z(torch.bool), shift=lay.shift.clone())
    attn = torch.cat([p_attn, torch.ones((B, G), dtype=torch.long)], 1).to(dev)
    state = DecodeState(
        tokens=torch.cat([p_ids, region.long()], 1).to(dev), attn=attn, attn_fwd=None, P=P, gen=gen,
        prompt_len=prompt_len.to(dev), rows=rows, k=k, nfe=z(), nfe_truncated=z(), remasks=z(), edits=z(),
        history=History.empty(B, G, dev, reads.topk) if (reads.history or reads.topk) else None,
        trace=[[] for _ in range(B)] if trace else None)
    return state, lay


@dataclass
class FedBlock:
    """A block forward's output for the current model block of each row."""
    first: torch.Tensor                # [B] generated index of the block's first position
    logits: torch.Tensor               # [B, bs, V] the logits each block position is read from
    hidden: torch.Tensor | None        # [B, bs, d] when the method reads hidden states
    stale_first: torch.Tensor | None   # [B] bool: position 0 not computed by this forward (logit-shifted
                                       # models: its logit comes from the forward that fed the token before)
    stats_shifted: bool = False        # logits unshifted: position i takes the statistics of row i - 1


CAPACITY_MULTIPLE = 64


def block_capacity(state: DecodeState, lay: BlockLayout, bs: int) -> int:
    """Cache positions a decode needs: the longest row's prompt and region and a block to spare,
    rounded up to a multiple of CAPACITY_MULTIPLE. A captured step reads every slot under a mask,
    so this is the key length of its attention: SDPA takes a mask whose key length is a multiple of
    8 as it is and pads any other (a fill and a copy per layer and step; Fast-dLLM v2 at prompt 512
    and 256 generated tokens needs 801), and 64 keys make whole tiles of the attention kernels.
    The extra slots are masked, so the tokens are the same."""
    need = int((state.prompt_len + lay.end).max()) + bs
    return -(-need // CAPACITY_MULTIPLE) * CAPACITY_MULTIPLE


class BlockForward:
    """A step's forward on a block-causal model: each row's current model block against its cached
    prefix (appending finished blocks first, folded into the forward or by forwards of their own)."""

    def __init__(self, model: ModelAdapter, method: Method, state: DecodeState, lay: BlockLayout,
                 generator: torch.Generator | None, cache=None):
        """`cache`: an empty block cache of at least block_capacity() positions to decode in (one
        that CUDA graphs were captured with); default a new one."""
        self.model, self.method, self.reads, self.lay, self.generator = model, method, method.reads(), lay, generator
        self.net, self.bs, self.sub = model.module, model.block_size, state.k.block_length
        self.ar = bool(model.ar_blocks)     # Fast-dLLM v2: AR first tokens, its own append forwards and stop rule
        self.shift = bool(model.logit_shift) and not self.ar   # CDLM-Dream: position i read from logit i - 1
        self.separate = method.block_append == "separate" or self.ar
        B, G, dev = state.tokens.shape[0], lay.width, model.device
        self.cache = cache if cache is not None else self.net.new_block_cache(B, block_capacity(state, lay, self.bs))
        self.start_cache(state)
        self.x0 = torch.full((B, G), model.eos_ids[0], dtype=torch.long, device=dev)   # last proposal per position
        self.conf = torch.zeros((B, G), device=dev)
        self.cols = torch.arange(self.bs, device=dev)

    def start_cache(self, state: DecodeState) -> None:
        """An empty cache whose block grid starts where the model's does (CDLM: at each row's
        generation start)."""
        self.cache.length.zero_()
        if self.model.block_grid == "generation":
            self.cache.start_grid_at(state.prompt_len)

    def prompt_cached(self, state: DecodeState) -> torch.Tensor:
        """[B] prompt tokens that go to the cache before the first decoded block: the whole blocks,
        or the whole prompt on a grid that starts at the generation."""
        if self.model.block_grid == "generation":
            return state.prompt_len
        return state.prompt_len // self.bs * self.bs

    def model_block(self, state: DecodeState, sub_block: torch.Tensor) -> torch.Tensor:
        return sub_block * self.sub // self.bs

    def first_index(self, mb: torch.Tensor) -> torch.Tensor:
        """[B] generated index of the first position of model block `mb` (negative: prompt)."""
        return mb * self.bs - self.lay.shift

    def _feed(self, state, end, n, act, commit, logits_last, width: int | None = None):
        """One block forward of every row: row b feeds its n[b] tokens ending at generated index end[b]
        (right-aligned, left padding), inactive rows only padding. Attention reads every cache slot
        (masked past each row's end), so an eager step and a captured one (acceleration/
        captured_block.py) have the same shapes and compute the same numbers. `width`: the fed
        width, at least n.max(), given by a caller that knows it (a CUDA graph: no host sync, the
        commit check left to the caller); default n.max()."""
        W = int(n.max()) if width is None else width
        w = torch.arange(W, device=end.device)
        idx = (state.P + end).unsqueeze(1) - W + w                # [B, W] token indices
        valid = (w >= W - n.unsqueeze(1)) & act.unsqueeze(1)
        x = state.tokens.gather(1, idx.clamp(0, state.tokens.shape[1] - 1))
        x = torch.where(valid, x, self.model.pad_id)
        with small_inputs_compiled():   # the kernels a captured step holds, eager or captured: the same numbers
            return self.net.block_forward(x, self.cache, valid=valid, commit=torch.where(act, commit, 0),
                                          logits_last=min(logits_last, W), key_len=self.cache.capacity,
                                          checked=width is None)

    def _write_ar(self, state, logits_last_pos, rows_mask, at) -> torch.Tensor:
        """Fast-dLLM v2: the argmax of an appending forward's last logit is the next token, written at
        generated index `at` of the rows in rows_mask (where at is a generated position); -> [B] bool
        rows whose written token is a stop token."""
        tok = logits_last_pos.argmax(-1)
        put = rows_mask & (at >= 0) & (at < self.lay.end)
        idx = state.P + at.clamp(0, self.lay.width - 1)
        cur = state.tokens.gather(1, idx.unsqueeze(1)).squeeze(1)
        state.tokens.scatter_(1, idx.unsqueeze(1), torch.where(put, tok, cur).unsqueeze(1))
        return put & torch.isin(tok, state.k.eos)

    def prefill(self, state: DecodeState) -> None:
        """separate: the prompt's whole blocks, one forward (a row without one is padding, no NFE); a
        logit-shifted model takes the next token from its last logit when the prompt ends on a boundary."""
        if not self.separate:
            return
        pre = self.prompt_cached(state)
        act = pre > 0
        if not bool(act.any()):
            return
        logits, _ = self._feed(state, pre - state.prompt_len, pre, act, pre, 1)
        state.nfe += act.long()
        if self.ar:   # the prefill's token does not count for the stop rule (as in the reference)
            self._write_ar(state, logits[:, -1], act, self.first_index(self.model_block(state, state.rows.block)))

    def halted(self, state: DecodeState, rows: torch.Tensor, mb: torch.Tensor) -> torch.Tensor:
        """Fast-dLLM v2's stop rule, [B] bool over `rows`: model block mb holds a stop token with no
        mask before it (its first position, the AR token, and prompt positions not counted)."""
        B, G = state.tokens.shape[0], self.lay.width
        j = self.first_index(mb).unsqueeze(1) + self.cols                         # [B, bs]
        mine = (j > self.first_index(mb).unsqueeze(1)) & (j >= 0) & (j < G)
        tok = state.tokens[:, state.P:].gather(1, j.clamp(0, G - 1))
        stop = torch.isin(tok, state.k.eos) & mine
        masked_before = ((tok == state.k.mask_id) & mine).long().cumsum(1) > 0
        out = torch.zeros(B, dtype=torch.bool, device=rows.device)
        out[rows] = (stop & ~masked_before).any(1)[rows]
        return out

    def after_step(self, state: DecodeState, rows: torch.Tensor, block_before: torch.Tensor) -> None:
        """separate: one forward appending the model blocks `rows` just finished (not capped; for
        Fast-dLLM v2 not stopped), whose last logit gives a logit-shifted model's next token. Fast-dLLM
        v2 also stops a row by its rule (halted) and when that next token is a stop token."""
        B = state.tokens.shape[0]
        before = torch.zeros(B, dtype=torch.long, device=rows.device)
        before[rows] = block_before
        fin = self.finished_blocks(state, rows, before)
        if self.separate and bool(fin.any()):
            self.append(state, fin)

    def finished_blocks(self, state: DecodeState, rows: torch.Tensor, block_before: torch.Tensor) -> torch.Tensor:
        """After a step of `rows` that started in blocks `block_before` ([B]): stops the rows Fast-dLLM
        v2's rule halts (halted) and returns [B] bool, the rows of `rows` whose model block the step
        finished (not capped, not stopped): the blocks `separate` appends. No host sync."""
        B = state.tokens.shape[0]
        mb_before = torch.zeros(B, dtype=torch.long, device=rows.device)
        mb_before[rows] = self.model_block(state, block_before[rows])
        stopped = self.halted(state, rows, mb_before) if self.ar else torch.zeros_like(mb_before, dtype=torch.bool)
        state.rows.done |= stopped
        mb = self.model_block(state, state.rows.block)
        fin = torch.zeros(B, dtype=torch.bool, device=rows.device)
        fin[rows] = (mb[rows] > mb_before[rows]) & ~state.rows.capped[rows]
        return fin & ~stopped

    def append(self, state: DecodeState, fin: torch.Tensor, width: int | None = None) -> None:
        """separate: the forward of the rows `fin` ([B] bool) that appends the model block each just
        finished (NFE +1 each); Fast-dLLM v2 writes its last logit's argmax as the next block's first
        token and stops a row whose token is a stop token. `width`: the block, given by a CUDA graph's
        capture (no host sync; acceleration/captured_block.py)."""
        mb = self.model_block(state, state.rows.block)
        n = torch.full_like(mb, self.bs)
        logits, _ = self._feed(state, self.first_index(mb), n, fin, n, 1, width)
        state.nfe += fin.long()
        if self.ar:
            state.rows.done |= self._write_ar(state, logits[:, -1], fin, self.first_index(mb))

    def __call__(self, state: DecodeState, rows: torch.Tensor, plan: Plan) -> StepOutput:
        if plan.extent is not None:
            raise ValueError(f"{self.method.name}: truncated forwards (Plan.extent) do not apply to block-causal "
                             f"model {self.model.name}")
        act = torch.zeros(state.tokens.shape[0], dtype=torch.bool, device=rows.device)
        act[rows] = True
        fed = self.feed_block(state, act)
        state.nfe[rows] += 1
        return self.output(rows, fed)

    def _fed(self, state: DecodeState, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([B] generated index of each row's current model block, [B] tokens to append before it)."""
        mb = self.model_block(state, state.rows.block).clamp(max=self.lay.num_blocks - 1)
        first = self.first_index(mb)
        start = state.prompt_len + first                          # the block's first position in the row
        return first, torch.where(act, start - self.cache.length, 0)   # fold: finished blocks not yet cached

    def width_needed(self, state: DecodeState, act: torch.Tensor) -> torch.Tensor:
        """0-dim: the width the next block forward of the rows `act` feeds (0: none)."""
        return torch.where(act, self._fed(state, act)[1] + self.bs, 0).max()

    def feed_block(self, state: DecodeState, act: torch.Tensor, width: int | None = None) -> "FedBlock":
        """The block forward of the rows `act` -> the block's logits (and hidden states if read)."""
        bs = self.bs
        first, append = self._fed(state, act)
        logits, hidden = self._feed(state, first + bs, append + bs, act, append, bs + int(self.shift), width)
        stale_first = None
        if self.ar and not self.method.temperature > 0 and not self.reads.logits:
            # block position i reads logit i - 1, position 0 its own (Fast-dLLM v2): greedy statistics
            # are per row, so block_stats shifts the statistics of the block's rows, not a copy of the logits
            return FedBlock(first, logits[:, -bs:], hidden[:, -bs:] if self.reads.hidden else None, None, True)
        if self.ar:
            lb = logits[:, -bs:]
            lb = torch.cat([lb[:, :1], lb[:, :-1]], 1)
        elif self.shift:    # position 0 reads the token before the block: fed only with an append
            lb = logits[:, -bs - 1:-1] if logits.shape[1] > bs else torch.cat([logits[:, :1], logits[:, :-1]], 1)
            stale_first = append == 0 if logits.shape[1] > bs else torch.ones_like(act)
        else:
            lb = logits[:, -bs:]
        return FedBlock(first, lb, hidden[:, -bs:] if self.reads.hidden else None, stale_first)

    def output(self, rows, fed: "FedBlock") -> StepOutput:
        """The block's statistics placed in the generated region of `rows` (None: every row)."""
        return self.place(rows, self.block_stats(rows, fed))

    def block_stats(self, rows, fed: "FedBlock") -> "BlockStats":
        """The token statistics of the block positions of `rows` (None: every row, no gathers)."""
        sel = (lambda t: t) if rows is None else (lambda t: None if t is None else t[rows])
        lb = sel(fed.logits)
        x0, conf = token_stats(lb, self.method.temperature, self.generator)
        if fed.stats_shifted:
            x0, conf = torch.cat([x0[:, :1], x0[:, :-1]], 1), torch.cat([conf[:, :1], conf[:, :-1]], 1)
        return BlockStats(sel(fed.first), sel(fed.stale_first), x0, conf.float(),
                          lb if self.reads.logits else None, sel(fed.hidden))

    def place(self, rows, st: "BlockStats") -> StepOutput:
        """Scatter a block's statistics to the generated region (fresh there only; a stale first
        position keeps its last proposal) and keep them as the rows' last proposals. Index math
        and copies only (exact): a captured step runs it compiled with the decide
        (acceleration/captured_block.py)."""
        G, bs = self.lay.width, self.bs
        j = st.first.unsqueeze(1) + self.cols                               # [b, bs] generated index
        inside = (j >= 0) & (j < G)
        if st.stale_first is not None:
            inside &= ~(st.stale_first.unsqueeze(1) & (self.cols == 0))
        j = torch.where(inside, j, G)                                       # G: a dump column
        b = j.shape[0]
        put = lambda src, base: torch.cat([base, base.new_zeros((b, 1, *base.shape[2:]))], 1).scatter(
            1, j.view(b, bs, *([1] * (base.dim() - 2))).expand(b, bs, *base.shape[2:]), src)[:, :G]
        last_x0, last_conf = (self.x0, self.conf) if rows is None else (self.x0[rows], self.conf[rows])
        x0, conf = put(st.x0, last_x0), put(st.conf, last_conf)
        if rows is None:
            self.x0.copy_(x0)
            self.conf.copy_(conf)
        else:
            self.x0[rows], self.conf[rows] = x0, conf
        fresh = put(inside, torch.zeros((b, G), dtype=torch.bool, device=j.device))
        hidden = None if st.hidden is None else put(st.hidden, st.hidden.new_zeros((b, G, st.hidden.shape[-1])))
        if st.logits is None:
            return StepOutput(x0, conf, fresh, None, hidden)
        return StepOutput(x0, conf, fresh, st.logits, hidden, logits_at=j)


@dataclass
class BlockStats:
    """A block forward's token statistics for b rows, before BlockForward.place puts them in the
    generated region."""
    first: torch.Tensor                # [b] generated index of the block's first position
    stale_first: torch.Tensor | None   # [b] bool (FedBlock.stale_first)
    x0: torch.Tensor                   # [b, bs] proposals
    conf: torch.Tensor                 # [b, bs] fp32 their probabilities
    logits: torch.Tensor | None        # [b, bs, V] when the method reads logits
    hidden: torch.Tensor | None        # [b, bs, d] when the method reads hidden states


@torch.no_grad()
def decode(model: ModelAdapter, method: Method, prompts: list[list[int]], gen: GenConfig,
           generator: torch.Generator | None = None, trace: bool = False):
    """decoding.loop.decode for a block-causal model (it dispatches here): the same steps, the
    model's block forwards."""
    from .loop import result
    check(model, method, gen)
    state, lay = new_block_state(model, method, prompts, gen, trace)
    method.start(len(prompts), model.device, generator)
    forward = BlockForward(model, method, state, lay, generator)
    forward.prefill(state)
    while True:
        rows = (~state.rows.done).nonzero().squeeze(1)   # the loop's one host sync per step
        if rows.numel() == 0:
            break
        step(state, method, forward, rows)
    return result(state, model.eos_ids)


def step(state: DecodeState, method: Method, forward: BlockForward, rows: torch.Tensor) -> None:
    """One step of `rows` (the rows still decoding): plan, block forward, decide, apply, append."""
    from .loop import decide_and_apply
    block_before = state.rows.block[rows].clone()
    view = state.view(rows, rows)
    out = forward(state, rows, method.plan(view))
    decide_and_apply(state, method, rows, rows, out)
    forward.after_step(state, rows, block_before)
