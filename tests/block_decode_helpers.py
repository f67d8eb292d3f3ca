"""A standalone block-diffusion decoder over a block-causal model's cache API (models/block_cache.py),
for tests and parity checks until the decode loop hosts these models.

`threshold_decode` is SDAR's block_diffusion_generate with remasking_strategy
'low_confidence_dynamic' and greedy tokens: the prompt's whole blocks are prefilled into the cache;
then each block (the first one holds the prompt's tail) is denoised for up to `steps` rounds; a
round commits every masked position whose top-1 probability exceeds `threshold`, or, when fewer
than the round's quota (block / steps, remainder to the first rounds) do, the quota's most
confident; a fully unmasked block is appended to the cache by one more forward.
`clip_quota=True` caps the quota at the masks left (LLaDA2's generate does; SDAR's does not).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BlockDecodeResult:
    tokens: torch.Tensor      # [1, total] prompt + generated (whole blocks)
    nfe: int                  # forwards, the prefill and the appending forwards included


def quota(block: int, steps: int) -> list[int]:
    base, rem = divmod(block, steps)
    return [base + (1 if i < rem else 0) for i in range(steps)]


@torch.no_grad()
def threshold_decode(module, prompt: list[int], mask_id: int, gen_length: int, steps: int | None = None,
                     threshold: float = 0.85, clip_quota: bool = False) -> BlockDecodeResult:
    bs = module.block_size
    steps = steps or bs
    P = len(prompt)
    n_blocks = (P + gen_length + bs - 1) // bs
    x = torch.full((1, n_blocks * bs), mask_id, dtype=torch.long)
    x[0, :P] = torch.tensor(prompt)
    cache = module.new_block_cache(1, n_blocks * bs)
    nfe = 0
    pre = P // bs * bs
    if pre:
        module.block_forward(x[:, :pre], cache, commit=pre)
        nfe += 1
    q = quota(bs, steps)
    for b in range(pre // bs, n_blocks):
        cur = x[:, b * bs:(b + 1) * bs].clone()
        for s in range(steps + 1):
            masked = cur == mask_id
            if not masked.any():
                module.block_forward(cur, cache, commit=bs)
                nfe += 1
                break
            logits = module.block_forward(cur, cache)[0].float()
            nfe += 1
            p = logits.softmax(-1)
            conf, x0 = p.max(-1)
            conf = torch.where(masked, conf, -torch.inf)
            high = conf[0] > threshold
            pick = torch.zeros_like(high)
            k = min(q[s], int(masked.sum())) if clip_quota else q[s]
            if int(high.sum()) >= k:
                pick = high
            else:
                pick[conf[0].topk(k).indices] = True
            cur[0, pick] = x0[0, pick]
        x[:, b * bs:(b + 1) * bs] = cur
    return BlockDecodeResult(x, nfe)
