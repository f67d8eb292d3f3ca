"""CDLM students of LLaDA and Dream (models/cdlm.py): CDLM's attention (the prompt one block, blocks
of 32 from the generation start, bidirectional inside a block), the loop's exact block cache
against a decoder that recomputes the whole sequence every step (Dream: position i read from logit
i - 1), batches against single rows, checkpoint directories loading as LLaDA's and Dream's, and the
refusals."""
import pytest
import torch

from decoding.base import GenConfig
from decoding.loop import decode
from decoding.registry import build_method, parse_methods
from models import load_model
from models.block_cache import block_causal_mask
from models.checkpoint import save_checkpoint
from tests.test_block_causal import peaked


def head(m):
    return m.module.net.lm_head.weight if m.logit_shift else m.module.net.model.transformer.ff_out.weight


@pytest.fixture(scope="module", params=["cdlm-llada-tiny", "cdlm-dream-tiny"])
def student(request):
    m = load_model(request.param, no_weights=True)
    peaked(m.module, seed=3)
    with torch.no_grad():
        head(m)[m.mask_id].zero_()                    # MASK is never proposed (a trained head's behaviour)
        head(m)[m.eos_ids[0]].mul_(1.6)               # EOS is proposed now and then: early stops happen
    return m


def recompute_decode(m, prompt, gen_length, tau):
    """CDLM's inference by its definition, without a cache: every step a forward of the whole
    sequence under the block-causal mask (grid from the generation start), then in the current
    block commit every mask with top-1 >= tau, and always the most confident; stop after the block
    that holds EOS. -> (generated tokens, EOS onwards reading EOS; forwards)."""
    net, bs, P = m.module, m.block_size, len(prompt)
    shift = int(m.logit_shift)                        # Dream: position i is predicted by logit i - 1
    x = torch.tensor([prompt + [m.mask_id] * gen_length])
    origin = torch.tensor([P])
    nfe = 0
    for b in range(gen_length // bs):
        lo, hi = P + b * bs, P + (b + 1) * bs
        while bool((x[0, lo:hi] == m.mask_id).any()):
            logits, _ = net(x, origin=origin)
            nfe += 1
            conf, x0 = logits[0, lo - shift:hi - shift].float().softmax(-1).max(-1)
            masked = x[0, lo:hi] == m.mask_id
            conf = torch.where(masked, conf, -1.0)
            pick = masked & (conf >= tau)
            pick[conf.argmax()] = True
            x[0, lo:hi] = torch.where(pick, x0, x[0, lo:hi])
        if bool(torch.isin(x[0, lo:hi], torch.tensor(m.eos_ids)).any()):
            break
    gen = x[0, P:]
    eos = torch.isin(gen, torch.tensor(m.eos_ids)).nonzero()
    if len(eos):
        gen[int(eos[0]):] = m.eos_ids[0]
    return gen, nfe


def prompt_of(P, seed):
    return torch.randint(0, 400, (P,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_prompt_is_one_block_and_blocks_start_at_the_generation():
    pos = torch.arange(7)[None]
    m = block_causal_mask(pos, 2, origin=torch.tensor([3]))[0, 0]        # prompt 0-2, blocks {3,4}, {5,6}
    assert m[:3, :3].all() and not m[:3, 3:].any()                        # the prompt sees itself only
    assert m[3:5, :5].all() and not m[3:5, 5:].any()                      # first block: prompt + itself
    assert m[5:, :].all()
    assert torch.equal(block_causal_mask(pos, 2), block_causal_mask(pos, 2, origin=torch.tensor([0])))


@pytest.mark.parametrize("P", [5, 32, 40])
def test_loop_with_the_exact_block_cache_equals_recomputing_everything(student, P):
    gen = GenConfig(gen_length=96, block_length=32)
    prompt = prompt_of(P, P)
    want, nfe = recompute_decode(student, prompt, 96, 0.6)
    got = decode(student, build_method(parse_methods("threshold:tau=0.6")[0], gen), [prompt], gen)
    assert got.tokens[0].tolist() == want.tolist()
    assert int(got.nfe[0]) == nfe                        # every forward a denoising step (append=fold)
    if not student.logit_shift:                          # (refused for Dream: test_refusals)
        sep = decode(student, build_method(parse_methods("threshold:tau=0.6,append=separate")[0], gen), [prompt], gen)
        assert sep.tokens[0].tolist() == want.tolist()   # the prompt prefilled, blocks appended apart


def test_the_parity_cases_include_a_stop_at_eos(student):
    """The fixture's EOS bias makes some of the parity prompts stop before the last block, so the
    stop rule is part of what the parity test compares."""
    stopped = []
    for P in (5, 32, 40):
        want, nfe = recompute_decode(student, prompt_of(P, P), 96, 0.6)
        stopped.append(bool(torch.isin(want[:64], torch.tensor(student.eos_ids)).any()))
    assert any(stopped)


def test_left_padded_batch_equals_single_rows(student):
    gen = GenConfig(gen_length=64, block_length=32)
    prompts = [prompt_of(P, P) for P in (3, 17, 33)]
    method = lambda: build_method(parse_methods("threshold:tau=0.6")[0], gen)
    batch = decode(student, method(), prompts, gen)
    for i, p in enumerate(prompts):
        one = decode(student, method(), [p], gen)
        assert batch.tokens[i].tolist() == one.tokens[0].tolist()
        assert int(batch.nfe[i]) == int(one.nfe[0])


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_a_checkpoint_directory_loads_as_a_cdlm_student(tmp_path, family):
    src = load_model(f"{family}-tiny", no_weights=True, seed=4)
    save_checkpoint(src.module, src.module.cfg.to_hf(), tmp_path)
    m = load_model(f"cdlm-{family}", path=str(tmp_path))
    assert (m.regime, m.block_size, m.block_grid, m.name) == ("block_causal", 32, "generation", f"cdlm-{family}")
    assert m.logit_shift == (family == "dream") and not m.ar_blocks
    want = src.module.state_dict()
    got = m.module.net.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_refusals_are_one_line_and_name_the_fix():
    with pytest.raises(ValueError, match=r"^cdlm-dream needs --model-path <a CDLM-Dream checkpoint"):
        load_model("cdlm-dream")
    with pytest.raises(ValueError, match=r"^cdlm-llada needs --model-path <a CDLM-LLaDA checkpoint"):
        load_model("cdlm-llada")
    d = load_model("cdlm-dream-tiny", no_weights=True)
    gen = GenConfig(gen_length=64, block_length=32)
    with pytest.raises(ValueError, match=r"^threshold: append=separate does not apply to logit-shifted model "
                                         r"cdlm-dream-tiny"):
        decode(d, build_method(parse_methods("threshold:append=separate")[0], gen), [[1, 2, 3]], gen)
    m = load_model("cdlm-llada-tiny", no_weights=True)
    gen = GenConfig(gen_length=64, block_length=32)
    with pytest.raises(ValueError, match="cache=dual means nothing new for block-causal model cdlm-llada-tiny"):
        decode(m, build_method(parse_methods("threshold:cache=dual")[0], gen), [[1, 2, 3]], gen)
