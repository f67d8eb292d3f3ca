"""A fast kernel that serves only after agreeing with its reference: the first call on a device
(outside a CUDA graph capture, where nothing may sync) runs both on that call's input and keeps the
answer; a kernel that fails to build or disagrees is reported once, and the reference serves from
then on. Used by kernels/moe_route.py, kernels/moe_group.py and kernels/block_attention.py.
Imports nothing of this project."""
from __future__ import annotations

import warnings
from typing import Callable

import torch


def agreed(store: dict, key, like: torch.Tensor, compare: Callable[[], tuple[bool, str]], what: str,
           instead: str, switch: str) -> bool:
    """Whether the kernel serves for `key` (kept in `store`). `compare()` runs kernel and reference
    and returns (agree, why not); `like`: a tensor of the call (a CUDA graph capture in progress on
    its device defers the check: the reference serves that call)."""
    if key not in store:
        if like.is_cuda and torch.cuda.is_current_stream_capturing():
            return False
        try:
            ok, why = compare()
        except Exception as e:   # a kernel that does not build here
            ok, why = False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        store[key] = bool(ok)
        if not ok:
            warnings.warn(f"{what} is not used ({why}); {instead} ({switch}=0 silences this)")
    return store[key]
