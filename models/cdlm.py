"""CDLM students of LLaDA and Dream (arXiv 2511.19269): a bidirectional network fine-tuned under
a block-wise causal mask, decoded block by block with an exact K/V cache.

The paper's attention (Sec. 3): a token sees the prompt, the finished blocks and its own block
(bidirectional inside the block); blocks of B = 32 start where generation starts, so the prompt is
one block of its own, cached whole (models/block_cache.py, `block_of` with the grid's origin at
each row's prompt length; `ModelAdapter.block_grid = "generation"`). The weights and their names
are the teacher's: a CDLM checkpoint directory loads as a LLaDA or Dream directory
(`--model cdlm-llada|cdlm-dream --model-path DIR`), and the network is the native models/llada.py
or models/dream.py under that mask. Decoding is the loop's `threshold` (CDLM's inference: the
Fast-dLLM threshold inside the block, stop at the block holding EOS; docs/cdlm.md).

Dream predicts position i from hidden state i - 1 (`logit_shift`). Under the block-causal mask the
first position of a block is then predicted from the last token before the block (the prompt's
last token, or the previous block's last), whose hidden state does not see the block: the loop
reads it from the forward that feeds that token (the block's first step, which appends the block
before, `append=fold`) and keeps it for the block's later steps (decoding/block_causal.py,
FedBlock.stale_first). That reading is ours: it is the only one the mask and the shift allow, and
the authors' code, which would confirm it, could not be read here.

`BlockCausalOver(net, block_size)`: forward(input_ids, attention_mask, positions, origin) over a
whole sequence under the mask; block_forward(...) the cached forward every block-causal model
shares (the fed tokens' K/V written at their positions, attention over the cache under the
per-token block-causal key mask, models/layers.CacheCall with a [B, W, L] key mask).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .base import ModelAdapter
from .block_cache import BlockKVCache, block_causal_mask, cached_forward
from .layers import CacheCall, KVCache, default_positions

CDLM_BLOCK = 32   # the paper's block for training trajectories and inference


class BlockCausalOver(nn.Module):
    """A bidirectional network (native LLaDA or Dream) under block-causal attention with an exact block cache.
    The network is loaded with its checkpoint's names before it is wrapped (as `net`)."""

    def __init__(self, net: nn.Module, block_size: int = CDLM_BLOCK):
        super().__init__()
        self.net, self._block_size = net, block_size
        self.cfg = net.cfg

    @property
    def block_size(self) -> int:
        return self._block_size

    def new_block_cache(self, batch: int, capacity: int, dtype=None, device=None) -> BlockKVCache:
        probe = self.net.new_cache(1, 1, dtype=dtype, device=device)   # the network's K/V layout
        _, _, two_h, hd = probe.kv[0].shape
        return BlockKVCache.empty(len(probe.kv), batch, two_h // 2, capacity, hd, self.block_size,
                                  probe.kv[0].dtype, probe.kv[0].device)

    def forward(self, input_ids, attention_mask=None, positions=None, kv=None, origin: torch.Tensor | None = None):
        """A whole-sequence forward under the block-causal mask; `origin` [B]: where each row's
        block grid starts (its prompt length: the prompt is one block), default 0."""
        if kv is not None:
            raise ValueError("block-causal models take their cache through block_forward, not a CacheCall; "
                             "cache=prefix|dual do not apply to them")
        if attention_mask is not None and attention_mask.dim() == 4:
            raise ValueError("a CDLM student builds its own block-causal attention matrix; pass a 0/1 padding mask")
        positions = default_positions(input_ids, positions)
        mask = block_causal_mask(positions, self.block_size, attention_mask, origin)
        return self.net(input_ids, attention_mask=mask, positions=positions)

    def block_forward(self, input_ids, cache: BlockKVCache, valid=None, commit=0, logits_last: int | None = None,
                      key_len: int | None = None, checked: bool = True):
        """Feed each row's next tokens (see models/block_cache.py); append the first `commit` of them."""
        def run(step):
            keys = F.pad(step.key_mask[:, 0], (0, cache.capacity + 1 - step.key_len))   # [B, W, all slots]
            call = CacheCall(KVCache(cache.kv), rows=None, pos=step.write_idx, key_mask=keys)
            logits, hidden = self.net(input_ids, attention_mask=None, positions=step.positions, kv=call)
            if logits_last is not None:
                logits, hidden = logits[:, -logits_last:], hidden[:, -logits_last:]
            return logits, hidden
        return cached_forward(run, input_ids, cache, valid, commit, key_len, checked)


def as_cdlm_student(base: ModelAdapter, name: str, block_size: int = CDLM_BLOCK) -> ModelAdapter:
    """A loaded native LLaDA or Dream adapter as a CDLM student: the same weights under CDLM's attention."""
    if not hasattr(base.module, "new_cache"):
        raise ValueError(f"{name}: the {base.info.get('backend')} backend has no K/V cache to decode blocks with; "
                         f"use --model-backend native")
    return dataclasses.replace(
        base, name=name, module=BlockCausalOver(base.module, block_size), regime="block_causal",
        block_size=block_size, block_grid="generation",
        info={**base.info, "regime": "block_causal", "block_size": block_size, "block_grid": "generation",
              "cdlm": "CDLM student: the network under block-causal attention, the prompt one block (arXiv 2511.19269)"})
