"""tiny-block, the built-in architecture under block-causal attention (the CDLM student): the
teacher's weights load unchanged, the mask is block-causal, the block cache equals recomputing,
left-padded batches equal single rows, and a student directory round-trips through --model <dir>."""
import pytest
import torch

from models import load_model
from models.tiny_block import TinyBlockDLLM, save_student, student_from_teacher
from models.tiny_net import TinyConfig, TinyDLLM
from models.tokenizer import WordTokenizer


def small(block_size=4, seed=0) -> TinyBlockDLLM:
    torch.manual_seed(seed)
    net = TinyBlockDLLM(TinyConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, d_ff=48), block_size)
    with torch.no_grad():     # peaked logits, as test_block_causal.py's models
        for p in net.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.5)
    return net.eval()


def test_one_block_covering_everything_is_the_bidirectional_teacher(builtin_model):
    teacher = builtin_model.module
    ids = torch.tensor([builtin_model.tokenizer.encode("Question: Tom has 5 apples.\nAnswer:") + [1] * 9])
    student = student_from_teacher(teacher, block_size=ids.shape[1]).eval()
    torch.testing.assert_close(student(ids)[0], teacher(ids)[0], rtol=1e-5, atol=1e-5)
    assert student.embed.weight.data_ptr() != teacher.embed.weight.data_ptr()   # a copy, not shared
    with torch.no_grad():
        b16 = student_from_teacher(teacher, 16)(ids)[0]
    assert not torch.allclose(b16[:, :16], teacher(ids)[0][:, :16], atol=1e-3)     # earlier blocks no longer see later ones


def test_mask_is_block_causal():
    net = small()
    x = torch.randint(4, 64, (1, 14))
    base = net(x)[0]
    y = x.clone()
    y[0, 9] = (y[0, 9] + 1) % 64                       # block 2 (positions 8..11)
    out = net(y)[0]
    assert torch.equal(out[:, :8], base[:, :8])
    assert not torch.allclose(out[:, 8], base[:, 8])   # bidirectional inside the block


@pytest.mark.parametrize("P", [3, 8, 10])
def test_block_cache_equals_recomputing_everything(P):
    net, bs = small(), 4
    x = torch.randint(4, 64, (1, 40))
    cache = net.new_block_cache(1, 64)
    pre = P // bs * bs
    if pre:
        net.block_forward(x[:, :pre], cache, commit=pre)
    for b in range(pre // bs, pre // bs + 3):
        lo, hi = b * bs, (b + 1) * bs
        cached = net.block_forward(x[:, lo:hi], cache)[0]
        torch.testing.assert_close(cached, net(x[:, :hi])[0][:, lo:hi], rtol=1e-4, atol=1e-4)
        net.block_forward(x[:, lo:hi], cache, commit=bs)
    assert int(cache.length[0]) == (pre // bs + 3) * bs
    # a finished block appended by the next block's forward = appended by its own forward
    c1, c2 = net.new_block_cache(1, 32), net.new_block_cache(1, 32)
    net.block_forward(x[:, :bs], c1, commit=bs)
    sep = net.block_forward(x[:, bs:2 * bs], c1)[0]
    merged = net.block_forward(x[:, :2 * bs], c2, commit=bs)[0][:, bs:]
    torch.testing.assert_close(merged, sep, rtol=1e-4, atol=1e-4)


def test_left_padded_batch_equals_single_rows():
    net, bs, pad, mask = small(), 4, 0, 1
    from models.base import ModelAdapter
    tok = WordTokenizer.build({"a"})
    m = ModelAdapter("t", net, tok, mask_id=mask, pad_id=pad, eos_ids=(2,), regime="block_causal", block_size=bs)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(4, 64, (n,), generator=g).tolist() for n in (3, 9, 6)]
    W = max(map(len, prompts))
    ids, attn = torch.full((3, W), pad), torch.zeros(3, W, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, W - len(p):], attn[i, W - len(p):] = torch.tensor(p), 1
    batch = m.forward(ids, attn).logits
    for i, p in enumerate(prompts):
        torch.testing.assert_close(batch[i, W - len(p):], m.forward(torch.tensor([p])).logits[0], rtol=1e-4, atol=1e-4)
    # cached: each row prefills its whole blocks, then feeds its tail + masks as its current block
    full = [len(p) // bs * bs for p in prompts]
    Wp = max(full)
    pre_ids, pre_valid = torch.full((3, Wp), pad), torch.zeros(3, Wp, dtype=torch.bool)
    for i, p in enumerate(prompts):
        if full[i]:
            pre_ids[i, Wp - full[i]:], pre_valid[i, Wp - full[i]:] = torch.tensor(p[:full[i]]), True
    cache = net.new_block_cache(3, 32)
    net.block_forward(pre_ids, cache, valid=pre_valid, commit=torch.tensor(full))
    blocks = torch.stack([torch.tensor(p[full[i]:] + [mask] * (bs - len(p) + full[i])) for i, p in enumerate(prompts)])
    got = net.block_forward(blocks, cache)[0]
    for i, p in enumerate(prompts):
        c1 = net.new_block_cache(1, 32)
        if full[i]:
            net.block_forward(torch.tensor([p[:full[i]]]), c1, commit=full[i])
        torch.testing.assert_close(got[i:i + 1], net.block_forward(blocks[i:i + 1], c1)[0], rtol=1e-4, atol=1e-4)


def test_student_directory_round_trip_and_the_teacher_untouched(tmp_path, builtin_model):
    student = student_from_teacher(builtin_model.module, block_size=8)
    d = save_student(student, builtin_model.tokenizer, tmp_path / "student", {"command": "test"})
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    m = load_model(str(d))
    assert (m.regime, m.block_size, m.mask_id, m.eos_ids) == ("block_causal", 8, 1, (2,))
    assert load_model("tiny-block", path=str(d)).block_size == 8
    ids = torch.tensor([builtin_model.tokenizer.encode("Question: Tom has 5 apples.\nAnswer:")])
    assert torch.equal(m.forward(ids).logits, student.eval()(ids)[0])
    with pytest.raises(ValueError, match="block_causal student; load it with --model"):
        load_model("tiny", path=str(d))
    assert load_model("tiny").regime == "bidirectional" and not hasattr(m.module, "new_cache")
    untrained = load_model("tiny-block")
    assert (untrained.regime, untrained.block_size) == ("block_causal", 16)
    with pytest.raises(ValueError, match="unknown model"):
        load_model(str(tmp_path))                       # a directory without a student config
