"""Teacher trajectories for CDLM: the bidirectional teacher decodes one token per step with
low-confidence remasking, block by block, and every finalized token is stored with the step that
finalized it and the teacher's last hidden state at that position and step (the paper's hidden
buffer H_x; the teacher's lm head rebuilds its logits at training time).

Blocks are the student's: `block_size` positions counted from each row's first prompt token (the
block K/V cache convention of models/block_cache.py), so the first block holds the prompt's tail
and the first masks; a row's sequence is its prompt plus masks up to the end of the block that
holds position P + gen_length. Each step the teacher runs one whole-sequence forward (future
blocks masked), takes x0 = argmax of the logits (with temperature > 0: of the logits plus Gumbel
noise scaled by the temperature, as LLaDA's sampler), and commits the current block's masked
position with the highest softmax probability of its x0. A row stops once a completed block
holds EOS (the student decodes the same way), or when its last block is complete.

Since a committed token never changes, a trajectory is fully described by its final tokens and
each position's unmask step: the state before step s reveals exactly the positions with
unmask_step < s (prompt positions carry -1, positions never decoded NEVER).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

NEVER = 1 << 30


@dataclass
class Trajectories:
    tokens: torch.Tensor        # [R, L] long: prompt + decoded tokens (mask where never decoded), right-padded with pad
    length: torch.Tensor        # [R] real length (whole blocks)
    prompt_len: torch.Tensor    # [R]
    unmask_step: torch.Tensor   # [R, L] long: -1 prompt, s = finalized at step s, NEVER = never decoded / padding
    hidden: torch.Tensor        # [R, L, d] teacher last hidden state where finalized (zeros elsewhere)
    steps: torch.Tensor         # [R] teacher steps taken (= forwards)
    block_size: int

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def subset(self, keep: torch.Tensor) -> "Trajectories":
        return Trajectories(self.tokens[keep], self.length[keep], self.prompt_len[keep], self.unmask_step[keep],
                            self.hidden[keep], self.steps[keep], self.block_size)

    @staticmethod
    def cat(parts: list["Trajectories"], pad_id: int) -> "Trajectories":
        L = max(p.tokens.shape[1] for p in parts)

        def pad(t, value):
            return torch.nn.functional.pad(t, (0, 0, 0, L - t.shape[1]) if t.dim() == 3 else (0, L - t.shape[1]),
                                           value=value)
        return Trajectories(torch.cat([pad(p.tokens, pad_id) for p in parts]), torch.cat([p.length for p in parts]),
                            torch.cat([p.prompt_len for p in parts]),
                            torch.cat([pad(p.unmask_step, NEVER) for p in parts]),
                            torch.cat([pad(p.hidden, 0.0) for p in parts]), torch.cat([p.steps for p in parts]),
                            parts[0].block_size)

    def generated(self, row: int) -> list[int]:
        """The decoded tokens after the prompt (up to the row's length; masks where never decoded)."""
        return self.tokens[row, int(self.prompt_len[row]):int(self.length[row])].tolist()


def sequence_length(prompt_len: int, gen_length: int, block_size: int) -> int:
    """Prompt + masks up to the end of the block holding the last generated position."""
    return -(-(prompt_len + gen_length) // block_size) * block_size


@torch.no_grad()
def teacher_rollout(teacher, prompts: list[list[int]], gen_length: int, block_size: int, temperature: float = 0.0,
                    generator: torch.Generator | None = None) -> Trajectories:
    """Decode `prompts` with the bidirectional `teacher` (a ModelAdapter), one token per step (see the
    module docstring). Rows are left-padded inside the forward only; the result is right-padded."""
    dev = teacher.device
    mask_id, pad_id = teacher.mask_id, teacher.pad_id
    eos = torch.tensor(teacher.eos_ids, device=dev)
    R = len(prompts)
    P = torch.tensor([len(p) for p in prompts], device=dev)
    T = torch.tensor([sequence_length(len(p), gen_length, block_size) for p in prompts], device=dev)
    L = int(T.max())
    tokens = torch.full((R, L), pad_id, dtype=torch.long, device=dev)
    unmask = torch.full((R, L), NEVER, dtype=torch.long, device=dev)
    for i, p in enumerate(prompts):
        tokens[i, :len(p)] = torch.tensor(p, device=dev)
        tokens[i, len(p):int(T[i])] = mask_id
        unmask[i, :len(p)] = -1
    d = teacher.module.cfg.d_model
    hidden = torch.zeros(R, L, d, dtype=torch.float16, device=dev)
    steps = torch.zeros(R, dtype=torch.long, device=dev)
    active = torch.ones(R, dtype=torch.bool, device=dev)
    pos = torch.arange(L, device=dev)
    while bool(active.any()):
        rows = active.nonzero().squeeze(1)
        x, n = tokens[rows], T[rows]
        # left-pad each row's real sequence [0, n) into the [b, L] window of the bidirectional teacher
        shift = L - n
        valid = pos[None] >= shift[:, None]
        ids = torch.where(valid, x.gather(1, (pos[None] - shift[:, None]).clamp(min=0)), pad_id)
        out = teacher.forward(ids, valid.long(), output_hidden=True)
        back = (pos[None] + shift[:, None]).clamp(max=L - 1)                    # row position -> window index
        logits = out.logits.gather(1, back[..., None].expand(-1, -1, out.logits.shape[-1]))
        h = out.hidden.gather(1, back[..., None].expand(-1, -1, d))
        probs = logits.float().softmax(-1)
        if temperature > 0:
            g = -torch.log(-torch.log(torch.rand(logits.shape, device=dev, generator=generator).clamp_min(1e-20)))
            x0 = (logits.float() / temperature + g).argmax(-1)
        else:
            x0 = logits.argmax(-1)
        conf = probs.gather(-1, x0[..., None]).squeeze(-1)
        masked = (x == mask_id) & (pos[None] < n[:, None])
        first_masked = torch.where(masked, pos[None], L).min(-1).values        # the current block holds it
        blk = first_masked // block_size
        in_block = masked & (pos[None] // block_size == blk[:, None])
        pick = torch.where(in_block, conf, -1.0).argmax(-1)                     # low-confidence remasking: 1 per step
        r = torch.arange(len(rows), device=dev)
        tokens[rows, pick] = x0[r, pick]
        unmask[rows, pick] = steps[rows]
        hidden[rows, pick] = h[r, pick].to(hidden.dtype)
        steps[rows] += 1
        x = tokens[rows]
        block_pos = pos[None] // block_size == blk[:, None]
        block_done = ~((x == mask_id) & block_pos).any(-1)
        has_eos = (torch.isin(x, eos) & block_pos).any(-1)
        last = blk == n // block_size - 1
        active[rows] = ~(block_done & (has_eos | last))
    return Trajectories(tokens.cpu(), T.cpu(), P.cpu(), unmask.cpu(), hidden.cpu(), steps.cpu(), block_size)
