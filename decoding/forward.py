"""A step's forward: the model call(s) a Plan asks for, turned into a StepOutput.

    full       prompt + every generated position, every row still decoding (1 NFE each)
    truncated  prompt + the first Plan.extent[i] generated positions (SlowFast's fast phase); the
               positions beyond are not fresh: x0/conf there repeat the row's last full forward
    cfg        a second, unconditional forward with the prompt masked (2 NFE per step)
    verify     the full forward plus a shadow block of block_length [MASK] tokens that re-predicts
               each position of the current block with that position hidden (Reads.verify, WINO;
               the same forward, 1 NFE): StepOutput.verify_x0 / verify_conf
    cache      a refresh or a window forward (decoding/cache.py)

Token statistics read the logits in the model's dtype; logits (the rows the forward computed, in
that dtype: StepOutput.logits_at) and hidden states are handed over only to methods that read them
(Reads). How a model call runs is `ModelCalls`: eagerly here; acceleration/ passes a subclass that
replays CUDA graphs, of the full forward and of truncated forwards (decoding never imports it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from models.base import ModelAdapter, ModelOutput
from .base import Method
from .contract import Plan, Reads, StepOutput
from .select import chosen_prob, token_stats


class ModelCalls:
    """The model calls of a step, eagerly. Each hook returns None where it has no faster way; the
    forward then calls the model itself for the rows decoding."""

    def __init__(self, model: ModelAdapter):
        self.model = model

    def new_cache(self, batch: int, length: int):
        return self.model.new_cache(batch, length)

    def full(self, x: torch.Tensor, attn: torch.Tensor | None, P: int, need_hidden: bool) -> ModelOutput | None:
        """A full forward of every row (finished rows included), its output from position P
        (logits_from), or None."""
        return None

    def truncated(self, x, attn, padded: bool, P: int, rows, fed, need_hidden: bool) -> ModelOutput | None:
        """A truncated forward (Plan.extent `fed` [b] of `rows`) -> the output of `rows`, cut at any
        length >= P + max(fed) (positions past a row's extent are hidden from it; no mask where
        nothing is hidden: no left padding and every row fed to the cut), from position P, or None."""
        return None

    def refresh(self, stepper, x, mask, need_hidden, rows=None) -> ModelOutput | None:
        """A cache refresh of every row (rows None) or of the cache rows `rows` ([k], x holding
        theirs), or None."""
        return None

    def window(self, stepper, x, attn, block, width: int, need_hidden) -> tuple | None:
        """A dual/prefix window forward of every row -> (output, pos), or None."""
        return None

    def verify(self, x, attn, block, P: int, BL: int, mask_id: int, need_hidden) -> tuple | None:
        """A verification forward (verify_inputs) of every row -> (output, twin), or None."""
        return None


@dataclass
class Reuse:
    """Per row: x0 and conf of the row's last full forward, for positions a truncated forward skips."""
    x0: torch.Tensor     # [B, G]
    conf: torch.Tensor   # [B, G]


class Forward:
    """Runs one step's forward for the rows still decoding and counts its NFE."""

    def __init__(self, model: ModelAdapter, method: Method, reads: Reads, calls: ModelCalls, stepper,
                 generator: torch.Generator | None, B: int, G: int):
        self.model, self.method, self.reads, self.calls, self.stepper = model, method, reads, calls, stepper
        self.generator, self.G = generator, G
        if reads.verify:
            check_verify(model, method, stepper)
        dev = model.device
        self.reuse = Reuse(torch.zeros((B, G), dtype=torch.long, device=dev), torch.zeros((B, G), device=dev))

    def __call__(self, state, rows: torch.Tensor, plan: Plan) -> StepOutput:
        model, method, P, G = self.model, self.method, state.P, self.G
        xa, aa = state.tokens[rows], state.attn[rows]
        if self.stepper is not None:   # KV cache (decoding/cache.py); not combined with truncated forwards
            state.nfe[rows] += 1
            return self.stepper.step(rows, xa, aa, state.rows.block[rows], state.rows.step_in_block[rows],
                                     method, self.reads, self.generator)
        if self.reads.verify:
            return self.verify(state, rows)
        fed, calls = plan.extent, 2 if method.cfg_scale > 0 else 1
        out = None
        if fed is None and calls == 1:   # a launch-bound full forward may replay a graph of every row
            out = self.calls.full(state.tokens, state.attn_fwd, P, self.reads.hidden)
            if out is not None:
                keep = slice(None) if rows.numel() == state.tokens.shape[0] else rows
                out = ModelOutput(out.logits[keep], None if out.hidden is None else out.hidden[keep])
        if out is None and fed is not None and calls == 1:
            out = self.calls.truncated(state.tokens, state.attn, state.attn_fwd is not None, P, rows, fed,
                                       self.reads.hidden)
        if out is None:
            xf, af = truncate(xa, aa, P, fed)
            masked = state.attn_fwd is not None or (fed is not None and not equal_extents(fed))
            out = model.forward(xf, af if masked else None, output_hidden=self.reads.hidden, logits_from=P)
        logits, hidden = out.logits, out.hidden   # the generated region's (logits_from=P)
        if calls == 2:   # CFG: unconditional copy with the prompt tokens masked
            ux = xf.clone()
            ux[:, :P] = torch.where(af[:, :P].bool(), model.mask_id, ux[:, :P])
            un = model.forward(ux, af, logits_from=P).logits.float()
            logits = un + (method.cfg_scale + 1) * (logits.float() - un)
        state.nfe[rows] += calls
        x0, conf = token_stats(logits, method.temperature, self.generator)
        logits = logits if self.reads.logits else None
        if fed is None:
            return StepOutput(x0, conf, torch.ones_like(x0, dtype=torch.bool), logits, hidden)
        state.nfe_truncated[rows] += calls * (fed < G).long()
        return reuse_beyond(self.reuse, rows, fed, x0, conf, logits, hidden, G)


    def verify(self, state, rows: torch.Tensor) -> StepOutput:
        """A full forward carrying the shadow block (verify_inputs): 1 NFE per row. A launch-bound
        one may replay a graph of every row (ModelCalls.verify)."""
        P, BL, mask_id = state.P, state.gen.block_length, self.model.mask_id
        got = self.calls.verify(state.tokens, state.attn, state.rows.block, P, BL, mask_id, self.reads.hidden)
        if got is not None:
            out, twin = got
            if rows.numel() != state.tokens.shape[0]:
                out, twin = ModelOutput(out.logits[rows], None if out.hidden is None else out.hidden[rows]), twin[rows]
        else:
            ids, mask, positions, twin = verify_inputs(state.tokens[rows], state.attn[rows], state.rows.block[rows],
                                                       P, BL, mask_id)
            out = self.model.forward(ids, mask, output_hidden=self.reads.hidden, positions=positions)
        state.nfe[rows] += 1
        return verify_output(state.tokens[rows], P, out, twin, mask_id, self.method.temperature, self.generator,
                             self.reads)


def verify_output(xa: torch.Tensor, P: int, out: ModelOutput, twin: torch.Tensor, mask_id: int,
                  temperature: float, generator, reads: Reads) -> StepOutput:
    """The StepOutput of a verification forward of rows with tokens xa [b, L]: the sequence's
    statistics, and verify_x0 / verify_conf at the current block's positions from the shadow block
    (at a written position, the shadow's probability of the written token)."""
    L = xa.shape[1]
    logits, shadow = out.logits[:, P:L], out.logits[:, L:]
    x0, conf = token_stats(logits, temperature, generator)
    vx0, vconf = token_stats(shadow)
    cur = xa.gather(1, twin)
    vconf = torch.where(cur != mask_id, chosen_prob(shadow, cur), vconf)
    at = twin - P
    verify_x0 = torch.full_like(x0, -1).scatter(1, at, vx0)
    verify_conf = torch.zeros_like(conf, dtype=torch.float32).scatter(1, at, vconf.float())
    hidden = out.hidden[:, P:L] if out.hidden is not None else None
    return StepOutput(x0, conf, torch.ones_like(x0, dtype=torch.bool),
                      logits if reads.logits else None, hidden, verify_x0, verify_conf)


def check_verify(model: ModelAdapter, method: Method, stepper) -> None:
    """One-line errors for a verification forward (Reads.verify) the model or settings cannot run."""
    name = getattr(method, "name", type(method).__name__)
    if stepper is not None:
        raise ValueError(f"{name}: its verification forward has no KV cache; use cache=none")
    if not model.attention_matrix or model.logit_shift:
        raise ValueError(f"{name}: its verification forward needs a bidirectional model without a logit "
                         f"shift that takes a 4-D attention mask (native llada or tiny), not {model.name}")
    if method.cfg_scale > 0 or method.reads().truncated:
        raise ValueError(f"{name}: a verification forward is not combined with CFG or truncated forwards")


def verify_inputs(tokens: torch.Tensor, attn: torch.Tensor, block: torch.Tensor, P: int, BL: int,
                  mask_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The verification forward's inputs for rows with tokens [b, L], 0/1 mask [b, L] and current
    blocks [b] (a block past the last reads as the last): ids [b, L + BL] (the sequence, then BL
    [MASK] tokens), a 4-D bool mask [b, 1, L + BL, L + BL] (query x key), positions [b, L + BL], and
    the sequence index [b, BL] of each shadow token's twin. Shadow token j takes the position id of
    the block's j-th position and attends to the other shadow tokens and to every real key except
    its twin; no real position attends to the shadow block (decoding/rules/wino.py, shadow_layout,
    is the same layout for one unpadded row)."""
    b, L = tokens.shape
    dev = tokens.device
    n_blocks = (L - P) // BL
    twin = (P + block.clamp(max=n_blocks - 1) * BL).unsqueeze(1) + torch.arange(BL, device=dev)
    ids = torch.cat([tokens, torch.full((b, BL), mask_id, dtype=tokens.dtype, device=dev)], 1)
    pos = (attn.long().cumsum(-1) - 1).clamp(min=0)
    positions = torch.cat([pos, pos.gather(1, twin)], 1)
    keys = attn.bool()
    mask = torch.zeros((b, L + BL, L + BL), dtype=torch.bool, device=dev)
    mask[:, :, :L] = keys.unsqueeze(1)
    mask[:, L:, L:] = True
    hide_twin = torch.zeros((b, BL, L), dtype=torch.bool, device=dev).scatter_(2, twin.unsqueeze(2), True)
    mask[:, L:, :L] &= ~hide_twin
    return ids, mask.unsqueeze(1), positions, twin


def equal_extents(fed: torch.Tensor) -> bool:
    """Whether every row is fed the same number of generated positions: then, without left
    padding, a truncated forward hides nothing and runs without a mask, as a full forward does
    (the same attention kernel: SDPA's flash kernel takes no mask)."""
    lo, hi = torch.stack(torch.aminmax(fed)).tolist()
    return lo == hi


def truncate(xa, aa, P, fed):
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


def reuse_beyond(reuse: Reuse, rows, fed, x0, conf, logits, hidden, G) -> StepOutput:
    """Pad a (possibly) truncated step to all G positions: beyond fed, x0/conf come from the row's
    last full forward and logits/hidden are zeros. Rows fed in full refresh the reuse store."""
    n = x0.shape[1]
    fresh = torch.arange(G, device=x0.device).unsqueeze(0) < fed.unsqueeze(1)
    pad = lambda t: torch.cat([t, t.new_zeros((t.shape[0], G - n, *t.shape[2:]))], 1) if n < G else t
    x0 = torch.where(fresh, pad(x0), reuse.x0[rows])
    conf = torch.where(fresh, pad(conf), reuse.conf[rows])
    logits = None if logits is None else pad(logits) * fresh.unsqueeze(-1)
    hidden = None if hidden is None else pad(hidden) * fresh.unsqueeze(-1)
    full = (fed >= G).unsqueeze(1)   # no boolean indexing: a captured step runs this too
    reuse.x0[rows] = torch.where(full, x0, reuse.x0[rows])
    reuse.conf[rows] = torch.where(full, conf, reuse.conf[rows])
    return StepOutput(x0, conf, fresh, logits, hidden)
