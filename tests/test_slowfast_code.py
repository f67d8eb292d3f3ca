"""`slowfast:preset=code` equals, token for token and in NFE, a batch-1 driver with the loop structure
of the authors' sampler (LiangrunFlora/Slow-Fast-Sampling generate_slow_fast_sampling; its per-step
math from decoding/rules/slowfast_code.py, whose driver matched their code in 300/300 random settings:
docs/methods-fidelity.md section 1); a left-padded batch equals single runs; phase 1 keeps its K
forwards on a block with no masks (Decision.hold); `preset=paper` keeps the paper's rule."""
import statistics

import pytest
import torch

import decoding.loop as loop
from decoding.base import GenConfig
from decoding.contract import step_inputs
from decoding.rules.slowfast_code import cycle_commit, span_estimate
from decoding.select import token_stats
from models import load_model

from decode_helpers import encode, method

SETTINGS = ["slowfast", "slowfast:max_slow=2,window=3", "slowfast:tau_min=0.1,tau_high=0.5,max_slow=3",
            "slowfast:window=1,sigma=0.5,tau_high=0.7", "slowfast:reuse=false,max_slow=4,tau_min=0.5"]


@pytest.fixture(scope="module")
def llada():
    m = load_model("llada-tiny", no_weights=True, seed=1)
    with torch.no_grad():   # peaked logits: parallel commits
        for p in m.module.parameters():
            if p.dim() == 2:
                p.mul_(25.0)
    g = torch.Generator().manual_seed(0)
    return m, [torch.randint(10, 400, (n,), generator=g).tolist() for n in (9, 5, 7)]


def authors_loop(model, prompt, G, BL, p, reuse=True):
    """-> (generated tokens, NFE): per block, cycles of K full forwards (estimate until determined,
    slow commit) then the span [start, end) while it has a mask (first forward full, then prompt +
    x[:block start + end]); the next cycle starts at end."""
    P, mask = len(prompt), model.mask_id
    x = torch.tensor([prompt + [mask] * G])
    nfe = 0

    def forward(n):
        nonlocal nfe
        nfe += 1
        x0, conf = token_stats(model.forward(x[:, :P + n]).logits[:, P:])
        pad = lambda t: torch.cat([t, t.new_zeros((1, G - n))], 1)
        return pad(x0), pad(conf)

    def commit_at(x0, c):
        x[:, P:] = torch.where(c, x0, x[:, P:])

    for b in range(G // BL):
        bs, start = b * BL, 0
        in_block = (torch.arange(G) // BL) == b
        masked = lambda: (x[:, P:] == mask) & in_block
        while masked().any():
            hist, determined, end = [], False, BL
            for k in range(p["max_slow"]):
                x0, conf = forward(G)
                if not determined:
                    hist = (hist + [int(span_estimate(conf, masked(), torch.tensor([bs]), torch.tensor([start]),
                                                      BL, p["tau_min"]))])[-p["window"]:]
                    if len(hist) >= p["window"]:
                        if statistics.pstdev(hist) < p["sigma"]:
                            end, determined = hist[-1], True
                        else:
                            end, determined = int(statistics.mean(hist)), k == p["max_slow"] - 1
                commit_at(x0, cycle_commit(conf, masked(), torch.tensor([bs]), torch.tensor([start]),
                                           torch.tensor([BL]), p["tau_high"]))
            if not determined:
                end = max(1, min(int(statistics.mean(hist)), BL)) if hist else BL // 2
            first = True
            while (masked() & (torch.arange(G) >= bs + start) & (torch.arange(G) < bs + end)).any():
                x0, conf = forward(G if (first or not reuse) else bs + end)
                commit_at(x0, cycle_commit(conf, masked(), torch.tensor([bs]), torch.tensor([start]),
                                           torch.tensor([end]), p["tau_high"]))
                first = False
            start = end
    return x[0, P:], nfe


@pytest.mark.parametrize("spec", SETTINGS)
def test_code_preset_equals_the_authors_loop(llada, builtin_model, prompts, spec):
    gen = GenConfig(gen_length=24, block_length=8, early_stop=False, max_steps=500)
    for model, ids in (llada, (builtin_model, encode(builtin_model, prompts[:2]))):
        m = method(spec, gen)
        res = loop.decode(model, m, ids, gen)
        for i, prompt in enumerate(ids):
            want, nfe = authors_loop(model, prompt, 24, 8, m.p, reuse=m.cfg.reuse)
            assert res.tokens[i].tolist() == want.tolist(), (spec, i)
            assert int(res.nfe[i]) == nfe, (spec, i)


def test_batch_with_left_padding_equals_single_runs(llada):
    model, ids = llada
    gen = GenConfig(gen_length=24, block_length=8, early_stop=False, max_steps=500)
    batch = loop.decode(model, method("slowfast", gen), ids, gen)
    for i, p in enumerate(ids):
        one = loop.decode(model, method("slowfast", gen), [p], gen)
        assert one.tokens[0].tolist() == batch.tokens[i].tolist()
        assert int(one.nfe[0]) == int(batch.nfe[i]) and int(one.nfe_truncated[0]) == int(batch.nfe_truncated[i])


def test_phase_one_holds_a_full_block_for_its_k_forwards():
    gen = GenConfig(gen_length=8, block_length=4, max_steps=100)
    m = method("slowfast:max_slow=3", gen)
    m.start(1, torch.device("cpu"))
    conf = torch.tensor([[0.95, 0.95, 0.95, 0.95, 0.0, 0.0, 0.0, 0.0]])
    cand = torch.tensor([[True] * 4 + [False] * 4])
    view, out = step_inputs(conf=conf, candidates=cand, mask_id=99)
    dec = m.decide(view, out)                       # phase-1 forward 1 fills the block: held
    assert dec.commit[0, :4].all() and dec.hold[0]
    view, out = step_inputs(conf=conf, candidates=torch.zeros_like(cand), mask_id=99,
                            step_in_block=torch.tensor([1]))
    assert m.decide(view, out).hold[0]              # forward 2 of 3: held
    view.step_in_block = torch.tensor([2])
    assert not m.decide(view, out).hold[0]          # forward 3 = K: the block moves on


def test_paper_preset_ends_phase_one_when_stable(llada):
    """The paper's rule makes no forward on a block with no masks, so it never takes more forwards
    than there are positions (one commit at least per forward)."""
    model, ids = llada
    gen = GenConfig(gen_length=24, block_length=8, early_stop=False, max_steps=500)
    paper = loop.decode(model, method("slowfast:preset=paper", gen), ids, gen)
    assert (paper.nfe <= 24).all()
    code = loop.decode(model, method("slowfast:preset=code", gen), ids, gen)
    assert (code.nfe >= 3 * 6).all()               # K = 6 full forwards per block at least


def test_bad_settings_are_one_line_errors():
    gen = GenConfig(gen_length=8, block_length=4)
    for spec, msg in [("slowfast:max_slow=0", "slowfast: need window (2) >= 1 and max_slow (0) >= 1"),
                      ("slowfast:preset=paper,max_slow=1", "slowfast: need 1 <= window (2) <= max_slow (1)"),
                      ("slowfast:preset=fast", "slowfast: preset='fast'; choose one of code, paper")]:
        with pytest.raises(ValueError) as e:
            method(spec, gen)
        assert msg in str(e.value) and "\n" not in str(e.value)
