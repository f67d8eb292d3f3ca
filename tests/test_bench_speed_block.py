"""bench/bench_speed_block.py on CPU: it imports, and the block step's floor arithmetic (active
parameters, routed experts, cache bytes, FLOPs) is right on tiny configs. No timing here."""
import torch

import bench.bench_speed  # noqa: F401  (the entry point that calls the block-causal timing imports on CPU)
from bench.bench_speed_block import (ParamSplit, block_step_cost, kv_bytes_per_position, param_split,
                                     routed_experts)
from models import load_model


def test_param_split_of_an_moe_model_counts_from_its_config():
    m = load_model("llada2-tiny", no_weights=True)
    c = m.module.cfg
    d, hd, H, Hk = c.hidden_size, c.head_dim, c.num_attention_heads, c.num_key_value_heads
    attention = d * (H + 2 * Hk) * hd + H * hd * d
    dense_mlp = 3 * d * c.intermediate_size
    moe_layers = c.num_hidden_layers - c.first_k_dense_replace
    router_and_shared = c.num_experts * d + 3 * d * c.moe_intermediate_size * c.num_shared_experts
    head = c.vocab_size * d
    s = param_split(m.module)
    assert s.dense == c.num_hidden_layers * attention + c.first_k_dense_replace * dense_mlp \
        + moe_layers * router_and_shared + head
    assert (s.per_expert, s.moe_layers, s.top_k) == (3 * d * c.moe_intermediate_size, moe_layers, c.num_experts_per_tok)
    assert kv_bytes_per_position(m.module) == 2 * Hk * hd * c.num_hidden_layers * 2


def test_param_split_of_a_dense_model_and_tied_embeddings():
    m = load_model("sdar-tiny", no_weights=True)
    c = m.module.cfg
    s = param_split(m.module)
    want = sum(p.numel() for n, p in m.module.named_parameters() if p.dim() == 2 and "embed" not in n)
    assert (s.dense, s.per_expert, s.moe_layers, s.top_k) == (want, 0, 0, 0)
    import dataclasses
    from models.sdar import SDAR
    tied = SDAR(dataclasses.replace(c, tie_word_embeddings=True))
    assert param_split(tied).dense == want   # the head is the embedding matrix: still read once per step


def test_block_step_cost_reads_only_the_routed_experts():
    s = ParamSplit(dense=100, per_expert=10, moe_layers=2, top_k=2)
    flops, nbytes = block_step_cost(s, [3, 5], tokens=4, key_positions=6, kv_per_position=8, q_dim=16,
                                    n_layers=2, batch=1)
    assert nbytes == 2 * (100 + 10 * (3 + 5)) + 1 * 6 * 8          # bf16 active weights + the K/V read
    assert flops == 2 * 4 * (100 + 2 * 10 * 2) + 4 * 4 * 6 * 16 * 2  # top_k experts per token + attention
    f2, b2 = block_step_cost(s, [8, 8], tokens=4, key_positions=6, kv_per_position=8, q_dim=16, n_layers=2, batch=1)
    assert f2 == flops and b2 == nbytes + 2 * 10 * 8                # more experts routed: more bytes, same FLOPs


def test_routed_experts_are_recorded_per_moe_layer():
    m = load_model("llada2-tiny", no_weights=True)
    c, net = m.module.cfg, m.module
    cache = net.new_block_cache(2, 32)
    ids = torch.randint(0, 400, (2, c.block_size))
    with routed_experts() as counts:
        net.block_forward(ids, cache)
    assert len(counts) == c.num_hidden_layers - c.first_k_dense_replace
    assert all(c.num_experts_per_tok <= n <= min(c.num_experts, ids.numel() * c.num_experts_per_tok) for n in counts)
    from models import moe
    assert moe.route.__name__ == "route"                            # the recorder is removed afterwards


def test_block_step_is_the_same_step_each_call_and_the_plain_forward():
    """bench_speed times a block step as `block_step` runs it (every cache slot under the mask,
    the cache's length restored first): each call computes the same logits, those of the plain
    block_forward at that length, and leaves the cache's length where it was."""
    from bench.bench_speed_block import _prefilled, block_step
    m = load_model("sdar-tiny", no_weights=True)
    net, bs = m.module, m.block_size
    g = torch.Generator().manual_seed(0)
    cache = _prefilled(net, 2, 3 * bs, 6 * bs, torch.device("cpu"), g)
    blk = torch.full((2, bs), m.mask_id)
    length = cache.length.clone()
    step, inputs = block_step(net, cache, blk, 0, bs)
    with torch.no_grad():
        first, second = step(*inputs), step(*inputs)
        cache.length.copy_(length)
        plain = net.block_forward(blk, cache, commit=0, logits_last=bs)
    logits = lambda out: out[0] if isinstance(out, tuple) else out
    assert torch.equal(logits(first), logits(second))
    assert torch.allclose(logits(first), logits(plain), atol=1e-5)
    assert torch.equal(cache.length, length)



def test_recorded_block_steps_are_the_decodes_steps_one_token_more_each():
    """bench_speed times an MoE model's forwards on the blocks a decode fed, recorded around the
    reference loop: every block step of the model's width that appends nothing, in order."""
    from bench.bench_speed_block import recording_block_steps
    from decoding.base import GenConfig
    from decoding.block_causal import default_block
    from decoding.loop import decode
    from decoding.registry import build_method, parse_methods
    m = load_model("llada2-tiny", no_weights=True)
    bs = m.block_size
    gen = GenConfig(gen_length=2 * bs, block_length=default_block(m), early_stop=False)
    with torch.no_grad(), recording_block_steps(m.module, bs) as own:
        res = decode(m, build_method(parse_methods("fixed")[0], gen), [list(range(5, 5 + bs))] * 2, gen)
    masks = [int((ids[0] == m.mask_id).sum()) for ids, _ in own]
    # prompts of a whole block; fixed writes one token a step; each block's first step (with the
    # prompt, or folding the finished block in) is wider and not recorded
    assert masks == [bs - 1 - k for k in range(bs - 1)] * 2
    assert len(own) == int(res.steps[0]) - 2
    assert all(ids.shape == (2, bs) and valid.all() for ids, valid in own)
    last = own[-1][0]                                   # the last step: all but one of the decode's tokens written
    written = last != m.mask_id
    assert torch.equal(last[written], res.tokens[:, -bs:][written])
    assert m.module.block_forward.__func__ is type(m.module).block_forward   # the recorder is removed
