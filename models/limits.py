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


def free_memory_bytes(device) -> int | None:
    """Bytes free for new tensors on `device` (CUDA: the driver's free memory; CPU: the available
    physical memory), or None where it cannot be told."""
    import os

    import torch
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu" and hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None
    return None


def check_fits(net, dtype, device, name: str) -> None:
    """A one-line error, before any allocation, when the weights of `net` (built on the meta
    device) in `dtype` exceed the memory free on `device`."""
    import torch
    need = sum(p.numel() for p in net.parameters()) * torch.empty((), dtype=dtype).element_size()
    free = free_memory_bytes(device)
    if free is not None and need > free:
        half = dtype == torch.float32 and need // 2 <= free
        raise ValueError(f"{name}: its weights take {need / 1e9:.1f} GB in {str(dtype).replace('torch.', '')}, more "
                         f"than the {free / 1e9:.1f} GB free on {device} (one device holds the whole model): "
                         + ("use --dtype bfloat16" if half else "use a smaller config or a larger device"))
