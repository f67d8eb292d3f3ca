"""CDLM training (training/cdlm_train.py, training/cdlm/): the three losses on hand-computed values,
the teacher rollout's trajectories, (y, y*) pairs, the standalone block-causal threshold decoder,
a few training steps lowering the losses, and the trainer's files and bad-input errors."""
import json
import math
import random

import pytest
import torch

from models import load_model
from tasks.arith import test_problems as arith_test_problems
from training.cdlm.batches import dlm_batch, encode_answer, pick_solutions, sample_pairs
from training.cdlm.evaluate import block_threshold_decode
from training.cdlm.losses import LossWeights, consistency_loss, distill_loss, dlm_loss, kl_per_position
from training.cdlm.rollout import NEVER, Trajectories, teacher_rollout


# --- losses -------------------------------------------------------------------------------------

def test_kl_and_distill_on_hand_values():
    t = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    s = torch.tensor([[0.0, math.log(3.0)], [1.0, 2.0]])          # q = (1/4, 3/4); second row = target
    kl = kl_per_position(t, s)
    assert kl[0].item() == pytest.approx(0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75), abs=1e-6)
    assert kl[1].item() == pytest.approx(0.0, abs=1e-7)
    assert distill_loss(s, t).item() == pytest.approx(0.5 * math.log(4 / 3) / 2, abs=1e-6)
    # temperature 2: target logits (0, 2 ln 2) -> p = (1/3, 2/3); student (0, 0) -> q = (1/2, 1/2)
    got = kl_per_position(torch.tensor([[0.0, 2 * math.log(2)]]), torch.zeros(1, 2), temperature=2.0)
    assert got.item() == pytest.approx((1 / 3) * math.log((1 / 3) / 0.5) + (2 / 3) * math.log((2 / 3) / 0.5), abs=1e-6)


def test_consistency_target_is_stop_gradient_and_empty_sets_are_zero():
    s = torch.tensor([[0.0, 1.0]], requires_grad=True)
    later = torch.tensor([[2.0, 0.0]], requires_grad=True)
    loss = consistency_loss(s, later)
    p = torch.tensor([2.0, 0.0]).softmax(-1)
    q = torch.tensor([0.0, 1.0]).softmax(-1)
    assert loss.item() == pytest.approx(float((p * (p / q).log()).sum()), abs=1e-6)
    loss.backward()
    assert s.grad is not None and later.grad is None
    empty = torch.zeros(0, 5, requires_grad=True)
    assert distill_loss(empty, torch.zeros(0, 5)).item() == 0.0
    assert consistency_loss(empty, torch.zeros(0, 5)).item() == 0.0


def test_dlm_loss_and_weights_on_hand_values():
    logits = torch.zeros(2, 3, 4)
    logits[1, 2, 1] = math.log(3.0)                  # row 1, position 2: p(target 1) = 3 / 6
    targets = torch.tensor([[0, 0, 0], [0, 0, 1]])
    masked = torch.tensor([[False, True, False], [False, True, True]])
    t, n = torch.tensor([0.5, 0.25]), torch.tensor([2, 2])
    row0 = math.log(4) / 0.5 / 2                     # one masked position, uniform over 4
    row1 = (math.log(4) + math.log(2)) / 0.25 / 2
    assert dlm_loss(logits, targets, masked, t, n).item() == pytest.approx((row0 + row1) / 2, abs=1e-5)
    w = LossWeights(1.0, 0.5, 0.1)
    assert w.total(torch.tensor(2.0), torch.tensor(4.0), torch.tensor(10.0)).item() == pytest.approx(5.0)
    assert LossWeights() == LossWeights(1.0, 0.5, 0.01)   # the paper's Dream weights as the dataclass default


# --- pairs (hand-made trajectory) ----------------------------------------------------------------

def hand_trajectory() -> Trajectories:
    # block 4; prompt 2 tokens; block 0 = [p, p, 3@1, 4@0]; block 1 = steps 2, 5, 3, 4; block 2 never decoded
    tokens = torch.tensor([[10, 11, 13, 14, 15, 16, 17, 18, 1, 1, 1, 1]])
    um = torch.tensor([[-1, -1, 1, 0, 2, 5, 3, 4, NEVER, NEVER, NEVER, NEVER]])
    return Trajectories(tokens, torch.tensor([12]), torch.tensor([2]), um, torch.arange(12 * 3).float().view(1, 12, 3),
                        torch.tensor([6]), 4)


def test_pairs_cut_states_and_sets_as_defined():
    tr = hand_trajectory()
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(40):
        pb = sample_pairs(tr, torch.tensor([0]), mask_id=1, generator=g)
        y, ys = pb.y[0], pb.y_star[0]
        revealed = (y != 1).sum().item() - 2          # state before step s reveals s positions
        s = revealed
        seen.add(s)
        if s == 3:                                     # position 6 is finalized at step 3: block 1, y* after step 5
            assert y.tolist() == [10, 11, 13, 14, 15, 1, 1, 1, 1, 1, 1, 1]
            assert ys.tolist() == [10, 11, 13, 14, 15, 16, 17, 18, 1, 1, 1, 1]
            assert pb.unmasked[0].nonzero().squeeze(1).tolist() == [5, 6, 7]
            assert pb.still_masked[0].nonzero().squeeze(1).tolist() == [8, 9, 10, 11]
            assert pb.teacher_hidden.tolist() == tr.hidden[0, [5, 6, 7]].tolist()
        if s == 0:                                     # block 0: y* = after step 1
            assert pb.unmasked[0].nonzero().squeeze(1).tolist() == [2, 3]
            assert pb.still_masked[0].nonzero().squeeze(1).tolist() == list(range(4, 12))
        assert not (pb.unmasked & pb.still_masked).any()
        assert ((y == 1) == (pb.unmasked | pb.still_masked))[0].all()   # every mask of y is in U or S
    assert seen == set(range(6))


def test_dlm_batch_masks_only_answers():
    seq = encode_answer([5, 6, 7], [8, 9], eos_id=2, gen_length=6, block_size=4)
    assert seq == [5, 6, 7, 8, 9] + [2] * 7             # EOS up to the end of the block holding P + gen_length
    b = dlm_batch([(seq, 3), ([5, 6, 8, 2], 2)], pad_id=0, mask_id=1, generator=torch.Generator().manual_seed(1))
    assert not b.masked[:, :2].any() and not b.masked[1, 4:].any()
    assert torch.equal(b.noisy[b.masked], torch.ones(int(b.masked.sum()), dtype=torch.long))
    assert b.answer_len.tolist() == [9, 2] and b.valid.sum(-1).tolist() == [12, 4]


# --- teacher rollout on the built-in model -------------------------------------------------------

@pytest.fixture(scope="module")
def teacher():
    return load_model("tiny")


@pytest.fixture(scope="module")
def rolled(teacher):
    probs = arith_test_problems(4)
    prompts = [teacher.tokenizer.encode(p.prompt) for p in probs]
    return probs, prompts, teacher_rollout(teacher, prompts, gen_length=48, block_size=16)


def test_rollout_one_token_per_step_block_by_block(teacher, rolled):
    probs, prompts, tr = rolled
    bs = 16
    for i, p in enumerate(prompts):
        n, P = int(tr.length[i]), len(p)
        assert n % bs == 0 and n >= P + 48 and tr.tokens[i, :P].tolist() == p
        um = tr.unmask_step[i, :n]
        done = um[(um >= 0) & (um < NEVER)]
        assert sorted(done.tolist()) == list(range(int(tr.steps[i])))      # one position per step
        blocks = [um[b * bs:(b + 1) * bs] for b in range(n // bs)]
        spans = [(int(b[(b >= 0) & (b < NEVER)].min()), int(b[(b >= 0) & (b < NEVER)].max()))
                 for b in blocks if ((b >= 0) & (b < NEVER)).any()]
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))          # blocks in order, each finished first
        last = P // bs + len(spans) - 1                                    # stopped at the first block with EOS
        assert teacher.eos_ids[0] in tr.tokens[i, last * bs:(last + 1) * bs].tolist()
        assert all(teacher.eos_ids[0] not in tr.tokens[i, b * bs:(b + 1) * bs].tolist() for b in range(P // bs, last))


def test_rollout_stores_the_teachers_choice_and_hidden_state(teacher, rolled):
    _, prompts, tr = rolled
    i, n = 1, int(tr.length[1])
    for s in (0, 7, int(tr.steps[1]) - 1):
        um = tr.unmask_step[i, :n]
        y = torch.where(um < s, tr.tokens[i, :n], teacher.mask_id)[None]
        out = teacher.forward(y, output_hidden=True)
        pos = int((um == s).nonzero())
        conf = out.logits[0].float().softmax(-1).max(-1).values
        blk = pos // 16
        cand = [j for j in range(blk * 16, blk * 16 + 16) if int(y[0, j]) == teacher.mask_id]
        assert pos == max(cand, key=lambda j: float(conf[j]))                  # the most confident of its block
        assert int(tr.tokens[i, pos]) == int(out.logits[0, pos].argmax())
        torch.testing.assert_close(tr.hidden[i, pos].float(), out.hidden[0, pos], rtol=2e-3, atol=2e-3)  # fp16 store
    single = teacher_rollout(teacher, prompts[1:2], 48, 16)
    assert torch.equal(single.tokens[0, :n], tr.tokens[1, :n]) and torch.equal(single.unmask_step[0, :n], tr.unmask_step[1, :n])


# --- the standalone block-causal threshold decoder -----------------------------------------------

def _uncached(model, prompt, gen_length, tau):
    """The same rule with whole-sequence forwards and nothing cached."""
    bs, P, m = model.block_size, len(prompt), model.mask_id
    T = -(-(P + gen_length) // bs) * bs
    x = torch.tensor([prompt + [m] * (T - P)])
    nfe = 0
    for b in range(P // bs, T // bs):
        lo, hi = b * bs, (b + 1) * bs
        while (x[0, lo:hi] == m).any():
            conf, x0 = model.module(x[:, :hi])[0][0, lo:hi].float().softmax(-1).max(-1)
            nfe += 1
            cand = x[0, lo:hi] == m
            pick = cand & (conf >= tau)
            pick[torch.where(cand, conf, -1.0).argmax()] = True
            x[0, lo:hi][pick] = x0[pick]
        if model.eos_ids[0] in x[0, lo:hi].tolist():
            break
    gen = x[0, P:].tolist()
    return gen[:gen.index(model.eos_ids[0])] if model.eos_ids[0] in gen else gen, nfe


def test_block_decoder_equals_uncached_and_batch_equals_single():
    m = load_model("tiny-block")
    prompts = [m.tokenizer.encode(p.prompt) for p in arith_test_problems(3)]
    batch = block_threshold_decode(m, prompts, 48, tau=0.9)
    for i, p in enumerate(prompts):
        one = block_threshold_decode(m, [p], 48, tau=0.9)
        ref, nfe = _uncached(m, p, 48, 0.9)
        assert batch.tokens[i] == one.tokens[0] == ref
        assert int(batch.nfe[i]) == int(one.nfe[0]) == nfe
    assert batch.finished.all()
    with pytest.raises(ValueError, match="needs a block-causal model"):
        block_threshold_decode(load_model("tiny"), prompts, 48)


# --- training ------------------------------------------------------------------------------------

def test_training_steps_lower_the_losses(teacher, rolled):
    from models.tiny_block import student_from_teacher
    from training.cdlm.step import cdlm_losses
    probs, _, tr = rolled
    torch.manual_seed(0)
    net = student_from_teacher(teacher.module, 16).train()
    g = torch.Generator().manual_seed(0)
    pair = sample_pairs(tr, torch.arange(4), teacher.mask_id, g)
    dlm = dlm_batch(pick_solutions(probs, teacher.tokenizer, 48, 16, random.Random(0)), teacher.pad_id,
                    teacher.mask_id, g)
    w = LossWeights(1.0, 0.5, 0.1)
    before = {k: float(v.detach()) for k, v in cdlm_losses(net, teacher.module.head, pair, dlm, w).items()}
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4)
    for _ in range(8):
        loss = cdlm_losses(net, teacher.module.head, pair, dlm, w)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = {k: float(v.detach()) for k, v in cdlm_losses(net, teacher.module.head, pair, dlm, w).items()}
    assert before["distill"] > 0.01 and after["total"] < 0.7 * before["total"], (before, after)
    assert after["distill"] < before["distill"] and after["dlm"] < before["dlm"]
    assert teacher.module.head.weight.grad is None                   # the teacher is never trained


def test_trainer_writes_a_loadable_student_and_its_record(tmp_path, capsys):
    from training import cdlm_train
    out = tmp_path / "student"
    rc = cdlm_train.main(["--out", str(out), "--train-problems", "3", "--heldout-problems", "3", "--epochs", "1",
                          "--batch-size", "4", "--pairs-per-trajectory", "2", "--device", "cpu", "--seed", "3"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json", "training.json"]
    rec = json.loads((out / "training.json").read_text())
    assert rec["command"].startswith("python -m training.cdlm_train --out")
    assert (rec["seed"], rec["device"], rec["optimizer_steps"], rec["rollouts"]["rollouts"]) == (3, "cpu", 2, 3)
    assert rec["stopped_early"] is None and rec["planned_steps"] == 2
    assert [e["epoch"] for e in rec["epochs"]] == [0, 1] and rec["kept_epoch"] in (0, 1)
    assert set(rec["epochs"][1]["train_loss"]) == {"distill", "consistency", "dlm", "total"}
    assert {"accuracy", "nfe_mean", "n"} <= set(rec["epochs"][1]["heldout"])
    assert json.loads((out / "config.json").read_text())["training"] == rec
    m = load_model(str(out))
    assert (m.regime, m.block_size) == ("block_causal", 16)
    assert "kept epoch" in capsys.readouterr().out


@pytest.mark.parametrize("argv, msg", [
    (["--tau", "0"], "--tau must be in (0, 1]"),
    (["--rollout-temperatures", "hot"], "give numbers separated by commas"),
    (["--epochs", "0"], "--epochs must be positive"),
    (["--max-minutes", "0"], "--max-minutes must be positive"),
])
def test_trainer_bad_input(tmp_path, capsys, argv, msg):
    from training import cdlm_train
    with pytest.raises(SystemExit) as e:
        cdlm_train.main(["--out", str(tmp_path / "s"), *argv])
    assert e.value.code == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_trainer_max_minutes_stops_after_an_epoch_and_keeps_a_student(tmp_path):
    from training import cdlm_train
    out = tmp_path / "student"
    rc = cdlm_train.main(["--out", str(out), "--train-problems", "2", "--heldout-problems", "2", "--epochs", "3",
                          "--batch-size", "4", "--pairs-per-trajectory", "2", "--device", "cpu",
                          "--max-minutes", "0.00001"])          # spent before the first epoch ends
    assert rc == 0
    rec = json.loads((out / "training.json").read_text())
    assert [e["epoch"] for e in rec["epochs"]] == [0, 1]
    assert rec["stopped_early"]["after_epoch"] == 1 and rec["stopped_early"]["planned_epochs"] == 3
    assert rec["stopped_early"]["reason"] == "budget spent"
    assert (rec["optimizer_steps"], rec["planned_steps"], rec["steps_per_epoch"], rec["max_minutes"]) == (1, 3, 1, 0.00001)
    assert load_model(str(out)).regime == "block_causal"
