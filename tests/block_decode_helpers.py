"""A standalone block-diffusion decoder over a block-causal model's cache API (models/block_cache.py),
for tests and parity checks until the decode loop hosts these models.

`threshold_decode` is SDAR's block_diffusion_generate with remasking_strategy
'low_confidence_dynamic' and greedy tokens: the prompt's whole blocks are prefilled into the cache;
then each block (the first one holds the prompt's tail) is denoised for up to `steps` rounds; a
round commits every masked position whose top-1 probability exceeds `threshold`, or, when fewer
than the round's quota (block / steps, remainder to the first rounds) do, the quota's most
confident; a fully unmasked block is appended to the cache by one more forward.
`clip_quota=True` caps the quota at the masks left (LLaDA2's generate does; SDAR's does not).

`fdv2_decode` is Fast-dLLM v2's generate (AR first token of each block, sub-blocks, shifted logits,
stop rule), batched over left-padded rows; docs/block-causal.md states its rules and its parity.
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


@dataclass
class FDv2DecodeResult:
    rows: list[list[int]]     # per row: prompt + generated, cut after the first stop token
    nfe: int                  # forwards of the batch: the prefill, the denoising and the appending ones


def _first_stop(tokens: list[int], stop_id: int) -> int | None:
    return tokens.index(stop_id) if stop_id in tokens else None


@torch.no_grad()
def fdv2_decode(module, prompts: list[list[int]], mask_id: int, stop_id: int, max_new_tokens: int,
                threshold: float = 0.9, small_block: int = 8) -> FDv2DecodeResult:
    """Fast-dLLM v2's generate (the checkpoint's modeling.py; NVlabs v2 batch_sample per row), greedy,
    over the exact block cache, rows left-padded and decoded in lock step:
    - the prompt's whole blocks are prefilled (one forward); a prompt ending on a block boundary takes
      its next token AR style, the argmax of the prefill's last logit;
    - max_new_tokens // block rounds; a round decodes a row's current block (its prompt tail or AR
      token, then masks to the block's end) sub-block by sub-block (`small_block` wide, left to right):
      while the sub-block holds masks, one forward of the whole block against the cache; the logits
      are shifted (block position i reads logit i-1, position 0 its own); every masked position of
      the sub-block whose greedy probability exceeds `threshold` is committed, and always the most
      confident one;
    - a finished block is appended by one more forward, whose last logit gives the next block's
      first token (AR style);
    - a row stops when its block holds the stop token with no mask before it (the rest of the block is
      left; the block is not appended), or before a round when its generated tokens hold the stop token;
      the first token taken from the prefill does not count for this, as in the reference.
    NFE counts every forward of the batch."""
    bs, B = module.block_size, len(prompts)
    if bs % small_block:
        raise ValueError(f"small_block {small_block} must divide the block size {bs}")
    seqs = [list(p) for p in prompts]
    gen_start = [len(p) for p in prompts]
    pre = [len(p) // bs * bs for p in prompts]
    cache = module.new_block_cache(B, max(map(len, prompts)) + (max_new_tokens // bs + 2) * bs)
    nfe = 0
    W = max(pre)
    if W:
        ids, valid = torch.full((B, W), mask_id), torch.zeros(B, W, dtype=torch.bool)
        for r, p in enumerate(prompts):
            if pre[r]:
                ids[r, W - pre[r]:], valid[r, W - pre[r]:] = torch.tensor(p[:pre[r]]), True
        last = module.block_forward(ids, cache, valid=valid, commit=torch.tensor(pre))[0][:, -1].argmax(-1)
        nfe += 1
        for r, p in enumerate(prompts):
            if pre[r] and len(p) == pre[r]:
                seqs[r].append(int(last[r]))
                gen_start[r] += 1
    done = [False] * B
    for _ in range(max_new_tokens // bs):
        done = [d or stop_id in s[g:] for d, s, g in zip(done, seqs, gen_start)]
        if all(done):
            break
        start = [len(s) // bs * bs for s in seqs]
        blk = torch.full((B, bs), mask_id)
        for r, s in enumerate(seqs):
            blk[r, :len(s) - start[r]] = torch.tensor(s[start[r]:], dtype=torch.long)
        new = [len(s) - start[r] for r, s in enumerate(seqs)]      # block offset of each row's first mask

        def halted(r):
            region = blk[r, new[r]:].tolist()
            i = _first_stop(region, stop_id)
            return i is not None and mask_id not in region[:i]

        for lo in range(0, bs, small_block):
            while True:
                live = torch.tensor([not done[r] and not halted(r) and bool((blk[r, lo:lo + small_block] == mask_id).any())
                                     for r in range(B)])
                if not live.any():
                    break
                logits = module.block_forward(blk, cache)[0].float()
                nfe += 1
                logits = torch.cat([logits[:, :1], logits[:, :-1]], 1)[:, lo:lo + small_block]
                conf, x0 = logits.softmax(-1).max(-1)
                masked = (blk[:, lo:lo + small_block] == mask_id) & live[:, None]
                conf = torch.where(masked, conf, -torch.inf)
                pick = conf > threshold
                pick[torch.arange(B), conf.argmax(-1)] = True
                pick &= masked
                blk[:, lo:lo + small_block][pick] = x0[pick]
        full = [not done[r] and not halted(r) for r in range(B)]   # every mask filled
        if any(full):
            commit = torch.tensor([bs if f else 0 for f in full])
            last = module.block_forward(blk, cache, commit=commit)[0][:, -1].argmax(-1)
            nfe += 1
        for r in range(B):
            if done[r]:
                continue
            seqs[r] = seqs[r][:start[r]] + blk[r].tolist() + ([int(last[r])] if full[r] else [])
            done[r] = not full[r]
    rows = []
    for s, g in zip(seqs, gen_start):
        i = _first_stop(s[g:], stop_id)
        rows.append(s if i is None else s[:g + i + 1])
    return FDv2DecodeResult(rows, nfe)
