"""EOS-aware token accounting: what a decode produced, counted two ways, never the prompt.

- answer tokens (`gen_tokens`): generated tokens before the first EOS. `tpf` and `tokens_per_s`
  count these.
- committed tokens (`committed_tokens`): every generated position the decode committed. The loop
  (decoding/loop.py) commits inside the current block only and, with early stop, ends a row when
  a completed block holds EOS; so a row that stopped early committed the blocks up to and
  including the block of its first EOS, and any other row (no EOS, early stop off, or ended by the
  step cap, which fills every remaining mask) committed all gen_length positions.
  `tpf_all` and `tokens_per_s_all` count these.

At a long generation length most committed positions of a short answer are EOS padding; a method
that stops early commits fewer of them. `tpf` vs `tpf_all` side by side shows whether a speedup
is decoding (more answer tokens per forward) or padding skipped. Prompt tokens are in neither
count (`prompt_tokens` is recorded apart).
"""
from __future__ import annotations

import hashlib


def committed_tokens(gen_tokens: int, gen_length: int, block_length: int, early_stop: bool, capped: bool) -> int:
    """Generated positions committed by the decode of one row (see the module doc)."""
    if not early_stop or capped or gen_tokens >= gen_length:
        return gen_length
    return min(gen_length, (gen_tokens // block_length + 1) * block_length)


def tokens_digest(ids) -> str:
    """A short fingerprint of a row's generated token ids (all gen_length positions): equal
    digests mean equal tokens, so runs can be compared sample for sample without storing ids."""
    return hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()[:16]


def totals(reqs: list[dict], decode_time_s: float) -> dict:
    """Summary fields of both counts for one method's request lines (ratios of totals)."""
    nfe = sum(r["nfe"] for r in reqs)
    ans = sum(r["gen_tokens"] for r in reqs)
    com = [r.get("committed_tokens") for r in reqs]
    com_total = sum(com) if com and all(c is not None for c in com) else None
    per_s = lambda t: t / decode_time_s if t is not None and decode_time_s > 0 else None
    return {"committed_tokens_mean": com_total / len(reqs) if com_total is not None else None,
            "tpf_all": com_total / nfe if com_total is not None and nfe else None,
            "tokens_per_s_all": per_s(com_total),
            "answer_frac": ans / com_total if com_total else None}
