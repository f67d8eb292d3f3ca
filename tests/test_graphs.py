"""CUDA-graph policy and the loop's graph branch, checked on CPU (graphs themselves need a GPU;
their token-for-token parity with eager forwards is recorded in results/speed/REPORT.md)."""
import time
from types import SimpleNamespace

import pytest
import torch

import acceleration.compiled_step as compiled_step
import acceleration.graphs as graphs
import decoding.loop as loop
from acceleration import Decoder
from acceleration.graphs import GraphedCall, launch_bound
from acceleration.policy import capture_blocker
from acceleration.pool import GraphedCalls, GraphPool
from bench.measure import ForwardTimer
from models.llada import LLaDA, LLaDAConfig
from kernels.compiled import compiling_for_graph
from decoding.base import GenConfig

from decode_helpers import encode, method


class _Adapter:   # what launch_bound reads of a ModelAdapter
    def __init__(self, module):
        self.module = module


def test_launch_bound_graphs_llada8b_at_batch_1_not_batch_8():
    with torch.device("meta"):
        net = LLaDA(LLaDAConfig())          # the 8B architecture, no memory
    m = _Adapter(net)
    assert launch_bound(m, 1 * 768)         # ~17 ms of GPU work behind ~1000 launches: graph it
    assert not launch_bound(m, 8 * 768)     # ~150 ms of GPU work hides its launches: eager


def test_no_graph_on_cpu(builtin_model, prompts):
    decoder = Decoder(builtin_model)
    assert not decoder.pool.graphs_apply()
    gen = GenConfig(gen_length=24, block_length=8)
    ids = encode(builtin_model, prompts)
    res = decoder(method("threshold", gen), ids, gen)
    assert torch.equal(res.tokens, loop.decode(builtin_model, method("threshold", gen), ids, gen).tokens)
    assert not decoder.pool.full_graphs and not decoder.pool.caches and not decoder.pool.decodes


class _EagerGraphedCall:
    """GraphedCall without a GPU: static input buffers; each call runs fn eagerly and copies its
    output into the first call's output tensors, so the outputs are static as a graph's are."""
    def __init__(self, fn, *inputs, blas=None):
        self.fn, self.out = fn, None
        self.inputs = [t.clone() if t is not None else None for t in inputs]

    def __call__(self, *inputs):
        out = self.record(*inputs)
        if self.out is None:
            self.out = out
        else:
            _copy_into(self.out, out)
        return self.out

    def record(self, *inputs):
        for static, t in zip(self.inputs, inputs):
            if static is not None and t is not static:
                static.copy_(t)
        return self.fn(*self.inputs)


def _copy_into(static, out):
    """Copy a forward's output (or a tuple of outputs and tensors) into the first call's tensors."""
    if isinstance(static, tuple):
        for s, o in zip(static, out):
            _copy_into(s, o)
    elif isinstance(static, torch.Tensor):
        static.copy_(out)
    else:
        static.logits.copy_(out.logits)
        if out.hidden is not None:
            static.hidden.copy_(out.hidden)


class _EagerStep:
    """CapturedStep without a GPU: each replay runs the step function on the same state."""
    built = 0

    def __init__(self, fn, state, copy_state):
        copy_state(state)                      # the warm-up's copy must be buildable
        self.fn, self.state = fn, state
        _EagerStep.built += 1

    def replay(self):
        self.fn(self.state)


class _EagerGuardedStep:
    """GuardedStep without a GPU: each replay runs the body where the guard holds."""
    def __init__(self, guard, body):
        self.guard, self.body = guard, body

    def replay(self):
        if bool(self.guard()):
            self.body()


def _stand_in_graphs(monkeypatch):
    """Run acceleration's graph paths on CPU: graphs apply, every forward is launch-bound, graphs
    are eager stand-ins. Returns the list that counts eager (uncaptured) steps."""
    monkeypatch.setattr(GraphPool, "graphs_apply", lambda self: True)
    monkeypatch.setattr(GraphPool, "launch_bound", lambda self, n: True)
    monkeypatch.setattr(graphs, "GraphedCall", _EagerGraphedCall)
    monkeypatch.setattr(graphs, "CapturedStep", _EagerStep)
    monkeypatch.setattr(graphs, "GuardedStep", _EagerGuardedStep)
    eager_steps, step = [], loop.step
    monkeypatch.setattr(loop, "step", lambda *a: eager_steps.append(1) or step(*a))
    return eager_steps


FIELDS = ("tokens", "nfe", "steps", "capped", "gen_tokens", "nfe_truncated", "remasks", "edits")


def test_graph_branch_of_the_loop_equals_the_eager_branch(builtin_model, prompts, monkeypatch):
    # The graph branch forwards every row of the batch (finished rows too) and keeps the rows still
    # decoding; for a capturable method the rest of the step (decoding.loop.decide_and_apply) is a
    # second graph over every row, with finished rows masked. Stand in eager calls for both graphs
    # and compare with the reference loop: rows finish at different steps (early stop), prompts are
    # left-padded, a step cap ends rows.
    prompts = encode(builtin_model, prompts)
    gens = [GenConfig(gen_length=48, block_length=16), GenConfig(gen_length=48, block_length=16, max_steps=7)]
    for spec, graphs_step in (("fixed", True), ("threshold", True), ("threshold:tau=0.5", True),
                              ("fixed:steps=24", True), ("localleap", True), ("fixed:remasking=random", False),
                              ("prr", True), ("prr:profile=true", False), ("eb", True),
                              ("slowfast", True), ("slowfast:reuse=false", True),
                              ("slowfast:preset=code", True), ("edit", True),
                              ("wino", True), ("wino:tau_commit=0.5,tau_remask=0.8", True)):
        for gen in gens:
            eager = loop.decode(builtin_model, method(spec, gen), prompts, gen, generator=torch.Generator().manual_seed(0))
            _stand_in_graphs(monkeypatch)
            built = _EagerStep.built
            dec = Decoder(builtin_model)
            graphed = dec(method(spec, gen), prompts, gen, generator=torch.Generator().manual_seed(0))
            ahead_steps = [d.ahead_steps for d in dec.pool.decodes.values()] or [0]
            monkeypatch.undo()
            assert (_EagerStep.built > built) == graphs_step, spec
            assert (capture_blocker(method(spec, gen)) is None) == graphs_step, spec
            if graphs_step and not spec.startswith("slowfast"):   # truncated forwards: never queued ahead
                assert ahead_steps[-1] > 0, spec
            for field in FIELDS:
                assert torch.equal(getattr(eager, field), getattr(graphed, field)), (spec, gen.max_steps, field)
            if spec == "threshold" and gen.max_steps is None:
                assert eager.steps.min() < eager.steps.max(), "rows should finish at different steps"
            if gen.max_steps is not None and spec == "fixed":
                assert eager.capped.all(), "the step cap should end every row"


@pytest.mark.parametrize("model_name,spec", [("builtin_model", "slowfast:preset=paper"),
                                             ("random_model", "slowfast:tau_min=0.0,tau_high=0.5"),
                                             ("builtin_model", "slowfast:max_slow=2,window=1")])
@pytest.mark.parametrize("in_step", ["1", "0"])
@pytest.mark.parametrize("padded", [True, False])
def test_truncated_forwards_replay_bucketed_graphs_and_equal_the_eager_loop(request, prompts, monkeypatch,
                                                                            model_name, spec, in_step, padded):
    """SlowFast's truncated forwards run at the fed length rounded up to TRUNCATED_BUCKET (a row's
    extra positions hidden by its mask; no mask where nothing is hidden: no left padding and every
    row decoding fed to the cut). By default each length is a kind of step whose graph holds the
    forward, the statistics, the decision and the next plan (acceleration/captured_truncated.py,
    the longest extent published with the counts, negated where no mask is needed); with
    DLLM_TRUNCATED_STEPS=0 the forward replays the full-forward graph of that length before the
    step graph. Either way the tokens and counts equal the reference loop's, for the kept decode's
    second call too."""
    model = request.getfixturevalue(model_name)
    ids = encode(model, prompts)
    if not padded:   # prompts of one length: no left padding
        ids = [p[:min(map(len, ids))] for p in ids[:2]]
    gen = GenConfig(gen_length=48, block_length=16)
    eager = loop.decode(model, method(spec, gen), ids, gen)
    assert int(eager.nfe_truncated.sum()) > 0
    monkeypatch.setenv("DLLM_TRUNCATED_STEPS", in_step)
    eager_steps = _stand_in_graphs(monkeypatch)
    monkeypatch.setattr("acceleration.pool.TRUNCATED_BUCKET", 8)
    built = _EagerStep.built
    dec = Decoder(model)
    graphed = [dec(method(spec, gen), ids, gen) for _ in range(2)]
    monkeypatch.undo()
    assert _EagerStep.built > built and not eager_steps  # every step is captured
    for g in graphed:
        for field in FIELDS:
            assert torch.equal(getattr(eager, field), getattr(g, field)), (spec, field)
    P = max(map(len, ids))
    (kept,) = dec.pool.decodes.values()
    if in_step == "1":
        unmasked = {-k for k in kept.kinds if k < 0}
        lengths = {abs(k) for k in kept.kinds}
    else:
        unmasked = {key[0][1] for key in dec.pool.full_graphs if not key[1]}
        lengths = {key[0][1] for key in dec.pool.full_graphs}
    assert bool(unmasked) != padded, (unmasked, padded)   # full-length forwards take no mask unpadded
    assert all((L - P) % 8 == 0 or L == P + 48 for L in lengths), lengths
    assert len(lengths) > 1 or "preset=paper" not in spec, lengths   # the paper's rule cuts the batch's forwards
    if in_step == "1":
        assert kept.ahead_steps > 0                      # a step of the last step's length, queued ahead


def test_graphed_dual_cache_steps_equal_the_eager_loop(builtin_model, prompts, monkeypatch):
    # With the dual cache, capturable methods run refresh and window steps as a forward graph plus
    # a step graph over every row (finished rows take their last block's window, masked); a step
    # where some rows start a block and others do not runs the window graph of every row, then the
    # eager refresh of the rows at a block start, and its own step graph over their merged outputs
    # (logits, hidden states: klass, dico, prr). Stand in eager calls for the graphs on CPU and
    # compare with the eager loop, for LLaDA-style (no shift) and Dream (shift).
    from models import load_model
    dream = load_model("dream-tiny", no_weights=True)
    torch.manual_seed(0)
    cases = [(builtin_model, encode(builtin_model, prompts)),
             (dream, [torch.randint(10, 400, (n,)).tolist() for n in (9, 5, 7, 9)])]
    gens = [GenConfig(gen_length=48, block_length=16), GenConfig(gen_length=48, block_length=16, max_steps=7),
            GenConfig(gen_length=48, block_length=16, early_stop=False)]   # rows done after their last block
    one_row_refresh = False   # a step where one row starts a block: that row's refresh graph
    blocks_read = False       # a mixed step's merged output holding its blocks' logits rows only
    for model, ids in cases:
        for spec, graphs_step in (("threshold:cache=dual", True), ("threshold:tau=0.5:cache=dual", True),
                                  ("fixed:steps=24:cache=dual", True), ("localleap:cache=dual", True),
                                  ("fixed:cache=prefix", False), ("eb:cache=dual", True),
                                  ("prr:controller=zero,tau=0.7,cache=dual", True), ("edit:cache=dual", True),
                                  ("klass:cache=dual", True), ("dico:cache=dual", True), ("prr:cache=dual", True)):
            if spec == "prr:cache=dual" and model is not builtin_model:
                continue   # the committed controller reads the built-in model's hidden states
            for gen in gens:
                eager = loop.decode(model, method(spec, gen), ids, gen)
                eager_steps = _stand_in_graphs(monkeypatch)
                built = _EagerStep.built
                dec = Decoder(model)
                graphed = dec(method(spec, gen), ids, gen)
                monkeypatch.undo()
                if spec == "fixed:steps=24:cache=dual":   # window steps after window steps run as the step queued ahead
                    assert [d.ahead_steps for d in dec.pool.decodes.values()][0] > 0, (model.name, spec)
                where = (model.name, spec, gen.max_steps)
                assert (_EagerStep.built > built) == graphs_step, where
                if spec == "fixed:steps=24:cache=dual":
                    assert _EagerStep.built - built == 2, where   # a refresh and a window step graph
                for field in FIELDS:
                    assert torch.equal(getattr(eager, field), getattr(graphed, field)), (*where, field)
                if graphs_step:
                    (kept,) = dec.pool.decodes.values()
                    assert not eager_steps, where                               # mixed steps are captured too
                    merged = getattr(kept, "mixed_out", None)
                    if merged is not None and merged.logits is not None:   # only the blocks' rows where the method reads only those
                        reads = method(spec, gen).reads()
                        assert (merged.logits_at is not None) == (reads.logits_blocks > 0 and not reads.topk), where
                        blocks_read |= merged.logits_at is not None
                    if model is builtin_model and spec.startswith(("threshold", "klass")) and gen.max_steps is None:
                        assert 0 < kept.replays.get("mixed", 0) < int(graphed.steps.max()), where
                        (cache_graphs,) = [g for _, g in dec.pool.caches.values() if g]
                        one_row_refresh |= any(k[0] == "refresh" and not k[-1] for k in cache_graphs)
    assert one_row_refresh and blocks_read


def test_mixed_dual_cache_steps_run_eagerly_when_switched_off(builtin_model, prompts, monkeypatch):
    """DLLM_MIXED_STEPS=0: a dual-cache step whose rows need different forwards runs the reference
    loop's eager step instead of the `mixed` kind; the same tokens and counts either way."""
    ids = encode(builtin_model, prompts)
    gen = GenConfig(gen_length=48, block_length=16)
    want = loop.decode(builtin_model, method("klass:cache=dual", gen), ids, gen)
    for switch in ("1", "0"):
        monkeypatch.setenv("DLLM_MIXED_STEPS", switch)
        eager_steps = _stand_in_graphs(monkeypatch)
        dec = Decoder(builtin_model)
        got = dec(method("klass:cache=dual", gen), ids, gen)
        monkeypatch.undo()
        (kept,) = dec.pool.decodes.values()
        assert (len(eager_steps) > 0) == (switch == "0") and ("mixed" in kept.replays) == (switch == "1")
        for field in FIELDS:
            assert torch.equal(getattr(got, field), getattr(want, field)), (switch, field)


def test_a_kept_decode_gives_the_next_method_object_the_buffers_its_graphs_hold(builtin_model, prompts, monkeypatch):
    """KLASS allocates its ring of previous distributions at its first decide. A kept captured decode's graphs
    hold the first call's buffer; the next call's method object gets that same buffer, so an
    eager step of that call (DLLM_MIXED_STEPS=0) writes the history the graph steps read, and
    the tokens equal the reference loop's."""
    ids = encode(builtin_model, prompts)
    gen = GenConfig(gen_length=48, block_length=16)
    want = loop.decode(builtin_model, method("klass:cache=dual", gen), ids, gen)
    monkeypatch.setenv("DLLM_MIXED_STEPS", "0")
    eager_steps = _stand_in_graphs(monkeypatch)
    dec = Decoder(builtin_model)
    first, second = method("klass:cache=dual", gen), method("klass:cache=dual", gen)
    dec(first, ids, gen)
    got = dec(second, ids, gen)
    monkeypatch.undo()
    assert eager_steps and second.ring is first.ring
    for field in FIELDS:
        assert torch.equal(getattr(got, field), getattr(want, field)), field


def test_a_kept_decode_runs_the_next_call_with_its_controller_weights(builtin_model, prompts, monkeypatch, tmp_path):
    """PRR's controller is a module: a kept captured decode's graphs read the parameters of the
    first call's controller. The next call's method object gets that module, holding the weights
    its own checkpoint loaded (here the checkpoint is rewritten between the calls), and decodes as
    the reference loop does with them; a controller of another size gets graphs of its own."""
    from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
    d = builtin_model.module.cfg.d_model
    path = tmp_path / "ctrl"

    def save(seed, hidden=16):
        torch.manual_seed(seed)
        ctrl = Controller(ControllerConfig(d_model=d, hidden=hidden))
        with torch.no_grad():
            ctrl.out.weight.mul_(50.0)   # scores far from 0.5: the weights decide commits
        save_controller(ctrl, path, {"note": "test"})

    ids = encode(builtin_model, prompts)
    gen = GenConfig(gen_length=48, block_length=16)
    spec = f"prr:controller={path},cache=dual,tau=0.5"
    _stand_in_graphs(monkeypatch)
    dec = Decoder(builtin_model)
    save(0)
    first = method(spec, gen)
    dec(first, ids, gen)
    captured = first.ctrl
    weights, wants = {}, {}
    for seed in (1, 2):
        save(seed)
        weights[seed] = method(spec, gen).ctrl.state_dict()
        want = wants[seed] = loop.decode(builtin_model, method(spec, gen), ids, gen)
        m = method(spec, gen)
        got = dec(m, ids, gen)
        (kept,) = dec.pool.decodes.values()
        assert m.ctrl is captured and kept.method is m
        assert all(torch.equal(t, weights[seed][n]) for n, t in captured.state_dict().items())
        for field in FIELDS:
            assert torch.equal(getattr(got, field), getattr(want, field)), (seed, field)
    assert not torch.equal(wants[1].tokens, wants[2].tokens)   # the weights decide the tokens
    save(3, hidden=8)                     # another size: not the kept graphs
    m = method(spec, gen)
    got = dec(m, ids, gen)
    assert m.ctrl is not captured and m.ctrl.cfg.hidden == 8
    want = loop.decode(builtin_model, method(spec, gen), ids, gen)
    assert torch.equal(got.tokens, want.tokens)


@pytest.mark.parametrize("spec", ["fixed", "threshold", "localleap", "eb", "prr:controller=zero,tau=0.7", "klass",
                                  "dico", "edit", "wino", "slowfast", "slowfast:preset=code",
                                  "threshold:cache=dual", "eb:cache=dual", "klass:cache=dual",
                                  "prr:controller=zero,tau=0.7,cache=dual"])
def test_compiled_step_traces_as_one_graph_and_equals_the_eager_loop(builtin_model, prompts, monkeypatch, spec):
    # On the GPU each step graph holds the method's decide and the bookkeeping compiled into fused
    # kernels (acceleration/compiled_step.py). Here dynamo traces it with the aot_eager backend
    # (the same graph capture and functionalization of the in-place state updates, no code
    # generation): every step kind must trace as one graph, reuse its compiled code for the
    # captured state, and give the eager loop's tokens and counts.
    ids = encode(builtin_model, prompts)
    gen = GenConfig(gen_length=48, block_length=16)
    eager = loop.decode(builtin_model, method(spec, gen), ids, gen)
    _stand_in_graphs(monkeypatch)
    monkeypatch.setattr(compiled_step, "CPU_BACKEND", "aot_eager")
    dec = Decoder(builtin_model)
    graphed = dec(method(spec, gen), ids, gen)
    monkeypatch.undo()
    (captured,) = dec.pool.decodes.values()
    assert captured.compiled_kinds and all(captured.compiled_kinds), spec
    for field in FIELDS:
        assert torch.equal(getattr(eager, field), getattr(graphed, field)), (spec, field)


def test_compiled_step_on_a_logit_shifted_model_equals_the_eager_loop(monkeypatch):
    # Dream's window is one position wider (the logit shift) and its rows are left-padded here.
    from models import load_model
    dream = load_model("dream-tiny", no_weights=True)
    torch.manual_seed(0)
    ids = [torch.randint(10, 400, (n,)).tolist() for n in (9, 5, 7, 9)]
    gen = GenConfig(gen_length=48, block_length=16)
    for spec in ("threshold:cache=dual", "eb:cache=dual", "klass:cache=dual", "prr:controller=zero,tau=0.7"):
        eager = loop.decode(dream, method(spec, gen), ids, gen)
        _stand_in_graphs(monkeypatch)
        monkeypatch.setattr(compiled_step, "CPU_BACKEND", "aot_eager")
        dec = Decoder(dream)
        graphed = dec(method(spec, gen), ids, gen)
        monkeypatch.undo()
        (captured,) = dec.pool.decodes.values()
        assert captured.compiled_kinds and all(captured.compiled_kinds), spec
        for field in FIELDS:
            assert torch.equal(getattr(eager, field), getattr(graphed, field)), (spec, field)


def test_compiled_step_switched_off_or_untraceable_keeps_the_plain_step(monkeypatch):
    # DLLM_COMPILE_STEP=0 (or DLLM_COMPILE=0) keeps the plain function; a function dynamo cannot
    # trace as one graph falls back to the plain function with a warning naming why.
    state = torch.zeros(3)

    def step(x):
        x += 1

    def host_step(x):
        x += 1 + 0 * time.perf_counter()   # host work dynamo does not trace: not one graph
    monkeypatch.setattr(compiled_step, "CPU_BACKEND", "aot_eager")
    monkeypatch.setenv("DLLM_COMPILE_STEP", "0")
    assert compiled_step.compile_step(step, lambda: (state.clone(),), state.device).why_not == "switched off"
    monkeypatch.delenv("DLLM_COMPILE_STEP")
    assert compiled_step.compile_step(step, lambda: (state.clone(),), state.device).compiled is not None
    with pytest.warns(UserWarning, match="the decode step was not compiled"):
        plain = compiled_step.compile_step(host_step, lambda: (state.clone(),), state.device)
    assert plain.compiled is None and plain.why_not
    plain(state)
    assert torch.equal(state, torch.ones(3))


def test_compiled_step_is_reused_for_another_prompt_length(builtin_model, prompts, monkeypatch):
    # Every batch of a real evaluation has its own prompt length, so its own captured decode: the
    # compiled part of the step reads the generated region only, so the next length compiles
    # nothing (a compile takes seconds on the GPU).
    compiles = []

    def counting_backend(gm, example_inputs):   # dynamo calls it once per graph it compiles
        compiles.append(gm)
        return gm.forward
    gen = GenConfig(gen_length=48, block_length=16)
    ids = encode(builtin_model, prompts)
    spec = "prr:controller=zero,tau=0.7,cache=dual"
    _stand_in_graphs(monkeypatch)
    monkeypatch.setattr(compiled_step, "CPU_BACKEND", counting_backend)
    dec = Decoder(builtin_model)
    dec(method(spec, gen), ids[:3], gen)
    first = len(compiles)
    longer = [p + p[:5] for p in ids[:3]]
    got = dec(method(spec, gen), longer, gen)
    monkeypatch.undo()
    assert len(dec.pool.decodes) == 2 and all(all(d.compiled_kinds) for d in dec.pool.decodes.values())
    assert first > 0 and len(compiles) == first
    want = loop.decode(builtin_model, method(spec, gen), longer, gen)
    for field in FIELDS:
        assert torch.equal(getattr(want, field), getattr(got, field)), field


def test_graphed_decode_kept_for_the_next_call_reads_nothing_stale(builtin_model, prompts, monkeypatch):
    # A Decoder's pool keeps a captured decode (its state tensors and step graphs) for the next call
    # of the same shapes and method settings; that call refills the state and rebinds its method
    # object. Stand the graphs in on CPU: the second call builds no step graph and gives exactly
    # what the eager loop gives.
    first = encode(builtin_model, prompts)[:4]
    second = first[1:] + first[:1]             # other prompt in every row, same (batch, length)
    gen = GenConfig(gen_length=48, block_length=16)
    for spec, other_spec in (("threshold", "threshold:tau=0.5"), ("fixed", "fixed:steps=24"),
                             ("threshold:cache=dual", "threshold:tau=0.5:cache=dual"),
                             ("fixed:steps=24:cache=dual", "fixed:steps=48:cache=dual"),
                             ("slowfast:reuse=false", "slowfast:reuse=false,tau_high=0.5"), ("prr", "prr:tau=0.5")):
        eager = loop.decode(builtin_model, method(spec, gen), second, gen)
        eager_other = loop.decode(builtin_model, method(other_spec, gen), second, gen)
        _stand_in_graphs(monkeypatch)
        decoder = Decoder(builtin_model)
        decoder(method(spec, gen), first, gen)
        built = _EagerStep.built
        m = method(spec, gen)
        again = decoder(m, second, gen)
        assert _EagerStep.built == built, spec                       # the kept step graphs replayed
        kept = next(iter(decoder.pool.decodes.values()))
        assert kept.method is m, spec                                # ... with this call's method object
        other = decoder(method(other_spec, gen), second, gen)
        assert _EagerStep.built > built, spec                        # other settings: their own graphs
        decoder.pool.full_graphs.clear()                             # forward graphs dropped: so is the decode
        decoder.pool.caches.clear()
        built = _EagerStep.built
        fresh = decoder(method(spec, gen), second, gen)
        assert _EagerStep.built > built, spec
        builtin_model.cuda_graphs = False                            # graphs off: the eager loop, nothing kept
        monkeypatch.setattr(GraphPool, "graphs_apply", lambda self: self.model.cuda_graphs)
        built = _EagerStep.built
        off = decoder(method(spec, gen), second, gen)
        builtin_model.cuda_graphs = True
        assert _EagerStep.built == built and torch.equal(off.tokens, eager.tokens), spec
        monkeypatch.undo()
        for label, res in (("again", again), ("fresh", fresh)):
            for field in FIELDS:
                assert torch.equal(getattr(eager, field), getattr(res, field)), (spec, label, field)
        for field in ("tokens", "nfe", "steps"):
            assert torch.equal(getattr(eager_other, field), getattr(other, field)), (other_spec, field)


def test_captured_methods_decide_each_row_on_its_own():
    # The step graph runs decide over every row, finished ones included (with no candidates), where
    # the eager loop passes only the rows still decoding: a capturable method's choice for a row
    # must not depend on the other rows.
    from decoding.contract import History, step_inputs
    from decoding.registry import METHODS
    gen = GenConfig(gen_length=24, block_length=8)
    g = torch.Generator().manual_seed(0)
    B, N, V = 5, 24, 11
    conf = torch.rand((B, N), generator=g)
    logits = torch.randn((B, N, V), generator=g)
    candidates = (torch.rand((B, N), generator=g) < 0.6) & ((torch.arange(N) // 8) == torch.tensor([0, 1, 2, 0, 1])[:, None])
    candidates[3] = False                       # a finished row: no candidates
    verify_x0, verify_conf = torch.randint(0, V, (B, N), generator=g), torch.rand((B, N), generator=g)
    step_in_block = torch.tensor([0, 1, 2, 0, 2])
    checked = []
    for spec in sorted(METHODS) + ["slowfast:reuse=false"]:
        m = method(spec, gen)
        if capture_blocker(m) is not None:
            continue
        d = m.ctrl.cfg.d_model if getattr(m, "ctrl", None) is not None else 4
        hidden = torch.randn((B, N, d), generator=g)

        def decide(rows):
            m.start(B, torch.device("cpu"), None)
            hist = History.empty(B, N, "cpu").take(rows)
            view, out = step_inputs(rows=rows, conf=conf[rows], logits=logits[rows], hidden=hidden[rows],
                                    candidates=candidates[rows], block=step_in_block[rows] * 0,
                                    step_in_block=step_in_block[rows], step=step_in_block[rows],
                                    prompt_len=torch.full((len(rows),), 4), history=hist,
                                    verify_x0=verify_x0[rows], verify_conf=verify_conf[rows])
            return m.decide(view, out).commit & candidates[rows]
        every = decide(torch.arange(B))
        for i in range(B):
            assert torch.equal(every[i:i + 1], decide(torch.tensor([i]))), (spec, i)
        assert not every[3].any()
        checked.append(spec.split(":")[0])
    assert {"fixed", "threshold", "localleap", "eb", "prr", "slowfast", "wino"} <= set(checked)


def test_forward_timer_counts_graph_replays_not_graph_building(builtin_model):
    class FakeGraph:
        replays = 0

        def replay(self):
            FakeGraph.replays += 1

    g = GraphedCall.__new__(GraphedCall)          # a captured call without a GPU
    g.inputs, g.graph, g.out = [torch.zeros(2)], FakeGraph(), "out"
    x = torch.zeros((1, 6), dtype=torch.long)
    with ForwardTimer(builtin_model, []) as t:
        assert g(torch.ones(2)) == "out" and torch.equal(g.inputs[0], torch.ones(2))
        builtin_model.forward(x)                     # an eager forward: timed
        with compiling_for_graph():
            builtin_model.forward(x)                 # a graph's warm-up or capture: not a decode forward
    seconds, calls = t.take()
    assert calls == 2 and seconds > 0 and FakeGraph.replays == 1
    assert GraphedCall.__call__.__name__ == "__call__" and "forward" not in builtin_model.__dict__


def test_forward_timer_times_steps_whose_graph_holds_the_forward(builtin_model):
    """A captured block-causal step and a captured truncated step replay one graph holding the
    forward: the timer counts each replay as a forward and restores the classes afterwards."""
    from acceleration.captured_block import CapturedBlockDecode
    from acceleration.captured_truncated import CapturedTruncatedDecode
    replayed = []
    for cls in (CapturedBlockDecode, CapturedTruncatedDecode):
        d = cls.__new__(cls)
        d.steps = {544: SimpleNamespace(replay=lambda: replayed.append(1))}
        with ForwardTimer(builtin_model, []) as t:
            d.replay_step(544)
        assert t.take()[1] == 1 and "replay_step" not in vars(cls), cls
    assert len(replayed) == 2


def test_steps_are_not_queued_ahead_where_no_guarded_graph_can_be_built(builtin_model, prompts, monkeypatch):
    # acceleration/guarded.py needs a CUDA GPU and cuda-python: where a GuardedStep cannot be built
    # the captured decode warns, naming the kind, and syncs before every step; same tokens.
    from acceleration import guarded
    gen = GenConfig(gen_length=48, block_length=16)
    ids = encode(builtin_model, prompts)[:2]
    want = loop.decode(builtin_model, method("fixed", gen), ids, gen)
    _stand_in_graphs(monkeypatch)
    monkeypatch.setattr(graphs, "GuardedStep", guarded.GuardedStep)   # the real one: no GPU here
    dec = Decoder(builtin_model)
    with pytest.warns(UserWarning, match="steps of kind 'full' are not queued ahead"):
        got = dec(method("fixed", gen), ids, gen)
    (kept,) = dec.pool.decodes.values()
    assert kept.ahead_steps == 0 and kept.guarded == {"full": None}
    for field in FIELDS:
        assert torch.equal(getattr(want, field), getattr(got, field)), field


def test_a_decode_capped_for_a_warm_up_keeps_its_graphs_for_the_uncapped_one(builtin_model, prompts, monkeypatch):
    # The step cap is a tensor of the state (Constants.step_cap), so a kept captured decode serves
    # another --max-steps (acceleration.decode.shape_key): a capped warm-up builds the graphs the
    # timed decode replays. Both equal the reference loop.
    ids = encode(builtin_model, prompts)[:4]
    capped, full = GenConfig(gen_length=48, block_length=16, max_steps=5), GenConfig(gen_length=48, block_length=16)
    for spec in ("threshold", "eb:cache=dual"):
        want = [loop.decode(builtin_model, method(spec, g), ids, g) for g in (capped, full)]
        _stand_in_graphs(monkeypatch)
        dec = Decoder(builtin_model)
        first = dec(method(spec, capped), ids, capped)
        built = _EagerStep.built
        second = dec(method(spec, full), ids, full)
        monkeypatch.undo()
        assert _EagerStep.built == built and len(dec.pool.decodes) == 1, spec
        assert want[0].capped.any() and not want[1].capped.any(), spec
        for w, got in zip(want, (first, second)):
            for field in FIELDS:
                assert torch.equal(getattr(w, field), getattr(got, field)), (spec, field)


def test_a_synchronized_forward_timer_queues_no_step_ahead(builtin_model, prompts, monkeypatch):
    # A step queued ahead holds its forward inside its graph, where the timer cannot reach it: the
    # synchronized ForwardTimer (run_bench's time_forwards) switches queueing off while it is on.
    from acceleration.captured import CapturedDecode
    queue = CapturedDecode.queue_ahead
    gen = GenConfig(gen_length=48, block_length=16)
    ids = encode(builtin_model, prompts)[:1]
    _stand_in_graphs(monkeypatch)
    dec = Decoder(builtin_model)
    with ForwardTimer(builtin_model, []):
        timed = dec(method("fixed", gen), ids, gen)
        (kept,) = dec.pool.decodes.values()
        assert kept.ahead_steps == 0
    assert CapturedDecode.queue_ahead is queue
    untimed = dec(method("fixed", gen), ids, gen)
    assert kept.ahead_steps == int(untimed.steps.max()) - 1     # every step after the first
    assert torch.equal(timed.tokens, untimed.tokens)


def test_cache_kept_across_decode_calls_reads_nothing_stale(builtin_model, prompts):
    # A GraphPool keeps the KV cache (and its captured graphs) of a (batch, length) for the next
    # decode call. Keep the cache on CPU (no graphs): a second batch decoded on the first batch's
    # cache gives exactly what it gives on a fresh cache.
    class CacheOnly(GraphedCalls):
        def refresh(self, *a):
            return None

        def window(self, *a):
            return None

    first = encode(builtin_model, prompts)[:4]
    second = first[1:] + first[:1]         # other prompt in every row, same (batch, length)
    key = (4, max(map(len, first)) + 48)
    gen = GenConfig(gen_length=48, block_length=16)
    for spec in ("threshold:cache=dual", "fixed:cache=prefix"):
        fresh = loop.decode(builtin_model, method(spec, gen), second, gen)
        pool = GraphPool(builtin_model)
        loop.decode(builtin_model, method(spec, gen), first, gen, calls=CacheOnly(pool))
        kept = pool.caches[key][0]
        reused = loop.decode(builtin_model, method(spec, gen), second, gen, calls=CacheOnly(pool))
        assert pool.caches[key][0] is kept
        assert torch.equal(fresh.tokens, reused.tokens) and torch.equal(fresh.nfe, reused.nfe), spec


def test_pool_keeps_the_most_recent_cache_shapes():
    from acceleration.pool import CACHES

    class Model:
        def new_cache(self, batch, length):
            return object()

    pool = GraphPool(Model())
    first = pool.cache(1, 10)
    assert pool.cache(1, 10) is first            # same shape: the same cache and graphs
    for n in range(2, 2 + CACHES):
        pool.cache(n, 10)
    assert (1, 10) not in pool.caches and len(pool.caches) == CACHES
    assert not any(k.startswith("_") for k in vars(Model()))   # nothing stored on the model


def test_graphs_switch_from_the_environment_and_recorded_in_run_env(monkeypatch):
    from bench.env import environment
    from models import load_model
    monkeypatch.setenv("DLLM_CUDA_GRAPHS", "0")
    assert load_model("tiny").cuda_graphs is False
    monkeypatch.delenv("DLLM_CUDA_GRAPHS")
    assert load_model("tiny").cuda_graphs is True
    monkeypatch.setenv("DLLM_COMPILE", "0")
    switches = environment(torch.device("cpu"))["speed_switches"]
    assert switches["DLLM_COMPILE"] == "0" and switches["DLLM_CUDA_GRAPHS"] is None


@pytest.mark.parametrize("switch", ["1", "0"])
def test_a_captured_dual_decode_records_each_steps_kind_and_rows_at_a_block_start(builtin_model, prompts,
                                                                                   monkeypatch, switch):
    """CapturedDecode.starts, which bench/bench_speed.py times each step's forwards from: per step
    its kind and the rows at a block start, as the reference loop's steps have them (a refresh
    where every decoding row starts a block, a window where none does, else the mixed kind, or an
    eager step with DLLM_MIXED_STEPS=0)."""
    from collections import Counter
    from decoding.cache import CacheStepper
    ids = encode(builtin_model, prompts)
    gen = GenConfig(gen_length=48, block_length=16)
    seen, step = [], CacheStepper.step
    monkeypatch.setattr(CacheStepper, "step", lambda self, rows, xa, aa, block, sib, *a:
                        seen.append((rows.numel(), int((sib == 0).sum()))) or step(self, rows, xa, aa, block, sib, *a))
    loop.decode(builtin_model, method("threshold:cache=dual", gen), ids, gen)
    monkeypatch.undo()
    mixed = "mixed" if switch == "1" else "eager"
    want = Counter(("refresh" if n == b else "window" if n == 0 else mixed, n) for b, n in seen)
    assert want[(mixed, 1)] > 0                        # rows out of step: a step where one row starts a block
    monkeypatch.setenv("DLLM_MIXED_STEPS", switch)
    _stand_in_graphs(monkeypatch)
    dec = Decoder(builtin_model)
    dec(method("threshold:cache=dual", gen), ids, gen)
    monkeypatch.undo()
    (kept,) = dec.pool.decodes.values()
    assert Counter(kept.starts) == want
    from bench.bench_speed import dual_forwards_s   # each step's forwards, a refresh of n rows run for real
    refreshed = []
    total, _ = dual_forwards_s(kept, 4.0, 0.25, timer=lambda fn: refreshed.append(fn()) or 1.0)
    assert total == sum(k * (4.0 if kind == "refresh" else 0.25 if kind == "window" else 1.25)
                        for (kind, n), k in want.items())
    assert sorted(o.logits.shape[0] for o in refreshed) == sorted({n for kind, n in want if kind == mixed})
    from bench.bench_speed import dual_forwards_back_to_back_s   # the same forwards back to back, for real
    ran = Counter()
    dual_forwards_back_to_back_s(kept, refresh=lambda: ran.update(["refresh"]), window=lambda: ran.update(["window"]),
                                 sync=lambda: None)
    expected = Counter()
    for (kind, n), k in want.items():   # each kind once untimed, then once per step; a mixed step runs a window
        expected.update({"refresh" if kind == "refresh" else "window": k + 1})
    assert ran == expected
