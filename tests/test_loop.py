"""Invariants of the shared decode loop."""
import pytest
import torch

from decoding.base import GenConfig
from decoding.loop import decode

from decode_helpers import GEN, encode, method


@pytest.mark.parametrize("spec", ["fixed", "fixed:steps=6", "threshold:tau=0.3", "threshold:factor=1.0"])
def test_every_mask_filled_and_each_position_committed_once(random_model, prompts, spec):
    res = decode(random_model, method(spec, GEN), encode(random_model, prompts), GEN, trace=True)
    assert not (res.tokens == random_model.mask_id).any()
    for row, steps in enumerate(res.trace):
        committed = [p for s in steps for p in s["commit"]]
        assert sorted(committed) == list(range(GEN.gen_length))   # each position exactly once
        for s in steps:  # a committed position is never offered again, and keeps its argmax
            assert not set(s["masked"]) & set(p for t in steps if t["step"] < s["step"] for p in t["commit"])
            for p in s["commit"]:
                tok = s["argmax"][s["masked"].index(p)]
                assert res.tokens[row, p] == tok or (res.tokens[row, :p] == random_model.eos_ids[0]).any()
        # block order: every commit of block k happens before any commit of block k + 1
        blocks = [p // GEN.block_length for s in steps for p in s["commit"]]
        assert blocks == sorted(blocks)


def test_committed_tokens_never_change_between_forwards(random_model, prompts):
    seen = []
    orig = random_model.module.forward

    def spy(ids, **kw):
        seen.append(ids.clone())
        return orig(ids, **kw)

    random_model.module.forward = spy
    try:
        decode(random_model, method("threshold:tau=0.5", GEN), encode(random_model, prompts[:1]), GEN)
    finally:
        random_model.module.forward = orig
    for before, after in zip(seen, seen[1:]):
        kept = before != random_model.mask_id
        assert torch.equal(before[kept], after[kept])


@pytest.mark.parametrize("steps", [24, 12, 3])
def test_fixed_nfe_equals_steps_without_early_stop(random_model, prompts, steps):
    res = decode(random_model, method(f"fixed:steps={steps}", GEN), encode(random_model, prompts), GEN)
    assert res.nfe.tolist() == [steps] * len(prompts)
    assert res.steps.tolist() == [steps] * len(prompts)


def test_cfg_counts_two_forwards_per_step(random_model, prompts):
    res = decode(random_model, method("fixed:steps=6,cfg_scale=1.0", GEN), encode(random_model, prompts[:2]), GEN)
    assert res.nfe.tolist() == [12, 12]


def test_threshold_one_commits_one_per_step(random_model, prompts):
    # tau = 1.0 can only be met by p == 1, so it degenerates to one token per step
    res = decode(random_model, method("threshold:tau=1.0", GEN), encode(random_model, prompts[:2]), GEN)
    assert res.nfe.tolist() == [24, 24]


@pytest.mark.parametrize("spec", ["fixed", "threshold:tau=0.2"])
def test_batch_equals_single_runs_greedy(random_model, prompts, spec):
    ids = encode(random_model, prompts)
    assert len(set(map(len, ids))) > 1, "prompts of different lengths exercise left padding"
    batch = decode(random_model, method(spec, GEN), ids, GEN)
    for i, p in enumerate(ids):
        single = decode(random_model, method(spec, GEN), [p], GEN)
        assert torch.equal(single.tokens[0], batch.tokens[i])
        assert single.nfe[0] == batch.nfe[i]


def test_step_cap_fills_remaining_and_flags(random_model, prompts):
    gen = GenConfig(gen_length=24, block_length=8, early_stop=False, max_steps=5)
    res = decode(random_model, method("fixed", gen), encode(random_model, prompts[:2]), gen)
    assert res.nfe.tolist() == [5, 5] and res.capped.all()
    assert not (res.tokens == random_model.mask_id).any()


def test_sampling_is_reproducible_with_the_seed(random_model, prompts):
    m = method("fixed:temperature=1.0,remasking=random", GEN)
    ids = encode(random_model, prompts[:3])
    a = decode(random_model, m, ids, GEN, generator=torch.Generator().manual_seed(1))
    b = decode(random_model, m, ids, GEN, generator=torch.Generator().manual_seed(1))
    c = decode(random_model, m, ids, GEN, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)


def test_gen_config_validation():
    with pytest.raises(ValueError, match="multiple of block_length"):
        GenConfig(gen_length=30, block_length=8)
    with pytest.raises(ValueError, match="steps=5"):
        method("fixed:steps=5", GEN)
