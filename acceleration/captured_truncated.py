"""A captured decode of a method that plans truncated forwards (Plan.extent: SlowFast's fast phase
feeds prompt + x[:e]): each step one CUDA graph, like a full-forward step, per fed length.

The fed length changes from step to step, so the kinds of step are the lengths the forwards are cut
at: prompt + the longest extent of the rows decoding, rounded up to TRUNCATED_BUCKET tokens
(acceleration/pool.py; prompt + gen_length at most), masked or not. A kind's step graph holds the
whole step:

    the forward of every row at that length, each row's positions past its extent hidden by its
    mask (as decoding.forward.truncate hides a shorter row's), finished rows fed nothing; where
    nothing is hidden (no left padding, every row decoding fed to the cut) the forward takes no
    mask, as a full forward does: the kind is then the length negated;
    the token statistics, padded to the region from the reuse store (decoding.forward.reuse_beyond:
    beyond a row's extent x0/conf repeat its last full forward; a full forward refreshes the store);
    the method's decision and the loop's bookkeeping (decoding.loop.decide_and_apply, compiled);
    the next step's plan (method.plan over every row, a pure function of the state) and from it
    the counts the host reads: [rows decoding, the next forward's length].

So a step launches one graph and syncs once, and a step of the same length as the last is queued
ahead (acceleration/captured.py). Same tokens and counts as the reference loop, whose truncated
forwards replay the full-forward graph at the same lengths (GraphedCalls.truncated). Used where
those forwards are launch-bound (acceleration/pool.py); otherwise CapturedDecode.truncated runs
them eagerly before a step graph.
"""
from __future__ import annotations

import torch

from decoding.forward import reuse_beyond
from decoding.select import token_stats
from . import pool
from .captured import CapturedDecode, Kind, method_tensors


class CapturedTruncatedDecode(CapturedDecode):
    @classmethod
    def build_truncated(cls, model, method, state, forward) -> "CapturedTruncatedDecode":
        d = cls(model, method, state, forward, {}, None, lambda: True)
        d.choose = d.kind_of_length
        d.fed = torch.zeros(state.tokens.shape[0], dtype=torch.long, device=state.tokens.device)
        return d

    def kind_of_length(self, n_active: int, length: int) -> int:
        """The kind of a step whose forward is cut at `length` (negative: at -length, no mask),
        built at its first use."""
        if length not in self.kinds:
            self.kinds[length] = Kind(lambda: None, self.stats_at(abs(length), length > 0), lambda: None)
        return length

    def stats_at(self, L: int, masked: bool):
        P, G = self.state.P, self.state.gen.gen_length
        model = self.model

        def stats(s, launched):   # the truncated forward is part of the step graph
            act = ~s.rows.done
            fed = torch.where(act, self.fed, 0)
            mask = None
            if masked:
                mask = s.attn[:, :L].clone()
                mask[:, P:] *= (torch.arange(L - P, device=fed.device).unsqueeze(0) < fed.unsqueeze(1)).to(mask.dtype)
            out = model.forward(s.tokens[:, :L], mask, logits_from=P)
            s.nfe_truncated += (act & (fed < G)).long()
            x0, conf = token_stats(out.logits)
            return reuse_beyond(self.forward.reuse, self.every, fed, x0, conf, None, None, G)
        return stats

    def count(self, state) -> None:
        """dcounts <- [rows still decoding, the length their next forward is cut at, negated where
        it needs no mask]; the next step's extents (the method's plan for every row) go to `fed`."""
        P, G = state.P, state.gen.gen_length
        act = ~state.rows.done
        extent = self.method.plan(state.view(slice(None), self.every)).extent
        self.fed.copy_(torch.full_like(self.fed, G) if extent is None else extent)
        n, bucket = torch.where(act, self.fed, 0).max(), pool.TRUNCATED_BUCKET
        length = torch.clamp(P + (n + bucket - 1) // bucket * bucket, max=P + G)
        if state.attn_fwd is None:   # no left padding: no mask where every row decoding is fed to the cut
            length = torch.where(((self.fed == length - P) | ~act).all(), -length, length)
        self.dcounts.copy_(torch.stack([act.sum(), length]))

    def guard(self, kind):
        return (self.dcounts[0] > 0) & (self.dcounts[1] == kind)

    def kept_by_warm_up(self) -> list[torch.Tensor]:
        reuse = self.forward.reuse
        return list(method_tensors(self.method).values()) + [self.fed, reuse.x0, reuse.conf]
