"""Contract extensions: the verification forward (Reads.verify: a shadow block of [MASK] tokens in
the same forward, seen by nothing, counted once) and Decision.hold (more forwards on a block with no
masks left, within the step cap); one-line errors where a model or setting cannot run them."""
from dataclasses import dataclass

import pytest
import torch

import decoding.loop as loop
from decoding.base import GenConfig, Method
from decoding.contract import Decision, Reads, StepOutput, StepView
from decoding.forward import verify_inputs
from decoding.rules.wino import shadow_layout
from decoding.select import threshold_commit
from models import load_model

from decode_helpers import encode


@pytest.fixture(scope="module")
def llada():
    return load_model("llada-tiny", no_weights=True, seed=1)


@dataclass
class ToyConfig:
    tau: float = 0.5
    extra: int = 0   # forwards held on a block after it has no masks


class Verify(Method):
    """Threshold commits; every forward carries the verification block; records each StepOutput."""
    name = "toy-verify"
    Config = ToyConfig
    READS = Reads(verify=True)
    seen: list = []

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        Verify.seen.append((view, out))
        return Decision(threshold_commit(out.conf, view.candidates, self.cfg.tau))


class Hold(Method):
    """Threshold commits; holds the block for `extra` forwards after its last mask is filled."""
    name = "toy-hold"
    Config = ToyConfig

    def start(self, batch_size, device, generator=None):
        self.after = torch.zeros(batch_size, dtype=torch.long, device=device)   # forwards on a full block

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        commit = threshold_commit(out.conf, view.candidates, self.cfg.tau)
        full = ~(view.candidates & ~commit).any(1)
        after = torch.where(view.step_in_block == 0, 0, self.after[view.rows])
        after = torch.where(view.candidates.any(1), after, after + 1)
        self.after[view.rows] = after
        return Decision(commit, hold=full & (after < self.cfg.extra))


def test_appending_the_shadow_block_changes_no_real_position(llada):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(10, 400, (2, 14), generator=g)
    tokens[:, 10:] = llada.mask_id
    attn = torch.ones_like(tokens)
    attn[1, :3] = 0                                   # a left-padded row
    tokens[1, :3] = llada.pad_id
    P, BL = 6, 4
    plain = llada.forward(tokens, attn).logits
    ids, mask, positions, twin = verify_inputs(tokens, attn, torch.tensor([1, 0]), P, BL, llada.mask_id)
    got = llada.forward(ids, mask, positions=positions).logits
    assert torch.allclose(got[0, :14], plain[0], atol=1e-5)
    assert torch.allclose(got[1, 3:14], plain[1, 3:], atol=1e-5)   # padded queries are never read
    assert twin.tolist() == [[10, 11, 12, 13], [6, 7, 8, 9]]
    assert positions[1, 14:].tolist() == [3, 4, 5, 6]              # the twins' (padding-aware) positions
    # one unpadded row: the layout of decoding/rules/wino.py
    pos, allowed = shadow_layout(14, 10, BL)
    assert torch.equal(positions[0], pos) and torch.equal(mask[0, 0], allowed)


def test_shadow_tokens_read_the_block_with_their_twin_hidden(llada):
    """With one layer, a shadow token's prediction depends on no value at its twin position."""
    one = load_model("llada-tiny", no_weights=True, seed=2)
    one.module.model.transformer.blocks = one.module.model.transformer.blocks[:1]
    tokens = torch.randint(10, 400, (1, 12), generator=torch.Generator().manual_seed(3))
    ids, mask, positions, twin = verify_inputs(tokens, torch.ones_like(tokens), torch.tensor([1]), 4, 4, one.mask_id)
    a = one.forward(ids, mask, positions=positions).logits
    ids2 = ids.clone()
    ids2[0, 9] = 7                                   # the twin of shadow token 1 (block 1 = positions 8..11)
    b = one.forward(ids2, mask, positions=positions).logits
    assert torch.allclose(a[0, 12 + 1], b[0, 12 + 1], atol=1e-6)
    assert not torch.allclose(a[0, 12 + 0], b[0, 12 + 0], atol=1e-4)


def test_verify_forward_counts_one_nfe_and_reports_the_written_tokens(llada):
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(10, 400, (n,), generator=g).tolist() for n in (7, 4)]
    gen = GenConfig(gen_length=16, block_length=8, early_stop=False)
    Verify.seen = []
    res = loop.decode(llada, Verify(ToyConfig(), gen), ids, gen)
    assert torch.equal(res.nfe, res.steps)
    for view, out in Verify.seen:
        pos = torch.arange(16)
        in_block = (pos // 8) == view.block.unsqueeze(1)
        assert ((out.verify_x0 >= 0) == in_block).all()
        assert ((out.verify_conf > 0) <= in_block).all() and (out.verify_conf <= 1).all()
    # the shadow block changes nothing else: the same tokens as a threshold decode
    plain = loop.decode(llada, _threshold(gen), ids, gen)
    assert torch.equal(res.tokens, plain.tokens) and torch.equal(res.nfe, plain.nfe)


def _threshold(gen):
    from decode_helpers import method
    return method("threshold:tau=0.5", gen)


def test_verify_refuses_a_cache_a_logit_shift_and_the_hf_backend(llada):
    gen = GenConfig(gen_length=16, block_length=8)
    m = Verify(ToyConfig(), gen)
    m.cache = "dual"
    with pytest.raises(ValueError, match="no KV cache; use cache=none"):
        loop.decode(llada, m, [[11, 12]], gen)
    dream = load_model("dream-tiny", no_weights=True)
    with pytest.raises(ValueError, match="without a logit shift.*not dream-tiny"):
        loop.decode(dream, Verify(ToyConfig(), gen), [[11, 12]], gen)
    x = torch.zeros((1, 4), dtype=torch.long)
    with pytest.raises(ValueError, match="needs explicit positions"):
        llada.forward(x, torch.ones((1, 1, 4, 4), dtype=torch.bool))


def test_hold_keeps_forwarding_a_full_block_within_the_step_cap(random_model, prompts):
    ids = encode(random_model, prompts[:3])
    gen = GenConfig(gen_length=24, block_length=8, early_stop=False, max_steps=200)
    base = loop.decode(random_model, Hold(ToyConfig(extra=0), gen), ids, gen)
    held = loop.decode(random_model, Hold(ToyConfig(extra=3), gen), ids, gen)
    assert torch.equal(held.tokens, base.tokens)          # commits nothing more: same tokens
    assert torch.equal(held.nfe, base.nfe + 3 * 3)        # 3 more forwards on each of 3 blocks
    assert not held.capped.any()
    cap = GenConfig(gen_length=24, block_length=8, early_stop=False, max_steps=int(base.steps.min()) + 2)
    capped = loop.decode(random_model, Hold(ToyConfig(extra=3), cap), ids, cap)
    assert capped.capped.all() and (capped.steps == cap.max_steps).all()
