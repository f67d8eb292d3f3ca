"""The method contract: what a method declares, sees, plans and decides at one step.

    plan = method.plan(view)          -> Plan        what the next forward feeds
    out  = forward(...)               -> StepOutput  x0, conf, fresh (+ logits rows / hidden if read)
    dec  = method.decide(view, out)   -> Decision    commit (mask -> x0), remask (token -> MASK),
                                                     edit (token -> another token)

`view` is a StepView: the loop's state (decoding/state.py) of the b rows taking the step. All
per-position tensors cover the generated region, [b, G]. See docs/decode-loop.md.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Reads:
    """What a method's plan/decide read beyond x0, conf, fresh, the candidates and the row counters.
    The loop builds only what is read; acceleration/ decides from it whether the step may be
    captured in a CUDA graph (acceleration/policy.py)."""
    logits: bool = False     # StepOutput.logits: [b, W, V] in the model's dtype, the rows the
                             # forward computed (StepOutput.logits_at; per_position / dense_logits)
    hidden: bool = False     # StepOutput.hidden: [b, G, d] last hidden states (zeros where not fresh)
    history: bool = False    # StepView.history: argmax, conf, stable steps, commit step (before this step)
    topk: int = 0            # ... and the previous distribution's top-k log-probs and ids (k = topk)
    logits_blocks: int = 0   # with logits: decide's vocabulary statistics read only the rows of the
                             # current block and the logits_blocks - 1 after it (StepOutput.block_rows),
                             # so a step's output may hold only those; 0: rows at any position
    rng: bool = False        # draws random numbers from the run's generator
    host: bool = False       # syncs with the host or keeps Python-side state per step
    truncated: bool = False  # plan() may return truncated forwards (Plan.extent)
    verify: bool = False     # every forward carries a shadow block verifying the current block
                             # (StepOutput.verify_x0 / verify_conf; WINO); no KV cache

    def __post_init__(self):
        if self.topk < 0:
            raise ValueError(f"Reads.topk={self.topk} must be >= 0 (0: no top-k history)")
        if self.logits_blocks < 0:
            raise ValueError(f"Reads.logits_blocks={self.logits_blocks} must be >= 0 (0: rows at any position)")


@dataclass
class Plan:
    """What the next forward feeds, for the b rows of a step. The KV cache mode (Method.cache)
    adds the cache's own plan: a refresh at a block's first step, a window forward otherwise."""
    extent: torch.Tensor | None = None   # [b] feed prompt + the first extent[i] generated positions
                                         # (a truncated forward); None: every position


@dataclass
class History:
    """Per row and generated position, as of the row's previous step (kept by the loop for methods
    with Reads.history; [B, G] unless noted)."""
    argmax: torch.Tensor        # last x0 (-1 before the first forward)
    conf: torch.Tensor          # last conf (fp32)
    stable: torch.Tensor        # steps since the argmax last changed (0: it changed at the last step)
    commit_step: torch.Tensor   # step at which the position was written (-1: masked)
    topk_logp: torch.Tensor | None = None   # [B, G, k] previous top-k log-probabilities (Reads.topk)
    topk_ids: torch.Tensor | None = None    # [B, G, k] their token ids

    @classmethod
    def empty(cls, B: int, G: int, device, topk: int = 0) -> "History":
        z = lambda dt, v: torch.full((B, G), v, dtype=dt, device=device)
        tk = (lambda dt: torch.zeros((B, G, topk), dtype=dt, device=device)) if topk else (lambda dt: None)
        return cls(z(torch.long, -1), z(torch.float32, 0.0), z(torch.long, 0), z(torch.long, -1),
                   tk(torch.float32), tk(torch.long))

    def take(self, rows) -> "History":
        pick = lambda t: None if t is None else t[rows]
        return History(pick(self.argmax), pick(self.conf), pick(self.stable), pick(self.commit_step),
                       pick(self.topk_logp), pick(self.topk_ids))


@dataclass
class StepView:
    """The state of the b rows taking this step (tensors [b] or [b, G])."""
    rows: torch.Tensor              # [b] indices of these rows in the batch
    tokens: torch.Tensor            # generated tokens before the step (MASK where masked)
    candidates: torch.Tensor        # masked and inside the row's current block (and the row active)
    block: torch.Tensor             # [b] current block index
    step_in_block: torch.Tensor     # [b] steps already taken in the current block
    step: torch.Tensor              # [b] steps already taken in total
    prompt_len: torch.Tensor        # [b] real (unpadded) prompt lengths
    mask_id: int = -1               # the model's MASK id (tokens == mask_id: not written)
    block_end: torch.Tensor | None = None   # [b] generated index one past the current block
    history: History | None = None  # Reads.history


@dataclass
class StepOutput:
    """One forward's token statistics for the b rows of a step ([b, G] unless noted)."""
    x0: torch.Tensor                     # proposed tokens (argmax, or sampled at a temperature)
    conf: torch.Tensor                   # fp32 probability of x0
    fresh: torch.Tensor                  # bool: positions this forward computed; elsewhere x0/conf
                                         # repeat the row's last computation (cache windows, truncated forwards)
    logits: torch.Tensor | None = None   # [b, W, V] in the model's dtype (Reads.logits): the logits
                                         # rows the forward computed, W = G unless logits_at is set
    hidden: torch.Tensor | None = None   # [b, G, d] (Reads.hidden); zeros where not fresh
    verify_x0: torch.Tensor | None = None    # [b, G] (Reads.verify) the shadow block's argmax at each
                                             # position of the current block, predicted with that position
                                             # hidden (-1 outside the block)
    verify_conf: torch.Tensor | None = None  # [b, G] fp32: the shadow block's probability of the token
                                             # written there (of verify_x0 where masked); 0 outside the block
    logits_at: torch.Tensor | None = None    # [b, W] long: the generated position of each logits row
                                             # (a cache window's); G marks a row outside the region.
                                             # None: row i is position i (W = G, zeros where not fresh)

    def per_position(self, fn, *extra: torch.Tensor, fill: float | None = None) -> torch.Tensor:
        """[b, G, ...]: fn(logits rows, *extra gathered at those rows) placed at their positions.
        `fn` works row by row on [b, W, V] (and [b, W, ...] extras); a position without a logits
        row gets fn of a zero logits row (zero extras), as if the logits were dense with zeros there,
        or `fill` where given (for a caller that never reads those positions: no pass over zero rows).
        Methods compute their vocabulary statistics through this, over the W rows only."""
        if self.logits_at is None:
            return fn(self.logits, *extra)
        at = self.logits_at
        got = fn(self.logits, *(gather_rows(t, at) for t in extra))
        if fill is not None:
            return place_rows(got, at, got.new_full((self.x0.shape[0], self.x0.shape[1], *got.shape[2:]), fill))
        # two zero rows, not one: a compiled fn would build a kernel of its own for a single row
        zero = self.logits.new_zeros((1, 2, self.logits.shape[-1]))
        fill = fn(zero, *(t.new_zeros((1, 2, *t.shape[2:])) for t in extra))[:, :1]
        return place_rows(got, at, fill.expand(self.x0.shape[0], self.x0.shape[1], *fill.shape[2:]))

    def rows_at(self, at: torch.Tensor | None) -> "StepOutput":
        """This output with logits rows at positions `at` [b, K] only (G: none), for a method whose
        vocabulary statistics matter only there (its candidates: block_positions); an output that
        already holds fewer rows (a cache window's) is returned as it is."""
        if at is None or self.logits is None or self.logits_at is not None:
            return self
        G = self.logits.shape[1]
        idx = at.clamp(max=G - 1)
        rows = self.logits.gather(1, idx.unsqueeze(-1).expand(*idx.shape, self.logits.shape[-1]))
        return dataclasses.replace(self, logits=rows, logits_at=at)

    def block_rows(self, view: "StepView", block_length: int, blocks: int = 1) -> "StepOutput":
        """rows_at the positions of the row's current block and the `blocks - 1` after it: the rows a
        method that declares Reads.logits_blocks = blocks reads (an output that holds only those,
        acceleration's merged dual-cache step, is returned as it is)."""
        return self.rows_at(block_positions(view, block_length, blocks))

    def dense_logits(self) -> torch.Tensor:
        """[b, G, V] fp32 logits, zeros at positions without a logits row."""
        return self.per_position(lambda lg: lg.float())


def block_positions(view: StepView, block_length: int, blocks: int = 1) -> torch.Tensor | None:
    """[b, blocks * block_length] generated positions of each row's current block and the
    `blocks - 1` blocks after it (G where past the end; the candidates lie in the first block), or
    None where the view has no block_end."""
    if view.block_end is None:
        return None
    return positions_of_blocks(view.block_end, view.tokens.shape[1], block_length, blocks)


def positions_of_blocks(block_end: torch.Tensor, G: int, block_length: int, blocks: int) -> torch.Tensor:
    """block_positions from each row's block end [b] and the generated length G."""
    at = (block_end - block_length).unsqueeze(1) + torch.arange(blocks * block_length, device=block_end.device)
    return torch.where(at >= G, G, at.clamp(min=0))


def gather_rows(t: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """t [b, G, ...] at positions at [b, W] (G reads as a zero row) -> [b, W, ...]."""
    padded = torch.cat([t, t.new_zeros((t.shape[0], 1, *t.shape[2:]))], 1)
    return padded.gather(1, at.view(*at.shape, *([1] * (t.dim() - 2))).expand(*at.shape, *t.shape[2:]))


def place_rows(values: torch.Tensor, at: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """base [b, G, ...] with rows values [b, W, ...] written at positions at [b, W] (G: dropped)."""
    b, G = base.shape[:2]
    padded = torch.cat([base, base.new_zeros((b, 1, *base.shape[2:]))], 1)
    idx = at.view(*at.shape, *([1] * (values.dim() - 2))).expand(*values.shape)
    return padded.scatter(1, idx, values.to(base.dtype))[:, :G]


@dataclass
class Decision:
    """A method's choice for one step ([b, G] bool unless noted). The loop applies `commit` only at
    candidates, and `remask` / `edit` only at written positions before the row's block end."""
    commit: torch.Tensor                       # masked -> x0
    remask: torch.Tensor | None = None         # written token -> MASK (revocation)
    edit: torch.Tensor | None = None           # written token -> edit_tokens
    edit_tokens: torch.Tensor | None = None    # [b, G] long
    hold: torch.Tensor | None = None           # [b] bool: keep the row in its current block even if it
                                               # has no masks after this step (more forwards on it);
                                               # the step cap still ends the row


def step_inputs(*, conf, candidates, x0=None, logits=None, hidden=None, rows=None, block=None,
                step_in_block=None, step=None, prompt_len=None, tokens=None, fresh=None,
                history=None, mask_id: int = -1, verify_x0=None, verify_conf=None) -> tuple[StepView, StepOutput]:
    """A (StepView, StepOutput) pair from hand-made tensors, for calling a method's decide() in tests
    and probes; counters default to zeros, x0 to zeros, tokens to MASK at candidates."""
    b, G = conf.shape
    z = torch.zeros(b, dtype=torch.long, device=conf.device)
    or_ = lambda t, d: d if t is None else t
    x0 = or_(x0, torch.zeros((b, G), dtype=torch.long, device=conf.device))
    tokens = or_(tokens, torch.where(candidates, mask_id, x0))
    view = StepView(rows=or_(rows, torch.arange(b, device=conf.device)), tokens=tokens, candidates=candidates,
                    block=or_(block, z), step_in_block=or_(step_in_block, z), step=or_(step, z),
                    prompt_len=or_(prompt_len, z), mask_id=mask_id, history=history)
    out = StepOutput(x0=x0, conf=conf, fresh=or_(fresh, torch.ones_like(candidates)), logits=logits, hidden=hidden,
                     verify_x0=verify_x0, verify_conf=verify_conf)
    return view, out
