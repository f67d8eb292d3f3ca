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

The controller's cost is kept apart from the model's with `profile=true` (which keeps the step off
CUDA graphs): `ctrl_time_s` accumulates the synchronized wall time of the features + controller,
`ctrl_calls` the steps.
The controller reads the loop's history (commit steps; with features=ours, steps since each
position's argmax last changed).

Conventions (docs/methods-fidelity.md section 2): `features` picks the feature set
(decoding/methods/prr/features.py): `reference` (the authors' compute_features_v2) or `ours`; by
default the one the controller was trained with, as its training record says (`features`; a record
without it was trained with ours, as the committed `tiny` and `tiny-temp` were). `conf` picks the
score that is shaped and thresholded: `top50`, the reference's exp(l_x0 - logsumexp(top-50 logits))
(above the softmax probability by the tail's mass), or `exact`, the softmax probability; by default
top50 with a learned controller and exact for the ablations off and zero (which so equal `fixed`
and `threshold` token for token). `bf16=true` rounds the hidden states and features to bfloat16 and
runs the controller in bfloat16, as the reference's inference does.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from kernels.topk import topk_values

from ...base import Method
from ...contract import Decision, Reads, StepOutput, StepView, block_positions, gather_rows, place_rows
from ...select import quota_schedule, topk_commit
from .controller import load_controller, trained_features
from .features import FEATURE_SETS, convention_counts, logit_features, step_features, with_conf
from .shaping import STRATEGIES, shape


@dataclass
class PRRConfig:
    controller: str = "tiny"      # checkpoint name or path; `off` (quota only) or `zero` (s = 0)
    shaping: str = "weighted"     # temperature | weighted | gating
    alpha: float = 1.0            # shaping strength
    tau: float = 0.9              # commit every masked token whose shaped score > tau (besides the quota)
    steps: int | None = None      # quota schedule's total steps; None = gen_length (1 token per step)
    profile: bool = False         # synchronize around the controller to time it exactly
    features: str | None = None   # reference | ours; None: what the controller was trained with
    conf: str | None = None       # top50 | exact; None: top50 with a controller, exact for off/zero
    bf16: bool = False            # hidden states, features and controller in bfloat16 (the reference's)

CONF_MODES = ("top50", "exact")
TOP_LSE = 50   # the reference's top-k for its log-sum-exp confidence


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
        if c.features is not None and c.features not in FEATURE_SETS:
            raise ValueError(f"prr: features={c.features!r}; choose one of {', '.join(FEATURE_SETS)}")
        if c.conf is not None and c.conf not in CONF_MODES:
            raise ValueError(f"prr: conf={c.conf!r}; choose one of {', '.join(CONF_MODES)}")
        self.ctrl = None if c.controller in ("off", "zero") else load_controller(c.controller)
        # the feature set: as set, else as the controller was trained, else the reference's
        self.feature_set = c.features or (trained_features(c.controller) if self.ctrl is not None else "reference")
        if c.bf16 and self.ctrl is not None:
            self.ctrl = self.ctrl.to(torch.bfloat16)
        self.recorder = None            # set by decoding.methods.prr.trajectory to log rollouts
        self.ctrl_time_s, self.ctrl_calls = 0.0, 0

    def reads(self) -> Reads:
        """A real controller (or a rollout recorder) reads hidden states, logits (its token
        features) and the history; the recorder copies to the host, and so does profile=true."""
        learned = self.ctrl is not None or self.recorder is not None
        return Reads(logits=learned or self.cfg.conf == "top50", hidden=learned, history=learned,
                     host=self.recorder is not None or self.cfg.profile, logits_blocks=1)

    def start(self, batch_size, device, generator=None) -> None:
        self.quota = self.quota.to(device)
        if self.ctrl is not None:
            self.ctrl = self.ctrl.to(device)
            if self.cfg.bf16:
                self.ctrl = self.ctrl.to(torch.bfloat16)

    def progress(self, view: StepView, out: StepOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        """s [b, N] (0 outside candidates) and the features [b, N, 11] (None when not needed; the
        token features 0 outside the current block, where no decision or recording reads them)."""
        if self.ctrl is None and self.recorder is None:
            return torch.zeros_like(out.conf), None
        h, fs = view.history, self.feature_set
        step, since = convention_counts(fs, x0=out.x0, candidates=view.candidates, block=view.block,
                                        step=view.step, step_in_block=view.step_in_block,
                                        steps_per_block=self.steps_per_block, argmax_prev=h.argmax,
                                        stable_prev=h.stable, commit_step=h.commit_step)
        feats = step_features(candidates=view.candidates, block=view.block, step=step,
                              step_in_block=view.step_in_block, since_change=since,
                              prompt_len=view.prompt_len, block_length=self.gen.block_length,
                              total_steps=self.total_steps, tok=with_conf(out.per_position(lambda lg: logit_features(lg, fs), fill=0.0), out.conf, fs))
        s = torch.zeros_like(out.conf)
        if self.ctrl is not None:
            if out.hidden.shape[-1] != self.ctrl.cfg.d_model:
                raise ValueError(f"prr: controller {self.cfg.controller!r} was trained for hidden size "
                                 f"{self.ctrl.cfg.d_model}, the model has {out.hidden.shape[-1]}; train one "
                                 f"for this model (python -m training.prr_train) or use prr:controller=off")
            hidden = out.hidden
            if self.cfg.bf16:
                hidden, feats = hidden.bfloat16(), feats.bfloat16()
            f, at = feats, block_positions(view, self.gen.block_length)   # the candidates lie there:
            if at is not None:                                             # score those rows only
                hidden, f = gather_rows(hidden, at), gather_rows(f, at)
            p = torch.sigmoid(self.ctrl(hidden, f).float())
            if at is not None:
                p = place_rows(p, at, torch.zeros_like(out.conf))
            s = torch.where(view.candidates, p, 0.0)
        return s, feats

    def timed_progress(self, view: StepView, out: StepOutput):
        """progress(), its wall time added to ctrl_time_s (synchronized on a GPU)."""
        sync = out.conf.is_cuda
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        result = self.progress(view, out)
        if sync:
            torch.cuda.synchronize()
        self.ctrl_time_s += time.perf_counter() - t0
        self.ctrl_calls += 1
        return result

    def score(self, out: StepOutput) -> torch.Tensor:
        """The confidence that is shaped: top50 (the reference's) or the exact probability (out.conf)."""
        top50 = self.cfg.conf == "top50" or (self.cfg.conf is None and self.ctrl is not None)
        if not top50 or out.logits is None:
            return out.conf
        return out.per_position(top50_confidence, out.x0, fill=0.0)   # read at candidates only

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        out = out.block_rows(view, self.gen.block_length)   # vocabulary statistics: candidates only
        s, feats = self.timed_progress(view, out) if self.cfg.profile else self.progress(view, out)
        k = self.quota[view.step_in_block.clamp(max=self.steps_per_block - 1)]
        if self.cfg.controller == "off":
            commit = topk_commit(out.conf, view.candidates, k)
        else:
            shaped = shape(self.score(out), s, self.cfg.shaping, self.cfg.alpha)
            commit = topk_commit(shaped, view.candidates, k) | (view.candidates & (shaped > self.cfg.tau))
        if self.recorder is not None:
            self.recorder.add(view, out, feats, commit)
        return Decision(commit)


def top50_confidence(logits: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """exp(l[x0] - logsumexp(the top-50 logits)) per row of logits [..., V] (fp32; the top 50 and
    l[x0] are taken in the logits' dtype and then made fp32, the same values as taking them from
    fp32 logits, with no fp32 copy of the rows)."""
    lse = topk_values(logits, TOP_LSE).float().logsumexp(-1)
    return (logits.gather(-1, x0.unsqueeze(-1)).squeeze(-1).float() - lse).exp()
