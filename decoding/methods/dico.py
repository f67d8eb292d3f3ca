"""`dico`: divide and conquer (arXiv 2602.23792, "Divide and Conquer: Accelerating Diffusion-Based
Large Language Models via Adaptive Parallel Decoding").

No code of the authors is public, and the paper's text beyond its abstract was not available, so
only the three phases are theirs; EVERY concrete rule and default below is OURS
(decoding/rules/dico.py, docs/methods-fidelity.md section 6). Each step, per row, in its current
block:

    divide    seeds: masked positions with conf >= tau_seed whose argmax has not changed for at
              least min_stable steps (the loop's history: the abstract's "confidence and
              trajectory"); each seed grows into a local cluster, the masked positions within
              `radius` of it; overlapping or adjacent clusters merge (a maximal run of members)
    conquer   every cluster commits, in parallel, its members with conf >= tau_cluster, and always
              its most confident member
    finalize  once at most n_final masks remain in the block, or no seed exists, one position per
              step: the best lam * margin + (1 - lam) * conf (margin: top-1 minus top-2 probability)

Divide and conquer alternate step by step (the clusters are rebuilt from each forward) until the
block's masks are few enough to finalize. One forward per step, one NFE.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.topk import top2_values

from ..base import Method
from ..contract import Decision, Reads, StepOutput, StepView
from ..rules.dico import dico_decide


@dataclass
class DiCoConfig:                 # every default is ours (no public rule)
    tau_seed: float = 0.9         # divide: a seed's confidence
    min_stable: int = 1           # divide: steps its argmax has not changed (0: confidence only)
    radius: int = 2               # divide: a cluster's reach around its seed, in positions
    tau_cluster: float = 0.7      # conquer: cluster members committed at conf >= tau_cluster
    n_final: int = 2              # finalize when at most n_final masks remain in the block
    lam: float = 0.5              # finalize: weight of the margin against the top-1 probability


class DiCoMethod(Method):
    name = "dico"
    Config = DiCoConfig
    READS = Reads(logits=True, history=True, logits_blocks=1)

    def validate(self) -> None:
        c = self.cfg
        for key in ("tau_seed", "tau_cluster", "lam"):
            v = getattr(c, key)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"dico: {key}={v} must be in [0, 1] (e.g. dico:{key}=0.5)")
        for key in ("min_stable", "radius", "n_final"):
            v = getattr(c, key)
            if v < 0:
                raise ValueError(f"dico: {key}={v} must be >= 0 (e.g. dico:{key}=1)")

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        c, h = self.cfg, view.history
        margin = out.block_rows(view, self.gen.block_length).per_position(top2_margin)   # candidates only
        run = torch.where(out.x0 != h.argmax, 0, h.stable + 1)   # steps since the argmax last changed
        return Decision(dico_decide(out.conf, margin, run, view.candidates, tau_seed=c.tau_seed,
                                    min_stable=c.min_stable, radius=c.radius, tau_cluster=c.tau_cluster,
                                    n_final=c.n_final, lam=c.lam))


def top2_margin(logits: torch.Tensor) -> torch.Tensor:
    """[...]: the top-1 minus the top-2 probability of softmax(logits) (fp32)."""
    top2 = top2_values(torch.softmax(logits.float(), -1))
    return top2[..., 0] - top2[..., 1]
