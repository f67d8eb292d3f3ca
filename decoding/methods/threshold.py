"""`threshold`: Fast-dLLM confidence-aware parallel decoding (arXiv 2505.22618).

In the current block, commit every masked token whose confidence is >= tau, and always the most
confident one, so each step makes progress; a block loops until it has no masks. With `factor`
set, the factor rule replaces the fixed threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..base import Method
from ..contract import Decision, StepOutput, StepView
from ..select import factor_commit, threshold_commit


@dataclass
class ThresholdConfig:
    tau: float = 0.9
    factor: float | None = None   # Fast-dLLM factor rule: (m + 1)(1 - c_m) <= factor


class ThresholdMethod(Method):
    name = "threshold"
    Config = ThresholdConfig

    def validate(self) -> None:
        if not 0.0 < self.cfg.tau <= 1.0:
            raise ValueError(f"threshold: tau={self.cfg.tau} must be in (0, 1]")
        if self.cfg.factor is not None and self.cfg.factor <= 0:
            raise ValueError(f"threshold: factor={self.cfg.factor} must be > 0")

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        if self.cfg.factor is not None:
            return Decision(factor_commit(out.conf, view.candidates, self.cfg.factor))
        return Decision(threshold_commit(out.conf, view.candidates, self.cfg.tau))
