"""Block-causal models in the decode loop (decoding/block_causal.py): token-for-token parity with
the standalone reference-matching block decoder (tests/block_decode_helpers.py), NFE accounting of
append=fold|separate, the prompt layout, batches equal to single runs, early stop, refusals, and
the accelerated Decoder's captured block decode against the reference loop."""
import dataclasses

import pytest
import torch

from acceleration import Decoder
from decoding.base import GenConfig
from decoding.block_causal import block_layout, check, model_gen
from decoding.loop import decode
from decoding.registry import build_method, parse_methods
from models import load_model
from tests.block_decode_helpers import fdv2_decode, threshold_decode
from tests.test_block_causal import peaked
from tests.test_graphs import _EagerGuardedStep


@pytest.fixture(scope="module")
def models():
    out = {}
    for n in ("sdar-tiny", "llada2-tiny", "fast-dllm-v2-tiny"):
        m = load_model(n, no_weights=True, seed=1)
        peaked(m.module)
        with torch.no_grad():
            m.module.lm_head.weight[m.mask_id].zero_()      # MASK is never proposed (a real model's head)
        out[n] = m
    return out


def method(text, gen):
    return build_method(parse_methods(text)[0], gen)


def prompt_of(P, seed=None):
    return torch.randint(0, 400, (P,), generator=torch.Generator().manual_seed(P if seed is None else seed)).tolist()


def gen_for(m, blocks=2, **kw):
    return GenConfig(gen_length=blocks * m.block_size, block_length=m.block_size, **kw)


@pytest.mark.parametrize("name", ["sdar-tiny", "llada2-tiny"])
def test_threshold_equals_the_reference_decoder_tokens_and_nfe(models, name):
    """threshold:tau on the loop == SDAR's block_diffusion_generate (low_confidence_dynamic, steps =
    block) as tests/block_decode_helpers.py runs it: same tokens; append=separate runs the
    reference's forwards (prefill + steps + one store per finished block), fold the steps alone."""
    m = models[name]
    bs = m.block_size
    gen = gen_for(m, early_stop=False)
    for P in (5, bs, 11):                     # a tail, whole blocks only, a tail after whole blocks
        prompt = prompt_of(P)
        ref = threshold_decode(m.module, prompt, m.mask_id, gen.gen_length, steps=bs, threshold=0.6)
        n_blocks = -(-(P + gen.gen_length) // bs)
        assert ref.tokens.shape[1] - P == n_blocks * bs - P                   # the row's region
        sep = decode(m, method("threshold:tau=0.6,append=separate", gen), [prompt], gen)
        fold = decode(m, method("threshold:tau=0.6", gen), [prompt], gen)
        for r in (sep, fold):
            assert r.tokens[0].tolist() == ref.tokens[0, P:].tolist()
            assert int(r.gen_tokens[0]) == n_blocks * bs - P                  # no EOS was generated here
        assert int(sep.nfe[0]) == ref.nfe
        decoded_blocks = n_blocks - P // bs
        assert int(fold.nfe[0]) == ref.nfe - (P >= bs) - decoded_blocks == int(fold.steps[0])
        assert int(fold.nfe[0]) < n_blocks * bs - P                           # tau committed > 1 token some steps


@pytest.mark.parametrize("sub", [8, 4])
def test_fast_dllm_v2_equals_its_reference_decoder(models, sub):
    """Fast-dLLM v2 (tests/block_decode_helpers.fdv2_decode, which matched the authors' generate):
    AR first token of each block from the appending forward, sub-blocks of `sub` (the loop's
    block_length) inside the model's block, shifted logits, gen_length // block blocks, its stop
    rule; tokens and NFE equal, with and without a stop."""
    m = models["fast-dllm-v2-tiny"]             # block 8
    gen = GenConfig(gen_length=24, block_length=sub)
    for P in (5, 8, 11, 16):
        prompt = prompt_of(P)
        free = fdv2_decode(m.module, [prompt], m.mask_id, -1, 24, threshold=0.6, small_block=sub)
        late = free.rows[0][P + 10:]
        never = min(set(range(m.mask_id)) - set(free.rows[0]))
        for stop in (never, max(set(late), key=late.count)):   # no stop; a token it writes past the first block
            ref = fdv2_decode(m.module, [prompt], m.mask_id, stop, 24, threshold=0.6, small_block=sub)
            m.eos_ids = (stop,)
            try:
                r = decode(m, method("threshold:tau=0.6", gen), [prompt], gen)
            finally:
                m.eos_ids = (501,)
            n = int(r.gen_tokens[0])
            want = ref.rows[0][P:]
            got = r.tokens[0, :n].tolist() + ([stop] if n < len(want) else [])
            assert got == want, (P, sub, stop)
            assert int(r.nfe[0]) == ref.nfe, (P, sub, stop)


def test_fast_dllm_v2_greedy_statistics_are_shifted_instead_of_the_logits(models, monkeypatch):
    """A greedy method that reads no logits gets the statistics of the block's own logit rows,
    shifted by one position, instead of those of a shifted copy of the logits: every step's proposals and
    confidences, and the tokens and NFE, equal a decode of the same method made to read the logits
    (the shifted copy), batched with left padding."""
    import decoding.block_causal as bc
    m = models["fast-dllm-v2-tiny"]
    gen = GenConfig(gen_length=24, block_length=4)
    prompts = [prompt_of(P) for P in (5, 11, 16)]
    seen = []
    stats = bc.BlockForward.block_stats

    def spy(self, rows, fed):
        st = stats(self, rows, fed)
        seen.append((fed.stats_shifted, st.x0.clone(), st.conf.clone()))
        return st
    monkeypatch.setattr(bc.BlockForward, "block_stats", spy)
    r = decode(m, method("threshold:tau=0.6", gen), prompts, gen)
    fast, seen = seen, []
    reading = method("threshold:tau=0.6", gen)
    reads = reading.reads()
    reading.reads = lambda: dataclasses.replace(reads, logits=True)
    ref = decode(m, reading, prompts, gen)
    assert fast and all(f[0] for f in fast) and not any(s[0] for s in seen)
    assert len(fast) == len(seen)
    for (_, x0, conf), (_, x0_ref, conf_ref) in zip(fast, seen):
        assert torch.equal(x0, x0_ref) and torch.equal(conf, conf_ref)
    assert torch.equal(r.tokens, ref.tokens) and torch.equal(r.nfe, ref.nfe)
    assert int(r.nfe.max()) < 24                                           # multi-token commits happened


@pytest.mark.parametrize("name", ["sdar-tiny", "llada2-tiny", "fast-dllm-v2-tiny"])
def test_left_padded_batch_equals_single_runs(models, name):
    """Rows with different prompt tails (one with none: its region starts a block later) decode
    in one batch exactly as alone: tokens, NFE and steps, for methods reading logits or not."""
    m = models[name]
    bs = m.block_size
    prompts = [prompt_of(n, seed=10 + n) for n in (bs + 3, 2 * bs, 5, bs - 1)]
    gen = gen_for(m, early_stop=False)
    for text in ("threshold:tau=0.6", "fixed", "eb:gamma=0.5", "threshold:tau=0.6,append=separate"):
        batch = decode(m, method(text, gen), prompts, gen)
        for i, p in enumerate(prompts):
            one = decode(m, method(text, gen), [p], gen)
            n = int(one.gen_tokens[0])
            if m.logit_shift:   # Fast-dLLM v2: gen_length // block blocks from the tail's, then the AR token
                length = gen.gen_length // bs * bs - len(p) % bs + 1
            else:               # SDAR/LLaDA2: up to the end of the block holding position P + gen_length - 1
                length = -(-(len(p) + gen.gen_length) // bs) * bs - len(p)
            assert int(batch.gen_tokens[i]) == n == length
            assert batch.tokens[i, :n].tolist() == one.tokens[0, :n].tolist(), (text, i)
            assert (int(batch.nfe[i]), int(batch.steps[i])) == (int(one.nfe[0]), int(one.steps[0])), (text, i)


def test_fixed_commits_one_token_per_step_and_prompt_layout(models):
    m = models["sdar-tiny"]                 # block 4
    gen = gen_for(m, blocks=3, early_stop=False)
    prompt = prompt_of(6)                   # one whole block cached, a tail of 2 shares the first decoded block
    r = decode(m, method("fixed", gen), [prompt], gen, trace=True)
    n = 5 * 4 - 6                           # up to the end of the block holding position 6 + 12 - 1 (16..19)
    assert int(r.gen_tokens[0]) == n and int(r.steps[0]) == n == int(r.nfe[0])
    assert all(len(e["commit"]) == 1 for e in r.trace[0])
    # the first step's candidates are the 2 masks sharing the tail's block, then blocks of 4
    committed = [e["commit"][0] for e in r.trace[0]]
    assert sorted(committed[:2]) == [0, 1] and sorted(committed[2:6]) == [2, 3, 4, 5]
    lay = block_layout(torch.tensor([6, 8, 3]), 12, 4)
    assert lay.shift.tolist() == [2, 4, 3] and lay.end.tolist() == [14, 12, 13] and lay.num_blocks == 4


def test_early_stop_at_the_block_holding_eos(models):
    """As SDAR's generate: a row stops after the first block whose generated tokens hold EOS."""
    m = models["sdar-tiny"]
    eos = m.eos_ids[0]
    gen = gen_for(m, blocks=8)
    prompt = prompt_of(5)
    plain = decode(m, method("threshold:tau=0.6", gen), [prompt], dataclasses.replace(gen, early_stop=False))
    late = plain.tokens[0, 12:].tolist()                    # a token the model writes after the first blocks
    with torch.no_grad():
        w = m.module.lm_head.weight
        saved = w[eos].clone()
        w[eos] = 1.05 * w[max(set(late), key=late.count)]   # EOS wins where that token did
    try:
        full = decode(m, method("threshold:tau=0.6", gen), [prompt], dataclasses.replace(gen, early_stop=False))
        first = full.tokens[0].tolist().index(eos) if eos in full.tokens[0].tolist() else None
        assert first is not None and first < gen.gen_length - 8, "the test needs an EOS before the last blocks"
        r = decode(m, method("threshold:tau=0.6,append=separate", gen), [prompt], gen, trace=True)
        assert int(r.gen_tokens[0]) == first
        assert r.tokens[0, :first].tolist() == full.tokens[0, :first].tolist()
        eos_block_end = (5 + first) // 4 * 4 + 4 - 5          # generated index one past the EOS's block
        assert max(max(e["commit"]) for e in r.trace[0]) == eos_block_end - 1   # no block after it was decoded
        assert int(r.nfe[0]) == 1 + int(r.steps[0]) + -(-(eos_block_end + 1) // 4)   # prefill + steps + stores
    finally:
        with torch.no_grad():
            m.module.lm_head.weight[eos] = saved


def test_refusals_name_the_method_and_the_model(models):
    m = models["sdar-tiny"]
    gen = gen_for(m)
    with pytest.raises(ValueError, match=r"^threshold: cache=dual means nothing new for block-causal model sdar-tiny"):
        decode(m, method("threshold:cache=dual", gen), [prompt_of(5)], gen)
    with pytest.raises(ValueError, match=r"^slowfast does not apply to block-causal model sdar-tiny"):
        decode(m, method("slowfast", gen), [prompt_of(5)], gen)
    with pytest.raises(ValueError, match=r"^wino does not apply to block-causal model sdar-tiny: its verification block"):
        decode(m, method("wino", gen), [prompt_of(5)], gen)
    with pytest.raises(ValueError, match="cfg_scale > 0 is not supported on block-causal model sdar-tiny"):
        check(m, method("fixed:cfg_scale=1.0", gen), gen)
    g8 = GenConfig(gen_length=16, block_length=8)
    with pytest.raises(ValueError, match="decodes its own blocks of 4 tokens, or sub-blocks .* got block_length 8: use --block-length 4"):
        decode(m, method("threshold", g8), [prompt_of(5)], g8)
    assert model_gen(m, g8, block_length_given=False).block_length == 4        # a task default gives way
    fd = models["fast-dllm-v2-tiny"]
    assert model_gen(fd, GenConfig(gen_length=32, block_length=32), block_length_given=False).block_length == 8
    assert model_gen(m, GenConfig(gen_length=16, block_length=2), block_length_given=True).block_length == 2
    with pytest.raises(ValueError, match="--block-length 8: use 4"):
        model_gen(m, g8, block_length_given=True)
    with pytest.raises(ValueError, match="multiple of block-causal model llada2-tiny's block size \\(8\\)"):
        model_gen(models["llada2-tiny"], GenConfig(gen_length=12, block_length=4), block_length_given=False)
    with pytest.raises(ValueError, match="append='x'; choose one of fold, separate"):
        method("threshold:append=x", gen)
    with pytest.raises(ValueError, match="needs a non-empty prompt"):
        fd = models["fast-dllm-v2-tiny"]
        decode(fd, method("threshold", gen_for(fd)), [[]], gen_for(fd))


class _WarmedEagerStep:
    """CapturedStep without a GPU: the warm-up runs on a copy of the state (as a capture's does,
    writing the cache and the forward's buffers, which the captured decode must restore), then
    each replay runs the step function on the state."""
    built = 0

    def __init__(self, fn, state, copy_state):
        fn(copy_state(state))
        self.fn, self.state = fn, state
        _WarmedEagerStep.built += 1

    def replay(self):
        self.fn(self.state)


FIELDS = ("tokens", "nfe", "steps", "capped", "gen_tokens")


def _stand_in_block_graphs(monkeypatch) -> list:
    """Eager stand-ins for the step graphs and steps queued ahead (no GPU); -> a list that gets an
    entry per block step the captured decode runs eagerly (block_causal.step)."""
    import acceleration.captured_block as cb
    import acceleration.graphs as graphs
    from acceleration.pool import GraphPool
    monkeypatch.setattr(GraphPool, "graphs_apply", lambda self: True)
    monkeypatch.setattr(graphs, "CapturedStep", _WarmedEagerStep)
    monkeypatch.setattr(graphs, "GuardedStep", _EagerGuardedStep)
    eager, step = [], cb.block_causal.step
    monkeypatch.setattr(cb.block_causal, "step", lambda *a: eager.append(1) or step(*a))
    return eager


@pytest.mark.parametrize("name", ["sdar-tiny", "llada2-tiny", "tiny-block", "cdlm-llada-tiny", "cdlm-dream-tiny"])
def test_captured_block_decode_equals_the_reference_loop(models, name, monkeypatch):
    """acceleration/captured_block.py on CPU with an eager stand-in for the step graph: every row
    fed at a fixed width (one or two blocks), finished rows as padding, every cache slot read
    under the mask, the first step eager. Same tokens and counts as the reference block loop, for
    rows of different prompt lengths (left padding) that finish at different steps (early stop,
    a step cap), and the same again from a kept decode of the same shapes (a second call). On
    CDLM's grid every step after the first (prompt + block) feeds one or two blocks too."""
    if name in models:
        m = models[name]
        prompts = [prompt_of(5), prompt_of(11), prompt_of(2 * m.block_size + 3)]
    elif name == "tiny-block":  # the CDLM student's architecture, with the built-in model's weights
        from tasks.arith import test_problems
        m = load_model(name)
        prompts = [m.tokenizer.encode(p.prompt) for p in test_problems(3)]
    else:                       # LLaDA, Dream under CDLM's grid (the prompt one block, cached whole)
        m = load_model(name, no_weights=True)
        peaked(m.module, seed=3)
        prompts = [prompt_of(5), prompt_of(11), prompt_of(2 * m.block_size + 3)]
    gens = [gen_for(m, blocks=3), gen_for(m, blocks=3, early_stop=False, max_steps=3 * m.block_size // 2)]
    for spec in ("fixed", "threshold:tau=0.6", "eb", "localleap", "klass", "dico"):
        for gen in gens:
            want = decode(m, method(spec, gen), prompts, gen)
            eager = _stand_in_block_graphs(monkeypatch)
            built = _WarmedEagerStep.built
            dec = Decoder(m)
            got = [dec(method(spec, gen), prompts, gen) for _ in range(2)]
            monkeypatch.undo()
            assert _WarmedEagerStep.built - built == 2, spec          # one graph per width, kept for the second call
            assert len(eager) == 2, spec                              # the first step of each call (whole prompt blocks)
            for g in got:
                for f in FIELDS:
                    assert torch.equal(getattr(g, f), getattr(want, f)), (spec, gen, f)


@pytest.mark.parametrize("name", ["sdar-tiny", "llada2-tiny"])
def test_block_steps_queued_ahead_equal_the_reference_loop(models, name, monkeypatch):
    """Rows in step (prompts of one length): a step of the same width as the last is queued before
    the host reads the counts (acceleration/captured.py, a GuardedStep stood in eagerly); it runs
    where the device-side guard finds it is the next step. Same tokens and counts as the reference
    block loop, and DLLM_QUEUE_AHEAD=0 queues none."""
    m = models[name]
    prompts = [prompt_of(9, seed=s) for s in range(3)]
    for spec in ("fixed", "threshold:tau=0.6"):
        for gen in (gen_for(m, blocks=3), gen_for(m, blocks=3, early_stop=False, max_steps=5)):
            want = decode(m, method(spec, gen), prompts, gen)
            for queue in ("1", "0"):
                monkeypatch.setenv("DLLM_QUEUE_AHEAD", queue)
                _stand_in_block_graphs(monkeypatch)
                dec = Decoder(m)
                got = dec(method(spec, gen), prompts, gen)
                monkeypatch.undo()
                (kept,) = dec.pool.decodes.values()
                if spec == "fixed":
                    assert (kept.ahead_steps > 0) == (queue == "1"), (spec, gen, queue)
                for f in FIELDS:
                    assert torch.equal(getattr(got, f), getattr(want, f)), (spec, gen, queue, f)


@pytest.mark.parametrize("name,graphs_built", [("sdar-tiny", 2), ("llada2-tiny", 2), ("fast-dllm-v2-tiny", 1)])
def test_compiled_block_step_traces_as_one_graph_and_equals_the_reference_loop(models, name, graphs_built, monkeypatch):
    """A captured block step's decide and bookkeeping compile as one graph (aot_eager on CPU:
    dynamo's tracing without code generation, acceleration/compiled_step.py): each width traces
    whole and the decode equals the reference block loop (Fast-dLLM v2: one width, its append
    graph holds no decide)."""
    import acceleration.compiled_step as compiled_step
    m = models[name]
    prompts = [prompt_of(5), prompt_of(11), prompt_of(2 * m.block_size + 3)]
    gen = gen_for(m, blocks=3)
    for spec in ("threshold:tau=0.6", "eb", "klass"):
        want = decode(m, method(spec, gen), prompts, gen)
        _stand_in_block_graphs(monkeypatch)
        monkeypatch.setattr(compiled_step, "CPU_BACKEND", "aot_eager")
        dec = Decoder(m)
        got = dec(method(spec, gen), prompts, gen)
        monkeypatch.undo()
        (captured,) = dec.pool.decodes.values()
        assert len(captured.compiled_kinds) == graphs_built and all(captured.compiled_kinds), spec
        for f in FIELDS:
            assert torch.equal(getattr(got, f), getattr(want, f)), (spec, f)


@pytest.mark.parametrize("name,sub", [("fast-dllm-v2-tiny", 8), ("fast-dllm-v2-tiny", 4), ("sdar-tiny", None),
                                      ("llada2-tiny", None)])
def test_captured_separate_appends_equal_the_reference_loop(models, name, sub, monkeypatch):
    """Blocks appended by forwards of their own (Fast-dLLM v2 always, `append=separate` on SDAR and
    LLaDA2): the step graph marks the rows whose block it finished and the next launch is the
    append graph (acceleration/captured_block.py, APPEND). Same tokens, NFE (appends and the
    prefill included), steps and caps as the reference block loop, for rows of different prompt
    lengths, with Fast-dLLM v2's stop rule firing (a stop token the model writes) and not, a step
    cap, a kept decode's second call, and steps queued ahead on and off; no step runs eagerly."""
    import acceleration.captured_block as cb
    m = models[name]
    bs = m.block_size
    prompts = [prompt_of(5), prompt_of(11), prompt_of(2 * bs + 3)]
    ar = name.startswith("fast-dllm")
    append = "" if ar else ",append=separate"
    free = decode(m, method("threshold:tau=0.6" + append, gen_for(m, blocks=3)), prompts, gen_for(m, blocks=3))
    late = free.tokens[:, bs:].flatten().tolist()
    stops = [(501,), (max(set(late), key=late.count),)] if ar else [m.eos_ids]
    saved = m.eos_ids
    try:
        for eos in stops:
            m.eos_ids = eos
            for gen in (gen_for(m, blocks=3), gen_for(m, blocks=3, early_stop=False, max_steps=2 * bs)):
                if sub is not None:
                    gen = dataclasses.replace(gen, block_length=sub)
                for spec in ("threshold:tau=0.6", "fixed", "eb", "klass", "dico", "localleap", "edit"):
                    want = decode(m, method(spec + append, gen), prompts, gen)
                    for queue in ("1", "0"):
                        monkeypatch.setenv("DLLM_QUEUE_AHEAD", queue)
                        eager = _stand_in_block_graphs(monkeypatch)
                        dec = Decoder(m)
                        got = [dec(method(spec + append, gen), prompts, gen) for _ in range(2)]
                        monkeypatch.undo()
                        (kept,) = dec.pool.decodes.values()
                        assert not eager and kept.replays.get(cb.APPEND, 0) > 0, (spec, gen, queue)
                        assert (kept.ahead_steps > 0) == (queue == "1"), (spec, gen, queue)
                        for g in got:
                            for f in FIELDS:
                                assert torch.equal(getattr(g, f), getattr(want, f)), (spec, eos, gen, queue, f)
    finally:
        m.eos_ids = saved


def test_a_block_forward_without_a_fixed_width_is_never_graphed(models):
    """policy.model_blocker: a block-causal module whose block_forward cannot take the capacity and
    skip its check (a backend without the exact cache's full API) runs the reference loop."""
    from acceleration.policy import model_blocker

    class NoFixedWidth(torch.nn.Module):
        def block_forward(self, input_ids, cache, valid=None, commit=0):
            raise AssertionError("not called")
    m = models["sdar-tiny"]
    assert model_blocker(m) is None
    assert "no fixed-width block forward" in model_blocker(dataclasses.replace(m, module=NoFixedWidth()))


@pytest.mark.parametrize("name", ["fast-dllm-v2-tiny", "sdar-tiny"])
def test_captured_klass_starts_from_zeroed_buffers_its_first_decide_makes(models, name, monkeypatch):
    """klass remakes its runs at its first decide, sized to the block layout's width (Fast-dLLM
    v2: one past gen_length where prompts end on a block boundary), and makes its previous-logits
    buffer there. A captured decode whose first step is a step graph (separate appends: every step
    captured) runs that decide as the warm-up: what it made must start the decode at zeros, as the
    reference loop's first decide has them, or a position's first step reads as stable. Same
    tokens and NFE as the reference block loop at thresholds that make the KL rule commit, twice
    from one kept decode, whose second method object is bound to the buffers the graphs hold (the
    eager stand-ins call the current object, so only that binding shows what real graphs read)."""
    m = models[name]
    bs = m.block_size
    append = "" if name.startswith("fast-dllm") else ",append=separate"
    gen = gen_for(m, blocks=4)
    for lens in ([4 * bs, 4 * bs], [5, 11, 2 * bs + 3]):
        prompts = [prompt_of(n, seed=i) for i, n in enumerate(lens)]
        for tau in (0.0, 0.3):
            spec = f"klass:tau={tau}" + append
            want = decode(m, method(spec, gen), prompts, gen)
            _stand_in_block_graphs(monkeypatch)
            dec = Decoder(m)
            methods = [method(spec, gen) for _ in range(2)]
            got = [dec(meth, prompts, gen) for meth in methods]
            monkeypatch.undo()
            for g in got:
                for f in FIELDS:
                    assert torch.equal(getattr(g, f), getattr(want, f)), (lens, spec, f)
            for buf in ("run", "seen", "ring"):   # the second call's buffers are the ones the graphs hold
                assert getattr(methods[1], buf) is getattr(methods[0], buf), (lens, spec, buf)


@pytest.mark.parametrize("name", ["sdar-tiny", "llada2-tiny"])
def test_a_kept_block_decode_binds_the_next_calls_controller_weights(models, name, monkeypatch, tmp_path):
    """PRR with a learned controller on a block-causal model, two calls of one kept captured decode
    with controllers of the same size but other weights: each equals the reference block loop with
    its own weights, and the second object holds the captured module, loaded with the second
    checkpoint's weights (the graphs read that module's parameters; the eager stand-ins call the
    current object, so the binding is what shows what real graphs read)."""
    from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
    m = models[name]
    d = getattr(m.module.cfg, "d_model", None) or m.module.cfg.hidden_size
    gen = gen_for(m, blocks=3)
    prompts = [prompt_of(n, seed=i) for i, n in enumerate([5, m.block_size + 3])]
    spec = f"prr:controller={tmp_path / 'ctrl'},tau=0.5" + ("" if name == "llada2-tiny" else ",append=separate")
    wants, objs = [], []
    _stand_in_block_graphs(monkeypatch)
    dec = Decoder(m)
    for seed in (0, 1):
        torch.manual_seed(seed)
        ctrl = Controller(ControllerConfig(d_model=d, hidden=16))
        with torch.no_grad():
            ctrl.out.weight.mul_(50.0)   # scores far from 0.5: the weights decide commits
        save_controller(ctrl, tmp_path / "ctrl", {"note": "test"})
        monkeypatch.undo()
        want = decode(m, method(spec, gen), prompts, gen)
        _stand_in_block_graphs(monkeypatch)
        objs.append(method(spec, gen))
        loaded = {k: v.clone() for k, v in objs[-1].ctrl.state_dict().items()}
        got = dec(objs[-1], prompts, gen)
        for f in FIELDS:
            assert torch.equal(getattr(got, f), getattr(want, f)), (seed, f)
        assert all(torch.equal(t, loaded[k]) for k, t in objs[-1].ctrl.state_dict().items())
        wants.append(want)
    monkeypatch.undo()
    assert objs[1].ctrl is objs[0].ctrl                     # the captured module, now with seed 1's weights
    assert not torch.equal(wants[0].tokens, wants[1].tokens)   # the weights decide the tokens


def test_captured_block_steps_read_a_key_length_that_is_a_multiple_of_64(models, monkeypatch):
    """A captured step reads every cache slot under a mask: the attention's key length is the
    cache capacity, rounded up to a multiple of 64 (block_causal.CAPACITY_MULTIPLE) so that SDPA
    takes the mask without padding it (Fast-dLLM v2 with a prompt on a block boundary needs an odd
    capacity: prompt + gen + 1 + a block). The tokens equal the reference loop's, which reads the
    exact length."""
    m = models["fast-dllm-v2-tiny"]
    bs = m.block_size
    gen = GenConfig(gen_length=24, block_length=4)
    prompts = [prompt_of(2 * bs)]
    want = decode(m, method("threshold", gen), prompts, gen)
    keys, sdpa = [], torch.nn.functional.scaled_dot_product_attention
    _stand_in_block_graphs(monkeypatch)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda q, k, v, **kw: keys.append(k.shape[2]) or sdpa(q, k, v, **kw))
    got = Decoder(m)(method("threshold", gen), prompts, gen)
    monkeypatch.undo()
    need = 2 * bs + gen.gen_length + 1 + bs
    assert need % 2 == 1 and max(keys) == 64 * -(-need // 64)
    for f in FIELDS:
        assert torch.equal(getattr(got, f), getattr(want, f)), f


@pytest.mark.parametrize("name,append", [("fast-dllm-v2-tiny", ""), ("sdar-tiny", ",append=separate")])
def test_the_steps_around_an_append_are_queued_ahead(models, name, append, monkeypatch):
    """With blocks appended by forwards of their own, the host queues the next block's step behind
    each append graph and the append graph behind each block step (CapturedBlockDecode.next_kinds):
    every step but a call's first of each kind runs queued ahead, with the reference loop's tokens."""
    import acceleration.captured_block as cb
    m = models[name]
    gen = gen_for(m, blocks=3)
    prompts = [prompt_of(5), prompt_of(11)]
    want = decode(m, method("fixed" + append, gen), prompts, gen)
    monkeypatch.setenv("DLLM_QUEUE_AHEAD", "1")
    _stand_in_block_graphs(monkeypatch)
    dec = Decoder(m)
    got = dec(method("fixed" + append, gen), prompts, gen)
    (kept,) = dec.pool.decodes.values()
    assert kept.replays[cb.APPEND] >= 2
    assert kept.ahead_steps == kept.replays[m.block_size] - 1 + kept.replays[cb.APPEND] - 1, kept.replays
    for f in FIELDS:
        assert torch.equal(getattr(got, f), getattr(want, f)), f


@pytest.mark.parametrize("name", ["sdar-tiny", "llada2-tiny"])
def test_the_step_that_starts_a_block_is_queued_ahead(models, name, monkeypatch):
    """With appends folded into the next block's first step (two blocks wide), the host queues that
    step and then one a block wide behind each block step (CapturedBlockDecode.next_kinds): every
    graphed step but the first of each width runs queued ahead, with the reference loop's tokens
    and counts; ragged prompts, early stop and a step cap included."""
    m = models[name]
    bs = m.block_size
    prompts = [prompt_of(5), prompt_of(2 * bs + 3, seed=1), prompt_of(11, seed=2)]
    for spec in ("fixed", "threshold:tau=0.6"):
        for gen in (gen_for(m, blocks=4), gen_for(m, blocks=4, early_stop=False),
                    gen_for(m, blocks=4, early_stop=False, max_steps=5)):
            want = decode(m, method(spec, gen), prompts, gen)
            monkeypatch.setenv("DLLM_QUEUE_AHEAD", "1")
            _stand_in_block_graphs(monkeypatch)
            dec = Decoder(m)
            got = dec(method(spec, gen), prompts, gen)
            monkeypatch.undo()
            (kept,) = dec.pool.decodes.values()
            graphed = [kept.replays.get(w, 0) for w in (bs, 2 * bs)]
            assert gen.max_steps is not None or graphed[1] >= 2, (spec, kept.replays)
            assert kept.ahead_steps == sum(graphed) - sum(n > 0 for n in graphed), (spec, gen, kept.replays)
            for f in FIELDS:
                assert torch.equal(getattr(got, f), getattr(want, f)), (spec, gen, f)
