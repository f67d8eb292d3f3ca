"""A captured decode: every step is the forward's graph plus one graph of the rest of the step,
decoding.loop.decide_and_apply over every row (finished rows masked), so a step launches two
graphs and syncs once (on counts the step graph copies out). Same tokens and counts as the
reference loop: decide treats each row on its own (decoding/base.py, Method).

The kinds of step come from the forward: without a cache one (the full forward graph, whose input
buffer holds the tokens meanwhile); with the dual cache a refresh and a window; with truncated
forwards (SlowFast) one whose forward runs eagerly before the step graph (`truncated`). A step whose rows
need different kinds (some at a block start, some not) runs eagerly (decoding.loop.step).

A GraphPool keeps it for the next decode call of the same shapes and method settings: that call
refills its state tensors and rebinds the new method object onto the tensors the graphs read
(`load`), so the step graphs replay as they are (building one took 4-8 ms on an H200,
results/speed/REPORT.md). It is kept only while the forward graphs and cache it reads are kept.
"""
from __future__ import annotations

import dataclasses

import torch

from decoding import loop
from decoding.contract import StepOutput
from decoding.forward import verify_output
from decoding.select import token_stats
from . import graphs
from .compiled_step import compile_step


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
    return {k: v for k, v in vars(method).items() if isinstance(v, torch.Tensor)}


class CapturedDecode:
    def __init__(self, model, method, state, forward, kinds, choose, current):
        self.model, self.method, self.state, self.forward = model, method, state, forward
        self.kinds, self.choose, self.current = kinds, choose, current
        dev = state.tokens.device
        self.counts = torch.zeros(2, dtype=torch.long, pin_memory=state.tokens.is_cuda)  # decoding; at a block start
        self.every = torch.arange(state.tokens.shape[0], device=dev)
        self.steps: dict[str, graphs.CapturedStep] = {}
        self.replays: dict = {}      # kind -> step graphs replayed (benchmarks read it); "eager" -> eager steps
        self.counted_by_launch: set = set()   # kinds whose launch counts the NFE itself (an eager forward)
        self.compiled_kinds: list[bool] = []  # per step graph built: whether its decide was compiled
        self.step_fns: dict = {}              # kind -> the Python step a step graph holds (probes run it eagerly)

    @classmethod
    def build(cls, pool, calls, model, method, state, generator) -> "CapturedDecode | None":
        """None where the forwards are not graphed (too large to be launch-bound, prefix cache)."""
        reads = method.reads()
        forward = loop.new_forward(model, method, state, generator, calls)
        if reads.truncated:
            return cls.truncated(model, method, state, forward)
        P = state.P
        if reads.verify:
            return cls.verify(pool, model, method, state, forward)
        if forward.stepper is None:
            fwd = pool.full_graph(state.tokens, state.attn_fwd, reads.hidden)
            if fwd is None:
                return None
            fwd.inputs[0].copy_(state.tokens)
            state.tokens = fwd.inputs[0]     # the graph's input buffer holds the tokens: no copy per step
            if state.attn_fwd is not None:   # the graph's mask buffer too (a kept decode refills it)
                fwd.inputs[1].copy_(state.attn_fwd)
                state.attn_fwd = fwd.inputs[1]

            def stats(state):
                logits = fwd.out.logits[:, P:]
                x0, conf = token_stats(logits)
                hidden = fwd.out.hidden[:, P:] if fwd.out.hidden is not None else None
                return StepOutput(x0, conf, torch.ones_like(x0, dtype=torch.bool),
                                  logits if reads.logits else None, hidden)
            kinds = {"full": (lambda: fwd(*fwd.inputs), stats)}
            attn_fwd, tokens = state.attn_fwd, state.tokens
            return cls(model, method, state, forward, kinds, lambda n_active, n_start: "full",
                       lambda: pool.kept_full_graph(tokens, attn_fwd, reads.hidden) is fwd)
        st = forward.stepper
        if st.mode != "dual":
            return None
        kinds, every = {}, torch.arange(st.B, device=state.tokens.device)
        mask = state.attn if st.padded else None
        x = state.tokens
        g = calls.refresh_graph(st, x, mask, reads.hidden)
        if g is not None:
            kinds["refresh"] = (lambda: g(x, mask),
                                lambda state: st.refresh_output(every, g.out.logits, g.out.hidden, 0.0, reads, None))
        window = {}

        def launch_window():
            window["out"], window["pos"] = calls.window(st, x, state.attn, state.rows.block, st.BL + st.shift, reads.hidden)
        kinds["window"] = (launch_window, lambda state: st.window_output(every, window["out"].logits, window["out"].hidden,
                                                                  window["pos"], 0.0, reads, None))
        choose = lambda n_active, n_start: ("refresh" if n_start == n_active and "refresh" in kinds
                                            else "window" if n_start == 0 else None)
        kept = pool.cache(st.B, st.L)
        return cls(model, method, state, forward, kinds, choose, lambda: pool.caches.get((st.B, st.L)) is kept)

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

        def stats(s):
            out, twin = g.out
            return verify_output(s.tokens, P, out, twin, mask_id, 0.0, None, method.reads())
        return cls(model, method, state, forward, {"verify": (lambda: g(*g.inputs), stats)},
                   lambda n_active, n_start: "verify",
                   lambda: pool.kept_verify_graph(tokens, gen.block_length, hidden) is g)

    @classmethod
    def truncated(cls, model, method, state, forward) -> "CapturedDecode":
        """Truncated forwards (Plan.extent: SlowFast), whose fed length changes from step to step:
        the plan and the forward run eagerly, as the reference loop runs them (the rows decoding,
        their NFE, the reuse store), their statistics land in fixed [B, G] buffers, and the rest of
        the step is the step graph over every row."""
        B, G, dev = state.tokens.shape[0], state.gen.gen_length, state.tokens.device
        buf = StepOutput(torch.zeros((B, G), dtype=torch.long, device=dev), torch.zeros((B, G), device=dev),
                         torch.zeros((B, G), dtype=torch.bool, device=dev))
        d = cls(model, method, state, forward, {}, lambda n_active, n_start: "truncated", lambda: True)

        def launch():
            s = d.state   # every row decoding (the step's count, on the host): no sync for nonzero()
            rows = d.every if int(d.counts[0]) == B else (~s.rows.done).nonzero().squeeze(1)
            out = d.forward(s, rows, d.method.plan(s.view(rows, rows)))
            buf.x0[rows], buf.conf[rows], buf.fresh[rows] = out.x0, out.conf, out.fresh
        d.kinds["truncated"] = (launch, lambda s: buf)
        d.counted_by_launch = {"truncated"}
        return d

    def load(self, method, state, generator) -> None:
        """Refill with a new call's state (same shapes) and rebind the call's method object: its
        tensors become the ones the captured graphs read, holding the new object's values."""
        tokens = self.state.tokens
        fill_tree(self.state, state)
        for name, t in method_tensors(self.method).items():
            new = getattr(method, name, None)
            if isinstance(new, torch.Tensor) and new.shape == t.shape and new.dtype == t.dtype:
                t.copy_(new)
                setattr(method, name, t)
        self.method = self.forward.method = method
        self.forward.generator = generator
        assert self.state.tokens is tokens

    def run(self) -> None:
        state, counts = self.state, self.counts
        synced = torch.cuda.Event() if state.tokens.is_cuda else None
        self.count(state)
        while True:
            if synced is not None:
                synced.record()
                synced.synchronize()   # the step's one host sync
            n_active, n_start = counts.tolist()
            if n_active == 0:
                break
            kind = self.choose(n_active, n_start)
            self.replays[kind or "eager"] = self.replays.get(kind or "eager", 0) + 1
            if kind is None:
                self.eager_step((~state.rows.done).nonzero().squeeze(1))
                self.count(state)
                continue
            self.kinds[kind][0]()   # launch the forward
            if kind not in self.steps:
                saved = [(t, t.clone()) for t in self.kept_by_warm_up()]
                self.steps[kind] = self.capture_step(kind)
                for t, v in saved:   # the warm-ups ran on the copies' rows
                    t.copy_(v)
            self.replay_step(kind)

    def replay_step(self, kind) -> None:
        self.steps[kind].replay()

    def eager_step(self, rows: torch.Tensor) -> None:
        loop.step(self.state, self.method, self.forward, rows)

    def count(self, state) -> None:
        _count(state, self.counts)

    def kept_by_warm_up(self) -> list[torch.Tensor]:
        """Tensors outside the state that a step graph's warm-up writes, restored after it."""
        return list(method_tensors(self.method).values())

    def capture_step(self, kind) -> graphs.CapturedStep:
        """The step graph: the token statistics of the forward graph's output (`stats`), then
        `decide_step` compiled into fused kernels where it traces as one graph
        (acceleration/compiled_step.py), then the counts the host reads. Warm-ups run on copies.

        The compiled part sees the generated region only, in tensors whose shapes and strides do
        not depend on the prompt's length (the tokens copied in and out of a [B, G] buffer, the
        forward's rows made contiguous): the next batch's prompt length reuses the compiled code
        instead of compiling again (seconds)."""
        stats, nfe = self.kinds[kind][1], kind not in self.counted_by_launch
        P = self.state.P
        gen = self.state.tokens[:, P:].clone()

        def generated(state):   # the state as decide_step reads it: generated tokens in `gen`, no prompt
            gen.copy_(state.tokens[:, P:])
            return dataclasses.replace(state, tokens=gen, attn=None, attn_fwd=None, P=0)

        def copies():
            state = copy_tree(self.state)
            return generated(state), contiguous(stats(state)), self.method, self.every, nfe
        decide = compile_step(decide_step, copies, self.state.tokens.device)
        self.compiled_kinds.append(decide.why_not is None)

        def step(state):
            out = contiguous(stats(state))
            decide(generated(state), out, self.method, self.every, nfe)
            state.tokens[:, P:].copy_(gen)
            self.count(state)
        self.step_fns[kind] = step
        return graphs.CapturedStep(step, self.state, copy_tree)


def contiguous(out: StepOutput) -> StepOutput:
    """`out` with every tensor contiguous (a view into a forward's [B, P + G, ...] output is
    copied; the rest is left as it is)."""
    return dataclasses.replace(out, **{f.name: getattr(out, f.name).contiguous() for f in dataclasses.fields(out)
                                       if isinstance(getattr(out, f.name), torch.Tensor)})


def _count(state, counts: torch.Tensor) -> None:
    """counts <- [rows still decoding, of them at the first step of a block] (to pinned host memory)."""
    act = ~state.rows.done
    counts.copy_(torch.stack([act.sum(), (act & (state.rows.step_in_block == 0)).sum()]), non_blocking=True)


def decide_step(state, out, method, every, nfe: bool) -> None:
    """The part of a captured step after the token statistics: the NFE (unless the launch counted
    it) and decoding.loop.decide_and_apply over every row, finished rows masked."""
    act = ~state.rows.done
    if nfe:
        state.nfe += act.long()
    loop.decide_and_apply(state, method, slice(None), every, out, act)
