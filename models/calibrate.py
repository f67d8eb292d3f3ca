"""Realistic confidence for random-weight models (speed and energy runs).

A model with random weights predicts near-flat distributions (LLaDA-8B: top-1 probability at most
0.007), so adaptive methods (threshold, PRR, EB, ...) never commit more than one token per step
and a speed run never exercises multi-token commits. `calibrate_confidence_` multiplies the
final norm's weight by one scale s, which multiplies the output logits by s (the head has no bias
in the models we build), chosen so that a stated share of the masked positions of a sample input
has top-1 probability >= tau:

    1. one forward over the sample at the current weights: logits z at the masked positions;
    2. for each position, max softmax(s z) grows with s, so the share of positions with top-1 >= tau
       is non-decreasing in s; bisect log s until the share is within `tol` of the target;
    3. scale the final norm by s, forward again, and record the measured share.

What it changes: the sharpness of the predictions only; argmax tokens are those of the random
model. Which tokens become confident is fixed by the random weights, not by any language, so use
it for speed, never for accuracy. The calibration is recorded in `model.info["confidence"]`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

# where each family keeps the norm applied right before the output head
_FINAL_NORMS = ("model.transformer.ln_f", "transformer.ln_f", "model.norm", "norm", "ln_f", "final_norm")


@dataclass
class Calibration:
    scale: float            # factor applied to the final norm's weight (= to the logits)
    tau: float              # the confidence level
    target_share: float     # asked share of masked positions with top-1 >= tau
    measured_share: float   # share measured after scaling, on the same sample
    positions: int          # masked positions in the sample


def confident_share(logits: torch.Tensor, tau: float) -> float:
    """Share of rows of `logits` [..., V] whose top-1 probability is >= tau."""
    top1 = torch.softmax(logits.float(), -1).amax(-1)
    return float((top1 >= tau).float().mean())


def scale_for_share(logits: torch.Tensor, share: float, tau: float = 0.9, tol: float = 0.01,
                    max_scale: float = 1e4) -> float:
    """The smallest-found scale s (bisected in log space) with confident_share(s * logits) within
    `tol` of `share`, or the bracket end that gets closest."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"confident share must lie in (0, 1), got {share}; e.g. 0.5")
    lo, hi = 0.0, math.log(max_scale)
    if confident_share(logits * max_scale, tau) < share:
        return max_scale
    for _ in range(60):
        mid = (lo + hi) / 2
        got = confident_share(logits * math.exp(mid), tau)
        if abs(got - share) <= tol:
            return math.exp(mid)
        lo, hi = (mid, hi) if got < share else (lo, mid)
    return math.exp(hi)


def final_norm(module: torch.nn.Module) -> torch.nn.Module:
    names = dict(module.named_modules())
    for n in _FINAL_NORMS:
        if n in names and getattr(names[n], "weight", None) is not None:
            return names[n]
    raise ValueError(f"{type(module).__name__}: no final norm found (looked for {', '.join(_FINAL_NORMS)}); "
                     "confidence calibration needs one")


@torch.no_grad()
def calibrate_confidence_(model, input_ids: torch.Tensor, share: float, tau: float = 0.9) -> Calibration:
    """Scale `model`'s final norm so that `share` of the masked positions of `input_ids` [B, L]
    (positions holding model.mask_id) predict with top-1 >= tau. In place; returns the record."""
    masked = input_ids == model.mask_id
    if not bool(masked.any()):
        raise ValueError("confidence calibration needs masked positions in the sample input")
    logits = model.forward(input_ids).logits[masked].float()
    s = scale_for_share(logits, share, tau)
    norm = final_norm(model.module)
    norm.weight.mul_(s)
    measured = confident_share(model.forward(input_ids).logits[masked], tau)
    cal = Calibration(scale=s, tau=tau, target_share=share, measured_share=measured,
                      positions=int(masked.sum()))
    model.info["confidence"] = asdict(cal)
    return cal
