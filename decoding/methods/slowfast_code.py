"""The per-row cycle of `slowfast:preset=code`: SlowFast as the authors' LLaDA sampler computes it
(LiangrunFlora/Slow-Fast-Sampling, sampling_utils/generate_slow_fast_sampling.py; the per-step math in
decoding/rules/slowfast_code.py, docs/methods-fidelity.md section 1). Per block, cycles of:

- phase 1: always K full forwards. Each commits with the slow rule over [cycle start, block end)
  and, until the cycle's end is determined, estimates it (std of the last W estimates < sigma: the
  last one; else floor of their mean, determined at the K-th forward). Forwards left after the block
  has no masks still run (Decision.hold), committing nothing.
- fast: on the span [cycle start, end) while it has a mask: the first forward full, later ones fed
  prompt + x[:block start + end] (Plan.extent); commit every masked position of the span with
  confidence >= tau_high when more than one qualifies, else the most confident.
- the next cycle starts at the span's end; a span that phase 1 already filled gets no fast forward.
"""
from __future__ import annotations

import torch

from ..contract import StepOutput, StepView
from ..rules.slowfast_code import cycle_commit, decide_end, fallback_end, push_estimate, span_estimate

SLOW, FAST_FULL, FAST = 0, 1, 2


class CodeCycles:
    """Per-row cycle state, mixed into the method (its tensors are the method's own attributes, so a
    captured step rebinds them: acceleration/captured.py). [B]; starts and ends relative to the block,
    ends exclusive. Needs `self.p` (the settings) and `self.gen`."""

    def start_cycles(self, batch_size: int, device) -> None:
        z = lambda dt=torch.long: torch.zeros(batch_size, dtype=dt, device=device)
        self.phase, self.start_, self.end, self.n_slow, self.count = z(), z(), z(), z(), z()
        self.determined = z(torch.bool)
        self.hist = torch.zeros((batch_size, self.p["window"]), dtype=torch.long, device=device)

    def cycle_extent(self, view: StepView) -> torch.Tensor:
        """Generated positions the next forward feeds: block start + end in the fast phase after
        its first forward, else all."""
        fast = (self.phase[view.rows] == FAST) & (view.step_in_block > 0)
        return torch.where(fast, view.block * self.gen.block_length + self.end[view.rows], self.gen.gen_length)

    def cycle_decide(self, view: StepView, out: StepOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """(commit [b, G], hold [b]) for one forward; moves the rows' cycles on."""
        p, BL, rows = self.p, self.gen.block_length, view.rows
        K = p["max_slow"]
        new = view.step_in_block == 0                      # a block's first forward: a fresh cycle at 0
        keep = lambda t: torch.where(new, 0, t[rows])
        phase, start, end, n_slow, count = (keep(self.phase), keep(self.start_), keep(self.end),
                                            keep(self.n_slow), keep(self.count))
        determined = self.determined[rows] & ~new
        hist = torch.where(new.unsqueeze(1), 0, self.hist[rows])
        bs, masked, conf = view.block * BL, view.candidates, out.conf
        slow = phase == SLOW
        full = torch.full_like(start, BL)

        # phase 1: estimate the end until determined; commit with the slow rule
        take = slow & ~determined
        est = span_estimate(conf, masked, bs, start, BL, p["tau_min"])
        hist, count = push_estimate(hist, count, est, take)
        end1, det1 = decide_end(hist, count, p["sigma"], n_slow == K - 1, end, determined, take, BL)
        n1 = torch.where(slow, n_slow + 1, n_slow)
        ends_phase1 = slow & (n1 >= K)
        end1 = torch.where(ends_phase1, fallback_end(hist, count, end1, det1, BL), end1)
        det1 = det1 | ends_phase1
        commit = torch.where(slow.unsqueeze(1), cycle_commit(conf, masked, bs, start, full, p["tau_high"]),
                             cycle_commit(conf, masked, bs, start, end, p["tau_high"]))

        # after this forward: phase 1 goes on, the span is decoded fast, or the next cycle starts
        end = torch.where(slow, end1, end)
        rel = torch.arange(conf.shape[1], device=conf.device).unsqueeze(0) - bs.unsqueeze(1)
        span_left = (masked & ~commit & (rel >= start.unsqueeze(1)) & (rel < end.unsqueeze(1))).any(1)
        in_p1 = slow & ~ends_phase1
        next_cycle = ~in_p1 & ~span_left
        phase = torch.where(in_p1, SLOW, torch.where(next_cycle, SLOW, torch.where(slow, FAST_FULL, FAST)))
        self.phase[rows] = phase
        self.start_[rows] = torch.where(next_cycle, end, start)
        self.end[rows] = end
        self.n_slow[rows] = torch.where(next_cycle, 0, n1)
        self.count[rows] = torch.where(next_cycle, 0, count)
        self.determined[rows] = torch.where(next_cycle, False, torch.where(slow, det1, determined))
        self.hist[rows] = torch.where(next_cycle.unsqueeze(1), 0, hist)
        return commit, in_p1
