"""The model adapter interface every decoder talks to.

The decode loop sees only this: a forward over token ids with an attention mask that returns
logits (and last hidden states on request), the special ids, the logit shift and a tokenizer.
Model-specific ids live in the adapters, nowhere else.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

import torch


@dataclass
class ModelOutput:
    logits: torch.Tensor                 # [B, L, V], already shifted so position i predicts token i
    hidden: torch.Tensor | None = None   # [B, L, d] last hidden states, when asked for


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids, skip_special: bool = True) -> str: ...


@dataclass
class ModelAdapter:
    """A loaded model plus everything the loop and the runner need to know about it."""
    name: str
    module: torch.nn.Module
    tokenizer: Tokenizer
    mask_id: int
    pad_id: int
    eos_ids: tuple[int, ...]
    logit_shift: bool = False           # Dream: position i is predicted from hidden state i-1
    chat_template: str | None = None    # None: the model has no chat format
    info: dict = field(default_factory=dict)  # config, weights origin; recorded in run.json
    # "bidirectional" (LLaDA, Dream, tiny) or "block_causal" (SDAR/TraDo, LLaDA2, Fast-dLLM v2: causal
    # across blocks of block_size positions, bidirectional inside one; exact cache in models/block_cache.py)
    regime: str = "bidirectional"
    block_size: int | None = None
    # block-causal: where the block grid starts. "prompt": at each row's first prompt token (SDAR,
    # LLaDA2, Fast-dLLM v2: the prompt's tail shares the first decoded block); "generation": at the
    # generation start, the prompt one block of its own (CDLM)
    block_grid: str = "prompt"
    # block-causal, logit-shifted: Fast-dLLM v2's blocks (each block's first token written by the
    # forward that appends the block before, its own appending forwards and stop rule)
    ar_blocks: bool = False
    # on GPU, launch-bound forwards (KV-cache windows, small full forwards) replay CUDA graphs
    # (acceleration/graphs.py); DLLM_CUDA_GRAPHS=0 turns them off for every model
    cuda_graphs: bool = field(default_factory=lambda: os.environ.get("DLLM_CUDA_GRAPHS", "1") != "0")

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def attention_matrix(self) -> bool:
        """Whether forward takes a 4-D [B, 1, L, L] attention mask (modules that say so with a class
        attribute `attention_matrix = True`: the native LLaDA, Dream and tiny)."""
        return bool(getattr(self.module, "attention_matrix", False))

    @property
    def supports_cache(self) -> bool:
        """Whether the module takes a KV cache (prefix/dual cache modes, decoding/cache.py)."""
        return hasattr(self.module, "new_cache")

    def new_cache(self, batch: int, length: int):
        if not self.supports_cache:
            raise ValueError(f"model {self.name} has no KV cache support; use cache=none")
        return self.module.new_cache(batch, length)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden: bool = False, positions: torch.Tensor | None = None, kv=None,
                logits_from: int = 0) -> ModelOutput:
        """One model call. Positions are derived from the attention mask (left padding safe) unless
        given. `kv` (a layers.CacheCall) makes it a cache refresh or a window forward; for a window,
        pass the window's tokens, their positions, and no attention mask (the key mask is in kv).
        `attention_mask` may also be a 4-D bool [B, 1, L, L] matrix (query x key, True: may attend;
        positions then required), taken by modules with `attention_matrix` (native LLaDA, Dream, tiny).
        `logits_from`: logits and hidden states of positions >= logits_from only (the output's
        position 0 is input position logits_from); modules with `takes_logits_from` (native LLaDA,
        Dream, tiny) then run their output head over those positions alone: the prompt's logits of
        a decode's full forward are 2/3 of its head at prompt 512 + 256."""
        if attention_mask is not None and attention_mask.dim() == 4:
            if not self.attention_matrix:
                raise ValueError(f"model {self.name} takes no 4-D attention mask (the native llada, dream and tiny do)")
            if positions is None:
                raise ValueError("a 4-D attention mask needs explicit positions")
        if positions is None and attention_mask is not None:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        # a shifted model's logits at i are the head's at i - 1
        start = logits_from - 1 if self.logit_shift and logits_from > 0 else logits_from
        kw = {} if kv is None else {"kv": kv}
        if start > 0 and getattr(self.module, "takes_logits_from", False):
            kw["logits_from"] = start
        logits, hidden = self.module(input_ids, attention_mask=attention_mask, positions=positions, **kw)
        if start > 0 and "logits_from" not in kw:
            logits, hidden = logits[:, start:], hidden[:, start:]
        if self.logit_shift:
            logits = logits[:, :-1] if logits_from > 0 else torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
            hidden = hidden[:, logits_from - start:]
        return ModelOutput(logits=logits, hidden=hidden if output_hidden else None)
