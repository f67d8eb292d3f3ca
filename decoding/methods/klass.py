"""`klass`: KL-adaptive stability sampling (arXiv 2511.05664; shkim0116/KLASS, src/model/llada_klass.py,
`stable_confident_decode`), as the authors compute it for LLaDA.

Each step, at every position the forward computed:
    kl_t   = sum_v p_t(v) (log(p_t(v) + 1e-12) - log(p_{t-1}(v) + 1e-12))   full vocabulary, float64
             (the authors' code computes it at every position; here at the current and next
             block, with the same commits: see below)
    run    = consecutive steps with kl < kl_tol   ("the last H KL values all < kl_tol" is run >= H)
then, among the masked positions of the row's current block:
    ready  = run >= H  &  in-block step >= H - 1  &  conf > tau
    commit = ready if any is ready, else LLaDA's quota (the top quota[step] by confidence).
p_{-1} = 0, so a position's first step is never stable; the previous distribution and the runs
carry across blocks. Defaults: the authors' LLaDA GSM8K script (tau 0.6, kl_tol 0.015, H 2).

`kl=full` (default) is the authors' KL. It needs the previous step's full distribution: the method
keeps log(p_{t-1} + 1e-12) in float64, the term the authors take again from their float64 p_{t-1}
each step, so the values are theirs and each step costs three float64 exp/log per element (the
log-sum-exp's exp, p's exp, log(p + eps)). These rows are kept only at the current and next block
(below), in a ring of 2 * block_length rows per batch row (position i in row slot i mod
2 * block_length: any two blocks in a row take distinct slots), [B, 2 * block_length + 1, V] float64:
66 MB at batch 1 and 527 MB at batch 8 for LLaDA-8B (block 32, V 126464). The KL and the ring update
are one operator (`kernels.klass_kl.kl_ring`): on the GPU two Triton kernels that read each logits
row twice and its ring row once and write the ring row in place, with no [b, W, V] temporary.
`kl=topk` needs only the loop's top-k summary of the previous distribution (Reads.topk, k = `topk`):
KL over the k tokens plus the rest as one bin, a lower bound of the full KL
(decoding/rules/klass.py), so a position can read as stable earlier than under the authors' KL: an
approximation.

The KL, runs and previous distributions are kept at the positions of the row's current block and
the next block only (positions outside them, which a prefix cache or a block-causal model's wider
block computes, are not kept and read as unstable). A decision reads runs only at the current
block, at in-block step H - 1 or later, where `run >= H` holds exactly when the last H KL values,
all taken inside the block, are below kl_tol; the next block's previous distributions are kept so
that its first step compares with the step before it, as the authors' KL does. So the commits are
the authors' while the float64 KL runs over 2 blocks' rows instead of all G (at batch 1 without a
cache, 64 rows instead of 256).

Under a KV cache a forward computes only some positions (StepOutput.fresh: with cache=dual the
current block, after the block's refresh). Only fresh positions update their KL, run and previous
distribution; the others keep them, so a position's KL always compares two forwards that computed
it. Without a cache (the authors' setting) every position is fresh every step. With kl=full only
masked positions do: a decision never reads a written position's KL again, so the operator takes
no pass over its vocabulary row (results/speed/step-graphs/REPORT.md measures it). Each step is one
forward (one NFE), refreshes included.

Differences from the authors' loop (docs/methods-fidelity.md, section 3): our block ends when it has
no mask, not after steps / blocks forwards (theirs can leave masks behind when a ready step commits
fewer tokens than the quota, and a quota larger than the masks left can overwrite written tokens);
with steps = gen_length (their runs) the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.klass_kl import kl_ring

from ..base import Method
from ..contract import Decision, Reads, StepOutput, StepView, block_positions, gather_rows, place_rows
from ..rules.klass import EPS, kl_topk, klass_select, stable_run
from ..select import quota_schedule

KL_MODES = ("full", "topk")


@dataclass
class KLASSConfig:
    tau: float = 0.6              # confidence threshold (conf > tau)
    kl_tol: float = 0.015         # a step is stable when its KL < kl_tol
    history: int = 2              # H: stable for the last H steps
    kl: str = "full"              # full (the authors' KL) | topk (bounded top-k summary, approximate)
    topk: int = 16                # summary size for kl=topk
    steps: int | None = None      # the fallback quota's total steps; None = gen_length (1 token per step)


class KLASSMethod(Method):
    name = "klass"
    Config = KLASSConfig

    def validate(self) -> None:
        c, g = self.cfg, self.gen
        if not 0.0 <= c.tau <= 1.0:
            raise ValueError(f"klass: tau={c.tau} must be in [0, 1] (e.g. klass:tau=0.6)")
        if not c.kl_tol > 0:
            raise ValueError(f"klass: kl_tol={c.kl_tol} must be > 0 (e.g. klass:kl_tol=0.015)")
        if c.history < 1:
            raise ValueError(f"klass: history={c.history} must be >= 1 (e.g. klass:history=2)")
        if c.kl not in KL_MODES:
            raise ValueError(f"klass: kl={c.kl!r}; choose one of {', '.join(KL_MODES)}")
        if c.topk < 1:
            raise ValueError(f"klass: topk={c.topk} must be >= 1 (e.g. klass:kl=topk,topk=16)")
        steps = c.steps if c.steps is not None else g.gen_length
        if steps <= 0 or steps % g.num_blocks or steps > g.gen_length:
            raise ValueError(f"klass: steps={steps} must be a multiple of the number of blocks ({g.num_blocks}) "
                             f"and at most gen_length ({g.gen_length})")
        self.steps_per_block = steps // g.num_blocks
        self.quota = quota_schedule(g.block_length, self.steps_per_block)

    def reads(self) -> Reads:
        if self.cfg.kl == "topk":
            return Reads(logits=True, history=True, topk=self.cfg.topk, logits_blocks=2)
        return Reads(logits=True, logits_blocks=2)

    def start(self, batch_size, device, generator=None) -> None:
        G = self.gen.gen_length
        self.quota = self.quota.to(device)
        self.run = torch.zeros((batch_size, G), dtype=torch.long, device=device)   # steps with kl < kl_tol
        self.seen = torch.zeros((batch_size, G), dtype=torch.bool, device=device)  # a previous distribution exists
        # kl=full: the ring [B, N + 1, V] of log(p + eps) in float64, allocated at the first decide (V
        # is known there). Whatever it holds where `seen` is False is never read: a kept captured
        # decode may leave the last call's values in it.
        if getattr(self, "ring", None) is not None and self.ring.shape[0] != batch_size:
            self.ring = None

    def kl(self, view: StepView, out: StepOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """(KL(p_t || p_{t-1}) per position [b, G] (float64), the positions whose distribution this
        step kept [b, G] bool) at the positions of the forward's logits rows (out.logits [b, W, V]:
        a cache window computes only its own rows) inside the current and next block; +inf
        elsewhere, where no previous distribution exists and (kl=full) at written positions."""
        rows, at = view.rows, out.logits_at
        b, W, V = out.logits.shape
        G = self.seen.shape[1]
        if at is None:
            at = torch.arange(G, device=out.logits.device).expand(b, G)
        inside = at < G                                   # G: a row outside the generated region
        window = block_positions(view, self.gen.block_length, blocks=2)
        if window is None:                                # no blocks: every position is kept
            N = G
        else:                                             # the current and next block (module docstring)
            N = 2 * self.gen.block_length
            start = (view.block_end - self.gen.block_length).unsqueeze(1)
            inside = inside & (at >= start) & (at < start + N)
        seen = self.seen[rows].gather(1, at.clamp(max=G - 1)) & inside
        fresh = out.fresh.gather(1, at.clamp(max=G - 1)) & inside
        if self.cfg.kl == "full":   # a written position's KL is never read again: the operator skips its row
            fresh = fresh & (view.tokens.gather(1, at.clamp(max=G - 1)) == view.mask_id)
        if self.cfg.kl == "topk":
            logits = out.logits.double()
            logp = logits - logits.logsumexp(-1, keepdim=True)
            h = view.history
            kl = kl_topk(gather_rows(h.topk_ids, at), gather_rows(h.topk_logp, at), logp)
        else:
            if getattr(self, "ring", None) is None or self.ring.shape[1:] != (N + 1, V):
                # slot N of each row: the positions outside, never fresh, never read
                B = self.seen.shape[0]
                self.ring = torch.zeros((B, N + 1, V), dtype=torch.float64, device=out.logits.device)
            slot = rows.unsqueeze(1) * (N + 1) + torch.where(inside, at % N, N)   # N consecutive positions: N slots
            kl = kl_ring(out.logits.reshape(b * W, V), self.ring, slot.reshape(-1), fresh.reshape(-1),
                         EPS).view(b, W)
        kl = torch.where(seen & fresh, kl, torch.inf)
        kept = place_rows(fresh, at, torch.zeros((b, G), dtype=torch.bool, device=kl.device))
        return place_rows(kl, at, torch.full((b, G), torch.inf, dtype=kl.dtype, device=kl.device)), kept

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        c, rows, fresh = self.cfg, view.rows, out.fresh
        if self.run.shape[1] != fresh.shape[1]:   # a block-causal model rounds G up to its blocks (reference loop only)
            B, G = self.run.shape[0], fresh.shape[1]
            self.run = torch.zeros((B, G), dtype=torch.long, device=fresh.device)
            self.seen = torch.zeros((B, G), dtype=torch.bool, device=fresh.device)
            self.ring = None
        out = out.block_rows(view, self.gen.block_length, blocks=2)   # see the module docstring
        kl, kept = self.kl(view, out)
        run = torch.where(fresh, stable_run(self.run[rows], kl, c.kl_tol), self.run[rows])
        self.run[rows] = run
        self.seen[rows] = self.seen[rows] | kept
        k = self.quota[view.step_in_block.clamp(max=self.steps_per_block - 1)]
        return Decision(klass_select(run, out.conf, view.candidates, k, c.history, c.tau,
                                     step_in_block=view.step_in_block, strict=True))
