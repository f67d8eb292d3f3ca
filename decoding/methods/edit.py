"""`edit`: LLaDA2.1's mask-to-token plus token-to-token editing (arXiv 2602.08676; `generate` of the HF
remote code inclusionAI/LLaDA2.1-*, modeling_llada2_moe.py). Per forward, in the row's current block:

- mask to token (M2T): commit masked positions with confidence > tau_mask; if fewer than
  min_commit qualify, the min_commit most confident;
- token to token (T2T): a written position whose argmax differs from its token, with confidence
  > tau_edit, takes the argmax (Decision.edit; counted as `edits`);
- the block ends after a forward whose block had no masks before it and edited nothing, or once
  max_post_steps forwards have run on the block with no masks (Decision.hold keeps the row on a
  block with no masks until then).

The per-step math is decoding/rules/edit.py; docs/methods-fidelity.md section 5 has the authors'
rule. Defaults: threshold 0.7, editing_threshold 0.5, max_post_steps 16, minimal_topk 1, as two
public copies of `generate` and sglang's JointThreshold read; another copy of `generate`
(docs/block-causal.md) has 0.95 / 0.9 as its defaults, with 0.7 / 0.5 the model card's quality mode.
Neither was checked against the HF repository itself (not reachable here).

Editing needs a model trained to edit (LLaDA2.1). Masked-diffusion models (LLaDA-1, Dream, the
built-in tiny) are trained only at masked positions, so their predictions at written positions
are untrained, and editing with them wrecks the output: on the built-in task (100 problems,
`python run_bench.py --methods threshold,edit --limit 100`) edit scored 0.07 against
threshold's 0.98.

On bidirectional models (LLaDA, Dream, tiny) it works per block of the generation as the loop
defines blocks. Forwards on a block with no masks count NFE and steps; the default step cap is
gen_length + (max_post_steps + 1) per block, so it never ends a row the authors' loop would
finish (a smaller --max-steps may).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base import Method
from ..contract import Decision, Reads, StepOutput, StepView
from ..rules.edit import edit_block_next, edit_decide


@dataclass
class EditConfig:
    tau_mask: float = 0.7        # M2T: commit masked positions with confidence > tau_mask
    tau_edit: float = 0.5        # T2T: replace a written token whose argmax differs, confidence > tau_edit
    max_post_steps: int = 16     # forwards at most on a block with no masks
    min_commit: int = 1          # M2T commits at least this many (the most confident) per forward


class EditMethod(Method):
    name = "edit"
    Config = EditConfig
    READS = Reads()

    def validate(self) -> None:
        c = self.cfg
        for key in ("tau_mask", "tau_edit"):
            if not 0.0 <= getattr(c, key) <= 1.0:
                raise ValueError(f"edit: {key}={getattr(c, key)} must be in [0, 1]")
        if c.max_post_steps < 0:
            raise ValueError(f"edit: max_post_steps={c.max_post_steps} must be >= 0")
        if c.min_commit < 1:
            raise ValueError(f"edit: min_commit={c.min_commit} must be >= 1 (else a block may never fill)")

    def default_step_cap(self, gen_length: int, num_blocks: int) -> int:
        """Up to max_post_steps + 1 forwards per block after its last mask: that many more than gen_length."""
        return gen_length + (self.cfg.max_post_steps + 1) * num_blocks

    def start(self, batch_size, device, generator=None) -> None:
        self.post = torch.zeros(batch_size, dtype=torch.long, device=device)   # forwards on a mask-free block

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        c, rows = self.cfg, view.rows
        G = view.tokens.shape[1]
        in_block = (torch.arange(G, device=view.tokens.device) // self.gen.block_length) == view.block.unsqueeze(1)
        written = (view.tokens != view.mask_id) & in_block
        commit, edit = edit_decide(out.x0, out.conf, view.tokens, view.candidates, written,
                                   c.tau_mask, c.tau_edit, c.min_commit)
        post = torch.where(view.step_in_block == 0, 0, self.post[rows])
        done, post = edit_block_next(view.candidates.any(1), (view.candidates & ~commit).any(1), edit.any(1),
                                     post, c.max_post_steps)
        self.post[rows] = post
        return Decision(commit, edit=edit, edit_tokens=out.x0, hold=~done)
