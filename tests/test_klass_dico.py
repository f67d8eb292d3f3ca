"""klass and dico: decisions on hand-made steps, end-to-end decodes (a left-padded batch equals single
runs; klass under cache=dual updates only fresh positions), one-line errors for bad settings."""
import math

import pytest
import torch

from decoding.base import GenConfig
from decoding.contract import History, step_inputs
from decoding.loop import decode
from decoding.methods.klass import KLASSMethod

from decode_helpers import encode, method

T, F = True, False
CPU = torch.device("cpu")


def _logits(probs):
    """Logits [1, G, V] whose softmax is `probs` (rows normalized)."""
    p = torch.tensor(probs, dtype=torch.float64)
    return (p / p.sum(-1, keepdim=True)).log().float().unsqueeze(0)


def _step(m, logits, cand, step_in_block, fresh=None, history=None, step=None, tokens=None):
    conf, x0 = torch.softmax(logits, -1).max(-1)
    z = torch.zeros(1, dtype=torch.long)
    view, out = step_inputs(conf=conf, x0=x0, logits=logits, candidates=cand, step_in_block=z + step_in_block,
                            step=z + (step_in_block if step is None else step), fresh=fresh, history=history,
                            tokens=tokens)
    return m.decide(view, out).commit


# four positions: conf 0.9, 0.7, 0.5, 0.8 (V = 3)
PROBS = [[0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]


def test_klass_commits_stable_confident_positions_after_h_steps():
    gen = GenConfig(gen_length=4, block_length=4)
    m = method("klass", gen)           # tau 0.6, kl_tol 0.015, H 2; quota 1 per step
    m.start(1, CPU)
    lg, cand = _logits(PROBS), torch.ones((1, 4), dtype=torch.bool)
    # step 0: the previous distribution is 0 (KL about 27.6 - H(p)): nothing stable, quota = top-1 conf
    assert _step(m, lg, cand, 0).tolist() == [[T, F, F, F]]
    kl0 = (torch.tensor(PROBS, dtype=torch.float64) * ((torch.tensor(PROBS, dtype=torch.float64) + 1e-12).log()
                                                     - math.log(1e-12))).sum(-1)
    assert (kl0 > 20).all() and m.run.tolist() == [[0, 0, 0, 0]]
    # step 1: KL = 0 at every position (run 1 < H = 2): still the quota
    cand = torch.tensor([[F, T, T, T]])
    assert _step(m, lg, cand, 1).tolist() == [[F, F, F, T]]
    assert m.run.tolist() == [[0, 1, 1, 1]]      # position 0, written at step 0, is followed no more
    # step 2: run 2 = H: ready = conf > 0.6 -> positions 1 (0.7) and 3 (0.8); 2 (0.5) waits
    cand = torch.tensor([[F, T, T, F]])
    assert _step(m, lg, cand, 2).tolist() == [[F, T, F, F]]
    # a position whose distribution moves (KL >= kl_tol) restarts its run
    moved = _logits([PROBS[0], PROBS[1], [0.95, 0.03, 0.02], PROBS[3]])
    _step(m, moved, torch.tensor([[F, T, T, F]]), 3)
    assert m.run.tolist() == [[0, 3, 0, 0]]


def test_klass_kl_is_the_authors_float64_full_vocabulary_kl():
    gen = GenConfig(gen_length=4, block_length=4)
    m = method("klass:kl_tol=0.05", gen)
    m.start(1, CPU)
    a = [[0.6, 0.3, 0.1]] * 4
    b = [[0.5, 0.35, 0.15], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.6, 0.3, 0.1]]
    cand = torch.ones((1, 4), dtype=torch.bool)
    _step(m, _logits(a), cand, 0)
    _step(m, _logits(b), cand, 1)
    pa, pb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    kl = (pb * ((pb + 1e-12).log() - (pa + 1e-12).log())).sum(-1)   # 0.0227, 0, 0.2197, 0
    assert ((kl < 0.05).long()).tolist() == [1, 1, 0, 1]
    assert m.run.tolist() == [[1, 1, 0, 1]]


def test_klass_history_survives_logits_of_another_dtype():
    """A forward's logits come in the model's dtype (bf16), and a step whose rows ran different
    forwards hands them over merged in fp32 (decoding/cache.py, _merge): the same values must
    read as the same distribution (KL 0, the run goes on), not as a lost history."""
    gen = GenConfig(gen_length=4, block_length=4)
    m = method("klass", gen)
    m.start(1, CPU)
    lg, cand = _logits(PROBS).bfloat16(), torch.ones((1, 4), dtype=torch.bool)
    moved = _logits([PROBS[0], PROBS[1], [0.95, 0.03, 0.02], PROBS[3]]).bfloat16()
    _step(m, lg, cand, 0)
    _step(m, lg.float(), cand, 1)
    assert m.run.tolist() == [[1, 1, 1, 1]]
    _step(m, moved, cand, 2)           # position 2 moved: its run restarts
    assert m.run.tolist() == [[2, 2, 0, 2]]
    _step(m, lg.float(), cand, 3)      # and moves back
    assert m.run.tolist() == [[3, 3, 0, 3]]


def test_klass_gate_waits_h_minus_1_steps_into_a_new_block_though_history_carries():
    gen = GenConfig(gen_length=8, block_length=4)
    m = method("klass", gen)
    m.start(1, CPU)
    lg = _logits(PROBS + PROBS)
    first = torch.tensor([[T, T, T, T, F, F, F, F]])
    masked = torch.full((1, 8), -1)                      # the next block is masked too (MASK = -1)
    for i in range(3):
        _step(m, lg, first, i, tokens=masked)
    assert m.run[0, 4:].tolist() == [2, 2, 2, 2]         # the next block's positions are stable already
    second = torch.tensor([[F, F, F, F, T, T, T, T]])
    assert _step(m, lg, second, 0, step=3).tolist() == [[F, F, F, F, T, F, F, F]]   # in-block step 0 < H - 1: quota
    assert _step(m, lg, second, 1, step=4).tolist() == [[F, F, F, F, T, T, F, T]]   # ready: conf > 0.6


def test_klass_only_fresh_positions_update_their_kl_history():
    gen = GenConfig(gen_length=4, block_length=4)
    m = method("klass", gen)
    m.start(1, CPU)
    cand = torch.ones((1, 4), dtype=torch.bool)
    _step(m, _logits(PROBS), cand, 0)
    prev = m.ring.clone()
    fresh = torch.tensor([[T, T, F, F]])
    lg = _logits(PROBS) * fresh.unsqueeze(-1)             # not fresh: zeros, as a cache window gives
    _step(m, lg, cand, 1, fresh=fresh)
    assert m.run.tolist() == [[1, 1, 0, 0]]
    assert torch.equal(m.ring[0, 2:4], prev[0, 2:4])       # kept: the next fresh forward compares with it
    assert m.ring.shape == (1, gen.gen_length + 1, 3)      # a view without blocks: a slot per position


def test_klass_keeps_log_p_of_two_blocks_per_row_in_a_float64_ring():
    from decoding.loop import decode
    from models import load_model
    model = load_model("llada-tiny", no_weights=True)
    gen = GenConfig(gen_length=24, block_length=4)
    m = method("klass", gen)
    decode(model, m, [[5, 6, 7], [8, 9]], gen)
    V = model.module.cfg.vocab_size
    assert m.ring.shape == (2, 2 * gen.block_length + 1, V) and m.ring.dtype == torch.float64


def test_klass_topk_reads_the_loop_summary_and_never_calls_the_first_step_stable():
    gen = GenConfig(gen_length=4, block_length=4)
    m = method("klass:kl=topk,topk=2", gen)
    assert m.reads().topk == 2 and m.reads().history
    m.start(1, CPU)
    lg, cand = _logits(PROBS), torch.ones((1, 4), dtype=torch.bool)
    h = History.empty(1, 4, CPU, topk=2)                   # zeros: must not read as a distribution
    _step(m, lg, cand, 0, history=h)
    assert m.run.tolist() == [[0, 0, 0, 0]]
    h.topk_logp, h.topk_ids = torch.log_softmax(lg, -1).topk(2, -1)
    _step(m, lg, cand, 1, history=h)
    assert m.run.tolist() == [[1, 1, 1, 1]]


@pytest.mark.parametrize("spec, match", [
    ("klass:tau=1.5", "tau=1.5 must be in"), ("klass:kl_tol=0", "kl_tol=0.0 must be > 0"),
    ("klass:history=0", "history=0 must be >= 1"), ("klass:kl=exact", "kl='exact'; choose one of full, topk"),
    ("klass:topk=0", "topk=0 must be >= 1"), ("klass:steps=5", "steps=5 must be a multiple"),
    ("dico:tau_seed=2", "tau_seed=2.0 must be in"), ("dico:lam=-0.1", "lam=-0.1 must be in"),
    ("dico:radius=-1", "radius=-1 must be >= 0"), ("dico:n_final=-2", "n_final=-2 must be >= 0"),
    ("dico:min_stable=-1", "min_stable=-1 must be >= 0"), ("dico:tau_cluster=1.1", "tau_cluster=1.1 must be in")])
def test_bad_settings_are_one_line_errors(spec, match):
    with pytest.raises(ValueError, match=match) as e:
        method(spec, GenConfig(gen_length=24, block_length=8))
    assert "\n" not in str(e.value)


def _dico_step(m, conf, cand, stable, second=None):
    """A dico step on hand-made probabilities: per position conf (top-1), `second` (top-2; default
    half the rest) and the rest spread over 10 more tokens; `stable` the loop's history counter
    (the argmax does not change at this step, so the run is stable + 1)."""
    G = len(conf)
    second = second or [(1 - c) / 2 for c in conf]
    rows = [[c, s] + [(1 - c - s) / 10] * 10 for c, s in zip(conf, second)]
    logits = torch.tensor([rows]).clamp_min(1e-9).log()
    h = History.empty(1, G, CPU)
    h.argmax = torch.zeros((1, G), dtype=torch.long)
    h.stable = torch.tensor([stable])
    view, out = step_inputs(conf=torch.tensor([conf]), x0=torch.zeros((1, G), dtype=torch.long), logits=logits,
                            candidates=torch.tensor([cand]), history=h)
    return m.decide(view, out).commit.tolist()[0]


def test_dico_divides_into_clusters_and_conquers_them_in_parallel():
    m = method("dico:tau_seed=0.9,min_stable=1,radius=1,tau_cluster=0.6,n_final=1", GenConfig(gen_length=8, block_length=8))
    conf = [0.95, 0.65, 0.3, 0.5, 0.62, 0.7, 0.92, 0.4]
    # seeds 0 and 6 (conf >= 0.9, argmax run 1 >= 1); clusters {0, 1} and {5, 6, 7};
    # commit members >= 0.6 (1, 5) and each cluster's best (0, 6); 4 (0.62) is in no cluster
    assert _dico_step(m, conf, [T] * 8, [0] * 8) == [T, T, F, F, F, T, T, F]
    # a seed needs a stable argmax: run 0 at 6 (it changed at the previous step): only {0, 1}
    assert _dico_step(m, conf, [T] * 8, [0, 0, 0, 0, 0, 0, -1, 0]) == [T, T, F, F, F, F, F, F]


def test_dico_finalizes_one_token_by_margin_and_confidence():
    m = method("dico:tau_seed=0.9,lam=0.5,n_final=2", GenConfig(gen_length=4, block_length=4))
    # no seed: one token by 0.5 * margin + 0.5 * conf: position 1 (0.5 * 0.55 + 0.5 * 0.6 = 0.575)
    # beats the more confident position 0 (0.5 * 0.4 + 0.5 * 0.7 = 0.55)
    assert _dico_step(m, [0.7, 0.6, 0.4, 0.3], [T] * 4, [0] * 4, second=[0.3, 0.05, 0.3, 0.3]) == [F, T, F, F]
    # two masks left (<= n_final): one token although both are seeds
    assert _dico_step(m, [0.95, 0.93, 0.4, 0.3], [T, T, F, F], [0] * 4) == [T, F, F, F]


def _peaked(model_name):
    from models import load_model
    m = load_model(model_name, no_weights=True, seed=1)
    with torch.no_grad():    # peaked logits (as tests/golden_decode.py): adaptive methods commit several tokens
        for p in m.module.parameters():
            if p.dim() == 2:
                p.mul_(25.0)
    return m


@pytest.fixture(scope="module")
def llada_tiny():
    return _peaked("llada-tiny")


SPECS = ["klass", "klass:kl=topk,topk=4,tau=0.3,kl_tol=0.1", "klass:cache=dual", "dico",
         "dico:tau_seed=0.6,radius=3,tau_cluster=0.3,cache=dual"]


@pytest.mark.parametrize("spec", SPECS)
def test_batch_with_left_padding_equals_single_runs(spec, builtin_model, llada_tiny, prompts):
    gen = GenConfig(gen_length=24, block_length=8)
    g = torch.Generator().manual_seed(0)
    cases = [(builtin_model, encode(builtin_model, prompts[1:3])),
             (llada_tiny, [torch.randint(10, 400, (n,), generator=g).tolist() for n in (9, 4, 6)])]
    for model, ids in cases:
        batch = decode(model, method(spec, gen), ids, gen)
        for i, p in enumerate(ids):
            one = decode(model, method(spec, gen), [p], gen)
            assert torch.equal(batch.tokens[i], one.tokens[0]), (spec, model.name, i)
            assert batch.nfe[i] == one.nfe[0] and batch.steps[i] == one.steps[0]
        assert torch.equal(batch.nfe, batch.steps)           # one forward per step, refreshes included


def test_klass_topk_over_the_whole_vocabulary_equals_the_full_kl(builtin_model, prompts):
    gen = GenConfig(gen_length=24, block_length=8)
    ids = encode(builtin_model, prompts[:4])
    V = builtin_model.tokenizer.__len__()
    full = decode(builtin_model, method("klass", gen), ids, gen)
    topk = decode(builtin_model, method(f"klass:kl=topk,topk={V}", gen), ids, gen)
    assert torch.equal(full.tokens, topk.tokens) and torch.equal(full.nfe, topk.nfe)
    assert full.steps.float().mean() < 24                   # it commits several tokens per step


class _Spy(KLASSMethod):
    """klass recording, per step, which positions were fresh and which changed their KL run or
    previous distribution."""
    def decide(self, view, out):
        run, prev = self.run[view.rows].clone(), None if getattr(self, "prev", None) is None else self.prev[view.rows].clone()
        dec = super().decide(view, out)
        moved = (self.run[view.rows] != run)
        if prev is not None:
            moved |= (self.prev[view.rows] != prev).any(-1)[:, :-1]   # the spare position G is never read
        self.log.append((out.fresh.clone(), moved))
        return dec


def test_klass_under_the_dual_cache_updates_only_fresh_positions(llada_tiny):
    gen = GenConfig(gen_length=24, block_length=8)
    spy = _Spy(KLASSMethod.Config(), gen)
    spy.cache, spy.log = "dual", []
    g = torch.Generator().manual_seed(2)
    ids = [torch.randint(10, 400, (n,), generator=g).tolist() for n in (7, 5)]
    res = decode(llada_tiny, spy, ids, gen)
    windows = [f for f, _ in spy.log if not f.all()]
    assert windows, "the dual cache ran window forwards"
    assert all(f[:, :8].all() | f[:, 8:16].all() | f[:, 16:].all() for f in windows)  # one block fresh
    assert all(not (moved & ~fresh).any() for fresh, moved in spy.log)
    assert torch.equal(res.nfe, res.steps)
    plain = decode(llada_tiny, method("klass:cache=dual", gen), ids, gen)
    assert torch.equal(plain.tokens, res.tokens)


class _WarmStep:
    """CapturedStep without a GPU, warm-up included: building runs the step once on a copy of the
    state (as the CUDA warm-up does, before capture); each replay runs it on the state."""
    built = 0

    def __init__(self, fn, state, copy_state):
        fn(copy_state(state))
        self.fn, self.state = fn, state
        _WarmStep.built += 1

    def replay(self):
        self.fn(self.state)


@pytest.mark.parametrize("spec", ["klass", "klass:cache=dual", "klass:kl=topk", "dico", "dico:cache=dual"])
def test_captured_decode_equals_the_loop_and_a_kept_one_reads_nothing_stale(spec, builtin_model, prompts,
                                                                             monkeypatch):
    # klass allocates its [B, G, V] previous distribution at its first decide, which a captured
    # decode first runs in the step graph's warm-up, on a copy of the state: what the warm-up leaves
    # there must never be read, nor what a kept decode's previous call left.
    import acceleration.graphs as graphs
    from acceleration import Decoder
    from acceleration.pool import GraphPool
    from test_graphs import _EagerGraphedCall, _EagerGuardedStep
    gen = GenConfig(gen_length=24, block_length=8)
    first = encode(builtin_model, prompts[:3])
    second = first[1:] + first[:1]
    want = [decode(builtin_model, method(spec, gen), ids, gen) for ids in (first, second)]
    monkeypatch.setattr(GraphPool, "graphs_apply", lambda self: True)
    monkeypatch.setattr(GraphPool, "launch_bound", lambda self, n: True)
    monkeypatch.setattr(graphs, "GraphedCall", _EagerGraphedCall)
    monkeypatch.setattr(graphs, "CapturedStep", _WarmStep)
    monkeypatch.setattr(graphs, "GuardedStep", _EagerGuardedStep)
    decoder, built = Decoder(builtin_model), _WarmStep.built
    got = [decoder(method(spec, gen), ids, gen) for ids in (first, second)]
    assert _WarmStep.built > built                           # captured
    for w, g in zip(want, got):
        for field in ("tokens", "nfe", "steps"):
            assert torch.equal(getattr(w, field), getattr(g, field)), (spec, field)


@pytest.mark.parametrize("spec", ["klass", "dico"])
def test_block_causal_model_batch_equals_single_runs(spec):
    # a block-causal model rounds each row's region up to its blocks (G > gen_length)
    from models import load_model
    from tests.test_block_causal import peaked
    m = load_model("sdar-tiny", no_weights=True, seed=1)
    peaked(m.module)
    with torch.no_grad():
        m.module.lm_head.weight[m.mask_id].zero_()
    gen = GenConfig(gen_length=2 * m.block_size, block_length=m.block_size, early_stop=False)
    g = torch.Generator().manual_seed(3)
    ids = [torch.randint(0, 400, (n,), generator=g).tolist() for n in (5, 11)]
    batch = decode(m, method(spec, gen), ids, gen)
    for i, p in enumerate(ids):
        one = decode(m, method(spec, gen), [p], gen)
        n = one.tokens.shape[1]                              # the row's own region (the batch's is the longest)
        assert torch.equal(batch.tokens[i, :n], one.tokens[0]) and batch.nfe[i] == one.nfe[0], (spec, i)


@pytest.mark.parametrize("spec", ["klass", "klass:history=1,tau=0.3", "klass:history=3,tau=0.2,kl_tol=0.2",
                                  "klass:tau=0.3,kl_tol=0.1"])
def test_klass_keeping_two_blocks_commits_as_the_authors_kl_at_every_position(spec, builtin_model, llada_tiny,
                                                                             prompts, monkeypatch):
    """klass keeps its KL history at the current and next block only; the authors compute it at
    every position every step. Their commits agree: kept everywhere (no block positions), the
    tokens and NFE are the same."""
    import decoding.methods.klass as klass_module
    gen = GenConfig(gen_length=32, block_length=8)
    g = torch.Generator().manual_seed(3)
    cases = [(builtin_model, encode(builtin_model, prompts[:3])),
             (llada_tiny, [torch.randint(10, 400, (n,), generator=g).tolist() for n in (9, 4, 6)])]
    several = False
    for model, ids in cases:
        two_blocks = decode(model, method(spec, gen), ids, gen)
        with monkeypatch.context() as m:
            m.setattr(klass_module, "block_positions", lambda view, block_length, blocks=1: None)
            everywhere = decode(model, method(spec, gen), ids, gen)
        assert torch.equal(two_blocks.tokens, everywhere.tokens), (spec, model.name)
        assert torch.equal(two_blocks.nfe, everywhere.nfe), (spec, model.name)
        several |= bool((two_blocks.steps < gen.gen_length).any())
    assert several, "some row committed several tokens in a step (the KL rule decided)"
