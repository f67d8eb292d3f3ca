"""PRR's feature conventions (reference compute_features_v2 vs ours), the top-50 confidence, the feature
set a controller was trained with, bf16: hand-made steps against hand-computed values."""
import json
import math
import shutil

import pytest
import torch

from decoding.base import GenConfig
from decoding.contract import History, step_inputs
from decoding.loop import decode
from decoding.methods.prr.controller import CHECKPOINT_DIR, ControllerConfig, trained_features
from training.prr_train import make_policy

from decode_helpers import encode, method

T, F = True, False
GEN8 = GenConfig(gen_length=8, block_length=4)   # 2 blocks; steps 8 -> 4 steps per block


class Capture(torch.nn.Module):
    """A controller that records the features it is given and returns s = 0.5."""
    def __init__(self):
        super().__init__()
        self.cfg = ControllerConfig(d_model=4)
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.feats = None

    def forward(self, hidden, feats):
        self.feats = feats
        return torch.zeros(feats.shape[:-1], dtype=self.w.dtype)


P3 = [0.7, 0.2, 0.1]


def _features(spec):
    """The 11 features of a hand-made step: prompt 8, block 1 (positions 4-7) at in-block step 1,
    the row's 6th step; 5 and 7 were written at step 5, 4 and 6 are masked; the argmax of every
    position has been the same for 3 steps (history stable 2, unchanged now)."""
    m = method(spec, GEN8)
    m.ctrl = Capture()
    G = 8
    h = History.empty(1, G, "cpu")
    h.argmax = torch.zeros((1, G), dtype=torch.long)
    h.stable = torch.full((1, G), 2)
    h.commit_step = torch.tensor([[0, 1, 2, 3, -1, 5, -1, 5]])
    cand = torch.tensor([[F, F, F, F, T, F, T, F]])
    logits = torch.tensor([P3] * G).log().unsqueeze(0)
    view, out = step_inputs(conf=torch.full((1, G), 0.7), x0=torch.zeros((1, G), dtype=torch.long), logits=logits,
                            candidates=cand, block=torch.tensor([1]), step_in_block=torch.tensor([1]),
                            step=torch.tensor([6]), prompt_len=torch.tensor([8]), hidden=torch.zeros(1, G, 4),
                            history=h)
    m.decide(view, out)
    return m.ctrl.feats[0]


def test_reference_features_follow_compute_features_v2():
    f = _features("prr:controller=zero,features=reference")
    p = torch.tensor(P3, dtype=torch.float64)
    ent = float(-(p * (p + 1e-6).log()).sum() / (math.log(3) + 1e-6))
    # feature 1 nominal: (block 1 * 4 steps per block + step in block 1) / 8 total steps
    # feature 7: a masked position reads the in-block step (1 / 4), a written one the in-block steps
    # since its commit ((6 - 5) / 4)
    common = [(8 + 6) / 16, 5 / 8, (8 + 4) / 16, 4 / 16, 2 / 4]
    assert torch.allclose(f[4], torch.tensor(common + [0 / 4, 1 / 4, 1 / 4, 0.7, 0.5, ent]), atol=1e-6)
    assert torch.allclose(f[6], torch.tensor(common + [2 / 4, 1 / 4, 1 / 4, 0.7, 0.5, ent]), atol=1e-6)
    assert abs(float(f[5, 7]) - 1 / 4) < 1e-6
    assert abs(ent - float(-(p * p.log()).sum() / math.log(3))) < 1e-5   # differs only by the smoothing


def test_our_features_count_steps_taken_and_argmax_stability():
    f = _features("prr:controller=zero,features=ours")
    p = torch.tensor(P3, dtype=torch.float64)
    ent = float(-(p * p.log()).sum() / math.log(3))
    # feature 1: the 6 steps the row took / 8; feature 7: the argmax unchanged for 3 steps / 4
    want = [(8 + 6) / 16, 6 / 8, (8 + 4) / 16, 4 / 16, 2 / 4, 0 / 4, 1 / 4, 3 / 4, 0.7, 0.5, ent]
    assert torch.allclose(f[4], torch.tensor(want), atol=1e-6)


def test_reference_entropy_smoothing_counts_a_flat_tail_lower():
    from decoding.methods.prr.features import token_features
    V = 100_000
    p = torch.full((V,), 1e-7, dtype=torch.float64)
    p[0] = 1 - 1e-7 * (V - 1)
    logits = p.log().float().view(1, 1, V)
    ours = token_features(logits, torch.tensor([[float(p[0])]]), "ours")[0, 0, 2]
    ref = token_features(logits, torch.tensor([[float(p[0])]]), "reference")[0, 0, 2]
    tail = 1e-7 * (V - 1)
    want_ours = (-(p * p.log()).sum() / math.log(V)).item()
    want_ref = (-(p * (p + 1e-6).log()).sum() / (math.log(V) + 1e-6)).item()
    assert abs(float(ours) - want_ours) < 1e-4 and abs(float(ref) - want_ref) < 1e-4
    assert float(ref) < float(ours) and tail * math.log(1e7) / math.log(V) > float(ours) - float(ref) > 0


def test_top50_confidence_is_the_reference_log_sum_exp_and_exceeds_the_probability():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 80) * 2
    conf, x0 = torch.softmax(logits, -1).max(-1)
    view, out = step_inputs(conf=conf, x0=x0, logits=logits, candidates=torch.ones((1, 3), dtype=torch.bool))
    m = method("prr:controller=zero,conf=top50", GEN8)
    top = logits.topk(50, -1).values
    want = (logits.gather(-1, x0.unsqueeze(-1)).squeeze(-1) - top.logsumexp(-1)).exp()
    assert torch.allclose(m.score(out), want, atol=1e-6)
    assert (want > conf).all()
    assert m.reads().logits                                  # the top-50 score reads the logits
    assert torch.equal(method("prr:controller=zero", GEN8).score(out), conf)   # ablation: exact
    assert torch.equal(method("prr:conf=exact", GEN8).score(out), conf)
    assert torch.allclose(method("prr", GEN8).score(out), want, atol=1e-6)   # a controller: top50


def test_feature_set_is_the_one_the_controller_was_trained_with(tmp_path):
    assert trained_features("tiny") == trained_features("tiny-temp") == "ours"   # their records say so
    assert method("prr", GEN8).feature_set == "ours"
    assert method("prr:features=reference", GEN8).feature_set == "reference"
    assert method("prr:controller=off", GEN8).feature_set == "reference"
    for ext in (".safetensors", ".json"):
        shutil.copy(CHECKPOINT_DIR / f"tiny{ext}", tmp_path / f"mine{ext}")
    rec = json.loads((tmp_path / "mine.json").read_text())
    (tmp_path / "mine.json").write_text(json.dumps({**rec, "features": "reference"}))
    assert method(f"prr:controller={tmp_path / 'mine'}", GEN8).feature_set == "reference"
    del rec["features"]                                       # a record without the field: ours
    (tmp_path / "mine.json").write_text(json.dumps(rec))
    assert method(f"prr:controller={tmp_path / 'mine'}", GEN8).feature_set == "ours"
    assert make_policy(None, GEN8, 0.9, "weighted", 1.0).feature_set == "reference"   # training's default


@pytest.mark.parametrize("spec, match", [("prr:features=v2", "features='v2'; choose one of reference, ours"),
                                         ("prr:conf=top10", "conf='top10'; choose one of top50, exact")])
def test_bad_settings_are_one_line_errors(spec, match):
    with pytest.raises(ValueError, match=match) as e:
        method(spec, GEN8)
    assert "\n" not in str(e.value)


def test_bf16_runs_the_controller_in_bfloat16(builtin_model, prompts):
    gen = GenConfig(gen_length=24, block_length=8)
    m = method("prr:bf16=true", gen)
    assert m.ctrl.inp.weight.dtype == torch.bfloat16
    ids = encode(builtin_model, prompts[:2])
    a = decode(builtin_model, m, ids, gen)
    b = decode(builtin_model, method("prr", gen), ids, gen)
    assert a.tokens.shape == b.tokens.shape and (a.nfe > 0).all()
