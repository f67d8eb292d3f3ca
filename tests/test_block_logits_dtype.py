"""LLaDA2's block forward hands back its logits in the weights' dtype (bf16 on the GPU), where the
reference casts them to fp32: every method that decodes a block-causal model reads them as their
fp32 cast, so a bf16 model decodes the same tokens in the same forwards either way."""
import pytest
import torch

from decoding.loop import decode
from decoding.registry import METHODS
from models import load_model
from tests.test_block_causal import peaked
from tests.test_block_loop import gen_for, method, prompt_of

BLOCK_CAUSAL = [n for n in METHODS if n not in ("slowfast", "wino", "prr")]   # those three refuse or need a controller


@pytest.fixture(scope="module")
def bf16_model():
    m = load_model("llada2-tiny", no_weights=True, seed=1)
    peaked(m.module)
    with torch.no_grad():
        m.module.lm_head.weight[m.mask_id].zero_()
    m.module.to(torch.bfloat16)
    return m


def test_the_block_forward_keeps_the_weights_dtype(bf16_model):
    m = bf16_model
    cache = m.module.new_block_cache(1, 2 * m.block_size)
    logits, _ = m.module.block_forward(torch.full((1, m.block_size), m.mask_id), cache)
    assert logits.dtype == torch.bfloat16


@pytest.mark.parametrize("name", BLOCK_CAUSAL)
def test_bf16_logits_decode_as_their_fp32_cast(bf16_model, name, monkeypatch):
    m = bf16_model
    gen = gen_for(m, early_stop=False)
    prompts = [prompt_of(5), prompt_of(11)]
    as_is = decode(m, method(name, gen), prompts, gen)
    run = m.module._run
    monkeypatch.setattr(m.module, "_run", lambda *a: (lambda lg, h: (lg.float(), h))(*run(*a)))
    cast = decode(m, method(name, gen), prompts, gen)
    assert torch.equal(as_is.tokens, cast.tokens)
    assert as_is.nfe.tolist() == cast.nfe.tolist()
