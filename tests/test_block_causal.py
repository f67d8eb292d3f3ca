"""Block-causal models (SDAR/TraDo, ...): checkpoint names and round trip, the exact block cache
against recomputing everything, left-padded batches against single rows, and the cache API's
errors."""
import pytest
import torch

from models import MODELS, load_model
from models.block_cache import block_causal_mask
from models.checkpoint import load_weights, read_config, save_checkpoint
from models.sdar import SDAR, SDARConfig
from tests.block_decode_helpers import fdv2_decode, quota, threshold_decode

TINY = ["sdar-tiny", "llada2-tiny", "fast-dllm-v2-tiny"]


def peaked(m, seed=0):
    """Larger weights than the 0.02 default: peaked logits, distinct argmaxes, thresholds that bite."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "norm" in name:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    return m


@pytest.fixture(scope="module")
def models():
    out = {}
    for n in TINY:
        m = load_model(n, no_weights=True, seed=1)
        peaked(m.module)
        out[n] = m
    return out


def test_sdar_checkpoint_names_and_round_trip(tmp_path):
    cfg = SDARConfig(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16, mask_token_id=290, eos_token_id=291)
    a = peaked(SDAR(cfg).eval())
    names = set(a.state_dict())
    for n in ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
              "model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
              "model.layers.1.self_attn.v_proj.weight", "model.layers.1.self_attn.o_proj.weight",
              "model.layers.1.self_attn.q_norm.weight", "model.layers.1.self_attn.k_norm.weight",
              "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight",
              "model.layers.1.mlp.down_proj.weight", "model.layers.1.input_layernorm.weight",
              "model.layers.1.post_attention_layernorm.weight"]:
        assert n in names
    assert not any(n.endswith("bias") for n in names)            # Qwen3: no q/k/v biases
    ids = torch.randint(0, 300, (2, 11))
    ref = a(ids)[0]                                               # fuses q/k/v; names must survive it
    save_checkpoint(a, cfg.to_hf(), tmp_path, shard_size=30_000)
    hf = read_config(tmp_path)
    assert (hf["model_type"], hf["block_size"], hf["head_dim"], hf["mask_token_id"]) == ("sdar", 4, 16, 290)
    with torch.device("meta"):
        b = SDAR(SDARConfig.from_hf(hf))
    load_weights(b, tmp_path, "cpu", torch.float32)
    assert torch.equal(b.eval()(ids)[0], ref)
    tied = SDARConfig(**{**cfg.__dict__, "tie_word_embeddings": True})
    assert "lm_head.weight" not in SDAR(tied).state_dict()


def test_published_sizes_and_ids():
    from models.sdar import CONFIGS
    c = CONFIGS["sdar-8b"]
    assert (c.hidden_size, c.num_hidden_layers, c.num_key_value_heads, c.head_dim, c.block_size, c.mask_token_id,
            c.eos_token_id) == (4096, 36, 8, 128, 4, 151669, 151643)
    for n in ["sdar", "trado", "sdar-8b", "sdar-4b", "sdar-1.7b", "trado-8b", "trado-4b", "sdar-tiny"]:
        assert n in MODELS
    m = load_model("sdar-tiny", no_weights=True)
    assert (m.regime, m.block_size, m.mask_id, m.logit_shift) == ("block_causal", 4, 500, False)
    assert load_model("tiny").regime == "bidirectional"
    with pytest.raises(ValueError, match="--no-weights"):
        load_model("sdar-8b")


def test_whole_sequence_mask_is_block_causal(models):
    """Changing a token changes the logits of its own block and later ones, never earlier blocks."""
    m = models["sdar-tiny"]
    x = torch.randint(0, 400, (1, 14))
    base = m.forward(x).logits
    y = x.clone()
    y[0, 9] = (y[0, 9] + 1) % 400                                   # block 2 (positions 8..11)
    out = m.forward(y).logits
    assert torch.equal(out[:, :8], base[:, :8])
    assert not torch.allclose(out[:, 8], base[:, 8])               # bidirectional inside the block
    mask = block_causal_mask(torch.arange(6)[None], 2)[0, 0]
    assert mask.tolist()[2] == [True, True, True, True, False, False]


def _prefill_and_blocks(m, x, P):
    """Cached logits of the block holding position P and of the two blocks after it, with the
    whole-sequence logits of the same tokens beside them."""
    bs = m.block_size
    cache = m.module.new_block_cache(1, 64)
    pre = P // bs * bs
    pairs = []
    if pre:
        m.module.block_forward(x[:, :pre], cache, commit=pre)
    for b in range(pre // bs, pre // bs + 3):
        lo, hi = b * bs, (b + 1) * bs
        cached = m.module.block_forward(x[:, lo:hi], cache)[0]
        full = m.module(x[:, :hi])[0][:, lo:hi]              # unshifted, as block_forward's
        pairs.append((cached, full))
        m.module.block_forward(x[:, lo:hi], cache, commit=bs)
    return pairs, cache


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("P", [3, 8, 10])
def test_block_cache_equals_recomputing_everything(models, name, P):
    m = models[name]
    x = torch.randint(0, 400, (1, 40))
    pairs, cache = _prefill_and_blocks(m, x, P)
    for cached, full in pairs:
        torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-4)
    assert int(cache.length[0]) == (P // m.block_size + 3) * m.block_size


@pytest.mark.parametrize("name", TINY)
def test_append_merged_with_the_next_block_equals_separate_forwards(models, name):
    """Feeding [finished block, next block] with commit=block is the same as appending the
    finished block by its own forward, then feeding the next block."""
    m = models[name]
    bs = m.block_size
    x = torch.randint(0, 400, (1, 3 * bs), generator=torch.Generator().manual_seed(7))
    c1, c2 = m.module.new_block_cache(1, 32), m.module.new_block_cache(1, 32)
    m.module.block_forward(x[:, :bs], c1, commit=bs)
    sep = m.module.block_forward(x[:, bs:2 * bs], c1)[0]
    merged = m.module.block_forward(x[:, :2 * bs], c2, commit=bs)[0][:, bs:]
    torch.testing.assert_close(merged, sep, rtol=1e-4, atol=1e-4)
    for k1, k2 in zip(c1.kv, c2.kv):
        # fp32 sums of a width-8 and a width-16 forward differ by up to 3.5e-5 (K/V up to 15; 200 draws)
        torch.testing.assert_close(k1[:, :bs], k2[:, :bs], rtol=1e-4, atol=1e-4)
    assert int(c1.length[0]) == int(c2.length[0]) == bs


@pytest.mark.parametrize("name", TINY)
def test_left_padded_batch_equals_single_rows(models, name):
    m = models[name]
    bs = m.block_size
    prompts = [torch.randint(0, 400, (n,)).tolist() for n in (3, 9, 6)]
    W = max(len(p) for p in prompts)
    # whole-sequence forward through the adapter (positions from the attention mask)
    ids = torch.full((3, W), m.pad_id)
    attn = torch.zeros(3, W, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, W - len(p):] = torch.tensor(p)
        attn[i, W - len(p):] = 1
    batch = m.forward(ids, attn).logits
    s = int(m.logit_shift)   # shifted logits: a row's first position reads the one before it (padding)
    for i, p in enumerate(prompts):
        single = m.forward(torch.tensor([p])).logits
        torch.testing.assert_close(batch[i, W - len(p) + s:], single[0, s:], rtol=1e-4, atol=1e-4)
    # cached: each row prefills its whole blocks, then feeds its tail + masks as its current block
    cache = m.module.new_block_cache(3, 32)
    full = [len(p) // bs * bs for p in prompts]
    Wp = max(full)
    pre_ids, pre_valid = torch.full((3, Wp), m.pad_id), torch.zeros(3, Wp, dtype=torch.bool)
    for i, p in enumerate(prompts):
        if full[i]:
            pre_ids[i, Wp - full[i]:] = torch.tensor(p[:full[i]])
            pre_valid[i, Wp - full[i]:] = True
    m.module.block_forward(pre_ids, cache, valid=pre_valid, commit=torch.tensor(full))
    blocks = torch.stack([torch.tensor(p[full[i]:] + [m.mask_id] * (bs - len(p) + full[i])) for i, p in enumerate(prompts)])
    got = m.module.block_forward(blocks, cache)[0]
    for i, p in enumerate(prompts):
        c1 = m.module.new_block_cache(1, 32)
        if full[i]:
            m.module.block_forward(torch.tensor([p[:full[i]]]), c1, commit=full[i])
        one = m.module.block_forward(blocks[i:i + 1], c1)[0]
        torch.testing.assert_close(got[i:i + 1], one, rtol=1e-4, atol=1e-4)


def _decode_without_cache(m, prompt, gen_length, steps, threshold):
    """The threshold decoder with every step a whole-sequence forward (nothing cached)."""
    bs, P = m.block_size, len(prompt)
    n_blocks = (P + gen_length + bs - 1) // bs
    x = torch.full((1, n_blocks * bs), m.mask_id)
    x[0, :P] = torch.tensor(prompt)
    q = quota(bs, steps)
    for b in range(P // bs, n_blocks):
        lo, hi = b * bs, (b + 1) * bs
        for s in range(steps):
            masked = x[:, lo:hi] == m.mask_id
            if not masked.any():
                break
            p = m.module(x[:, :hi])[0][:, lo:hi].float().softmax(-1)
            conf, x0 = p.max(-1)
            conf = torch.where(masked, conf, -torch.inf)[0]
            pick = conf > threshold
            if int(pick.sum()) < q[s]:
                pick = torch.zeros_like(pick)
                pick[conf.topk(q[s]).indices] = True
            x[0, lo:hi][pick] = x0[0][pick]
    return x


@pytest.mark.parametrize("name", TINY)
def test_cached_threshold_decode_equals_uncached(models, name):
    m = models[name]
    with torch.no_grad():
        m.module.lm_head.weight[m.mask_id].zero_() if hasattr(m.module, "lm_head") else None
    for P in (5, 8, 11):
        prompt = torch.randint(0, 400, (P,), generator=torch.Generator().manual_seed(P)).tolist()
        bs = m.block_size
        res = threshold_decode(m.module, prompt, m.mask_id, 16, steps=bs, threshold=0.6)
        assert torch.equal(res.tokens, _decode_without_cache(m, prompt, 16, bs, 0.6))
        assert not (res.tokens == m.mask_id).any()
        n_blocks = (P + 16 + bs - 1) // bs
        assert res.nfe < 1 + (bs + 1) * (n_blocks - P // bs)         # the threshold committed > 1 token some rounds


def test_cache_api_errors(models):
    m = models["sdar-tiny"].module
    cache = m.new_block_cache(1, 8)
    with pytest.raises(ValueError, match="commit .* whole blocks of 4"):
        m.block_forward(torch.randint(0, 400, (1, 6)), cache, commit=6)
    assert int(cache.length[0]) == 0                               # refused before any work
    with pytest.raises(ValueError, match="the cache holds 8"):
        m.block_forward(torch.randint(0, 400, (1, 12)), cache)
    with pytest.raises(ValueError, match="2 rows on a cache of 1"):
        m.block_forward(torch.randint(0, 400, (2, 4)), cache)
    with pytest.raises(ValueError, match="block_forward"):
        from models.layers import CacheCall
        m(torch.randint(0, 400, (1, 4)), kv=CacheCall(cache))


# Remote code written by the test (the authors' files are never committed): our SDAR behind
# transformers' PreTrainedModel with the checkpoint's names, plus an optional logit offset, so the
# hf backend's block-causal plumbing (mask, positions, verdict, exit code) runs end to end.
STAND_IN = '''
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

OFFSET = {offset}


class StandInConfig(PretrainedConfig):
    model_type = "sdar"


class StandInModel(PreTrainedModel):
    config_class = StandInConfig

    def __init__(self, config):
        super().__init__(config)
        from models.sdar import SDAR, SDARConfig
        net = SDAR(SDARConfig.from_hf(config.to_dict()))
        self.model = net.model
        self.lm_head = net.lm_head
        object.__setattr__(self, "net", net)
        self.post_init()

    def _init_weights(self, module):
        pass

    def forward(self, input_ids, attention_mask=None, position_ids=None, output_hidden_states=False, **kw):
        assert attention_mask.dim() == 4 and attention_mask.dtype.is_floating_point is False
        logits, h = self.net(input_ids, positions=position_ids)
        return CausalLMOutput(logits=logits + OFFSET, hidden_states=(h,))
'''


def test_verify_model_sdar_through_remote_code_and_unknown_architectures(tmp_path, capsys, monkeypatch):
    pytest.importorskip("transformers")
    import json
    import run_bench
    from tests.test_real_checkpoint import arith_texts, write_tokenizer
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    cfg = SDARConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16, mask_token_id=500, eos_token_id=501)
    net = peaked(SDAR(cfg).eval())
    for offset, rc in ((0.0, 0), (0.5, 1)):
        d = tmp_path / f"sdar{offset}"
        hf = {**cfg.to_hf(), "auto_map": {"AutoConfig": "modeling_stand_in.StandInConfig",
                                          "AutoModelForCausalLM": "modeling_stand_in.StandInModel"}}
        save_checkpoint(net, hf, d)
        write_tokenizer(d, arith_texts(8))
        (d / "modeling_stand_in.py").write_text(STAND_IN.format(offset=offset))
        assert run_bench.main(["verify-model", str(d), "--device", "cpu"]) == rc
        out = capsys.readouterr().out
        assert ("MATCH: worst relative error 0.00e+00" in out) if rc == 0 else ("MISMATCH" in out and "5.000e-01" in out)
    m = load_model("sdar", path=str(tmp_path / "sdar0.0"))
    assert (m.regime, m.block_size, m.eos_ids) == ("block_causal", 4, (501,))
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llada"}))
    with pytest.raises(ValueError, match="holds a llada checkpoint .* load it with --model llada"):
        load_model("sdar", path=str(other))
    bad = tmp_path / "mamba"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "mamba", "architectures": ["MambaForCausalLM"]}))
    assert run_bench.main(["verify-model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "model_type 'mamba'" in err and "supported model_types: llada (llada), dream (dream), sdar (sdar)" in err
    with pytest.raises(ValueError, match="not a supported architecture"):
        load_model("sdar", path=str(bad))


def test_fast_dllm_v2_names_shift_and_round_trip(tmp_path):
    from models.fast_dllm_v2 import CONFIGS, FastDLLMv2, FastDLLMv2Config
    cfg = CONFIGS["fast-dllm-v2-tiny"]
    a = peaked(FastDLLMv2(cfg).eval())
    names = set(a.state_dict())
    for n in ["model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.k_proj.bias",
              "model.layers.0.self_attn.v_proj.bias", "model.layers.0.self_attn.o_proj.weight", "lm_head.weight"]:
        assert n in names
    assert "model.layers.0.self_attn.o_proj.bias" not in names and not any("q_norm" in n for n in names)
    ids = torch.randint(0, 500, (1, 12))
    ref = a(ids)[0]
    save_checkpoint(a, cfg.to_hf(), tmp_path)
    hf = read_config(tmp_path)
    assert (hf["model_type"], hf["bd_size"]) == ("Fast_dLLM_Qwen", 8)
    with torch.device("meta"):
        b = FastDLLMv2(FastDLLMv2Config.from_hf(hf))
    load_weights(b, tmp_path, "cpu", torch.float32)
    assert torch.equal(b.eval()(ids)[0], ref)
    m = load_model("fast-dllm-v2-tiny", no_weights=True)
    assert (m.logit_shift, m.block_size, m.regime, m.mask_id) == (True, 8, "block_causal", 500)
    big = CONFIGS["fast-dllm-v2-7b"]
    assert (big.bd_size, big.mask_token_id, big.eos_token_id, big.head_dim) == (32, 151665, 151645, 128)


@pytest.fixture(scope="module")
def fdv2():
    from models.fast_dllm_v2 import CONFIGS, FastDLLMv2
    m = peaked(FastDLLMv2(CONFIGS["fast-dllm-v2-tiny"]).eval(), seed=3)
    with torch.no_grad():
        m.lm_head.weight[500].zero_()            # the mask id is never the argmax, as in a trained model
    return m


NO_STOP = 10_000                                 # outside the vocabulary: no row stops


def _prompts(*lengths):
    return [torch.randint(0, 400, (n,), generator=torch.Generator().manual_seed(n)).tolist() for n in lengths]


def test_fdv2_decode_takes_each_block_first_token_from_the_previous_block(fdv2):
    """Each block after a finished block (and after a prompt ending on a block boundary) starts with the
    argmax of the previous position's logit, as an AR model's next token; with threshold 1 a forward
    commits exactly one token, so NFE = prefill + per block (masks + 1 appending forward)."""
    bs, sb = fdv2.block_size, 4
    for P in (5, 8, 11, 16):
        (prompt,) = _prompts(P)
        res = fdv2_decode(fdv2, [prompt], 500, NO_STOP, 24, threshold=1.0, small_block=sb)
        row = res.rows[0]
        assert 500 not in row and len(row) == (P // bs + 3) * bs + 1         # 3 blocks, then the next block's first token
        logits = fdv2(torch.tensor([row]))[0][0]                            # unshifted: logit i predicts token i + 1
        first = [b * bs for b in range(P // bs + 1, P // bs + 4)] + ([P] if P % bs == 0 else [])
        for i in first:
            assert row[i] == int(logits[i - 1].argmax()), (P, i)
        masks = [bs - P % bs] + [bs - 1] * 2 if P % bs else [bs - 1] * 3
        assert res.nfe == (P >= bs) + sum(m + 1 for m in masks)


def test_fdv2_decode_commits_by_threshold_within_sub_blocks_and_stops(fdv2):
    (prompt,) = _prompts(6)
    one = fdv2_decode(fdv2, [prompt], 500, NO_STOP, 32, threshold=1.0, small_block=4)
    fast = fdv2_decode(fdv2, [prompt], 500, NO_STOP, 32, threshold=0.3, small_block=4)
    assert fast.nfe < one.nfe and 500 not in fast.rows[0]
    stop = fast.rows[0][12]                                                  # a token it generates: stop there
    cut = fdv2_decode(fdv2, [prompt], 500, stop, 32, threshold=0.3, small_block=4)
    first = fast.rows[0].index(stop, 6)
    assert cut.rows[0] == fast.rows[0][:first + 1] and cut.nfe < fast.nfe


def test_fdv2_decode_left_padded_batch_equals_single_rows(fdv2):
    prompts = _prompts(3, 8, 13, 16)
    stop = fdv2_decode(fdv2, [prompts[0]], 500, NO_STOP, 24, threshold=0.5, small_block=4).rows[0][9]
    batch = fdv2_decode(fdv2, prompts, 500, stop, 24, threshold=0.5, small_block=4)
    singles = [fdv2_decode(fdv2, [p], 500, stop, 24, threshold=0.5, small_block=4) for p in prompts]
    assert batch.rows == [s.rows[0] for s in singles]
    assert any(stop in r[len(p):] for r, p in zip(batch.rows, prompts))     # a row stopped early, the others went on
    assert batch.nfe <= sum(s.nfe for s in singles)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", TINY)
def test_the_additive_key_mask_made_once_per_forward_equals_the_bool_mask(name, dtype, monkeypatch):
    """A cached block forward hands SDPA the key mask as an additive mask made at the first layer
    (BlockStep.additive_mask, MASKED at hidden keys) instead of a bool mask SDPA converts in every
    layer: the logits are bitwise those of the bool mask, with left padding, an append and a read
    of every cache slot; one mask tensor serves every layer."""
    import models.block_cache as bc
    m = load_model(name, no_weights=True, seed=1, dtype=dtype)
    net, bs = m.module, m.block_size
    g = torch.Generator().manual_seed(0)
    ids, nxt = torch.randint(5, 300, (2, 3 * bs), generator=g), torch.randint(5, 300, (2, bs), generator=g)
    valid = torch.ones_like(ids, dtype=torch.bool)
    valid[0, :3] = False

    def run():
        cache = net.new_block_cache(2, 64)
        first, _ = net.block_forward(ids, cache, valid=valid, commit=2 * bs)
        step, _ = net.block_forward(nxt, cache, key_len=cache.capacity, checked=False)
        return first, step
    masks = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda q, k, v, attn_mask=None, **kw: masks.append(attn_mask) or sdpa(q, k, v, attn_mask=attn_mask, **kw))
    additive = run()
    assert all(mk.dtype == dtype for mk in masks)
    assert len({id(mk) for mk in masks[:len(masks) // 2]}) == 1          # the first forward: one mask for all layers
    monkeypatch.setattr(bc.BlockStep, "additive_mask", lambda self, dt: self.key_mask)
    as_bool = run()
    assert all(torch.equal(a, b) for a, b in zip(additive, as_bool))
