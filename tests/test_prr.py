"""PRR: shaping, features, the commit rule and its ablations, labels, trajectories, one training round."""
import pytest
import torch

from decoding.base import GenConfig
from decoding.contract import History as LoopHistory, step_inputs
from decoding.loop import decode
from decoding.methods.prr.controller import Controller, ControllerConfig, load_controller, save_controller
from decoding.methods.prr.features import History, N_FEATURES, step_features, token_features
from decoding.methods.prr.labels import convergence_labels, convergence_steps
from decoding.methods.prr.shaping import shape
from training.prr_train import make_policy, train_controller
from decoding.methods.prr.trajectory import branch_labels, rollout

from decode_helpers import GEN, encode, method

T, F = True, False


def test_shaping_strategies():
    p = torch.tensor([0.5, 0.8, 0.3])
    s = torch.tensor([1.0, 0.25, 0.5])
    assert torch.allclose(shape(p, s, "temperature", 1.0), torch.tensor([1.0, 0.8 ** 0.75, 0.3 ** 0.5]))
    # weighted: p + alpha * max(0, s - 0.5) * p * (1 - p)
    assert torch.allclose(shape(p, s, "weighted", 1.0), torch.tensor([0.5 + 0.5 * 0.25, 0.8, 0.3]))
    assert torch.allclose(shape(p, s, "gating", 1.0), p * s)
    assert torch.equal(shape(p, torch.zeros(3), "weighted", 1.0), p)      # s = 0: unchanged
    with pytest.raises(ValueError, match="shaping"):
        shape(p, s, "linear", 1.0)


def test_history_counts_steps_since_argmax_changed():
    h = History.empty(1, 3, "cpu")
    r = torch.tensor([0])
    assert h.update(r, torch.tensor([[5, 6, 7]]), torch.tensor([0])).tolist() == [[0, 0, 0]]
    assert h.update(r, torch.tensor([[5, 9, 7]]), torch.tensor([1])).tolist() == [[1, 0, 1]]
    assert h.update(r, torch.tensor([[5, 9, 8]]), torch.tensor([2])).tolist() == [[2, 1, 0]]


def test_step_features_on_hand_made_state():
    # one row, prompt 8, gen 8, block 4; block 1 active, 2 of its positions committed; step 6, 1 in block
    cand = torch.tensor([[F, F, F, F, T, F, T, F]])
    logits = torch.log(torch.tensor([[[0.7, 0.2, 0.1]] * 8]))
    conf = torch.full((1, 8), 0.7)
    f = step_features(candidates=cand, block=torch.tensor([1]), step=torch.tensor([6]),
                      step_in_block=torch.tensor([1]), since_change=torch.full((1, 8), 2),
                      prompt_len=torch.tensor([8]), block_length=4, total_steps=8,
                      tok=token_features(logits, conf))
    assert f.shape == (1, 8, N_FEATURES)
    want = [(8 + 6) / 16, 6 / 8, (8 + 4) / 16, 4 / 16, 2 / 4, (6 - 4) / 4, 1 / 4, 2 / 4, 0.7, 0.5,
            float(-(torch.tensor([0.7, 0.2, 0.1]) * torch.tensor([0.7, 0.2, 0.1]).log()).sum() / torch.log(torch.tensor(3.0)))]
    assert torch.allclose(f[0, 6], torch.tensor(want), atol=1e-5)


class ConstController(torch.nn.Module):
    """s = sigmoid(logit) fixed per position, for testing the commit rule."""
    def __init__(self, logit):
        super().__init__()
        self.logit = logit
        self.cfg = ControllerConfig(d_model=4)

    def forward(self, hidden, feats):
        return self.logit(feats)


def _ctx(conf, cand, hidden_d=4):
    b, n = conf.shape
    z = torch.zeros(b, dtype=torch.long)
    return step_inputs(conf=conf, logits=torch.log(torch.stack([conf, 1 - conf], -1)), candidates=cand, block=z,
                       step_in_block=z, step=z, hidden=torch.zeros(b, n, hidden_d), prompt_len=z + 4,
                       history=LoopHistory.empty(b, n, "cpu"))


def test_commit_is_quota_union_shaped_above_tau():
    gen = GenConfig(gen_length=8, block_length=8)
    m = method("prr:controller=zero,tau=0.85", gen)
    # s from the in-block position feature (index 5): positions >= 4 get s = 1, the rest s = 0
    m.ctrl = ConstController(lambda f: torch.where(f[..., 5] >= 0.5, 50.0, -50.0))
    m.start(1, torch.device("cpu"))
    conf = torch.tensor([[0.5, 0.84, 0.2, 0.2, 0.84, 0.81, 0.5, 0.95]])
    cand = torch.tensor([[T, T, T, T, T, T, T, F]])
    out = m.decide(*_ctx(conf, cand)).commit
    # quota: 1 (top shaped score: position 4, 0.84 -> 0.84 + 0.5*0.84*0.16 = 0.907);
    # shaped > 0.85: 4 (0.907) and 5 (0.81 -> 0.887); 1 (s = 0) stays 0.84; 7 is no candidate
    assert out.tolist() == [[F, F, F, F, T, T, F, F]]


def test_ablations_off_is_quota_and_zero_is_quota_plus_threshold():
    gen = GenConfig(gen_length=8, block_length=8)
    conf = torch.tensor([[0.5, 0.95, 0.2, 0.92, 0.3, 0.6, 0.5, 0.1]])
    cand = torch.ones_like(conf, dtype=torch.bool)
    off = method("prr:controller=off", gen)
    off.start(1, torch.device("cpu"))
    assert off.decide(*_ctx(conf, cand)).commit.tolist() == [[F, T, F, F, F, F, F, F]]
    zero = method("prr:controller=zero,tau=0.9", gen)
    zero.start(1, torch.device("cpu"))
    assert zero.decide(*_ctx(conf, cand)).commit.tolist() == [[F, T, F, T, F, F, F, F]]
    assert not off.reads().hidden and not zero.reads().hidden


@pytest.mark.parametrize("steps", [None, 12])
def test_controller_off_equals_fixed_token_for_token(random_model, prompts, steps):
    spec = "" if steps is None else f",steps={steps}"
    ids = encode(random_model, prompts)
    a = decode(random_model, method("prr:controller=off" + spec), ids, GEN)
    b = decode(random_model, method("fixed" + (f":steps={steps}" if steps else "")), ids, GEN)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.nfe, b.nfe)


def test_controller_zero_equals_threshold_on_the_builtin_model(builtin_model):
    from tasks.arith import test_problems
    gen = GenConfig(gen_length=48, block_length=16)
    ids = encode(builtin_model, [p.prompt for p in test_problems(8)])
    a = decode(builtin_model, method("prr:controller=zero,tau=0.8", gen), ids, gen)
    b = decode(builtin_model, method("threshold:tau=0.8", gen), ids, gen)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.nfe, b.nfe)


def test_committed_controller_loads_and_decodes(builtin_model):
    from tasks.arith import test_problems
    gen = GenConfig(gen_length=48, block_length=16)
    m = method("prr", gen)
    assert m.reads().hidden and m.ctrl.cfg.d_model == builtin_model.module.cfg.d_model
    ids = encode(builtin_model, [p.prompt for p in test_problems(4)])
    batch = decode(builtin_model, m, ids, gen)
    assert not (batch.tokens == builtin_model.mask_id).any()
    for i, p in enumerate(ids):   # batch == single runs under greedy
        single = decode(builtin_model, method("prr", gen), [p], gen)
        assert torch.equal(single.tokens[0], batch.tokens[i]) and single.nfe[0] == batch.nfe[i]


def test_controller_hidden_size_mismatch_is_a_clear_error(random_model, prompts, tmp_path):
    save_controller(Controller(ControllerConfig(d_model=7, hidden=8)), tmp_path / "c", {})
    m = method(f"prr:controller={tmp_path / 'c'}")
    with pytest.raises(ValueError, match="hidden size 7"):
        decode(random_model, m, encode(random_model, prompts[:1]), GEN)
    with pytest.raises(FileNotFoundError, match="controller=off"):
        method("prr:controller=/nonexistent/ctl")


def test_labels_on_a_hand_written_trajectory():
    # row 0, position 3: argmax over steps 0..4 = 7 7 9 9 9, committed at step 4 as 9 -> tau = 2
    # row 0, position 5: 4 4 4, committed at step 2 -> tau = 0
    # row 1, position 3: 1 2 1, committed at step 2 as 1 -> tau = 2 (it left and came back)
    # row 1, position 4: never committed (capped row) -> no label
    recs = [(0, 3, t, a, t == 4) for t, a in enumerate([7, 7, 9, 9, 9])]
    recs += [(0, 5, t, 4, t == 2) for t in range(3)]
    recs += [(1, 3, t, a, t == 2) for t, a in enumerate([1, 2, 1])]
    recs += [(1, 4, 0, 5, False)]
    recs = recs[::-1]                      # order must not matter
    row, pos, step, arg, com = (torch.tensor(c) for c in zip(*recs))
    label, valid = convergence_labels(row, pos, step, arg, com)
    got = {(r, p, t): (bool(l), bool(v)) for r, p, t, l, v in zip(row.tolist(), pos.tolist(), step.tolist(),
                                                                   label.tolist(), valid.tolist())}
    assert [got[(0, 3, t)][0] for t in range(5)] == [F, F, T, T, T]
    assert [got[(0, 5, t)][0] for t in range(3)] == [T, T, T]
    assert [got[(1, 3, t)][0] for t in range(3)] == [F, F, T]
    assert got[(1, 4, 0)][1] is False and all(v for k, (_, v) in got.items() if k != (1, 4, 0))
    assert convergence_steps(row, pos, step, arg, com) == {(0, 3): 2, (0, 5): 0, (1, 3): 2}


def test_rollout_logs_and_branch_labels_agree_with_rollout_labels_for_the_baseline(random_model, prompts):
    """For the quota policy itself, a full-fidelity continuation from each logged state replays the
    rollout, so branch labels must equal the rollout's own labels."""
    ids = encode(random_model, prompts[:3])
    traj = rollout(random_model, make_policy(None, GEN, 0.9, "weighted", 1.0), ids, GEN, batch_size=3)
    d = random_model.module.cfg.d_model
    assert traj.hidden.shape == (len(traj), d) and traj.feats.shape == (len(traj), N_FEATURES)
    # quota policy, 1 token per step: every step commits exactly one logged position
    assert int(traj.commit.sum()) == 3 * GEN.gen_length
    lab, val = convergence_labels(traj.row, traj.pos, traj.step, traj.argmax, traj.commit)
    blab, bval = branch_labels(random_model, traj, GEN, batch_size=16)
    assert val.all() and bval.all()
    assert torch.equal(lab, blab)


def test_one_training_round_on_a_tiny_trajectory_set(random_model, prompts, tmp_path):
    ids = encode(random_model, prompts[:4])
    traj = rollout(random_model, make_policy(None, GEN, 0.9, "weighted", 1.0), ids, GEN, batch_size=4)
    lab, val = convergence_labels(traj.row, traj.pos, traj.step, traj.argmax, traj.commit)
    assert val.all()
    # a random model's argmax rarely moves, so its labels are nearly all 1: mix in a learnable
    # second class (low top-1 probability) so that the loss has something to learn
    lab = lab & (traj.p1 > traj.p1.median())
    cfg = ControllerConfig(d_model=random_model.module.cfg.d_model, hidden=16)
    ctrl, log = train_controller(traj.hidden, traj.feats, lab, traj.row, cfg=cfg, epochs=3, batch_size=64,
                                 lr=3e-3, log=lambda m: None)
    assert len(log["epochs"]) == 3 and log["records_train"] + log["records_val"] == len(traj)
    assert log["epochs"][-1]["train_loss"] < log["epochs"][0]["train_loss"]
    pos, n = float(lab.sum()), len(lab)
    assert abs(log["pos_weight"] - (log["records_train"] - log["positive_rate"] * log["records_train"])
               / (log["positive_rate"] * log["records_train"])) < 1e-3      # balanced: neg / pos
    _, plain = train_controller(traj.hidden, traj.feats, lab, traj.row, cfg=cfg, epochs=1, batch_size=64,
                                class_weight="none", log=lambda m: None)
    assert plain["pos_weight"] == 1.0
    with pytest.raises(ValueError, match="class-weight"):
        train_controller(traj.hidden, traj.feats, lab, traj.row, cfg=cfg, epochs=1, class_weight="x")
    w, j = save_controller(ctrl, tmp_path / "ctl", {"rounds": [log]})
    back = load_controller(str(w))
    x = (traj.hidden[:5], traj.feats[:5])
    assert torch.allclose(back(*x), ctrl(*x))
    # the new controller drives a decode (round 1's policy)
    res = decode(random_model, make_policy(back, GEN, 0.5, "temperature", 1.0), ids, GEN)
    assert not (res.tokens == random_model.mask_id).any()


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_prr_with_a_kv_cache_keeps_its_ablations(builtin_model, cache):
    # The reference PRR runs on Fast-dLLM's dual cache: its ablations must hold there too.
    from tasks.arith import test_problems
    gen = GenConfig(gen_length=48, block_length=16)
    ids = encode(builtin_model, [p.prompt for p in test_problems(6)])
    pairs = [(f"prr:controller=off,cache={cache}", f"fixed:cache={cache}"),
             (f"prr:controller=zero,tau=0.8,cache={cache}", f"threshold:tau=0.8,cache={cache}")]
    for ours, ref in pairs:
        a = decode(builtin_model, method(ours, gen), ids, gen)
        b = decode(builtin_model, method(ref, gen), ids, gen)
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.nfe, b.nfe), ours
    m = method(f"prr:cache={cache}", gen)
    decide = m.decide

    def checked(view, out):   # the controller must see real hidden states at every candidate
        assert out.hidden[view.candidates].abs().sum(-1).gt(0).all()
        return decide(view, out)

    m.decide = checked
    full = decode(builtin_model, m, ids, gen)
    assert not (full.tokens == builtin_model.mask_id).any()
    assert full.nfe.sum() < decode(builtin_model, method(f"fixed:cache={cache}", gen), ids, gen).nfe.sum()


def test_branch_continuation_ends_when_the_model_predicts_the_mask_token():
    # A random model's argmax can be the mask id; the continuation commits one position per step
    # and must end after the block's positions, not loop forever on "still masked" positions.
    from types import SimpleNamespace
    from decoding.methods.prr.trajectory import _continue
    V, mask = 12, 11

    class AlwaysMask:
        device = torch.device("cpu")
        mask_id = mask

        def forward(self, x, attn):
            logits = torch.zeros(*x.shape, V)
            logits[..., mask] = 5.0
            return SimpleNamespace(logits=logits)

    ids, attn = torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.long)
    gen_x = torch.full((1, 8), mask)
    final, stable = _continue(AlwaysMask(), ids, attn, gen_x, torch.tensor([1]), 4)
    assert final[0].tolist() == [mask] * 4 and stable.all()
