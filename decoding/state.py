"""The loop's state (DecodeState) and how a method's Decision is applied to it (pure tensor code).

`apply_decision` writes a step's commits, remasks and edits, keeps the history of methods that
read it, and moves counters and blocks on (`advance`, one compiled kernel group on GPU). It runs
the same eagerly over the rows still decoding and, captured in a CUDA graph, over every row with
finished ones masked out (`act`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from kernels.compiled import on_gpu_compiled
from .base import GenConfig
from .contract import Decision, History, StepOutput, StepView, place_rows


@dataclass
class Counters:
    """Per-row progress the bookkeeping moves on (all [B])."""
    block: torch.Tensor           # current block index
    step_in_block: torch.Tensor   # steps taken in the current block
    step: torch.Tensor            # steps taken in total
    done: torch.Tensor            # bool: the row stopped (all blocks, EOS in a finished block, or the cap)
    capped: torch.Tensor          # bool: the step cap ended the row
    # generated index j lies in block (j + shift) // block_length; None: shift 0. A block-causal model's
    # blocks are counted from the row's first prompt token (decoding/block_causal.py); never changes.
    shift: torch.Tensor | None = None

    def take(self, rows) -> "Counters":
        return Counters(*(None if t is None else t[rows] for t in dataclasses.astuple(self)))

    def put(self, rows, sub: "Counters") -> None:
        for name in ("block", "step_in_block", "step", "done", "capped"):
            getattr(self, name)[rows] = getattr(sub, name)


@dataclass
class Constants:
    """What the bookkeeping reads and never changes within a decode call."""
    eos: torch.Tensor         # EOS ids
    pos: torch.Tensor         # [G] generated positions 0..G-1
    step_cap: torch.Tensor    # gen.step_cap as a tensor (a compiled step is not rebuilt per cap)
    mask_id: int
    block_length: int
    num_blocks: int
    early_stop: bool

    def block_of(self, shift: torch.Tensor | None) -> torch.Tensor:
        """Block index of each generated position: [G], or [b, G] with per-row shifts [b]."""
        if shift is None:
            return self.pos // self.block_length
        return (self.pos.unsqueeze(0) + shift.unsqueeze(1)) // self.block_length


@dataclass
class DecodeState:
    """Everything one decode call changes, owned by the loop ([B] or [B, P + G])."""
    tokens: torch.Tensor          # [left-padded prompt | generated], MASK where not written
    attn: torch.Tensor            # attention mask (0 on left padding)
    attn_fwd: torch.Tensor | None # the mask a full forward takes: None without padding
    P: int                        # padded prompt length
    gen: GenConfig
    prompt_len: torch.Tensor      # real (unpadded) prompt lengths
    rows: Counters
    k: Constants
    nfe: torch.Tensor             # model forward calls per row (CFG counts two per step)
    nfe_truncated: torch.Tensor   # of nfe, forwards fed a truncated sequence (Plan.extent)
    remasks: torch.Tensor         # written tokens taken back to MASK
    edits: torch.Tensor           # written tokens replaced by another token
    history: History | None = None          # kept only for methods that read it (Reads.history)
    trace: list[list[dict]] | None = field(default=None)

    def view(self, rows, every: torch.Tensor, act: torch.Tensor | None = None) -> StepView:
        """The StepView of `rows` (an index tensor, or slice(None) with `every` = all indices)."""
        gen_a = self.tokens[rows, self.P:]
        block = self.rows.block[rows]
        shift = None if self.rows.shift is None else self.rows.shift[rows]
        candidates = (gen_a == self.k.mask_id) & (self.k.block_of(shift) == block.unsqueeze(1))
        if act is not None:
            candidates &= act.unsqueeze(1)
        return StepView(rows=every if isinstance(rows, slice) else rows, tokens=gen_a, candidates=candidates,
                        block=block, step_in_block=self.rows.step_in_block[rows], step=self.rows.step[rows],
                        prompt_len=self.prompt_len[rows], mask_id=self.k.mask_id, block_end=(block + 1) * self.k.block_length - (0 if shift is None else shift),
                        history=None if self.history is None else self.history.take(rows))


def apply_decision(state: DecodeState, rows, view: StepView, out: StepOutput, dec: Decision,
                   act: torch.Tensor | None = None) -> None:
    """Write one step's decision for `rows` (index tensor or slice(None)) and move the rows on.
    Commits land only at candidates; remasks and edits only at written positions of the row's
    current block; both are counted per row. Rows outside `act` ([b] bool; None: all) stay as
    they are."""
    k, gen_a = state.k, view.tokens
    if dec.edit is not None and dec.edit_tokens is None:
        raise ValueError("Decision.edit needs Decision.edit_tokens (the replacement token at each edited position)")
    commit = dec.commit & view.candidates
    in_block = k.block_of(None if state.rows.shift is None else state.rows.shift[rows]) == view.block.unsqueeze(1)
    written = (gen_a != k.mask_id) & in_block
    if act is not None:
        written &= act.unsqueeze(1)
    new = torch.where(commit, out.x0, gen_a)
    remask = edit = None
    if dec.edit is not None:
        edit = dec.edit & written & (dec.edit_tokens != gen_a)
        if dec.remask is not None:
            edit &= ~dec.remask
        new = torch.where(edit, dec.edit_tokens, new)
        state.edits[rows] += edit.sum(1)
    if dec.remask is not None:
        remask = dec.remask & written
        new = torch.where(remask, k.mask_id, new)
        state.remasks[rows] += remask.sum(1)
    if state.history is not None:
        _keep_history(state.history, rows, view, out, commit, remask, edit, act)
    if state.trace is not None:
        _record(state.trace, view, out, commit, remask, edit, k.mask_id)
    sub = state.rows if isinstance(rows, slice) else state.rows.take(rows)
    state.tokens[rows, state.P:] = advance(new, out.x0, in_block, act, sub, k, dec.hold)
    if not isinstance(rows, slice):
        state.rows.put(rows, sub)


@on_gpu_compiled(row_args=(0, 1, 2, 3, 4, 6))
def advance(gen_a, x0, in_block, act, r: Counters, k: Constants, hold=None):
    """A step's bookkeeping (all [b] or [b, G]): moves counters and blocks on, marks rows done or
    capped (a capped row's remaining masks take x0, at no extra NFE); updates `r` in place and
    returns the rows' new generated tokens. Rows outside `act` (None: all rows) stay as they are;
    rows in `hold` (Decision.hold; None: none) stay in their block even if it has no masks.
    Pure tensor code: a captured step runs it as a few compiled kernels (kernels/compiled.py)."""
    took = 1 if act is None else act.long()
    r.step += took
    r.step_in_block += took
    finished_block = ~((gen_a == k.mask_id) & in_block).any(1)
    if hold is not None:
        finished_block &= ~hold
    if act is not None:
        finished_block &= act
    next_block = r.block + finished_block.long()
    upto = k.block_of(r.shift) < next_block.unsqueeze(1)
    has_eos = (torch.isin(gen_a, k.eos) & upto).any(1)
    row_done = next_block >= k.num_blocks
    if k.early_stop:
        row_done |= finished_block & has_eos
    cap = ~row_done & (r.step >= k.step_cap)
    if act is not None:
        row_done &= act
        cap &= act
    # fill what is left with the last proposal (no `if cap.any()`: a host sync)
    gen_a = torch.where(cap.unsqueeze(1) & (gen_a == k.mask_id), x0, gen_a)
    r.block.copy_(next_block)
    r.step_in_block.copy_(torch.where(finished_block, 0, r.step_in_block))
    r.capped |= cap
    r.done |= row_done | cap
    return gen_a


def _keep_history(h: History, rows, view: StepView, out: StepOutput, commit, remask, edit, act) -> None:
    """Record this step's argmax, confidence and top-k (where fresh) and the commit steps."""
    took = torch.ones_like(view.step, dtype=torch.bool) if act is None else act
    t = took.unsqueeze(1)
    old = view.history
    stable = torch.where(out.x0 != old.argmax, 0, old.stable + 1)
    h.stable[rows] = torch.where(t, stable, old.stable)
    h.argmax[rows] = torch.where(t, out.x0, old.argmax)
    h.conf[rows] = torch.where(t, out.conf.float(), old.conf)
    written = commit if edit is None else commit | edit
    at = torch.where(written, view.step.unsqueeze(1), old.commit_step)
    h.commit_step[rows] = at if remask is None else torch.where(remask, -1, at)
    if h.topk_logp is not None:
        kk = h.topk_logp.shape[-1]
        logp, ids = torch.log_softmax(out.logits.float(), -1).topk(kk, -1)
        if out.logits_at is not None:   # a window's rows: placed at their positions, the rest kept
            logp, ids = place_rows(logp, out.logits_at, old.topk_logp), place_rows(ids, out.logits_at, old.topk_ids)
        keep = (t & out.fresh).unsqueeze(-1)
        h.topk_logp[rows] = torch.where(keep, logp, old.topk_logp)
        h.topk_ids[rows] = torch.where(keep, ids, old.topk_ids)


def _record(trace, view: StepView, out: StepOutput, commit, remask, edit, mask_id: int) -> None:
    """Per row and step: which positions were committed (remasked, edited), and the argmax and
    top-1 probability at every position that was masked before the step (training data for
    learned controllers)."""
    masked = view.tokens == mask_id
    rows_l, steps_l = view.rows.tolist(), view.step.tolist()
    masked, x0, conf, commit = masked.cpu(), out.x0.cpu(), out.conf.cpu(), commit.cpu()
    extra = {n: t.cpu() for n, t in (("remask", remask), ("edit", edit)) if t is not None}
    for i, (row, step) in enumerate(zip(rows_l, steps_l)):
        m = masked[i].nonzero().squeeze(1)
        entry = {"step": step, "masked": m.tolist(), "argmax": x0[i, m].tolist(),
                 "p1": [round(v, 6) for v in conf[i, m].tolist()],
                 "commit": commit[i].nonzero().squeeze(1).tolist()}
        for n, t in extra.items():
            entry[n] = t[i].nonzero().squeeze(1).tolist()
        trace[row].append(entry)
