"""A captured decode: every step is the forward's graph plus one graph of the rest of the step,
decoding.loop.decide_and_apply over every row (finished rows masked), so a step launches two
graphs and syncs once (on the counts it leaves: rows decoding, rows at a block start). Same
tokens and counts as the reference loop: decide treats each row on its own (decoding/base.py,
Method).

Before that sync the host queues the next step where it can: a GuardedStep (acceleration/
guarded.py) of the kind launched last, which runs only if the device finds it is the next step
(`guard`), so the GPU does not wait while the host reads the counts and launches
(results/speed/queue-ahead/REPORT.md). DLLM_QUEUE_AHEAD=0 switches it off.

The kinds of step come from the forward: without a cache one (the full forward graph, whose input
buffer holds the tokens meanwhile); with the dual cache a refresh and a window; with truncated
forwards (SlowFast) one per length the forward is cut at, the forward inside the step graph
(acceleration/captured_truncated.py), or, where that forward is not launch-bound, one whose
forward runs eagerly before the step graph (`truncated`). A dual-cache step whose rows need
different forwards (some at a block start, some not) is a kind of its own, `mixed`: the window
graph of every row and the refresh of the rows at a block start, merged into fixed buffers its
step graph reads (`mixed_forwards`; DLLM_MIXED_STEPS=0: the reference loop's eager step).

A GraphPool keeps it for the next decode call of the same shapes and method settings: that call
refills its state tensors and rebinds the new method object onto the tensors the graphs read
(`load`), so the step graphs replay as they are (building one took 4-8 ms on an H200,
results/speed/REPORT.md). It is kept only while the forward graphs and cache it reads are kept.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from decoding import loop
from decoding.contract import StepOutput, positions_of_blocks
from decoding.forward import verify_output
from decoding.select import token_stats
from . import graphs
from .compiled_step import compile_step


def truncated_steps_enabled() -> bool:
    """Truncated forwards inside their step graphs (acceleration/captured_truncated.py) unless
    DLLM_TRUNCATED_STEPS=0 (then they run eagerly before the step graph)."""
    return os.environ.get("DLLM_TRUNCATED_STEPS", "1") != "0"


def mixed_steps_enabled() -> bool:
    """Dual-cache steps whose rows need different forwards captured (`mixed`) unless
    DLLM_MIXED_STEPS=0 (then they run the reference loop's eager step)."""
    return os.environ.get("DLLM_MIXED_STEPS", "1") != "0"


SLOTS = 8   # pinned slots for the counts, more than are in flight: the last step's and those of the
            # steps queued ahead (at most 2 x len(next_kinds) - 1)


def queue_ahead_enabled() -> bool:
    """Steps queued ahead (GuardedStep) unless DLLM_QUEUE_AHEAD=0."""
    return os.environ.get("DLLM_QUEUE_AHEAD", "1") != "0"


@dataclass
class Kind:
    """One kind of captured step: `launch()` runs its forward (a graph replay; SlowFast's eager
    truncated forward) and returns the output, `stats(state, output)` what the step graph
    decides on (a StepOutput, or what the decode's `placed` makes one), `record()` issues the forward's kernels inside another capture
    (GuardedStep; None: never queued ahead)."""
    launch: Callable
    stats: Callable
    record: Callable | None


def copy_tree(obj):
    """A copy of a state: tensors cloned, dataclasses and lists rebuilt, everything else shared."""
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: copy_tree(getattr(obj, f.name))
                                           for f in dataclasses.fields(obj) if f.init})
    if isinstance(obj, list):
        return [copy_tree(v) for v in obj]
    return obj


def fill_tree(dst, src) -> None:
    """Copy every tensor of `src` into the same place of `dst` (same structure and shapes)."""
    if isinstance(dst, torch.Tensor):
        dst.copy_(src)
    elif dataclasses.is_dataclass(dst):
        for f in dataclasses.fields(dst):
            fill_tree(getattr(dst, f.name), getattr(src, f.name))


def method_tensors(method) -> dict:
    """The tensors of a method that its step graphs may read, by name: its tensor attributes, and
    the parameters and buffers of its module attributes ("ctrl.inp.weight": PRR's controller)."""
    out = {}
    for k, v in vars(method).items():
        if isinstance(v, torch.Tensor):
            out[k] = v
        elif isinstance(v, torch.nn.Module):
            out.update({f"{k}.{n}": t for n, t in v.state_dict(keep_vars=True).items()})
    return out


def _same_layout(new, t: torch.Tensor) -> bool:
    return isinstance(new, torch.Tensor) and new.shape == t.shape and new.dtype == t.dtype


class CapturedDecode:
    # Whether after_decide and count run inside the compiled part of a step, on the generated
    # region (they read no prompt position and no attention mask there), fused with the decide.
    settle_in_compiled_step = False

    def __init__(self, model, method, state, forward, kinds, choose, current):
        self.model, self.method, self.state, self.forward = model, method, state, forward
        self.kinds, self.choose, self.current = kinds, choose, current
        dev, cuda = state.tokens.device, state.tokens.is_cuda
        self.dcounts = torch.zeros(2, dtype=torch.long, device=dev)   # decoding; at a block start (or width)
        # the host reads the counts from pinned slots, written in turn, each after its own event
        self.slots = [torch.zeros(2, dtype=torch.long, pin_memory=cuda) for _ in range(SLOTS)]
        self.events = [torch.cuda.Event() if cuda else None for _ in range(SLOTS)]
        self.published, self.n_active = 0, 0
        self.every = torch.arange(state.tokens.shape[0], device=dev)
        self.steps: dict[str, graphs.CapturedStep] = {}
        self.guarded: dict = {}      # kind -> GuardedStep (None: that kind is not queued ahead)
        self.replays: dict = {}      # kind -> steps of that kind (benchmarks read it); "eager" -> eager steps
        self.starts: dict = {}       # (kind or "eager", the second count the host read: rows at a block
                                     # start; a block decode's width) -> steps of the last call
        self.ahead_steps = 0         # steps of the last call that ran as a step queued ahead
        self.counted_by_launch: set = set()   # kinds whose launch counts the NFE itself (an eager forward)
        self.compiled_kinds: list[bool] = []  # per step graph built: whether its decide was compiled
        self.step_fns: dict = {}              # kind -> the Python step(state, forward output) a step graph holds
        self.launched: dict = {}              # kind -> the forward output its step graph reads (probes use both)

    @classmethod
    def build(cls, pool, calls, model, method, state, generator) -> "CapturedDecode | None":
        """None where the forwards are not graphed (too large to be launch-bound, prefix cache)."""
        reads = method.reads()
        forward = loop.new_forward(model, method, state, generator, calls)
        if reads.truncated:
            if truncated_steps_enabled() and pool.launch_bound(state.tokens.numel()):
                from .captured_truncated import CapturedTruncatedDecode   # a subclass of this one
                return CapturedTruncatedDecode.build_truncated(model, method, state, forward)
            return cls.truncated(model, method, state, forward)
        P = state.P
        if reads.verify:
            return cls.verify(pool, model, method, state, forward)
        if forward.stepper is None:
            fwd = pool.full_graph(state.tokens, state.attn_fwd, reads.hidden, P)
            if fwd is None:
                return None
            fwd.inputs[0].copy_(state.tokens)
            state.tokens = fwd.inputs[0]     # the graph's input buffer holds the tokens: no copy per step
            if state.attn_fwd is not None:   # the graph's mask buffer too (a kept decode refills it)
                fwd.inputs[1].copy_(state.attn_fwd)
                state.attn_fwd = fwd.inputs[1]

            def stats(state, out):   # the forward's output is the generated region's (logits_from=P)
                x0, conf = token_stats(out.logits)
                return StepOutput(x0, conf, torch.ones_like(x0, dtype=torch.bool),
                                  out.logits if reads.logits else None, out.hidden)
            kinds = {"full": Kind(lambda: fwd(*fwd.inputs), stats, lambda: fwd.record(*fwd.inputs))}
            attn_fwd, tokens = state.attn_fwd, state.tokens
            return cls(model, method, state, forward, kinds, lambda n_active, n_start: "full",
                       lambda: pool.kept_full_graph(tokens, attn_fwd, reads.hidden, P) is fwd)
        st = forward.stepper
        if st.mode != "dual":
            return None
        kinds, every = {}, torch.arange(st.B, device=state.tokens.device)
        mask = state.attn if st.padded else None
        x = state.tokens
        g = calls.refresh_graph(st, x, mask, reads.hidden)
        if g is not None:
            kinds["refresh"] = Kind(lambda: g(x, mask),
                                    lambda state, out: st.refresh_output(every, out.logits, out.hidden, 0.0, reads, None),
                                    lambda: g.record(x, mask))
        width = st.BL + st.shift
        window = lambda: calls.window_graph(st, x, state.attn, state.rows.block, width, reads.hidden)
        kinds["window"] = Kind(lambda: calls.window(st, x, state.attn, state.rows.block, width, reads.hidden),
                               lambda state, out: st.window_output(every, out[0].logits, out[0].hidden, out[1],
                                                                   0.0, reads, None),
                               lambda: window().record(x, mask, state.rows.block))
        choose = lambda n_active, n_start: ("refresh" if n_start == n_active and "refresh" in kinds
                                            else "window" if n_start == 0
                                            else "mixed" if mixed_steps_enabled() else None)
        kept = pool.cache(st.B, st.L)
        d = cls(model, method, state, forward, kinds, choose, lambda: pool.caches.get((st.B, st.L)) is kept)
        kinds["mixed"] = Kind(lambda: d.mixed_forwards(calls, width), lambda state, out: out, None)
        d.mixed_out = None
        return d

    def mixed_forwards(self, calls, width) -> StepOutput:
        """The forwards of a step whose rows need different ones (dual cache: some rows at a block
        start, some not; every row at a block start where no refresh graph is kept), as the
        reference loop's step runs them except that the window covers every row: the window
        graph of every row first (the rows at a block start discard theirs), then the refresh of
        the rows at a block start (it rewrites their whole cache rows, the window's K/V included;
        a graph where it is one launch-bound row, as one row of LLaDA-8B is, else eager). Their
        outputs, merged as the reference merges them (decoding/cache.py, _merge: logits dense in
        fp32), land in fixed buffers that the step graph of this kind reads. A method that reads
        the logits rows of its blocks only (Reads.logits_blocks, no top-k history) gets those rows
        alone, as the merged output's block_rows would give them ([B, blocks x block, V] in place
        of [B, G, V])."""
        s, st, reads, every = self.state, self.forward.stepper, self.method.reads(), self.every
        start = (~s.rows.done) & (s.rows.step_in_block == 0)
        ri = start.nonzero().squeeze(1)                  # rows at a block start (the host knows the count)
        x = s.tokens
        if ri.numel() < self.n_active:
            w_out, pos = calls.window(st, x, s.attn, s.rows.block, width, reads.hidden)
            w = st.window_output(every, w_out.logits, w_out.hidden, pos, 0.0, reads, None)
        r = st._refresh(ri, x[ri], s.attn[ri], s.rows.block[ri], self.method, reads, None)
        blocks = reads.logits_blocks if reads.logits and not reads.topk else 0
        at = None if not blocks else positions_of_blocks((s.rows.block + 1) * st.BL, st.G, st.BL, blocks)
        if self.mixed_out is None:
            B, G = x.shape[0], st.G
            dev = x.device
            rows = G if at is None else at.shape[1]
            self.mixed_out = StepOutput(
                torch.zeros((B, G), dtype=torch.long, device=dev), torch.zeros((B, G), device=dev),
                torch.zeros((B, G), dtype=torch.bool, device=dev),
                None if r.logits is None else torch.zeros((B, rows, r.logits.shape[-1]), device=dev),
                None if r.hidden is None else r.hidden.new_zeros((B, G, r.hidden.shape[-1])),
                logits_at=None if at is None or r.logits is None else torch.zeros_like(at))
        buf = self.mixed_out
        if buf.logits_at is not None:
            buf.logits_at.copy_(at)
        if ri.numel() < self.n_active:
            for name in ("x0", "conf", "fresh"):
                getattr(buf, name).copy_(getattr(w, name))
            if buf.logits is not None:
                merge_window_logits(buf, w)
            if buf.hidden is not None:
                buf.hidden.copy_(w.hidden)
        buf.x0[ri], buf.conf[ri], buf.fresh[ri] = r.x0, r.conf, r.fresh
        if buf.logits is not None:
            buf.logits[ri] = (r.logits if at is None else rows_of(r.logits, at[ri].clamp(max=st.G - 1))).float()
        if buf.hidden is not None:
            buf.hidden[ri] = r.hidden
        return buf

    def guard(self, kind):
        """On the device, from the counts the last step left: whether `choose` would give `kind`
        for the next step (a step queued ahead runs only then)."""
        active, start = self.dcounts[0] > 0, self.dcounts[1]
        if kind == "refresh":
            return active & (start == self.dcounts[0])
        if kind == "window":
            return active & (start == 0)
        return active

    @classmethod
    def verify(cls, pool, model, method, state, forward) -> "CapturedDecode | None":
        """A verification forward (Reads.verify: WINO) of every row as a graph that builds its
        inputs from the tokens, mask and blocks, whose buffers hold them meanwhile (no copy per
        step); the step graph reads its output (decoding.forward.verify_output)."""
        P, BL, mask_id, hidden = state.P, state.gen.block_length, model.mask_id, method.reads().hidden
        g = pool.verify_graph(state.tokens, state.attn, state.rows.block, P, BL, mask_id, hidden)
        if g is None:
            return None
        for t, name in zip(g.inputs, ("tokens", "attn")):
            t.copy_(getattr(state, name))
            setattr(state, name, t)
        g.inputs[2].copy_(state.rows.block)
        state.rows.block = g.inputs[2]
        tokens, gen = state.tokens, state.gen

        def stats(s, out):
            return verify_output(s.tokens, P, out[0], out[1], mask_id, 0.0, None, method.reads())
        return cls(model, method, state, forward,
                   {"verify": Kind(lambda: g(*g.inputs), stats, lambda: g.record(*g.inputs))},
                   lambda n_active, n_start: "verify",
                   lambda: pool.kept_verify_graph(tokens, gen.block_length, hidden) is g)

    @classmethod
    def truncated(cls, model, method, state, forward) -> "CapturedDecode":
        """Truncated forwards (Plan.extent: SlowFast), whose fed length changes from step to step,
        where they are not launch-bound (else CapturedTruncatedDecode) or DLLM_TRUNCATED_STEPS=0:
        the plan and the forward run eagerly, as the reference loop runs them (the rows decoding,
        their NFE, the reuse store), their statistics land in fixed [B, G] buffers, and the rest of
        the step is the step graph over every row. No step is queued ahead (the plan is host work)."""
        B, G, dev = state.tokens.shape[0], state.gen.gen_length, state.tokens.device
        buf = StepOutput(torch.zeros((B, G), dtype=torch.long, device=dev), torch.zeros((B, G), device=dev),
                         torch.zeros((B, G), dtype=torch.bool, device=dev))
        d = cls(model, method, state, forward, {}, lambda n_active, n_start: "truncated", lambda: True)

        def launch():
            s = d.state   # every row decoding (the step's count, on the host): no sync for nonzero()
            rows = d.every if d.n_active == B else (~s.rows.done).nonzero().squeeze(1)
            out = d.forward(s, rows, d.method.plan(s.view(rows, rows)))
            buf.x0[rows], buf.conf[rows], buf.fresh[rows] = out.x0, out.conf, out.fresh
            return buf
        d.kinds["truncated"] = Kind(launch, lambda s, out: out, None)
        d.counted_by_launch = {"truncated"}
        return d

    def fits(self, method) -> bool:
        """Whether `load` can rebind this new method object: its module attributes hold tensors of
        the captured ones' shapes (a controller of another size needs graphs of its own)."""
        news = method_tensors(method)
        return all(_same_layout(news.get(name), t) for name, t in method_tensors(self.method).items() if "." in name)

    def load(self, method, state, generator) -> None:
        """Refill with a new call's state (same shapes) and rebind the call's method object: its
        tensors become the ones the captured graphs read, holding the new object's values. A
        tensor the new object has not made yet, or made in another shape (a buffer its first
        decide makes or remakes: klass's previous logits, and its runs sized to a block-causal
        layout), is the captured one zeroed, as that decide would make it (Method.decide's
        contract): an eager step of this call (a step no graph serves) then reads and writes the
        buffer the graphs do, not a second one. A module attribute (a learned controller) is the
        captured module, holding the new object's weights: the graphs read its parameters."""
        tokens = self.state.tokens
        fill_tree(self.state, state)
        news = method_tensors(method)
        for name, t in method_tensors(self.method).items():
            new = news.get(name)
            if _same_layout(new, t):
                t.copy_(new)
            else:   # made or remade by the method's first decide, which starts it at zeros
                t.zero_()
            if "." not in name:
                setattr(method, name, t)
        for k, v in vars(self.method).items():
            if isinstance(v, torch.nn.Module):
                setattr(method, k, v)
        self.method = self.forward.method = method
        self.forward.generator = generator
        assert self.state.tokens is tokens

    def run(self) -> None:
        """The host's loop: read the counts the last step left (the one sync), choose the next
        step's kind, launch its forward and step graph. Where GuardedSteps of the kinds that may
        come next exist (next_kinds), they are queued before the sync, each followed by its counts:
        the GPU runs one where its device-side guard finds it is the next step (no idle gap while
        the host reads and launches), else it does nothing. The host then accounts for them in
        order: one of the kind it reads ran, the ones before it were skipped. While fewer steps
        are queued than the kinds that may come next, those kinds are queued again behind them."""
        state = self.state
        self.count(state)
        slot, last, self.ahead_steps, self.starts = self.publish(), None, 0, {}
        queued = []   # [(kind, the slot published after it)] queued ahead, not yet accounted for
        while True:
            nexts = self.next_kinds(last)
            if len(queued) < len(nexts):   # behind what is queued still (run or skipped in order)
                for k in nexts:
                    if self.queue_ahead(k):
                        queued.append((k, self.publish()))
            n_active, n_start = self.read(slot)   # the step's one host sync
            self.n_active = n_active
            if n_active == 0:
                break
            kind = self.choose(n_active, n_start)
            self.replays[kind or "eager"] = self.replays.get(kind or "eager", 0) + 1
            key = (kind or "eager", n_start)
            self.starts[key] = self.starts.get(key, 0) + 1
            while queued and queued[0][0] != kind:   # its guard found another kind: it did nothing
                queued.pop(0)
            if queued:   # the step queued ahead is this step
                self.ahead_steps += 1
                slot, last = queued.pop(0)[1], kind
                continue
            if kind is None:
                self.eager_step((~state.rows.done).nonzero().squeeze(1))
                self.count(state)
            else:
                out = self.kinds[kind].launch()   # the forward
                if kind not in self.steps:
                    saved = [(t, t.clone()) for t in self.kept_by_warm_up()]
                    before = method_tensors(self.method)
                    self.steps[kind] = self.capture_step(kind, out)
                    for t, v in saved:   # the warm-ups ran on the copies' rows
                        t.copy_(v)
                    for name, t in method_tensors(self.method).items():
                        if t is not before.get(name):   # made by the warm-up's decide: as that decide made it
                            t.zero_()
                self.replay_step(kind)
            slot, last = self.publish(), kind

    def publish(self) -> int:
        """Copy the device counts to the next pinned slot, after everything queued so far."""
        i = self.published = (self.published + 1) % len(self.slots)
        self.slots[i].copy_(self.dcounts, non_blocking=True)
        if self.events[i] is not None:
            self.events[i].record()
        return i

    def read(self, i: int) -> list[int]:
        if self.events[i] is not None:
            self.events[i].synchronize()
        return self.slots[i].tolist()

    def next_kinds(self, last) -> tuple:
        """The kinds of the steps queued ahead, in order, after a step of kind `last` (None: none):
        the same kind."""
        return () if last is None else (last,)

    def queue_ahead(self, kind):
        """Replay the GuardedStep of `kind` (built at its first use), or None where there is none:
        no kind yet, a kind not captured yet, a kind whose forward is host work, switched off, or
        not buildable here."""
        if kind is None or kind not in self.step_fns or not queue_ahead_enabled():
            return None
        if kind not in self.guarded:
            self.guarded[kind] = self.build_guarded(kind)
        g = self.guarded[kind]
        if g is not None:
            g.replay()
        return g

    def build_guarded(self, kind):
        record, step = self.kinds[kind].record, self.step_fns.get(kind)
        if record is None or step is None:
            return None
        try:
            return graphs.GuardedStep(lambda: self.guard(kind), lambda: step(self.state, record()))
        except Exception as e:   # e.g. a CUDA runtime before 12.4: the step keeps its sync
            warnings.warn(f"steps of kind {kind!r} are not queued ahead ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})")
            return None

    def replay_step(self, kind) -> None:
        self.steps[kind].replay()

    def eager_step(self, rows: torch.Tensor) -> None:
        loop.step(self.state, self.method, self.forward, rows)

    def after_decide(self, state) -> None:
        """Device work a step graph does after the bookkeeping, before the counts (none here)."""

    def count(self, state) -> None:
        """dcounts <- [rows still decoding, of them at the first step of a block]."""
        act = ~state.rows.done
        self.dcounts.copy_(torch.stack([act.sum(), (act & (state.rows.step_in_block == 0)).sum()]))

    def placed(self, out) -> StepOutput:
        """A kind's `stats` output as the StepOutput the decide reads (here it is one already)."""
        return out

    def kept_by_warm_up(self) -> list[torch.Tensor]:
        """Tensors outside the state that a step graph's warm-up writes, restored after it."""
        return list(method_tensors(self.method).values())

    def capture_step(self, kind, launched) -> graphs.CapturedStep:
        """The step graph: the token statistics of the forward graph's output (`stats`), then
        `decide_step` compiled into fused kernels where it traces as one graph
        (acceleration/compiled_step.py), then after_decide and the counts the host reads (inside
        the compiled part where `settle_in_compiled_step` holds). `launched`: the forward's
        output (a graph's static tensors). Warm-ups run on copies.

        The compiled part sees the generated region only, in tensors whose shapes and strides do
        not depend on the prompt's length (the tokens copied in and out of a [B, G] buffer, the
        forward's rows made contiguous): the next batch's prompt length reuses the compiled code
        instead of compiling again (seconds)."""
        stats, nfe = self.kinds[kind].stats, kind not in self.counted_by_launch
        P = self.state.P
        gen = self.state.tokens[:, P:].clone()

        def generated(state):   # the state as decide_step reads it: generated tokens in `gen`, no prompt
            gen.copy_(state.tokens[:, P:])
            return dataclasses.replace(state, tokens=gen, attn=None, attn_fwd=None, P=0)

        settle = self.settle_in_compiled_step
        lead = (self,) if settle else ()

        def copies():
            state = copy_tree(self.state)
            return *lead, generated(state), contiguous(stats(state, launched)), self.method, self.every, nfe
        decide = compile_step(decide_and_settle if settle else decide_step, copies, self.state.tokens.device)
        self.compiled_kinds.append(decide.why_not is None)

        def step(state, launched):
            out = contiguous(stats(state, launched))
            decide(*lead, generated(state), out, self.method, self.every, nfe)
            state.tokens[:, P:].copy_(gen)
            if not settle:
                self.after_decide(state)
                self.count(state)
        self.step_fns[kind], self.launched[kind] = step, launched
        return graphs.CapturedStep(lambda state: step(state, launched), self.state, copy_tree)


def merge_window_logits(buf: StepOutput, w: StepOutput) -> None:
    """Write a cache window's logits rows (w.logits at w.logits_at, inside the generated region) into
    the merged buffer in fp32, zeros elsewhere: dense [B, G, V] where buf.logits_at is None, else
    the rows at buf.logits_at, as the dense buffer's rows_at would read them."""
    if buf.logits_at is None:   # written in place: no [B, G, V] temporaries
        at = w.logits_at.unsqueeze(-1).expand(*w.logits.shape)
        buf.logits.zero_().scatter_(1, at, w.logits.float())
        return
    B, W = w.logits_at.shape
    G = w.x0.shape[1]
    row = torch.full((B, G + 1), -1, dtype=torch.long, device=w.logits.device)   # window row of each position
    row.scatter_(1, w.logits_at, torch.arange(W, device=row.device).expand(B, W))
    j = row.gather(1, buf.logits_at.clamp(max=G - 1))
    buf.logits.copy_(rows_of(w.logits, j.clamp(min=0))).masked_fill_((j < 0).unsqueeze(-1), 0.0)


def rows_of(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """t [b, N, V] at rows idx [b, K] (each in range) -> [b, K, V]."""
    return t.gather(1, idx.unsqueeze(-1).expand(*idx.shape, t.shape[-1]))


def contiguous(out: StepOutput) -> StepOutput:
    """`out` with every tensor contiguous (a view into a forward's [B, P + G, ...] output is
    copied; the rest is left as it is)."""
    return dataclasses.replace(out, **{f.name: getattr(out, f.name).contiguous() for f in dataclasses.fields(out)
                                       if isinstance(getattr(out, f.name), torch.Tensor)})


def decide_step(state, out, method, every, nfe: bool) -> None:
    """The part of a captured step after the token statistics: the NFE (unless the launch counted
    it) and decoding.loop.decide_and_apply over every row, finished rows masked."""
    act = ~state.rows.done
    if nfe:
        state.nfe += act.long()
    loop.decide_and_apply(state, method, slice(None), every, out, act)


def decide_and_settle(decode, state, out, method, every, nfe: bool) -> None:
    """decide_step, then the decode's after_decide and count on the same (generated) state: one
    compiled function where `settle_in_compiled_step` holds. `out` is what the kind's `stats`
    returned, made a StepOutput by the decode's `placed`."""
    decide_step(state, decode.placed(out), method, every, nfe)
    decode.after_decide(state)
    decode.count(state)
