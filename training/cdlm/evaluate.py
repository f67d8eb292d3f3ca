"""CDLM inference on a block-causal model, standalone (until the decode loop hosts block-causal
models): block by block with the exact K/V cache of finished blocks, a confidence threshold inside
the block, stop at EOS.

Blocks are counted from each row's first prompt token (models/block_cache.py); the first block
holds the prompt's tail and the first masks. Each step feeds every active row's current block
against its cache and commits every masked position of the block whose top-1 probability is
>= tau, and always the most confident one (the `threshold` method's rule, Fast-dLLM's parallel
decoding). A completed block is appended to the cache by the next step's forward, which feeds
[finished block, next block] with commit = block (the K/V written by that forward are the exact
ones), so a forward is only ever a denoising step: the prompt's whole blocks are appended by the
first step's forward the same way. A row stops when a completed block holds EOS, or after the
block holding position P + gen_length. NFE = forwards while the row was active.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .rollout import sequence_length


@dataclass
class BlockDecodeOutput:
    tokens: list[list[int]]   # per row: the decoded tokens after the prompt, up to (not including) the first EOS
    nfe: torch.Tensor         # [B] forwards per row
    finished: torch.Tensor    # [B] bool: the row reached EOS (else it ran out of blocks)


def _left(rows: list[list[int]], width: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    valid = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):], valid[i, width - len(r):] = torch.tensor(r), True
    return ids, valid


@torch.no_grad()
def block_threshold_decode(model, prompts: list[list[int]], gen_length: int, tau: float = 0.9) -> BlockDecodeOutput:
    """Decode `prompts` with a block-causal ModelAdapter (regime block_causal)."""
    if model.regime != "block_causal":
        raise ValueError(f"block_threshold_decode needs a block-causal model; {model.name} is {model.regime}")
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau={tau} must be in (0, 1]")
    net, bs, dev = model.module, model.block_size, model.device
    mask_id, pad_id, eos = model.mask_id, model.pad_id, set(model.eos_ids)
    B = len(prompts)
    seqs = [list(p) + [mask_id] * (sequence_length(len(p), gen_length, bs) - len(p)) for p in prompts]
    cache = net.new_block_cache(B, max(map(len, seqs)))
    blk = [len(p) // bs for p in prompts]                   # current block per row
    feed = [s[:(b + 1) * bs] for s, b in zip(seqs, blk)]    # first step: prompt's whole blocks + first block
    commit = [b * bs for b in blk]
    active = [True] * B
    nfe = torch.zeros(B, dtype=torch.long)
    finished = torch.zeros(B, dtype=torch.bool)
    while any(active):
        width = max(len(f) for f in feed)
        ids, valid = _left(feed, width, pad_id)
        logits = net.block_forward(ids.to(dev), cache, valid=valid.to(dev),
                                   commit=torch.tensor(commit, device=dev))[0][:, -bs:].float()
        probs = logits.softmax(-1)
        conf, x0 = probs.max(-1)
        conf, x0 = conf.cpu(), x0.cpu()
        nfe += torch.tensor(active, dtype=torch.long)
        for i in range(B):
            if not active[i]:
                continue
            lo = blk[i] * bs
            cur = seqs[i][lo:lo + bs]
            cand = [j for j in range(bs) if cur[j] == mask_id]
            best = max(cand, key=lambda j: float(conf[i, j]))
            for j in cand:
                if j == best or float(conf[i, j]) >= tau:
                    seqs[i][lo + j] = int(x0[i, j])
            cur = seqs[i][lo:lo + bs]
            if mask_id in cur:                               # keep denoising this block
                feed[i], commit[i] = cur, 0
            elif eos & set(cur) or lo + bs >= len(seqs[i]):  # done: EOS in the block, or the last block
                active[i], finished[i] = False, bool(eos & set(cur))
                feed[i], commit[i] = [], 0
            else:                                            # append the block with the next one's first step
                blk[i] += 1
                feed[i], commit[i] = cur + seqs[i][lo + bs:lo + 2 * bs], bs
    out = []
    for p, s in zip(prompts, seqs):
        gen = s[len(p):]
        cut = next((k for k, t in enumerate(gen) if t in eos), len(gen))
        out.append(gen[:cut])
    return BlockDecodeOutput(out, nfe, finished)


def score(model, method_out: BlockDecodeOutput, problems) -> dict:
    """Exact-match accuracy of the built-in task's answers and mean NFE."""
    from tasks.arith import extract_answer
    ok = [extract_answer(model.tokenizer.decode(t)) == p.answer for t, p in zip(method_out.tokens, problems)]
    acc = sum(ok) / len(ok)
    return {"n": len(ok), "accuracy": round(acc, 4), "accuracy_stderr": round(math.sqrt(acc * (1 - acc) / len(ok)), 4),
            "nfe_mean": round(float(method_out.nfe.float().mean()), 3)}


def evaluate_student(model, problems, gen_length: int, tau: float = 0.9, batch_size: int = 64) -> dict:
    prompts = [model.tokenizer.encode(p.prompt) for p in problems]
    toks, nfe, fin = [], [], []
    for i in range(0, len(prompts), batch_size):
        o = block_threshold_decode(model, prompts[i:i + batch_size], gen_length, tau)
        toks += o.tokens
        nfe.append(o.nfe)
        fin.append(o.finished)
    return score(model, BlockDecodeOutput(toks, torch.cat(nfe), torch.cat(fin)), problems)
