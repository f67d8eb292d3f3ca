"""`localleap`: Local Leap, anchor-guided local parallel decoding (arXiv 2510.07081).

High-confidence tokens (>= tau_anchor) are anchors and commit; masked tokens within `radius`
positions of an anchor commit at a relaxed threshold (>= tau_relaxed), on the observation that
confident tokens cluster and make their neighbours reliable; the most confident token always
commits, so each step makes progress. Anchors here are the masked tokens of the current step
(committed context is not an anchor), a reading of the paper's rule stated in its abstract.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..base import Method
from ..contract import Decision, StepOutput, StepView
from ..select import local_leap_commit


@dataclass
class LocalLeapConfig:
    tau_anchor: float = 0.9
    tau_relaxed: float = 0.75
    radius: int = 4


class LocalLeapMethod(Method):
    name = "localleap"
    Config = LocalLeapConfig

    def validate(self) -> None:
        c = self.cfg
        if not 0.0 < c.tau_relaxed <= c.tau_anchor <= 1.0:
            raise ValueError(f"localleap: need 0 < tau_relaxed ({c.tau_relaxed}) <= tau_anchor "
                             f"({c.tau_anchor}) <= 1")
        if c.radius < 0:
            raise ValueError(f"localleap: radius={c.radius} must be >= 0")

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        c = self.cfg
        return Decision(local_leap_commit(out.conf, view.candidates, c.tau_anchor, c.tau_relaxed, c.radius))
