"""A step's forward: the model call(s) a Plan asks for, turned into a StepOutput.

    full       prompt + every generated position, every row still decoding (1 NFE each)
    truncated  prompt + the first Plan.extent[i] generated positions (SlowFast's fast phase); the
               positions beyond are not fresh: x0/conf there repeat the row's last full forward
    cfg        a second, unconditional forward with the prompt masked (2 NFE per step)
    cache      a refresh or a window forward (decoding/cache.py)

Token statistics read the logits in the model's dtype; fp32 logits and hidden states are built
only for methods that read them (Reads). How a model call runs is `ModelCalls`: eagerly here;
acceleration/ passes a subclass that replays CUDA graphs (decoding never imports it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from models.base import ModelAdapter, ModelOutput
from .base import Method
from .contract import Plan, Reads, StepOutput
from .select import token_stats


class ModelCalls:
    """The model calls of a step, eagerly. Each hook returns None where it has no faster way; the
    forward then calls the model itself for the rows decoding."""

    def __init__(self, model: ModelAdapter):
        self.model = model

    def new_cache(self, batch: int, length: int):
        return self.model.new_cache(batch, length)

    def full(self, x: torch.Tensor, attn: torch.Tensor | None, need_hidden: bool) -> ModelOutput | None:
        """A full forward of every row (finished rows included), or None."""
        return None

    def refresh(self, stepper, x, mask, need_hidden) -> ModelOutput | None:
        """A cache refresh of every row, or None."""
        return None

    def window(self, stepper, x, attn, block, width: int, need_hidden) -> tuple | None:
        """A dual/prefix window forward of every row -> (output, pos), or None."""
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
        dev = model.device
        self.reuse = Reuse(torch.zeros((B, G), dtype=torch.long, device=dev), torch.zeros((B, G), device=dev))

    def __call__(self, state, rows: torch.Tensor, plan: Plan) -> StepOutput:
        model, method, P, G = self.model, self.method, state.P, self.G
        xa, aa = state.tokens[rows], state.attn[rows]
        if self.stepper is not None:   # KV cache (decoding/cache.py); not combined with truncated forwards
            state.nfe[rows] += 1
            return self.stepper.step(rows, xa, aa, state.rows.block[rows], state.rows.step_in_block[rows],
                                     method, self.reads, self.generator)
        fed, calls = plan.extent, 2 if method.cfg_scale > 0 else 1
        out = None
        if fed is None and calls == 1:   # a launch-bound full forward may replay a graph of every row
            out = self.calls.full(state.tokens, state.attn_fwd, self.reads.hidden)
            if out is not None:
                keep = slice(None) if rows.numel() == state.tokens.shape[0] else rows
                out = ModelOutput(out.logits[keep], None if out.hidden is None else out.hidden[keep])
        if out is None:
            xf, af = truncate(xa, aa, P, fed)
            out = model.forward(xf, af if (fed is not None or state.attn_fwd is not None) else None,
                                output_hidden=self.reads.hidden)
        logits = out.logits[:, P:]
        hidden = out.hidden[:, P:] if out.hidden is not None else None
        if calls == 2:   # CFG: unconditional copy with the prompt tokens masked
            ux = xf.clone()
            ux[:, :P] = torch.where(af[:, :P].bool(), model.mask_id, ux[:, :P])
            un = model.forward(ux, af).logits[:, P:].float()
            logits = un + (method.cfg_scale + 1) * (logits.float() - un)
        state.nfe[rows] += calls
        x0, conf = token_stats(logits, method.temperature, self.generator)
        logits = logits.float() if self.reads.logits else None   # the model's dtype until a method reads it
        if fed is None:
            return StepOutput(x0, conf, torch.ones_like(x0, dtype=torch.bool), logits, hidden)
        state.nfe_truncated[rows] += calls * (fed < G).long()
        return reuse_beyond(self.reuse, rows, fed, x0, conf, logits, hidden, G)


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
    full = fed >= G
    reuse.x0[rows[full]], reuse.conf[rows[full]] = x0[full], conf[full]
    return StepOutput(x0, conf, fresh, logits, hidden)
