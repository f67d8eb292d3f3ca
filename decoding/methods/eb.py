"""`eb`: EB-Sampler, entropy-bounded unmasking (arXiv 2505.24857).

Each step sorts the masked positions of the current block by the entropy of their predicted
distribution and commits the largest low-entropy prefix S whose entropy budget
sum(H in S) - max(H in S) stays <= gamma; at least one token per step. gamma = 0 degenerates to
one token per step (lowest entropy first); a larger gamma trades accuracy for fewer steps.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..base import Method
from ..contract import Decision, Reads, StepOutput, StepView
from ..select import entropy, entropy_budget_commit


@dataclass
class EBConfig:
    gamma: float = 0.1   # entropy budget in nats


class EBMethod(Method):
    name = "eb"
    Config = EBConfig
    READS = Reads(logits=True, logits_blocks=1)

    def validate(self) -> None:
        if self.cfg.gamma < 0:
            raise ValueError(f"eb: gamma={self.cfg.gamma} must be >= 0 (e.g. eb:gamma=0.1)")

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        return Decision(entropy_budget_commit(block_entropy(view, out, self.gen.block_length), view.candidates, self.cfg.gamma))


def block_entropy(view: StepView, out: StepOutput, block_length: int):
    """[b, G] entropy at the current block's positions (the candidates lie there; log V elsewhere)."""
    return out.block_rows(view, block_length).per_position(entropy)
