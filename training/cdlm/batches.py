"""Training batches of CDLM: (state, block-completion state) pairs cut from teacher trajectories,
and masked ground-truth answers for the DLM loss. Sequences are right-padded (positions 0..n-1,
padding keys never attended), which is what the student's whole-sequence forward takes.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from .rollout import Trajectories, sequence_length


@dataclass
class PairBatch:
    y: torch.Tensor             # [B, L] the state y (masks where unmask_step >= s)
    y_star: torch.Tensor        # [B, L] its block-completion state y*
    valid: torch.Tensor         # [B, L] bool real positions
    unmasked: torch.Tensor      # [B, L] bool U_y: masked at y, finalized by y* (the block of step s)
    still_masked: torch.Tensor  # [B, L] bool S_y: masked at y* (later blocks)
    teacher_hidden: torch.Tensor  # [n_U, d] the teacher's last hidden state at each U_y position (row-major order)


def sample_pairs(traj: Trajectories, rows: torch.Tensor, mask_id: int, generator: torch.Generator) -> PairBatch:
    """For each trajectory row, a step s drawn uniformly from its steps: y = the state before step s,
    y* = the state right after the block holding step s's position is complete."""
    B = len(rows)
    tok, um, n = traj.tokens[rows], traj.unmask_step[rows], traj.length[rows]
    L = int(n.max())
    tok, um = tok[:, :L], um[:, :L]
    pos = torch.arange(L)
    s = (torch.rand(B, generator=generator) * traj.steps[rows]).long()
    at_s = (um == s[:, None]).float().argmax(-1)                       # the position finalized at step s
    blk = at_s // traj.block_size
    in_blk = pos[None] // traj.block_size == blk[:, None]
    s_star = torch.where(in_blk & (um >= 0) & (um < (1 << 30)), um, -1).max(-1).values + 1
    valid = pos[None] < n[:, None]
    y = torch.where((um < s[:, None]) | ~valid, tok, mask_id)
    y_star = torch.where((um < s_star[:, None]) | ~valid, tok, mask_id)
    unmasked = (um >= s[:, None]) & (um < s_star[:, None])
    still = (um >= s_star[:, None]) & valid
    return PairBatch(y, y_star, valid, unmasked, still, traj.hidden[rows, :L][unmasked].float())


@dataclass
class DLMBatch:
    noisy: torch.Tensor       # [B, L] answer positions masked with probability t
    targets: torch.Tensor     # [B, L] the clean sequence
    valid: torch.Tensor       # [B, L] bool
    masked: torch.Tensor      # [B, L] bool
    t: torch.Tensor           # [B]
    answer_len: torch.Tensor  # [B] positions after the prompt (the CE's normaliser)


def encode_answer(prompt: list[int], answer: list[int], eos_id: int, gen_length: int, block_size: int) -> list[int]:
    """Prompt + answer + EOS up to the end of the student's last block (the teacher's training format)."""
    T = sequence_length(len(prompt), gen_length, block_size)
    gen = (answer + [eos_id] * T)[:T - len(prompt)]
    return prompt + gen


def dlm_batch(examples: list[tuple[list[int], int]], pad_id: int, mask_id: int, generator: torch.Generator,
              eps: float = 1e-3) -> DLMBatch:
    """examples: (sequence, prompt length) pairs; each row's answer positions are masked
    independently with probability t ~ U(eps, 1) (one t per row), as training/tiny_train.py."""
    B, L = len(examples), max(len(e) for e, _ in examples)
    targets = torch.full((B, L), pad_id, dtype=torch.long)
    answer, valid = torch.zeros(B, L, dtype=torch.bool), torch.zeros(B, L, dtype=torch.bool)
    for i, (seq, P) in enumerate(examples):
        targets[i, :len(seq)] = torch.tensor(seq)
        answer[i, P:len(seq)] = valid[i, :len(seq)] = True
    t = eps + (1 - eps) * torch.rand(B, generator=generator)
    masked = answer & (torch.rand(B, L, generator=generator) < t[:, None])
    noisy = torch.where(masked, mask_id, targets)
    return DLMBatch(noisy, targets, valid, masked, t, answer.sum(-1))


def pick_solutions(problems, tokenizer, gen_length: int, block_size: int, rng: random.Random) -> list[tuple[list[int], int]]:
    """One random valid worked solution per problem, encoded for dlm_batch."""
    out = []
    for p in problems:
        pr = tokenizer.encode(p.prompt)
        out.append((encode_answer(pr, tokenizer.encode(rng.choice(p.solutions)), tokenizer.eos_id, gen_length,
                                  block_size), len(pr)))
    return out
