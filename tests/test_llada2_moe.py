"""LLaDA2 MoE: checkpoint names and round trip, and the grouped expert product and router against
a dense reference (every expert on every token, a Python loop) on small shapes."""
import pytest
import torch
import torch.nn.functional as F

from models.checkpoint import load_weights, read_config, save_checkpoint
from models.llada2 import CONFIGS, LLaDA2, LLaDA2Config
from models.moe import grouped_experts, offsets_grouped_experts, route, router_logits


def dense_moe(x, idx, w, gate_up, down):
    """Every expert applied to every token, then picked by idx and weighted: the plain definition."""
    F_ = down.shape[2]
    outs = []
    for e in range(gate_up.shape[0]):
        g, u = x @ gate_up[e, :F_].T, x @ gate_up[e, F_:].T
        outs.append((torch.nn.functional.silu(g) * u) @ down[e].T)
    allout = torch.stack(outs, 1)                                    # [T, E, d]
    picked = allout.gather(1, idx[..., None].expand(-1, -1, x.shape[1]))
    return (picked * w[..., None]).sum(1)


def dense_route(x, weight, bias, top_k, n_group, topk_group, scaling):
    """The router written out token by token: best groups by the sum of their two best biased
    scores, best experts inside them, unbiased weights normalised and scaled."""
    scores = torch.sigmoid(x.double() @ weight.double().T)
    E = scores.shape[1]
    per = E // n_group
    idx, w = [], []
    for s in scores:
        b = s + bias.double()
        gs = torch.stack([b[g * per:(g + 1) * per].sort(descending=True).values[:2].sum() for g in range(n_group)])
        groups = gs.argsort(descending=True)[:topk_group]
        allowed = torch.cat([torch.arange(g * per, (g + 1) * per) for g in groups.tolist()])
        chosen = allowed[b[allowed].argsort(descending=True)[:top_k]]
        ws = s[chosen] / s[chosen].sum()
        idx.append(chosen)
        w.append(ws * scaling)
    return torch.stack(idx), torch.stack(w)


@pytest.mark.parametrize("T,E,k,groups,topk_group", [(1, 8, 2, 4, 2), (7, 16, 4, 4, 2), (33, 32, 8, 8, 4)])
def test_router_and_grouped_experts_equal_dense_reference(T, E, k, groups, topk_group):
    g = torch.Generator().manual_seed(T)
    d, F_ = 24, 16
    x = torch.randn(T, d, generator=g)
    weight, bias = torch.randn(E, d, generator=g), torch.randn(E, generator=g) * 0.3
    idx, w = route(F.linear(x, weight), bias, k, groups, topk_group, 2.5)
    ridx, rw = dense_route(x, weight, bias, k, groups, topk_group, 2.5)
    assert torch.equal(idx.sort(1).values, ridx.sort(1).values)
    torch.testing.assert_close(w.gather(1, idx.argsort(1)).double(), rw.gather(1, ridx.argsort(1)), rtol=1e-5, atol=1e-6)
    assert torch.allclose(w.sum(1), torch.full((T,), 2.5))
    gate_up, down = torch.randn(E, 2 * F_, d, generator=g) * 0.3, torch.randn(E, d, F_, generator=g) * 0.3
    torch.testing.assert_close(grouped_experts(x, idx, w, gate_up, down), dense_moe(x, idx, w, gate_up, down),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not hasattr(torch, "_grouped_mm"), reason="torch without _grouped_mm")
@pytest.mark.parametrize("T,E,k", [(1, 8, 2), (4, 32, 8), (32, 16, 4)])
def test_graph_safe_expert_product_equals_dense_reference(T, E, k):
    """The GPU path (torch._grouped_mm over expert offsets, no host sync) on CPU bf16: experts
    with no token, several tokens per expert."""
    g = torch.Generator().manual_seed(E + T)
    d, F_ = 32, 16
    x = torch.randn(T, d, generator=g).bfloat16()
    idx = torch.stack([torch.randperm(E, generator=g)[:k] for _ in range(T)])
    w = torch.rand(T, k, generator=g)
    gate_up, down = (torch.randn(E, 2 * F_, d, generator=g) * 0.3).bfloat16(), (torch.randn(E, d, F_, generator=g) * 0.3).bfloat16()
    ref = dense_moe(x.float(), idx, w, gate_up.float(), down.float())
    torch.testing.assert_close(offsets_grouped_experts(x, idx, w, gate_up, down).float(), ref, rtol=3e-2, atol=3e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the bf16 product with fp32 output runs on CUDA")
def test_router_logits_of_bf16_inputs_are_the_fp32_products():
    """On the GPU a bf16 x and router weight take one bf16 product with fp32 accumulation and
    output: the reference's fp32 logits up to the order of the fp32 sums, and the same experts."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 2048, generator=g).bfloat16().cuda()
    weight = (torch.randn(256, 2048, generator=g) * 0.02).bfloat16().cuda()
    logits = router_logits(x, weight, weight.float)
    assert logits.dtype == torch.float32
    ref = F.linear(x.double(), weight.double())
    assert (logits.double() - ref).abs().max() <= 1e-5 * ref.abs().max()
    bias = torch.zeros(256, device="cuda")
    idx, _ = route(logits, bias, 8, 8, 4, 2.5)
    ridx, _ = route(F.linear(x.float(), weight.float()), bias, 8, 8, 4, 2.5)
    assert torch.equal(idx, ridx)


def test_router_logits_on_the_cpu_are_the_reference_fp32_product():
    x, weight = torch.randn(5, 16).bfloat16(), torch.randn(8, 16).bfloat16()
    assert torch.equal(router_logits(x, weight, weight.float), F.linear(x.float(), weight.float()))


def test_expert_bias_changes_the_choice_not_the_weights():
    x = torch.randn(5, 8)
    weight = torch.randn(4, 8)
    bias = torch.tensor([0.0, 0.0, 0.0, 10.0])            # expert 3 always chosen, one group
    idx, w = route(F.linear(x, weight), bias, 1, 1, 1, 1.0)
    assert (idx[:, 0] == 3).all()
    torch.testing.assert_close(w[:, 0], torch.sigmoid(x @ weight[3]))   # top_k 1: the raw sigmoid score


def test_llada2_checkpoint_names_and_round_trip(tmp_path):
    cfg = CONFIGS["llada2-tiny"]
    torch.manual_seed(0)
    a = LLaDA2(cfg).eval()
    with torch.no_grad():
        a.model.layers[1].mlp.gate.expert_bias.normal_()
    names = set(a.state_dict())
    for n in ["model.word_embeddings.weight", "model.norm.weight", "lm_head.weight",
              "model.layers.0.attention.query_key_value.weight", "model.layers.0.attention.dense.weight",
              "model.layers.0.attention.query_layernorm.weight", "model.layers.0.attention.key_layernorm.weight",
              "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.down_proj.weight",
              "model.layers.1.mlp.gate.weight", "model.layers.1.mlp.gate.expert_bias",
              "model.layers.1.mlp.experts.7.gate_proj.weight", "model.layers.1.mlp.experts.7.up_proj.weight",
              "model.layers.1.mlp.experts.7.down_proj.weight", "model.layers.2.mlp.shared_experts.up_proj.weight",
              "model.layers.1.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight"]:
        assert n in names
    assert "model.layers.0.mlp.gate.weight" not in names                # first_k_dense_replace = 1
    ids = torch.randint(0, 500, (2, 13))
    ref = a(ids)[0]                                                      # stacks the experts; names must survive
    assert ref.dtype == torch.float32
    save_checkpoint(a, cfg.to_hf(), tmp_path, shard_size=40_000)
    hf = read_config(tmp_path)
    assert (hf["model_type"], hf["num_experts"], hf["partial_rotary_factor"]) == ("llada2_moe", 8, 0.5)
    with torch.device("meta"):
        b = LLaDA2(LLaDA2Config.from_hf(hf))
    load_weights(b, tmp_path, "cpu", torch.float32)
    assert torch.equal(b.eval()(ids)[0], ref)


def test_published_llada2_mini_fields():
    c = CONFIGS["llada2-mini"]
    assert (c.num_experts, c.num_experts_per_tok, c.n_group, c.topk_group, c.routed_scaling_factor,
            c.moe_intermediate_size, c.num_shared_experts, c.first_k_dense_replace) == (256, 8, 8, 4, 2.5, 512, 1, 1)
    assert (c.block_size, c.mask_token_id, c.eos_token_id, c.rope_dim) == (32, 156895, 156892, 64)
    with pytest.raises(ValueError, match="score_function"):
        LLaDA2Config.from_hf({**c.to_hf(), "score_function": "softmax"})


@pytest.mark.parametrize("E", [8, 256, 300, 40000])
def test_expert_order_is_the_stable_argsort_of_the_expert_ids(E):
    from models.moe import expert_order
    g = torch.Generator().manual_seed(E)
    flat = torch.randint(0, E, (4096,), generator=g)
    flat[:100] = E - 1                      # many ties: stability matters
    assert torch.equal(expert_order(flat, E), flat.argsort(stable=True))


def test_the_router_weight_in_fp32_follows_the_weight_it_came_from():
    from models.moe import SparseMoE
    moe = SparseMoE(CONFIGS["llada2-tiny"]).to(torch.bfloat16)
    first = moe.router_weight()
    assert first.dtype == torch.float32 and torch.equal(first, moe.gate.weight.float())
    assert moe.router_weight() is first                     # converted once
    with torch.no_grad():
        moe.gate.weight.add_(1.0)                          # a loaded checkpoint writes the weight in place
    assert torch.equal(moe.router_weight(), moe.gate.weight.float())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_qk_norm_and_partial_rope_equal_the_reference_order_of_operations(dtype):
    """LLaDA2's attention input: per-head RMSNorm of q and k (fp32, cast, scale), then rotate-half
    RoPE on the first head_dim * partial_rotary_factor dims in the activation dtype, v untouched,
    written out here op by op as modeling_llada2_moe.py orders them."""
    from models.layers import fused_qk_norm_rope, rope_cos_sin
    H, Hk, hd, r, B, W = 4, 2, 16, 8, 2, 5
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(B, W, (H + 2 * Hk) * hd, generator=g).to(dtype)
    wq, wk = torch.randn(hd, generator=g).to(dtype), torch.randn(hd, generator=g).to(dtype)
    cos, sin = rope_cos_sin(torch.arange(W).expand(B, W) + 7, r, 600000.0, dtype)

    def norm(x, w):
        h = x.float()
        return w * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)).to(dtype)

    def rope(x):
        rot, rest = x[..., :r], x[..., r:]
        x1, x2 = rot.chunk(2, dim=-1)
        return torch.cat([rot * cos + torch.cat([-x2, x1], dim=-1) * sin, rest], dim=-1)
    t = qkv.view(B, W, H + 2 * Hk, hd)
    want = torch.cat([rope(norm(t[:, :, :H], wq)), rope(norm(t[:, :, H:H + Hk], wk)), t[:, :, H + Hk:]], dim=2)
    got = fused_qk_norm_rope(qkv, H, Hk, wq, wk, 1e-6, False, cos, sin)
    assert torch.equal(got, want)
