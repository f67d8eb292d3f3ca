"""One CDLM training step's forwards and losses (training/cdlm/losses.py) for a tiny-block student."""
from __future__ import annotations

import torch

from .batches import DLMBatch, PairBatch
from .losses import LossWeights, consistency_loss, distill_loss, dlm_loss


def forward(net, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Whole-sequence block-causal forward of right-padded rows -> logits [B, L, V]."""
    pos = torch.arange(ids.shape[1], device=ids.device).expand(ids.shape)
    return net(ids, attention_mask=valid, positions=pos)[0]


def cdlm_losses(student, teacher_head: torch.nn.Module, pair: PairBatch, dlm: DLMBatch, weights: LossWeights,
                temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """{'distill', 'consistency', 'dlm', 'total'}: the student's losses on one batch (gradients flow
    through 'total' to the student only)."""
    dev = next(student.parameters()).device
    y, y_star, valid = pair.y.to(dev), pair.y_star.to(dev), pair.valid.to(dev)
    U, S = pair.unmasked.to(dev), pair.still_masked.to(dev)
    logits_y = forward(student, y, valid)
    with torch.no_grad():
        teacher_logits = teacher_head(pair.teacher_hidden.to(dev))
        logits_star = forward(student, y_star, valid)[S] if bool(S.any()) else logits_y[S].detach()
    ld = distill_loss(logits_y[U], teacher_logits, temperature)
    lc = consistency_loss(logits_y[S], logits_star, temperature)
    lm = dlm_loss(forward(student, dlm.noisy.to(dev), dlm.valid.to(dev)), dlm.targets.to(dev), dlm.masked.to(dev),
                  dlm.t.to(dev), dlm.answer_len.to(dev))
    return {"distill": ld, "consistency": lc, "dlm": lm, "total": weights.total(ld, lc, lm)}
