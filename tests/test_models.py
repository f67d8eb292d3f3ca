"""Native LLaDA / Dream: checkpoint format, KV cache equalities, Dream's shift, batching."""
import json

import pytest
import torch

from models import load_model
from models.checkpoint import load_weights, read_config, save_checkpoint
from models.dream import Dream, DreamConfig
from models.layers import CacheCall
from models.llada import LLaDA, LLaDAConfig
from decoding.base import GenConfig
from decoding.cache import CacheStepper
from decoding.contract import Reads
from decoding.loop import decode, left_pad
from decoding.registry import build_method, parse_methods

FAMILIES = ["llada-tiny", "dream-tiny"]


@pytest.fixture(scope="module")
def models():
    out = {n: load_model(n, no_weights=True, seed=1) for n in FAMILIES}
    with torch.no_grad():  # larger weights than the 0.02 default: peaked logits, distinct argmaxes
        for m in out.values():
            for name, p in m.module.named_parameters():
                if p.dim() == 2:
                    p.mul_(25.0)
    out["tiny"] = load_model("tiny")
    return out


def test_llada_checkpoint_names_and_config_fields_round_trip(tmp_path):
    cfg = LLaDAConfig(d_model=32, n_heads=4, n_kv_heads=4, n_layers=2, mlp_hidden_size=48, vocab_size=300,
                      embedding_size=320, mask_token_id=290, eos_token_id=291, pad_token_id=291)
    torch.manual_seed(0)
    a = LLaDA(cfg).eval()
    names = set(a.state_dict())
    for n in ["model.transformer.wte.weight", "model.transformer.ln_f.weight", "model.transformer.ff_out.weight",
              "model.transformer.blocks.1.attn_norm.weight", "model.transformer.blocks.1.q_proj.weight",
              "model.transformer.blocks.1.k_proj.weight", "model.transformer.blocks.1.v_proj.weight",
              "model.transformer.blocks.1.attn_out.weight", "model.transformer.blocks.1.ff_norm.weight",
              "model.transformer.blocks.1.ff_proj.weight", "model.transformer.blocks.1.up_proj.weight",
              "model.transformer.blocks.1.ff_out.weight"]:
        assert n in names
    ids = torch.randint(0, 300, (2, 9))
    ref = a(ids)[0]   # the first forward fuses q/k/v; state_dict names must survive that
    save_checkpoint(a, cfg.to_hf(), tmp_path, shard_size=20_000)   # sharded, with an index
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1
    from safetensors import safe_open
    with safe_open(str(next(tmp_path.glob("model-*.safetensors"))), "pt") as f:
        assert f.metadata()["format"] == "pt"   # transformers refuses shards without it
    hf = read_config(tmp_path)
    assert hf["d_model"] == 32 and hf["mlp_hidden_size"] == 48 and hf["rope_theta"] == 500000.0
    cfg2 = LLaDAConfig.from_hf(hf)
    with torch.device("meta"):
        b = LLaDA(cfg2)
    load_weights(b, tmp_path, "cpu", torch.float32)
    out = b.eval()(ids)[0]
    assert out.shape == (2, 9, 300)                       # embedding_size rows beyond vocab are cut
    assert torch.equal(out, ref)


def test_dream_checkpoint_names_and_load(tmp_path):
    cfg = DreamConfig(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, mask_token_id=290, pad_token_id=291,
                      eos_token_id=291)
    torch.manual_seed(0)
    a = Dream(cfg).eval()
    names = set(a.state_dict())
    for n in ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
              "model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.k_proj.bias",
              "model.layers.0.self_attn.v_proj.bias", "model.layers.0.self_attn.o_proj.weight",
              "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight",
              "model.layers.0.mlp.down_proj.weight", "model.layers.0.input_layernorm.weight",
              "model.layers.0.post_attention_layernorm.weight"]:
        assert n in names
    assert "model.layers.0.self_attn.o_proj.bias" not in names
    save_checkpoint(a, cfg.to_hf(), tmp_path)
    with torch.device("meta"):
        b = Dream(DreamConfig.from_hf(read_config(tmp_path)))
    load_weights(b, tmp_path, "cpu", torch.float32)
    ids = torch.randint(0, 300, (1, 7))
    assert torch.equal(b.eval()(ids)[0], a(ids)[0])


def test_checkpoint_mismatch_names_the_problem(tmp_path):
    cfg = LLaDAConfig(d_model=32, n_heads=4, n_layers=2, mlp_hidden_size=48, vocab_size=300, embedding_size=300)
    save_checkpoint(LLaDA(cfg), cfg.to_hf(), tmp_path)
    with torch.device("meta"):
        other = LLaDA(LLaDAConfig(d_model=32, n_heads=4, n_layers=3, mlp_hidden_size=48, vocab_size=300,
                                  embedding_size=300))
    with pytest.raises(ValueError, match="missing .*blocks.2"):
        load_weights(other, tmp_path, "cpu", torch.float32)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model("llada", path=str(tmp_path / "nowhere" / "x" / "y"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model("llada", path=str(tmp_path / "empty"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**cfg.to_hf(), "block_type": "sequential"}))
    with pytest.raises(ValueError, match="block_type"):
        LLaDAConfig.from_hf(read_config(bad))


def test_dream_logits_are_shifted(models):
    m = models["dream-tiny"]
    ids = torch.randint(0, 400, (2, 10))
    raw = m.module(ids)[0]
    out = m.forward(ids).logits
    assert torch.equal(out[:, 1:], raw[:, :-1]) and torch.equal(out[:, :1], raw[:, :1])
    assert not models["llada-tiny"].logit_shift


@pytest.mark.parametrize("name", FAMILIES + ["tiny"])
@pytest.mark.parametrize("head_cut", [True, False])
def test_logits_from_equals_the_full_output_sliced(models, name, head_cut, monkeypatch):
    """forward(logits_from=P) is forward()[:, P:] for logits and hidden states, a shifted model
    (Dream) included, with the module's own cut of its head or the adapter's slice of the whole."""
    m = models[name]
    if not head_cut:
        monkeypatch.setattr(type(m.module), "takes_logits_from", False)
    ids = torch.randint(0, min(400, m.mask_id), (2, 12))
    attn = torch.ones(2, 12, dtype=torch.long)
    attn[1, :3] = 0
    whole = m.forward(ids, attn, output_hidden=True)
    for P in (1, 5):
        cut = m.forward(ids, attn, output_hidden=True, logits_from=P)
        assert cut.logits.shape == (2, 12 - P, whole.logits.shape[-1]) and cut.hidden.shape[1] == 12 - P
        assert torch.allclose(cut.logits, whole.logits[:, P:], atol=1e-5, rtol=1e-5), (name, P)
        assert torch.allclose(cut.hidden, whole.hidden[:, P:], atol=1e-5, rtol=1e-5), (name, P)


def _setup(m, prompts, G=16, BL=8):
    ids = [m.tokenizer.encode(p) for p in prompts]
    p_ids, p_attn = left_pad(ids, m.pad_id)
    x = torch.cat([p_ids, torch.full((len(ids), G), m.mask_id)], 1)
    x[:, p_ids.shape[1] + 3] = 7          # a committed token inside the first block
    attn = torch.cat([p_attn, torch.ones(len(ids), G, dtype=torch.long)], 1)
    return x, attn, p_ids.shape[1], bool((p_attn == 0).any())


class _M:  # the parts of a method the stepper reads
    temperature = 0.0


READ_ALL = Reads(logits=True, hidden=True)


@pytest.mark.parametrize("name", FAMILIES + ["tiny"])
@pytest.mark.parametrize("mode", ["dual", "prefix"])
def test_cached_window_equals_full_forward_when_cache_is_fresh(models, name, mode):
    """A window step right after a refresh of the same tokens is the no-cache forward: dual cache
    refreshed at every step == no cache; prefix cache == no cache for the prefix's logits."""
    m = models[name]
    prompts = ["Question: Tom has 3 apples", "Question: 2"]
    x, attn, P, padded = _setup(m, prompts)
    G, BL = x.shape[1] - P, 8
    full = m.forward(x, attn, output_hidden=True)
    ref_logits = full.logits[:, P:].float()
    st = CacheStepper(m, mode, len(prompts), x.shape[1], P, G, BL, padded)
    rows = torch.arange(len(prompts))
    r = st._refresh(rows, x, attn, torch.zeros(2, dtype=torch.long), _M, READ_ALL, None)
    x0r, lr = r.x0, r.logits
    torch.testing.assert_close(lr, ref_logits, rtol=1e-5, atol=1e-5)
    assert r.fresh.all()
    for blk in (0, 1):
        block = torch.full((2,), blk)
        w = st._windows(rows, x, attn, block, _M, READ_ALL, None)
        x0, logits, hidden = w.x0, w.dense_logits(), w.hidden
        lo = blk * BL
        hi = lo + BL if mode == "dual" else G
        assert w.fresh[:, lo:hi].all() and not w.fresh[:, :lo].any() and not w.fresh[:, hi:].any()
        torch.testing.assert_close(logits[:, lo:hi], ref_logits[:, lo:hi], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(hidden[:, lo:hi], full.hidden[:, P + lo:P + hi], rtol=1e-4, atol=1e-4)
        assert torch.equal(x0[:, lo:hi], ref_logits[:, lo:hi].argmax(-1))
        assert (logits[:, hi:] == 0).all() and torch.equal(x0[:, hi:], x0r[:, hi:])  # outside: last full forward


def test_cache_call_writes_only_the_window(models):
    m = models["llada-tiny"]
    x = torch.randint(0, 400, (1, 12))
    cache = m.new_cache(1, 12)
    m.forward(x, None, kv=CacheCall(cache))
    before = [kv.clone() for kv in cache.kv]
    x2 = x.clone()
    x2[0, 4:8] = 9
    pos = torch.arange(4, 8)[None]
    m.forward(x2[:, 4:8], None, positions=pos, kv=CacheCall(cache, pos=pos))
    for kv0, kv1 in zip(before, cache.kv):   # [B, L, 2 H_kv, hd]: K and V of each position
        assert torch.equal(kv0[:, :4], kv1[:, :4]) and torch.equal(kv0[:, 8:], kv1[:, 8:])
        h = kv0.shape[2] // 2
        assert not torch.equal(kv0[:, 4:8, :h], kv1[:, 4:8, :h]) and not torch.equal(kv0[:, 4:8, h:], kv1[:, 4:8, h:])


GEN = GenConfig(gen_length=16, block_length=8, early_stop=False)


@pytest.mark.parametrize("name", FAMILIES + ["tiny"])
@pytest.mark.parametrize("spec", ["threshold:tau=0.5", "fixed:steps=8,cache=prefix", "threshold:tau=0.5,cache=dual"])
def test_left_padded_batch_equals_single_runs(models, name, spec):
    m = models[name]
    prompts = ["Question: Tom has 3 apples", "Question: 2", "Question: Ann has 12 apples and 4"]
    ids = [m.tokenizer.encode(p) for p in prompts]
    assert len(set(map(len, ids))) == 3
    meth = build_method(parse_methods(spec)[0], GEN)
    batch = decode(m, meth, ids, GEN)
    for i, p in enumerate(ids):
        single = decode(m, meth, [p], GEN)
        assert torch.equal(single.tokens[0], batch.tokens[i]), (name, spec, i)
        assert single.nfe[0] == batch.nfe[i]


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_cache_nfe_counts_refresh_forwards(models, mode):
    m = models["llada-tiny"]
    ids = [m.tokenizer.encode("Question: 5")]
    res = decode(m, build_method(parse_methods(f"fixed:steps=8,cache={mode}")[0], GEN), ids, GEN)
    assert res.nfe.tolist() == [8] and res.steps.tolist() == [8]      # 2 refreshes + 6 window forwards
    assert not (res.tokens == m.mask_id).any()


def test_cache_setting_is_validated_and_recorded():
    m = build_method(parse_methods("threshold:cache=dual")[0], GEN)
    assert m.cache == "dual" and m.settings()["cache"] == "dual"
    assert build_method(parse_methods("fixed")[0], GEN).settings()["cache"] == "none"
    with pytest.raises(ValueError, match="cache='big'.*none, prefix, dual"):
        build_method(parse_methods("threshold:cache=big")[0], GEN)
    with pytest.raises(ValueError, match="cfg_scale"):
        build_method(parse_methods("fixed:cfg_scale=1.0,cache=dual")[0], GEN)
    with pytest.raises(ValueError, match="truncated"):
        build_method(parse_methods("slowfast:cache=dual")[0], GEN)
    for spec in ("eb:cache=dual", "localleap:cache=prefix"):   # other methods take the setting as they are
        assert build_method(parse_methods(spec)[0], GEN).cache in ("dual", "prefix")


def test_named_configs_need_no_weights_flag():
    with pytest.raises(ValueError, match="--no-weights"):
        load_model("llada-8b")
    m = load_model("dream-tiny", no_weights=True)
    assert m.mask_id == 500 and m.logit_shift and m.info["random_weights"]
    assert "not applicable" in m.info["accuracy_note"]
    big = LLaDAConfig()
    assert (big.d_model, big.n_layers, big.mlp_hidden_size, big.vocab_size) == (4096, 32, 12288, 126464)
    assert (DreamConfig().hidden_size, DreamConfig().num_key_value_heads) == (3584, 4)


def test_cli_no_weights_reports_accuracy_not_applicable(tmp_path, capsys):
    import run_bench
    rc = run_bench.main(["--model", "dream-tiny", "--no-weights", "--limit", "3", "--batch-size", "3",
                         "--methods", "fixed:steps=8,threshold:cache=dual", "--gen-length", "16", "--block-length", "8",
                         "--out-dir", str(tmp_path), "--run-id", "r", "--no-progress", "--warmup-batches", "0"])
    assert rc == 0
    assert "accuracy: random weights" in capsys.readouterr().out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    for row in summary["rows"]:
        assert row["accuracy"] is None and "not applicable" in row["accuracy_note"]
    reqs = [json.loads(l) for l in (tmp_path / "r" / "requests.jsonl").read_text().splitlines()]
    assert all(r["correct"] is None for r in reqs)
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["methods"]["threshold:cache=dual"]["settings"]["cache"] == "dual"
    assert run_bench.main(["--model", "dream-7b", "--out-dir", str(tmp_path)]) == 2
    assert "--no-weights" in capsys.readouterr().err
    assert run_bench.main(["--methods", "threshold:cache=huge", "--out-dir", str(tmp_path)]) == 2
    assert "cache='huge'" in capsys.readouterr().err


def test_verify_comparison_and_verdict(models):
    from bench.verify import verify
    m = models["llada-tiny"]
    ok, rows, text = verify(m, m, torch.float32)
    assert ok and text.startswith("MATCH") and all(r.max_abs == 0 and r.argmax_agree == 1 for r in rows)
    other = load_model("llada-tiny", no_weights=True, seed=7)
    ok, rows, text = verify(m, other, torch.float32)
    assert not ok and text.startswith("MISMATCH")
