"""Rollouts that log every step (PRR training data) and full-fidelity branch continuations.

A `Trajectories` set holds one record per (rollout, step, masked position of the active block):
the last hidden state, the 11 features, the argmax, its top-1 probability and whether the
policy committed it there; plus, per rollout, the prompt, the generated tokens, NFE and whether
the answer was correct. Saved with torch.save as a dict of tensors.

`branch_labels` labels a rollout of a fast policy: for every logged (rollout, step), it rebuilds
the sequence as it was before that step's commit and decodes the rest of the active block from
there at full fidelity (the quota policy, one token per step); a record is converged when its
argmax is the token that continuation commits at that position and the continuation's argmax
never leaves it. Tokens that the policy committed early thus get the label of their observed
future under the slow decode.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from models.base import ModelAdapter
from ...base import GenConfig
from ...loop import decode, left_pad
from ...select import token_stats, top1_commit


@dataclass
class Trajectories:
    row: torch.Tensor       # [M] rollout index
    step: torch.Tensor      # [M] the rollout's step (0-based)
    pos: torch.Tensor       # [M] generated position
    hidden: torch.Tensor    # [M, d] fp16
    feats: torch.Tensor     # [M, 11]
    argmax: torch.Tensor    # [M]
    p1: torch.Tensor        # [M]
    commit: torch.Tensor    # [M] bool
    prompts: list[list[int]] = field(default_factory=list)
    tokens: torch.Tensor | None = None   # [R, G] generated tokens
    nfe: torch.Tensor | None = None      # [R]
    correct: torch.Tensor | None = None  # [R] bool (None when not scored)

    def __len__(self) -> int:
        return self.row.numel()

    def save(self, path: str | Path) -> None:
        torch.save({f.name: getattr(self, f.name) for f in fields(self)}, str(path))

    @classmethod
    def load(cls, path: str | Path) -> "Trajectories":
        return cls(**torch.load(str(path), weights_only=False))

    def subset_rows(self, keep: torch.Tensor) -> "Trajectories":
        """Only the records of rollouts with keep[row] (rollout indices are kept as they are)."""
        m = keep[self.row]
        return Trajectories(**{f: getattr(self, f)[m] for f in
                               ("row", "step", "pos", "hidden", "feats", "argmax", "p1", "commit")},
                            prompts=self.prompts, tokens=self.tokens, nfe=self.nfe, correct=self.correct)


class Recorder:
    """Attached to a PRRMethod (method.recorder); collects one record per candidate per step."""

    def __init__(self):
        self.parts: list[dict] = []
        self.offset = 0

    def add(self, view, out, feats, commit) -> None:
        idx = view.candidates.nonzero(as_tuple=True)
        b, p = idx
        self.parts.append({"row": (view.rows[b] + self.offset).cpu(), "step": view.step[b].cpu(), "pos": p.cpu(),
                           "hidden": out.hidden[idx].half().cpu(), "feats": feats[idx].float().cpu(),
                           "argmax": out.x0[idx].cpu(), "p1": out.conf[idx].float().cpu(),
                           "commit": commit[idx].cpu()})

    def finish(self, **extra) -> Trajectories:
        cat = {k: torch.cat([p[k] for p in self.parts]) for k in self.parts[0]} if self.parts else None
        if cat is None:
            raise ValueError("no steps were recorded")
        return Trajectories(**cat, **extra)


def rollout(model: ModelAdapter, method, prompts: list[list[int]], gen: GenConfig, batch_size: int = 64,
            score=None) -> Trajectories:
    """Decode `prompts` with `method` (a PRRMethod), logging every step. `score(i, tokens)` -> bool."""
    rec = Recorder()
    method.recorder = rec
    toks, nfes = [], []
    try:
        for i in range(0, len(prompts), batch_size):
            rec.offset = i
            res = decode(model, method, prompts[i:i + batch_size], gen)
            toks.append(res.tokens)
            nfes.append(res.nfe)
    finally:
        method.recorder = None
    tokens = torch.cat(toks)
    correct = torch.tensor([bool(score(i, tokens[i])) for i in range(len(prompts))]) if score else None
    return rec.finish(prompts=[list(p) for p in prompts], tokens=tokens, nfe=torch.cat(nfes), correct=correct)


@torch.no_grad()
def branch_labels(model: ModelAdapter, traj: Trajectories, gen: GenConfig,
                  batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels [M] and valid [M] for every record, from full-fidelity continuations (see module doc)."""
    G, BL, dev = gen.gen_length, gen.block_length, model.device
    R = len(traj.prompts)
    # each rollout's committed tokens and their commit steps
    c = traj.commit
    commit_step = torch.full((R, G), 1 << 30, dtype=torch.long)
    commit_tok = torch.full((R, G), model.mask_id, dtype=torch.long)
    commit_step[traj.row[c], traj.pos[c]] = traj.step[c]
    commit_tok[traj.row[c], traj.pos[c]] = traj.argmax[c]
    pairs, inv = torch.unique(torch.stack([traj.row, traj.step], 1), dim=0, return_inverse=True)
    block_of = torch.zeros(len(pairs), dtype=torch.long)
    block_of[inv] = traj.pos // BL
    final = torch.full((len(pairs), BL), -1, dtype=torch.long)      # continuation's committed token
    stable = torch.ones((len(pairs), BL), dtype=torch.bool)          # its argmax never left it after step 0
    for lo in range(0, len(pairs), batch_size):
        pr = pairs[lo:lo + batch_size]
        rows, steps = pr[:, 0], pr[:, 1]
        ids, attn = left_pad([traj.prompts[r] for r in rows.tolist()], model.pad_id)
        gen_x = torch.where(commit_step[rows] < steps.unsqueeze(1), commit_tok[rows], model.mask_id)
        f, s = _continue(model, ids, attn, gen_x, block_of[lo:lo + batch_size], BL)
        final[lo:lo + batch_size], stable[lo:lo + batch_size] = f, s
    j = traj.pos % BL
    fin = final[inv, j]
    label = (traj.argmax == fin) & stable[inv, j]
    return label, fin >= 0


def _continue(model, ids, attn, gen_x, block, BL):
    """Decode each row's block at one token per step (top-1 confidence). Returns, per block position,
    the committed token and whether the argmax after the first step always equalled it."""
    dev = model.device
    n, P = ids.shape
    x = torch.cat([ids, gen_x], 1).to(dev)
    am = torch.cat([attn, torch.ones_like(gen_x)], 1).to(dev)
    cols = (block.unsqueeze(1) * BL + torch.arange(BL)).to(dev) + P          # [n, BL]
    seen = torch.full((n, BL), -1, dtype=torch.long, device=dev)
    final = torch.full((n, BL), -1, dtype=torch.long, device=dev)
    stable = torch.ones((n, BL), dtype=torch.bool, device=dev)
    first = True
    open_ = x.gather(1, cols) == model.mask_id   # not yet committed (a committed mask id stays committed)
    while True:
        masked = open_
        active = masked.any(1)
        if not active.any():
            break
        a = active.nonzero().squeeze(1)
        logits = model.forward(x[a], am[a]).logits.float()
        lg = logits.gather(1, cols[a].unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        x0, conf = token_stats(lg)
        m = masked[a]
        if not first:   # after step 0, any change of a still-masked position's argmax breaks stability
            stable[a] &= ~(m & (x0 != seen[a]))
        seen[a] = torch.where(m, x0, seen[a])
        com = top1_commit(conf, m)
        final[a] = torch.where(com, x0, final[a])
        open_[a] = m & ~com
        xa = x[a]
        xa.scatter_(1, cols[a], torch.where(com, x0, xa.gather(1, cols[a])))
        x[a] = xa
        first = False
    return final.cpu(), stable.cpu()
