"""What a loaded model can take: its hidden size and the longest sequence (prompt + generation) its
configuration declares, read from the adapter's config whatever the family (tiny, LLaDA, Dream)."""
from __future__ import annotations

from .base import ModelAdapter

_HIDDEN = ("d_model", "hidden_size")
_POSITIONS = ("max_len", "max_sequence_length", "max_position_embeddings")


def _config(model: ModelAdapter) -> dict:
    cfg = dict(model.info.get("config") or {})
    module_cfg = getattr(model.module, "cfg", None)
    if module_cfg is not None:
        for k in _HIDDEN + _POSITIONS:
            if k not in cfg and hasattr(module_cfg, k):
                cfg[k] = getattr(module_cfg, k)
    return cfg


def hidden_size(model: ModelAdapter) -> int:
    cfg = _config(model)
    for k in _HIDDEN:
        if cfg.get(k):
            return int(cfg[k])
    raise ValueError(f"model {model.name!r}: its config names no hidden size ({' or '.join(_HIDDEN)})")


def max_positions(model: ModelAdapter) -> int | None:
    """The configured maximum sequence length, or None when the config declares none."""
    cfg = _config(model)
    for k in _POSITIONS:
        if cfg.get(k):
            return int(cfg[k])
    return None
