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
keeps the logits it came from, [B, G, V] in float32 (exact for bf16 and fp32 logits; B * G * V * 4
bytes: 1.04 GB for LLaDA-8B at batch 8, G 256, V 126464), and each position's float64 log-sum-exp,
and recomputes log p_{t-1} = logits.double() - lse: the authors' float64 log-softmax of the same
logits, to float64 rounding, at half the memory of keeping float64 log-probabilities. The KL, the
log-sum-exp and the kept rows come from one row function (`decoding.rules.klass.kl_full_rows`),
compiled into one fused kernel on the GPU: it reads the logits and the kept rows once and writes
the kept rows once, with no [b, W, V] float64 temporary. `kl=topk` needs only the loop's top-k summary
of the previous distribution (Reads.topk, k = `topk`): KL over the k tokens plus the rest as one
bin, a lower bound of the full KL (decoding/rules/klass.py), so a position can read as stable
earlier than under the authors' KL: an approximation.

The KL, runs and previous distributions are kept at the positions of the row's current block and
the next block only. A decision reads runs only at the current block, at in-block step H - 1 or
later, where `run >= H` holds exactly when the last H KL values, all taken inside the block, are
below kl_tol; the next block's previous distributions are kept so that its first step compares
with the step before it, as the authors' KL does. So the commits are the authors' while the float64
KL runs over 2 blocks' rows instead of all G (at batch 1 without a cache, 64 rows instead of 256).

Under a KV cache a forward computes only some positions (StepOutput.fresh: with cache=dual the
current block, after the block's refresh). Only fresh positions update their KL, run and previous
distribution; the others keep them, so a position's KL always compares two forwards that computed
it. Without a cache (the authors' setting) every position is fresh every step. Each step is one
forward (one NFE), refreshes included.

Differences from the authors' loop (docs/methods-fidelity.md, section 3): our block ends when it has
no mask, not after steps / blocks forwards (theirs can leave masks behind when a ready step commits
fewer tokens than the quota, and a quota larger than the masks left can overwrite written tokens);
with steps = gen_length (their runs) the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base import Method
from ..contract import Decision, Reads, StepOutput, StepView, block_positions, gather_rows, place_rows
from ..rules.klass import kl_full_rows, kl_topk, klass_select, stable_run
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
            return Reads(logits=True, history=True, topk=self.cfg.topk)
        return Reads(logits=True)

    def start(self, batch_size, device, generator=None) -> None:
        G = self.gen.gen_length
        self.quota = self.quota.to(device)
        self.run = torch.zeros((batch_size, G), dtype=torch.long, device=device)   # steps with kl < kl_tol
        self.seen = torch.zeros((batch_size, G), dtype=torch.bool, device=device)  # a previous distribution exists
        # [B, G + 1, V] previous logits and [B, G + 1] their float64 log-sum-exp (kl=full), allocated
        # at the first decide (V is known there). Whatever it holds where `seen` is False is never read: a kept captured decode may
        # leave the last call's values in it.
        if getattr(self, "prev", None) is not None and self.prev.shape[:2] != (batch_size, G + 1):
            self.prev = None

    def kl(self, view: StepView, out: StepOutput) -> torch.Tensor:
        """KL(p_t || p_{t-1}) per position [b, G] (float64) at the positions of the forward's logits
        rows (out.logits [b, W, V]: a cache window computes only its own rows); +inf elsewhere and
        where no previous distribution exists. kl=full keeps this step's logits of fresh rows."""
        rows, at = view.rows, out.logits_at
        b, W, V = out.logits.shape
        G = self.seen.shape[1]
        if at is None:
            at = torch.arange(G, device=out.logits.device).expand(b, G)
        inside = at < G                                   # G: a row outside the generated region
        seen = self.seen[rows].gather(1, at.clamp(max=G - 1)) & inside
        if self.cfg.kl == "topk":
            logits = out.logits.double()
            logp = logits - logits.logsumexp(-1, keepdim=True)
            h = view.history
            kl = kl_topk(gather_rows(h.topk_ids, at), gather_rows(h.topk_logp, at), logp)
        else:
            if getattr(self, "prev", None) is None or self.prev.shape[1:] != (G + 1, V):
                # one spare position G: rows outside the region are written there, never read
                B = self.seen.shape[0]
                self.prev = torch.zeros((B, G + 1, V), dtype=torch.float32, device=out.logits.device)
                self.prev_lse = torch.zeros((B, G + 1), dtype=torch.float64, device=out.logits.device)
            r = rows.unsqueeze(1).expand(b, W)
            prev_lse = self.prev_lse[r, at]
            fresh = out.fresh.gather(1, at.clamp(max=G - 1)) & inside
            kl, lse, keep = kl_full_rows(out.logits.reshape(b * W, V), self.prev[r, at].view(b * W, V),
                                         prev_lse.reshape(-1), seen.reshape(-1), fresh.reshape(-1))
            kl = kl.view(b, W)
            self.prev[r, at] = keep.view(b, W, V)
            self.prev_lse[r, at] = torch.where(fresh, lse.view(b, W), prev_lse)
        kl = torch.where(seen, kl, torch.inf)
        return place_rows(kl, at, torch.full((b, G), torch.inf, dtype=kl.dtype, device=kl.device))

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        c, rows, fresh = self.cfg, view.rows, out.fresh
        if self.run.shape[1] != fresh.shape[1]:   # a block-causal model rounds G up to its blocks (reference loop only)
            B, G = self.run.shape[0], fresh.shape[1]
            self.run = torch.zeros((B, G), dtype=torch.long, device=fresh.device)
            self.seen = torch.zeros((B, G), dtype=torch.bool, device=fresh.device)
            self.prev = None
        out = out.rows_at(block_positions(view, self.gen.block_length, blocks=2))   # see the module docstring
        kl = self.kl(view, out)
        run = torch.where(fresh, stable_run(self.run[rows], kl, c.kl_tol), self.run[rows])
        self.run[rows] = run
        at = out.logits_at   # the positions whose previous distribution this step kept (None: all)
        kept = fresh if at is None else fresh & place_rows(torch.ones_like(at, dtype=torch.bool), at,
                                                           torch.zeros_like(fresh))
        self.seen[rows] = self.seen[rows] | kept
        k = self.quota[view.step_in_block.clamp(max=self.steps_per_block - 1)]
        return Decision(klass_select(run, out.conf, view.candidates, k, c.history, c.tau,
                                     step_in_block=view.step_in_block, strict=True))
