"""Shaping the top-1 confidence p by the controller's predicted convergence progress s (both in [0, 1]).

    temperature: p ** (1 - alpha * s)      (s -> 1 sharpens p towards 1 at alpha = 1)
    weighted:    clamp(p + alpha * max(0, s - 0.5) * p * (1 - p), 0, 1)   (the reference runs')
    gating:      p * s
"""
from __future__ import annotations

import torch

STRATEGIES = ("temperature", "weighted", "gating")


def shape(p: torch.Tensor, s: torch.Tensor, strategy: str, alpha: float) -> torch.Tensor:
    if strategy == "temperature":
        return p.clamp_min(0).pow((1 - alpha * s).clamp_min(0))
    if strategy == "weighted":
        return (p + alpha * (s - 0.5).clamp_min(0) * p * (1 - p)).clamp(0, 1)
    if strategy == "gating":
        return p * s
    raise ValueError(f"prr: shaping={strategy!r}; choose one of {', '.join(STRATEGIES)}")
