"""`prr`: PRR inference (the reference code's rule, on the shared loop).

Each step, for the masked positions of the current block:
    s      = sigmoid(controller([last hidden state, 11 features]))   predicted convergence progress
    shaped = shape(top-1 prob, s)                                    temperature / weighted / gating
    commit = quota (LLaDA: the top-k shaped scores; 1 per step when steps == gen_length)
             UNION {shaped > tau}

Ablations, as settings: `controller=off` is the quota alone (= `fixed` token for token) and
`controller=zero` sets s = 0 (= the quota plus a confidence threshold; with the weighted and
temperature shapings that is `threshold` at the same tau). `controller` otherwise names a
checkpoint: a committed one (`tiny`, the default, trained for the built-in model) or a path.

The controller's cost is kept apart from the model's: `ctrl_time_s` accumulates the wall time of
the features + controller (synchronized when `profile=true`), `ctrl_calls` the steps.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ...base import Method, StepContext
from ...select import quota_schedule, topk_commit
from .controller import load_controller
from .features import History, step_features, token_features
from .shaping import STRATEGIES, shape


@dataclass
class PRRConfig:
    controller: str = "tiny"      # checkpoint name or path; `off` (quota only) or `zero` (s = 0)
    shaping: str = "weighted"     # temperature | weighted | gating
    alpha: float = 1.0            # shaping strength
    tau: float = 0.9              # commit every masked token whose shaped score > tau (besides the quota)
    steps: int | None = None      # quota schedule's total steps; None = gen_length (1 token per step)
    profile: bool = False         # synchronize around the controller to time it exactly


class PRRMethod(Method):
    name = "prr"
    Config = PRRConfig

    def validate(self) -> None:
        c, g = self.cfg, self.gen
        if c.shaping not in STRATEGIES:
            raise ValueError(f"prr: shaping={c.shaping!r}; choose one of {', '.join(STRATEGIES)}")
        if not 0.0 <= c.tau <= 1.0:
            raise ValueError(f"prr: tau={c.tau} must be in [0, 1]")
        if c.alpha < 0:
            raise ValueError(f"prr: alpha={c.alpha} must be >= 0")
        steps = c.steps if c.steps is not None else g.gen_length
        if steps <= 0 or steps % g.num_blocks or steps > g.gen_length:
            raise ValueError(f"prr: steps={steps} must be a multiple of the number of blocks ({g.num_blocks}) "
                             f"and at most gen_length ({g.gen_length})")
        self.total_steps = steps
        self.steps_per_block = steps // g.num_blocks
        self.quota = quota_schedule(g.block_length, self.steps_per_block)
        self.ctrl = None if c.controller in ("off", "zero") else load_controller(c.controller)
        self.recorder = None            # set by decoding.methods.prr.trajectory to log rollouts
        self.ctrl_time_s, self.ctrl_calls = 0.0, 0

    @property
    def needs_hidden(self) -> bool:     # instance-level: only a real controller needs h
        return self.ctrl is not None or self.recorder is not None

    def start(self, batch_size, device, generator=None) -> None:
        self.quota = self.quota.to(device)
        self.history = History.empty(batch_size, self.gen.gen_length, device)
        if self.ctrl is not None:
            self.ctrl = self.ctrl.to(device)

    def progress(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor | None]:
        """s [b, N] (0 outside candidates) and the features [b, N, 11] (None when not needed)."""
        since = self.history.update(ctx.rows, ctx.x0, ctx.step)
        s = torch.zeros_like(ctx.conf)
        if self.ctrl is None and self.recorder is None:
            return s, None
        feats = step_features(candidates=ctx.candidates, block=ctx.block, step=ctx.step,
                              step_in_block=ctx.step_in_block, since_change=since,
                              prompt_len=ctx.prompt_len, block_length=self.gen.block_length,
                              total_steps=self.total_steps, tok=token_features(ctx.logits, ctx.conf))
        if self.ctrl is not None:
            if ctx.hidden.shape[-1] != self.ctrl.cfg.d_model:
                raise ValueError(f"prr: controller {self.cfg.controller!r} was trained for hidden size "
                                 f"{self.ctrl.cfg.d_model}, the model has {ctx.hidden.shape[-1]}; train one "
                                 f"for this model (python -m training.prr_train) or use prr:controller=off")
            idx = ctx.candidates.nonzero(as_tuple=True)
            s[idx] = torch.sigmoid(self.ctrl(ctx.hidden[idx], feats[idx]))
        return s, feats

    def select(self, ctx: StepContext) -> torch.Tensor:
        sync = self.cfg.profile and ctx.conf.is_cuda
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        s, feats = self.progress(ctx)
        if sync:
            torch.cuda.synchronize()
        self.ctrl_time_s += time.perf_counter() - t0
        self.ctrl_calls += 1
        k = self.quota[ctx.step_in_block.clamp(max=self.steps_per_block - 1)]
        if self.cfg.controller == "off":
            commit = topk_commit(ctx.conf, ctx.candidates, k)
        else:
            shaped = shape(ctx.conf, s, self.cfg.shaping, self.cfg.alpha)
            commit = topk_commit(shaped, ctx.candidates, k) | (ctx.candidates & (shaped > self.cfg.tau))
        if self.recorder is not None:
            self.recorder.add(ctx, feats, commit)
        return commit
