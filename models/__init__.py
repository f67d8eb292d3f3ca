"""Model registry: name -> loader returning a ModelAdapter.

- `tiny`: the built-in model (weights in the repo).
- `tiny-block`: the built-in architecture under block-causal attention (models/tiny_block.py), the
  CDLM student; `--model-path` a student directory (or `--model <student dir>` directly); without
  one, the built-in weights under the block-causal mask (untrained).
- `tiny-cdlm`: the committed CDLM student of the built-in model (models/tiny-cdlm/TRAINING.md).
- `cdlm-llada`, `cdlm-dream` (`--model-path` a CDLM checkpoint), `cdlm-llada-8b`, `cdlm-dream-7b`,
  ... (random weights): LLaDA or Dream under CDLM's block-causal attention, blocks of 32 from the
  generation start (models/cdlm.py).
- `llada`, `dream`: real checkpoints, `--model-path` a hub id or a local HF directory (default:
  the Instruct model's hub id); `--no-weights` builds the architecture of that config (or of the
  8B/7B config when no path is given) with random weights.
- `llada-8b`, `dream-7b`, `llada-small`, `dream-small`, `llada-tiny`, `dream-tiny`: named
  architectures, random weights only (`--no-weights`), for speed and energy runs without a download.
- block-causal families (models/block_causal_real.py): `sdar`, `trado`, `llada2`, `fast-dllm-v2`
  (real checkpoints) and their named configs (`sdar-8b`, `sdar-4b`, `sdar-1.7b`, `trado-8b`,
  `trado-4b`, `sdar-small`, `sdar-tiny`, `llada2-mini`, `llada2-mini-2.1`, `llada2-flash`, `llada2-flash-2.1`, `llada2-small`,
  `llada2-tiny`, `fast-dllm-v2-7b`, `fast-dllm-v2-1.5b`, `fast-dllm-v2-small`, `fast-dllm-v2-tiny`).
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from .base import ModelAdapter
from .cdlm import as_cdlm_student
from .block_causal_real import FAMILIES as BLOCK_CAUSAL_FAMILIES, load_block_causal
from .dream import CONFIGS as DREAM_CONFIGS
from .llada import CONFIGS as LLADA_CONFIGS
from .real import load_real
from .tiny import load_tiny
from .tiny_block import is_student_dir, load_tiny_block


def _tiny(device, dtype, path=None, no_weights=False, backend="native", seed=0):
    if backend != "native":
        raise ValueError("the built-in model has no remote code; --model-backend hf applies to llada and dream")
    if no_weights:
        torch.manual_seed(seed)
    return load_tiny(path, device=device, dtype=dtype, random_weights=no_weights)


def _real(family, name, device, dtype, path=None, no_weights=False, backend="native", seed=0):
    return load_real(family, path=path, name=name, no_weights=no_weights, device=device, dtype=dtype,
                     backend=backend, seed=seed)


def _tiny_block(device, dtype, path=None, no_weights=False, backend="native", seed=0):
    if backend != "native":
        raise ValueError("tiny-block has no remote code; --model-backend hf applies to the published checkpoints")
    if no_weights:
        torch.manual_seed(seed)
    return load_tiny_block(path, device=device, dtype=dtype, random_weights=no_weights)


def _tiny_cdlm(device, dtype, path=None, no_weights=False, backend="native", seed=0):
    """The committed CDLM student of the built-in model (models/tiny-cdlm, TRAINING.md there)."""
    model = _tiny_block(device, dtype, path=path or str(Path(__file__).parent / "tiny-cdlm"), no_weights=no_weights,
                        backend=backend, seed=seed)
    model.name = "tiny-cdlm"
    return model


MODELS = {"tiny": _tiny,
          "tiny-block": _tiny_block,
          "tiny-cdlm": _tiny_cdlm,
          "llada": functools.partial(_real, "llada", "llada"),
          "dream": functools.partial(_real, "dream", "dream")}
MODELS.update({n: functools.partial(_real, "llada", n) for n in LLADA_CONFIGS})
MODELS.update({n: functools.partial(_real, "dream", n) for n in DREAM_CONFIGS})


def _block_causal(family, name, device, dtype, path=None, no_weights=False, backend="native", seed=0):
    return load_block_causal(family, path=path, name=name, no_weights=no_weights, device=device, dtype=dtype,
                             backend=backend, seed=seed)


for _fam, _spec in BLOCK_CAUSAL_FAMILIES.items():
    MODELS[_fam] = functools.partial(_block_causal, _fam, _fam)
    MODELS.update({n: functools.partial(_block_causal, _fam, n) for n in _spec["configs"]
                   if n.startswith(_fam + "-")})


def _cdlm(family, name, device, dtype, path=None, no_weights=False, backend="native", seed=0):
    """A CDLM student (models/cdlm.py): the family's checkpoint (or named random config) under
    CDLM's block-causal attention."""
    if path is None and not no_weights:
        raise ValueError(f"{name} needs --model-path <a CDLM-{'LLaDA' if family == 'llada' else 'Dream'} checkpoint "
                         f"directory or hub id> ({family}'s weights and names, fine-tuned), or --no-weights for "
                         f"random weights")
    config = name[len("cdlm-"):]
    base = _real(family, config if no_weights and path is None else family, device, dtype, path=path,
                 no_weights=no_weights, backend=backend, seed=seed)
    return as_cdlm_student(base, name)


MODELS["cdlm-llada"] = functools.partial(_cdlm, "llada", "cdlm-llada")
MODELS["cdlm-dream"] = functools.partial(_cdlm, "dream", "cdlm-dream")
MODELS.update({f"cdlm-{n}": functools.partial(_cdlm, "llada", f"cdlm-{n}") for n in LLADA_CONFIGS})
MODELS.update({f"cdlm-{n}": functools.partial(_cdlm, "dream", f"cdlm-{n}") for n in DREAM_CONFIGS})


def load_model(name: str, device: str = "cpu", dtype: torch.dtype = torch.float32, path: str | None = None,
               no_weights: bool = False, backend: str = "native", seed: int = 0) -> ModelAdapter:
    if name not in MODELS and path is None and is_student_dir(name):   # --model <student directory>
        return _tiny_block(device=device, dtype=dtype, path=name, no_weights=no_weights, backend=backend, seed=seed)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name](device=device, dtype=dtype, path=path, no_weights=no_weights, backend=backend, seed=seed)
