"""CDLM's three training objectives as pure tensor functions (arXiv 2511.19269, Sec. 3, Alg. 2).

For a trajectory state y and its block-completion state y* (the same trajectory once the block
being decoded at y is finished):
- distillation: forward KL(teacher || student(y)) at U_y, the positions of that block still masked
  at y (they are unmasked on the way to y*); the teacher's distribution of a position is the one it
  had when it finalized that position (rebuilt from the stored last hidden state by its lm head);
- consistency: KL(student(y*) || student(y)) at S_y, the positions still masked at y*, with the
  student at y* a stop-gradient target;
- DLM: the usual masked-diffusion cross-entropy on a randomly masked ground-truth answer.
Total: w_distill * L_distill + w_cons * L_cons + w_dlm * L_dlm; the paper's weights are
(1.0, 0.5, 0.01) for Dream and (1.0, 0.5, 0.1) for LLaDA. Every KL here is averaged over the
positions it covers (a mean per position, not per sequence).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def kl_per_position(target_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """[N, V], [N, V] -> [N]: KL(softmax(target / T) || softmax(student / T)) per row, in fp32."""
    t = F.log_softmax(target_logits.float() / temperature, -1)
    s = F.log_softmax(student_logits.float() / temperature, -1)
    return (t.exp() * (t - s)).sum(-1)


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean forward KL(teacher || student) over the given positions ([N, V] each); 0 when N = 0."""
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    return kl_per_position(teacher_logits.detach(), student_logits, temperature).mean()


def consistency_loss(student_logits: torch.Tensor, later_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean KL(student at y* || student at y) over the given positions; the y* side is detached."""
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    return kl_per_position(later_logits.detach(), student_logits, temperature).mean()


def dlm_loss(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor, t: torch.Tensor,
             answer_len: torch.Tensor) -> torch.Tensor:
    """Masked-diffusion CE (LLaDA SFT): per row, the sum over masked positions of CE / t, divided by
    the row's answer length; mean over rows. logits [B, L, V], targets/masked [B, L], t/answer_len [B]."""
    ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)
    per_row = (ce * masked.float()).sum(-1) / t / answer_len.float()
    return per_row.mean()


@dataclass(frozen=True)
class LossWeights:
    distill: float = 1.0
    consistency: float = 0.5
    dlm: float = 0.01

    def total(self, distill: torch.Tensor, consistency: torch.Tensor, dlm: torch.Tensor) -> torch.Tensor:
        return self.distill * distill + self.consistency * consistency + self.dlm * dlm
