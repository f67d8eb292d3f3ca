"""`wino`: wide-in, narrow-out revocable decoding (arXiv 2507.18578; Feng-Hong/WINO-DLLM,
LLaDA/decoding.py `decoding_wino`). Per forward, in the row's current block:

- wide in: commit every masked position with confidence > tau_commit, at most max_accept =
  min(max(int(accept_share x masked), accept_min), accept_max) of them (the most confident), or the
  single most confident one if none qualifies;
- narrow out: every forward also carries a shadow copy of the block ([MASK] tokens at the block's
  positions, each seeing everything but its own twin: Reads.verify, the same forward, 1 NFE). When
  more than one token was committed, written positions whose token the shadow copy gives a
  probability < tau_remask go back to [MASK]; if that is at least last_accept positions (the number
  committed by the previous forward, last_accept at a block's first forward), only the
  (last_accept - 1) least confirmed.

The per-step math is decoding/rules/wino.py; docs/methods-fidelity.md section 4 has the authors'
code line by line. Defaults are the authors' (decoding_wino's signature and code; their GSM8K
config). Native LLaDA and the built-in model only (a 4-D attention mask, no logit shift), no KV cache
(their code has none).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base import Method
from ..contract import Decision, Reads, StepOutput, StepView
from ..rules.wino import LAST_ACCEPT_AT_BLOCK_START, wino_decide, wino_max_accept


@dataclass
class WinoConfig:
    tau_commit: float = 0.6      # wide in: commit masked positions with confidence > tau_commit
    tau_remask: float = 0.9      # narrow out: re-mask written positions verified below tau_remask
    accept_share: float = 0.7    # commit cap: min(max(int(accept_share x masked), accept_min), accept_max)
    accept_min: int = 5
    accept_max: int = 20
    last_accept: int = LAST_ACCEPT_AT_BLOCK_START   # re-mask limit at a block's first forward


class WinoMethod(Method):
    name = "wino"
    Config = WinoConfig
    READS = Reads(verify=True)

    def validate(self) -> None:
        c = self.cfg
        for key in ("tau_commit", "tau_remask", "accept_share"):
            if not 0.0 <= getattr(c, key) <= 1.0:
                raise ValueError(f"wino: {key}={getattr(c, key)} must be in [0, 1]")
        if not 1 <= c.accept_min <= c.accept_max:
            raise ValueError(f"wino: need 1 <= accept_min ({c.accept_min}) <= accept_max ({c.accept_max})")
        if c.last_accept < 1:
            raise ValueError(f"wino: last_accept={c.last_accept} must be >= 1")

    def start(self, batch_size, device, generator=None) -> None:
        self.last_accept = torch.full((batch_size,), self.cfg.last_accept, dtype=torch.long, device=device)

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        c, rows = self.cfg, view.rows
        G = view.tokens.shape[1]
        in_block = (torch.arange(G, device=view.tokens.device) // self.gen.block_length) == view.block.unsqueeze(1)
        written = (view.tokens != view.mask_id) & in_block
        last = torch.where(view.step_in_block == 0, c.last_accept, self.last_accept[rows])
        cap = wino_max_accept(view.candidates.sum(1), c.accept_share, c.accept_min, c.accept_max)
        commit, remask, accepted = wino_decide(out.conf, out.verify_conf, view.candidates, written, last,
                                               c.tau_commit, c.tau_remask, cap)
        self.last_accept[rows] = accepted
        return Decision(commit, remask=remask)
