"""Model registry: name -> loader returning a ModelAdapter."""
from __future__ import annotations

import torch

from .base import ModelAdapter
from .tiny import load_tiny

MODELS = {"tiny": load_tiny}


def load_model(name: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> ModelAdapter:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name](device=device, dtype=dtype)
