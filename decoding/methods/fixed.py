"""`fixed`: LLaDA low-confidence remasking with a fixed step schedule (ML-GSAI/LLaDA generate.py).

Each block gets steps / num_blocks steps; each step commits the quota of tokens with the highest
confidence (top-1 probability, or uniform random scores for `remasking=random`). Committed tokens
are never re-masked. With steps == gen_length it commits one token per step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base import Method
from ..contract import Decision, Reads, StepOutput, StepView
from ..select import quota_schedule, top1_commit, topk_commit


@dataclass
class FixedConfig:
    steps: int | None = None        # total steps; None = gen_length (one token per step)
    remasking: str = "low_confidence"  # or "random"
    temperature: float = 0.0        # Gumbel-max sampling temperature; 0 = greedy
    cfg_scale: float = 0.0          # classifier-free guidance (extra unconditional forward per step)


class FixedMethod(Method):
    name = "fixed"
    Config = FixedConfig

    def validate(self) -> None:
        c, g = self.cfg, self.gen
        steps = c.steps if c.steps is not None else g.gen_length
        if steps <= 0 or steps % g.num_blocks:
            raise ValueError(f"fixed: steps={steps} must be a positive multiple of the number of blocks "
                             f"({g.num_blocks} = gen_length {g.gen_length} / block_length {g.block_length})")
        if steps > g.gen_length:
            raise ValueError(f"fixed: steps={steps} exceeds gen_length={g.gen_length}; "
                             f"use steps <= {g.gen_length}")
        if c.remasking not in ("low_confidence", "random"):
            raise ValueError(f"fixed: remasking={c.remasking!r}; choose low_confidence or random")
        if c.temperature < 0 or c.cfg_scale < 0:
            raise ValueError("fixed: temperature and cfg_scale must be >= 0")
        self.steps_per_block = steps // g.num_blocks
        self.quota = quota_schedule(g.block_length, self.steps_per_block)
        self.one_per_step = int(self.quota.max()) == 1   # steps == gen_length: top-1, no sort
        self.generator: torch.Generator | None = None

    @property
    def temperature(self) -> float:
        return self.cfg.temperature

    @property
    def cfg_scale(self) -> float:
        return self.cfg.cfg_scale

    def reads(self) -> Reads:   # random remasking and sampling draw numbers per step
        return Reads(rng=self.cfg.remasking == "random" or self.cfg.temperature > 0)

    def start(self, batch_size: int, device: torch.device, generator: torch.Generator | None) -> None:
        self.quota = self.quota.to(device)
        self.generator = generator

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        if self.cfg.remasking == "random":
            scores = torch.rand(out.conf.shape, device=out.conf.device, generator=self.generator)
        else:
            scores = out.conf
        if self.one_per_step:
            return Decision(top1_commit(scores, view.candidates))
        k = self.quota[view.step_in_block.clamp(max=self.steps_per_block - 1)]
        return Decision(topk_commit(scores, view.candidates, k))
