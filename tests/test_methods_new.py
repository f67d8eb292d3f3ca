"""slowfast, localleap, eb: selection rules on hand-made tensors and loop invariants."""
import pytest
import torch

from decoding.base import GenConfig
from decoding.contract import step_inputs
from decoding.loop import decode
from tasks.arith import test_problems as arith_problems
from decoding.select import entropy, entropy_budget_commit, local_leap_commit

from decode_helpers import GEN, encode, method

T, F = True, False


def test_eb_commits_lowest_entropy_prefix_within_budget():
    ent = torch.tensor([[0.05, 0.5, 0.02, 0.1, 2.0]])
    cand = torch.ones_like(ent, dtype=torch.bool)
    # sorted 0.02, 0.05, 0.1, 0.5, 2.0: prefix sums minus max: 0, 0.02, 0.07, 0.17, 0.67
    assert entropy_budget_commit(ent, cand, 0.1).tolist() == [[T, F, T, T, F]]
    assert entropy_budget_commit(ent, cand, 0.0).tolist() == [[F, F, T, F, F]]   # at least one
    assert entropy_budget_commit(ent, cand, 1.0).tolist() == [[T, T, T, T, T]]
    # non-candidates never count, even with zero entropy
    cand2 = torch.tensor([[T, T, F, T, T]])
    assert entropy_budget_commit(ent, cand2, 0.06).tolist() == [[T, F, F, T, F]]


def test_entropy_of_uniform_and_peaked():
    lg = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]])
    h = entropy(lg)
    assert torch.allclose(h, torch.tensor([[torch.log(torch.tensor(4.0)), 0.0]]), atol=1e-5)


def test_localleap_relaxed_threshold_only_near_anchors():
    conf = torch.tensor([[0.95, 0.8, 0.5, 0.5, 0.5, 0.5, 0.8, 0.78]])
    cand = torch.ones_like(conf, dtype=torch.bool)
    # anchor at 0; radius 2 reaches 1, 2; position 6/7 (0.8/0.78) are too far and below 0.9
    out = local_leap_commit(conf, cand, 0.9, 0.75, 2)
    assert out.tolist() == [[T, T, F, F, F, F, F, F]]
    out = local_leap_commit(conf, cand, 0.9, 0.75, 6)
    assert out.tolist() == [[T, T, F, F, F, F, T, F]]
    # no anchor: only the single most confident
    low = torch.tensor([[0.6, 0.8, 0.7]])
    assert local_leap_commit(low, torch.ones_like(low, dtype=torch.bool), 0.9, 0.5, 4).tolist() == [[F, T, F]]


def _ctx(conf, cand, block=0, step=0):
    b = conf.shape[0]
    z = torch.zeros(b, dtype=torch.long)
    return step_inputs(conf=conf, logits=torch.zeros((*conf.shape, 3)), candidates=cand, block=z + block,
                       step_in_block=z + step, step=z + step)


def test_slowfast_slow_then_fast_span():
    gen = GenConfig(gen_length=8, block_length=8)
    m = method("slowfast:preset=paper,tau_min=0.3,tau_high=0.9,max_slow=4,window=2,sigma=1.0", gen)
    m.start(1, torch.device("cpu"))
    cand = torch.ones((1, 8), dtype=torch.bool)
    conf = torch.tensor([[0.6, 0.5, 0.4, 0.35, 0.1, 0.1, 0.1, 0.1]])
    # slow step 1: top-1 only (nothing >= 0.9); candidate end = 3 (farthest conf >= 0.3)
    assert m.decide(*_ctx(conf, cand)).commit.tolist() == [[T, F, F, F, F, F, F, F]]
    assert m.plan(_ctx(conf, cand)[0]).extent.tolist() == [8]
    cand = torch.tensor([[F, T, T, T, T, T, T, T]])
    # slow step 2: two tokens >= 0.9 -> both commit; candidate end 3 again -> stable, e_cycle = 3
    conf2 = torch.tensor([[0.0, 0.95, 0.92, 0.35, 0.1, 0.1, 0.1, 0.1]])
    assert m.decide(*_ctx(conf2, cand, step=1)).commit.tolist() == [[F, T, T, F, F, F, F, F]]
    assert int(m.e[0]) == 3 and int(m.phase[0]) == 1
    # first fast step: full forward; only position 3 is left in the span; below tau_high -> top-1 of span
    assert m.plan(_ctx(conf, cand)[0]).extent.tolist() == [8]
    cand = torch.tensor([[F, F, F, T, T, T, T, T]])
    conf3 = torch.tensor([[0.0, 0.0, 0.0, 0.5, 0.99, 0.99, 0.1, 0.1]])
    assert m.decide(*_ctx(conf3, cand, step=2)).commit.tolist() == [[F, F, F, T, F, F, F, F]]
    # span done -> next cycle (slow) starting after e_cycle
    assert int(m.phase[0]) == 0 and int(m.s[0]) == 4


def test_slowfast_fast_phase_feeds_truncated_span():
    gen = GenConfig(gen_length=8, block_length=8)
    m = method("slowfast:preset=paper,tau_min=0.3,tau_high=0.9,max_slow=2,window=2", gen)
    m.start(1, torch.device("cpu"))
    cand = torch.ones((1, 8), dtype=torch.bool)
    conf = torch.tensor([[0.6, 0.5, 0.4, 0.35, 0.34, 0.1, 0.1, 0.1]])
    m.decide(*_ctx(conf, cand))
    cand = torch.tensor([[F, T, T, T, T, T, T, T]])
    m.decide(*_ctx(conf, cand, step=1))         # K = 2 reached: e_cycle = 4
    assert int(m.e[0]) == 4
    cand = torch.tensor([[F, F, T, T, T, T, T, T]])
    # fast step with nothing above tau_high: top-1 inside [s, e] only (position 5 is outside)
    conf3 = torch.tensor([[0.0, 0.0, 0.3, 0.4, 0.2, 0.8, 0.1, 0.1]])
    assert m.decide(*_ctx(conf3, cand, step=2)).commit.tolist() == [[F, F, F, T, F, F, F, F]]
    assert m.plan(_ctx(conf, cand)[0]).extent.tolist() == [5]     # prompt + x[:e_cycle + 1]


@pytest.mark.parametrize("spec", ["slowfast", "slowfast:preset=paper", "slowfast:tau_high=0.3",
                                  "eb:gamma=0.5", "localleap:tau_anchor=0.3,tau_relaxed=0.1"])
def test_new_methods_fill_every_position_once(random_model, prompts, spec):
    gen = GenConfig(gen_length=24, block_length=8, early_stop=False, max_steps=200)   # slowfast's K forwards
    res = decode(random_model, method(spec, gen), encode(random_model, prompts), gen, trace=True)
    assert not (res.tokens == random_model.mask_id).any()
    for steps in res.trace:
        assert sorted(p for s in steps for p in s["commit"]) == list(range(gen.gen_length))
    assert (res.nfe == res.steps).all()


@pytest.mark.parametrize("spec", ["slowfast", "slowfast:tau_high=0.3", "slowfast:tau_min=0.0,tau_high=0.5",
                                  "slowfast:tau_min=0.05,max_slow=3", "eb:gamma=0.5", "localleap"])
def test_batch_equals_single_runs_greedy(random_model, prompts, spec):
    ids = encode(random_model, prompts)
    batch = decode(random_model, method(spec), ids, GEN)
    if spec == "slowfast:tau_min=0.0,tau_high=0.5":
        assert (batch.nfe_truncated > 0).all()      # the truncated path is exercised
    for i, p in enumerate(ids):
        single = decode(random_model, method(spec), [p], GEN)
        assert torch.equal(single.tokens[0], batch.tokens[i])
        assert single.nfe[0] == batch.nfe[i] and single.nfe_truncated[0] == batch.nfe_truncated[i]


def test_slowfast_counts_truncated_forwards_on_the_builtin_model(builtin_model):
    # the paper's rule: on this confident model the code preset's K phase-1 forwards fill each block
    gen = GenConfig(gen_length=48, block_length=16)
    ids = encode(builtin_model, [q.prompt for q in arith_problems(8)])
    res = decode(builtin_model, method("slowfast:preset=paper", gen), ids, gen)
    off = decode(builtin_model, method("slowfast:preset=paper,reuse=false", gen), ids, gen)
    assert (res.nfe_truncated > 0).any() and (res.nfe_truncated <= res.nfe).all()
    assert (off.nfe_truncated == 0).all()
    # every forward counts, truncated or not
    assert (res.nfe == res.steps).all()
    # rows in different phases share the batch: each row as alone (batch == single, greedy)
    assert len(set(res.nfe_truncated.tolist())) > 1
    for i in range(0, 8, 3):
        single = decode(builtin_model, method("slowfast:preset=paper", gen), [ids[i]], gen)
        assert torch.equal(single.tokens[0], res.tokens[i])
        assert single.nfe[0] == res.nfe[i] and single.nfe_truncated[0] == res.nfe_truncated[i]


def test_truncated_rows_in_a_batch_see_only_their_span(random_model, prompts):
    """A row in its fast phase must get the same logits in a mixed batch as alone."""
    from decoding.forward import truncate as _truncate
    from decoding.loop import left_pad
    ids, attn = left_pad(encode(random_model, prompts[:3]), random_model.pad_id)
    P, G = ids.shape[1], 8
    x = torch.cat([ids, torch.full((3, G), random_model.mask_id)], 1)
    a = torch.cat([attn, torch.ones((3, G), dtype=torch.long)], 1)
    fed = torch.tensor([3, 8, 5])
    xf, af = _truncate(x, a, P, fed)
    batch = random_model.forward(xf, af).logits
    for i in range(3):
        alone = random_model.forward(x[i:i + 1, :P + int(fed[i])], a[i:i + 1, :P + int(fed[i])]).logits
        assert torch.allclose(batch[i, :P + int(fed[i])], alone[0], atol=1e-5)


@pytest.mark.parametrize("spec,msg", [("slowfast:preset=fast", "preset"), ("slowfast:tau_min=0.95", "tau_min"),
                                      ("slowfast:preset=paper,window=9", "window"), ("eb:gamma=-1", "gamma"),
                                      ("localleap:tau_relaxed=0.95", "tau_relaxed")])
def test_bad_settings_are_named(spec, msg):
    with pytest.raises(ValueError, match=msg):
        method(spec)


@pytest.mark.parametrize("spec,extra", [("slowfast:preset=code", lambda m, blocks: 6 * blocks),
                                        ("edit", lambda m, blocks: 17 * blocks),
                                        ("edit:max_post_steps=3", lambda m, blocks: 4 * blocks),
                                        ("slowfast:preset=paper", lambda m, blocks: 0), ("threshold", lambda m, blocks: 0)])
def test_default_step_cap_leaves_room_for_forwards_that_commit_nothing(random_model, prompts, spec, extra):
    """Without --max-steps a row may take gen_length steps plus the forwards its method spends on a
    block with no masks (slowfast's code preset: K phase-1 forwards per block; edit: max_post_steps + 1
    per block): no row is capped, and the decode equals one under a far larger cap."""
    gen = GenConfig(gen_length=48, block_length=16, early_stop=False)
    m = method(spec, gen)
    assert m.default_step_cap(48, 3) == 48 + extra(m, 3)
    ids = encode(random_model, prompts)                   # low confidence: about one token per forward
    res = decode(random_model, method(spec, gen), ids, gen)
    big = GenConfig(gen_length=48, block_length=16, early_stop=False, max_steps=10 * 48)
    ref = decode(random_model, method(spec, big), ids, big)
    assert not res.capped.any() and torch.equal(res.tokens, ref.tokens) and torch.equal(res.nfe, ref.nfe)
    if extra(m, 3):
        assert int(res.steps.max()) > 48        # it uses steps beyond gen_length (the old default cap)
