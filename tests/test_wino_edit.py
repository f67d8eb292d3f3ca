"""`wino` and `edit`: decide() on hand-made steps against the rules (decoding/rules/wino.py, edit.py),
end-to-end decodes on the built-in model and a tiny random LLaDA (a left-padded batch equals single
runs; remasks and edits counted and in the trace; WINO's verification forward counted once per
step), capture, and one-line errors for bad settings."""
import pytest
import torch

import decoding.loop as loop
from acceleration.policy import capture_blocker
from decoding.base import GenConfig
from decoding.contract import step_inputs
from models import load_model

from decode_helpers import encode, method

M = 99   # mask id of the hand-made steps
GEN = GenConfig(gen_length=16, block_length=8, early_stop=False, max_steps=200)


@pytest.fixture(scope="module")
def llada():
    m = load_model("llada-tiny", no_weights=True, seed=1)
    with torch.no_grad():   # peaked logits (as tests/golden_decode.py): several commits per step
        for p in m.module.parameters():
            if p.dim() == 2:
                p.mul_(25.0)
    g = torch.Generator().manual_seed(0)
    return m, [torch.randint(10, 400, (n,), generator=g).tolist() for n in (9, 5, 7)]


def _wino_step(conf, verify_conf, tokens, step_in_block, last_accept, spec="wino"):
    candidates = [t == M and i < 8 for i, t in enumerate(tokens)]   # masked in block 0
    view, out = step_inputs(conf=torch.tensor([conf]), candidates=torch.tensor([candidates]), mask_id=M,
                            tokens=torch.tensor([tokens]), step_in_block=torch.tensor([step_in_block]))
    out.verify_conf = torch.tensor([verify_conf])
    m = method(spec, GEN)
    m.start(1, torch.device("cpu"))
    m.last_accept[:] = last_accept
    dec = m.decide(view, out)
    return dec.commit[0].tolist(), dec.remask[0].tolist(), int(m.last_accept[0])


def test_wino_commits_wide_and_remasks_the_least_verified():
    # block 0 = positions 0..7; 0..2 written, 3..7 masked; 8..15 (next block) masked
    tokens = [5, 6, 7, M, M, M, M, M] + [M] * 8
    conf = [0.0] * 3 + [0.7, 0.65, 0.2, 0.1, 0.61] + [0.99] * 8
    verify = [0.5, 0.95, 0.3] + [0.0] * 13
    commit, remask, accepted = _wino_step(conf, verify, tokens, step_in_block=2, last_accept=30)
    assert commit == [False] * 3 + [True, True, False, False, True] + [False] * 8   # > 0.6, this block only
    assert remask == [True, False, True] + [False] * 13                          # verified < 0.9
    assert accepted == 3
    # at least last_accept positions fail: only the (last_accept - 1) least verified go back
    commit, remask, _ = _wino_step(conf, verify, tokens, step_in_block=2, last_accept=2)
    assert remask == [False, False, True] + [False] * 13
    # a single commit re-masks nothing; a block's first step resets last_accept to 30
    conf1 = [0.0] * 3 + [0.7, 0.2, 0.2, 0.1, 0.3] + [0.0] * 8
    commit, remask, accepted = _wino_step(conf1, verify, tokens, step_in_block=2, last_accept=2)
    assert sum(commit) == 1 and not any(remask) and accepted == 1
    _, remask, _ = _wino_step(conf, verify, tokens, step_in_block=0, last_accept=2)
    assert remask == [True, False, True] + [False] * 13


def test_wino_caps_commits_and_falls_back_to_the_most_confident():
    tokens = [M] * 8 + [M] * 8
    conf = [0.9, 0.8, 0.95, 0.7, 0.85, 0.75, 0.65, 0.99] + [0.0] * 8
    commit, _, accepted = _wino_step(conf, [0.0] * 16, tokens, 1, 30, "wino:accept_min=1,accept_max=3")
    assert accepted == 3 and [i for i, c in enumerate(commit) if c] == [0, 2, 7]    # 3 most confident
    commit, _, accepted = _wino_step([0.1, 0.3, 0.2] + [0.0] * 13, [0.0] * 16, tokens, 1, 30)
    assert accepted == 1 and commit[1]


def _edit_step(conf, x0, tokens, step_in_block=1, post=0, spec="edit"):
    candidates = torch.tensor([[t == M and i < 4 for i, t in enumerate(tokens)]])   # masked in block 0
    view, out = step_inputs(conf=torch.tensor([conf]), candidates=candidates, x0=torch.tensor([x0]), mask_id=M,
                            tokens=torch.tensor([tokens]), step_in_block=torch.tensor([step_in_block]))
    m = method(spec, GenConfig(gen_length=8, block_length=4, max_steps=100))
    m.start(1, torch.device("cpu"))
    m.post[:] = post
    return m.decide(view, out), int(m.post[0])


def test_edit_commits_above_tau_mask_and_edits_above_tau_edit():
    tokens, x0 = [5, 6, M, M, M, M, M, M], [5, 7, 8, 9, 1, 1, 1, 1]
    dec, post = _edit_step([0.9, 0.6, 0.8, 0.5, 0.9, 0.9, 0.9, 0.9], x0, tokens)
    assert dec.commit[0].tolist() == [False, False, True, False] + [False] * 4
    assert dec.edit[0].tolist() == [False, True] + [False] * 6        # argmax differs, conf 0.6 > 0.5
    assert torch.equal(dec.edit_tokens, torch.tensor([x0]))
    dec, _ = _edit_step([0.9, 0.4, 0.6, 0.5, 0.0, 0, 0, 0], x0, tokens)
    assert not dec.edit.any() and dec.commit[0].tolist()[:4] == [False, False, True, False]   # top-1 fallback


def test_edit_holds_a_full_block_until_settled_or_max_post_steps():
    full = [5, 6, 7, 8, M, M, M, M]
    same = [5, 6, 7, 8, 1, 1, 1, 1]
    dec, post = _edit_step([0.9] * 8, same, full)                       # no mask, nothing edited: settled
    assert not dec.hold[0] and post == 1
    changed = [5, 6, 7, 3, 1, 1, 1, 1]
    dec, post = _edit_step([0.9] * 8, changed, full, post=3)           # edited: one more forward
    assert dec.hold[0] and dec.edit[0, 3] and post == 4
    dec, post = _edit_step([0.9] * 8, changed, full, post=16)          # the 17th would exceed 16
    assert not dec.hold[0] and post == 17
    dec, post = _edit_step([0.9] * 8, changed, full, step_in_block=0, post=16)   # a new block resets it
    assert dec.hold[0] and post == 1


@pytest.mark.parametrize("spec", ["wino", "wino:tau_commit=0.3,tau_remask=0.99", "edit", "edit:tau_edit=0.0"])
def test_batch_with_left_padding_equals_single_runs(llada, spec):
    m, ids = llada
    batch = loop.decode(m, method(spec, GEN), ids, GEN)
    for i, p in enumerate(ids):
        one = loop.decode(m, method(spec, GEN), [p], GEN)
        assert one.tokens[0].tolist() == batch.tokens[i].tolist(), (spec, i)
        for f in ("nfe", "steps", "remasks", "edits"):
            assert int(getattr(one, f)[0]) == int(getattr(batch, f)[i]), (spec, i, f)
    assert not (batch.tokens == m.mask_id).any()


def test_wino_counts_its_verification_forward_once_and_traces_remasks(builtin_model, prompts):
    ids = encode(builtin_model, prompts[:5])
    gen = GenConfig(gen_length=24, block_length=8, early_stop=False, max_steps=200)
    res = loop.decode(builtin_model, method("wino", gen), ids, gen, trace=True)
    assert torch.equal(res.nfe, res.steps)                # the shadow block rides in the one forward
    assert res.remasks.sum() > 0
    for row, steps in enumerate(res.trace):
        assert sum(len(s.get("remask", [])) for s in steps) == int(res.remasks[row])
    # the remasked positions are masked again at the row's next step
    for steps in res.trace:
        for a, b in zip(steps, steps[1:]):
            assert set(a.get("remask", [])) <= set(b["masked"])


def test_edit_counts_and_traces_edits(llada):
    m, ids = llada
    res = loop.decode(m, method("edit", GEN), ids, GEN, trace=True)
    assert res.edits.sum() > 0 and res.remasks.sum() == 0
    for row, steps in enumerate(res.trace):
        assert sum(len(s.get("edit", [])) for s in steps) == int(res.edits[row])
    # more forwards than masked positions' commits: the post steps on full blocks count NFE
    plain = loop.decode(m, method("edit:tau_edit=1.0,max_post_steps=0", GEN), ids, GEN)
    assert (plain.edits == 0).all() and (res.nfe > plain.nfe).all()


def test_edit_within_the_step_cap(llada):
    m, ids = llada
    gen = GenConfig(gen_length=16, block_length=8, early_stop=False, max_steps=16)   # cap = 16 forwards
    res = loop.decode(m, method("edit", gen), ids, gen)
    assert (res.steps <= 16).all() and res.capped.any()
    assert not (res.tokens == m.mask_id).any()


def test_capture_policy():
    assert capture_blocker(method("edit", GEN)) is None
    assert capture_blocker(method("wino", GEN)) is None   # its verification block is in the forward's graph


@pytest.mark.parametrize("spec, msg", [
    ("wino:tau_commit=1.5", "wino: tau_commit=1.5 must be in [0, 1]"),
    ("wino:accept_min=9,accept_max=4", "wino: need 1 <= accept_min (9) <= accept_max (4)"),
    ("wino:last_accept=0", "wino: last_accept=0 must be >= 1"),
    ("wino:cache=dual", "wino: cache=dual cannot be combined with its verification forward"),
    ("edit:tau_edit=-0.1", "edit: tau_edit=-0.1 must be in [0, 1]"),
    ("edit:max_post_steps=-1", "edit: max_post_steps=-1 must be >= 0"),
    ("edit:min_commit=0", "edit: min_commit=0 must be >= 1"),
])
def test_bad_settings_are_one_line_errors(spec, msg):
    with pytest.raises(ValueError) as e:
        method(spec, GEN)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_wino_refuses_dream():
    dream = load_model("dream-tiny", no_weights=True)
    with pytest.raises(ValueError, match="wino: its verification forward needs a bidirectional model"):
        loop.decode(dream, method("wino", GEN), [[11, 12, 13]], GEN)
