"""`slowfast`: SlowFast sampling (arXiv 2506.10848; LiangrunFlora/Slow-Fast-Sampling).

`preset=code` (the default) computes what the authors' LLaDA sampler computes
(decoding/methods/slowfast_code.py: always K full phase-1 forwards per cycle, held on a block with
no masks left; the end estimate clamped to the block, floor of the mean, the cycle start as the
fallback, no forced widening of the span, `>=` tau_high in the fast phase), with their defaults
(tau_min 0.3, tau_high 0.9, K 6, W 2, sigma 1.0). NFE still differs from theirs where our loop
stops earlier: EOS early stop (theirs decodes every block; --no-early-stop matches) and the step cap
(--max-steps, default gen_length; theirs has none: the K forwards per cycle can need more).

`preset=paper` (tau_min 0.1, tau_high 0.85, K 8, W 2, sigma 1.0) follows the paper's rule, below:
phase 1 ends as soon as the end estimate is stable, so it makes fewer forwards by construction.
Within a block, decoding alternates cycles of two phases (per row):

- slow (explore), from the cycle start s: each step commits the most confident masked token in
  [s, block end), or every token with confidence >= tau_high when more than one qualifies, and
  records a candidate span end e = the farthest masked position with confidence >= tau_min. The
  phase stops when the (population) std of the last W candidates is < sigma (then e_cycle = the
  last candidate) or after K slow steps (then e_cycle = the mean of the last W, rounded).
- fast (accelerate), on [s, e_cycle] until it has no masks: commit every token with confidence >
  tau_high, else the most confident one. The first fast step is a full forward; later fast
  steps feed only prompt + x[:e_cycle] (`Plan.extent`), and positions beyond keep the tokens
  and confidences of that full forward. A truncated forward counts one NFE like any other, and
  is also counted in `nfe_truncated`.
- the next cycle starts after e_cycle; a new block starts a new cycle at the block start.

Any setting given explicitly overrides the preset's value (the preset still picks the rule).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..base import Method
from ..contract import Decision, Plan, Reads, StepOutput, StepView
from ..select import top1_commit
from .slowfast_code import CodeCycles

PRESETS = {"code": dict(tau_min=0.3, tau_high=0.9, max_slow=6, window=2, sigma=1.0),
           "paper": dict(tau_min=0.1, tau_high=0.85, max_slow=8, window=2, sigma=1.0)}
SLOW, FAST_FULL, FAST = 0, 1, 2


@dataclass
class SlowFastConfig:
    preset: str = "code"
    tau_min: float | None = None    # candidate span end: farthest position with conf >= tau_min
    tau_high: float | None = None   # parallel commit threshold (>= if more than one; paper's fast phase: >)
    max_slow: int | None = None     # K: slow steps per cycle (code: exactly K; paper: at most K)
    window: int | None = None       # W: candidate ends looked at for stability
    sigma: float | None = None      # stable when std of the last W candidate ends < sigma
    reuse: bool = True              # truncated fast forwards (False: every forward is full)


class SlowFastMethod(Method, CodeCycles):
    name = "slowfast"
    Config = SlowFastConfig

    def validate(self) -> None:
        c = self.cfg
        if c.preset not in PRESETS:
            raise ValueError(f"slowfast: preset={c.preset!r}; choose one of {', '.join(PRESETS)}")
        p = {k: (getattr(c, k) if getattr(c, k) is not None else v) for k, v in PRESETS[c.preset].items()}
        if not 0.0 <= p["tau_min"] <= p["tau_high"] <= 1.0:
            raise ValueError(f"slowfast: need 0 <= tau_min ({p['tau_min']}) <= tau_high ({p['tau_high']}) <= 1")
        if c.preset == "paper" and (p["window"] < 1 or p["max_slow"] < p["window"]):
            raise ValueError(f"slowfast: need 1 <= window ({p['window']}) <= max_slow ({p['max_slow']})")
        if p["window"] < 1 or p["max_slow"] < 1:
            raise ValueError(f"slowfast: need window ({p['window']}) >= 1 and max_slow ({p['max_slow']}) >= 1")
        if p["sigma"] <= 0:
            raise ValueError(f"slowfast: sigma={p['sigma']} must be > 0")
        self.p = p

    def default_step_cap(self, gen_length: int, num_blocks: int) -> int:
        """The code preset holds a block open for its K phase-1 forwards even once it has no masks:
        K more forwards per block than gen_length."""
        extra = self.p["max_slow"] * num_blocks if self.cfg.preset == "code" else 0
        return gen_length + extra

    def settings(self) -> dict:
        return {**dataclasses.asdict(self.cfg), **self.p}

    def start(self, batch_size, device, generator=None) -> None:
        if self.cfg.preset == "code":
            return self.start_cycles(batch_size, device)
        z = lambda: torch.zeros(batch_size, dtype=torch.long, device=device)
        self.phase, self.s, self.e, self.n_slow, self.block = z(), z(), z(), z(), z()
        self.hist = torch.zeros((batch_size, self.p["window"]), device=device)

    def reads(self) -> Reads:
        return Reads(truncated=self.cfg.reuse)

    def plan(self, view: StepView) -> Plan:
        if not self.cfg.reuse:
            return Plan()
        if self.cfg.preset == "code":
            return Plan(extent=self.cycle_extent(view))
        rows = view.rows
        return Plan(extent=torch.where(self.phase[rows] == FAST, self.e[rows] + 1, self.gen.gen_length))

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        if self.cfg.preset == "code":
            commit, hold = self.cycle_decide(view, out)
            return Decision(commit, hold=hold)
        return Decision(self._commit(view, out.conf))

    def _commit(self, ctx: StepView, conf: torch.Tensor) -> torch.Tensor:
        p, rows, BL = self.p, ctx.rows, self.gen.block_length
        N = conf.shape[1]
        pos = torch.arange(N, device=conf.device).unsqueeze(0)
        # a row that entered a new block starts a fresh cycle at the block start
        new = ctx.block != self.block[rows]
        self.block[rows] = ctx.block
        phase = torch.where(new, SLOW, self.phase[rows])
        s = torch.where(new, ctx.block * BL, self.s[rows])
        n_slow = torch.where(new, 0, self.n_slow[rows])
        hist = torch.where(new.unsqueeze(1), 0.0, self.hist[rows])
        e = self.e[rows]

        # slow rows
        cand_slow = ctx.candidates & (pos >= s.unsqueeze(1))
        high = cand_slow & (conf >= p["tau_high"])
        top1 = top1_commit(conf, cand_slow)
        commit_slow = torch.where((high.sum(1) > 1).unsqueeze(1), high, top1)
        reach = cand_slow & (conf >= p["tau_min"])
        first_masked = torch.where(cand_slow, pos, N).min(1).values
        e_cand = torch.where(reach.any(1), torch.where(reach, pos, -1).max(1).values, first_masked)
        n_slow_new = n_slow + 1
        hist_new = torch.cat([hist[:, 1:], e_cand.float().unsqueeze(1)], 1)
        W = p["window"]
        filled = n_slow_new >= W
        stable = filled & (hist_new.std(1, unbiased=False) < p["sigma"])
        k = n_slow_new.clamp(max=W).float()
        mean_e = (hist_new * (torch.arange(W, device=s.device) >= W - k.unsqueeze(1))).sum(1) / k
        e_slow = torch.where(stable, e_cand, mean_e.round().long())
        block_end = (ctx.block + 1) * BL - 1
        e_slow = torch.maximum(e_slow, first_masked).clamp(max=block_end)
        end_slow = stable | (n_slow_new >= p["max_slow"])

        # fast rows
        span = ctx.candidates & (pos >= s.unsqueeze(1)) & (pos <= e.unsqueeze(1))
        hi_fast = span & (conf > p["tau_high"])
        commit_fast = torch.where(hi_fast.any(1, keepdim=True), hi_fast, top1_commit(conf, span))

        slow = (phase == SLOW).unsqueeze(1)
        commit = torch.where(slow, commit_slow, commit_fast)

        # phase transitions
        is_slow = phase == SLOW
        e_next = torch.where(is_slow & end_slow, e_slow, e)
        left = ctx.candidates & ~commit & (pos >= s.unsqueeze(1)) & (pos <= e_next.unsqueeze(1))
        in_fast = ~is_slow | end_slow
        span_done = in_fast & ~left.any(1)
        phase_next = torch.where(span_done, SLOW,
                                 torch.where(is_slow & end_slow, FAST_FULL, torch.where(is_slow, SLOW, FAST)))
        self.phase[rows] = phase_next
        self.s[rows] = torch.where(span_done, e_next + 1, s)
        self.e[rows] = e_next
        reset = span_done | (is_slow & end_slow)
        self.n_slow[rows] = torch.where(reset, 0, torch.where(is_slow, n_slow_new, n_slow))
        self.hist[rows] = torch.where(reset.unsqueeze(1), 0.0, torch.where(is_slow.unsqueeze(1), hist_new, hist))
        return commit
