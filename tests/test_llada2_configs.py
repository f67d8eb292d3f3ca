"""LLaDA2 named configs against the published config.json files and sizes; the parameter count from a
config against the built model (small configs only, on the meta device: nothing 100B is ever built)."""
import dataclasses

import pytest
import torch

from bench.bench_speed_block import param_split
from models import MODELS
from models.llada2 import CONFIGS, LLaDA2, LLaDA2Config, parameter_counts

# inclusionAI/dFactory configs/model_configs/llada2_flash/config.json (commit c29d72c), every field as written
FLASH_DFACTORY = {
    "architectures": ["LLaDA2MoeModelLM"], "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_llada2_moe.LLaDA2MoeConfig",
                 "AutoModel": "modeling_llada2_moe.LLaDA2MoeModel",
                 "AutoModelForCausalLM": "modeling_llada2_moe.LLaDA2MoeModelLM"},
    "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 9216, "first_k_dense_replace": 1,
    "hidden_act": "silu", "max_position_embeddings": 16384, "model_type": "llada2_moe_veomni",
    "moe_intermediate_size": 1024, "norm_topk_prob": True, "num_experts_per_tok": 8, "norm_head": False,
    "num_attention_heads": 32, "num_experts": 256, "num_key_value_heads": 4, "rope_theta": 600000,
    "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.52.3",
    "use_bias": False, "use_rmsnorm": True, "rms_norm_eps": 1e-06, "head_dim": 128, "num_shared_experts": 1,
    "use_cache": False, "use_qkv_bias": False, "embedding_dropout": 0.0, "norm_softmax": False,
    "output_dropout": 0.0, "vocab_size": 157184, "rotary_dim": 64, "using_split_qkv_in_self_attention": False,
    "router_dtype": "fp32", "moe_router_enable_expert_bias": True, "routed_scaling_factor": 2.5, "n_group": 8,
    "topk_group": 4, "score_function": "sigmoid", "initializer_range": 0.02, "max_window_layers": 28,
    "output_router_logits": False, "pad_token_id": 156892, "partial_rotary_factor": 0.5,
    "use_sliding_window": False,
}
# the same repository's llada2_mini/config.json differs from it in exactly these fields
MINI_DFACTORY = {**FLASH_DFACTORY, "num_hidden_layers": 20, "hidden_size": 2048, "intermediate_size": 5120,
                 "moe_intermediate_size": 512, "num_attention_heads": 16}
# huggingface.co/inclusionAI/LLaDA2.1-mini/blob/main/config.json, the fields up to "transformers_version"
# (the rest of the file, vocab_size and the use_* flags, was not visible in the copy read)
MINI_21_HF = {
    "architectures": ["LLaDA2MoeModelLM"], "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_llada2_moe.LLaDA2MoeConfig",
                 "AutoModel": "modeling_llada2_moe.LLaDA2MoeModel",
                 "AutoModelForCausalLM": "modeling_llada2_moe.LLaDA2MoeModelLM"},
    "dtype": "bfloat16", "embedding_dropout": 0.0, "first_k_dense_replace": 1, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 5120, "max_position_embeddings": 32768,
    "max_window_layers": 28, "model_type": "llada2_moe", "moe_intermediate_size": 512,
    "moe_router_enable_expert_bias": True, "n_group": 8, "norm_head": False, "norm_softmax": False,
    "norm_topk_prob": True, "num_attention_heads": 16, "num_experts": 256, "num_experts_per_tok": 8,
    "num_hidden_layers": 20, "num_key_value_heads": 4, "num_shared_experts": 1, "output_dropout": 0.0,
    "output_router_logits": False, "pad_token_id": 156892, "partial_rotary_factor": 0.5, "rms_norm_eps": 1e-06,
    "rope_scaling": None, "rope_theta": 600000, "rotary_dim": 64, "routed_scaling_factor": 2.5,
    "router_dtype": "fp32", "score_function": "sigmoid", "sliding_window": 4096, "tie_word_embeddings": False,
    "topk_group": 4, "transformers_version": "4.57.1",
}


@pytest.mark.parametrize("name,published", [("llada2-flash", FLASH_DFACTORY), ("llada2-mini", MINI_DFACTORY),
                                            ("llada2-mini-2.1", MINI_21_HF)])
def test_named_config_is_its_published_config_json(name, published):
    cfg = LLaDA2Config.from_hf(published)
    assert cfg == CONFIGS[name]
    assert cfg.rope_dim == published["rotary_dim"]
    assert name in MODELS                                      # listed by `run_bench.py list`


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_named_config_round_trips_through_hf_fields(name):
    hf = CONFIGS[name].to_hf()
    assert (hf["model_type"], hf["architectures"]) == ("llada2_moe", ["LLaDA2MoeModelLM"])
    assert LLaDA2Config.from_hf(hf) == CONFIGS[name]


TINY = CONFIGS["llada2-tiny"]


@pytest.mark.parametrize("cfg", [TINY, CONFIGS["llada2-small"],
                                 dataclasses.replace(TINY, use_qkv_bias=True, use_bias=True, use_qk_norm=False),
                                 dataclasses.replace(TINY, tie_word_embeddings=True),
                                 dataclasses.replace(TINY, first_k_dense_replace=2, num_shared_experts=2),
                                 dataclasses.replace(TINY, num_experts=0)])
def test_parameter_counts_equal_the_built_model_and_param_split(cfg):
    """The config arithmetic against the model built on the meta device, and against the split the
    speed floor reads (bench_speed_block.param_split: matrices only, the input embedding a gather)."""
    with torch.device("meta"):
        net = LLaDA2(cfg)
    pc = parameter_counts(cfg)
    assert pc.total == sum(p.numel() for p in net.parameters())
    split = param_split(net)
    norms = sum(p.numel() for p in net.parameters() if p.dim() == 1)
    assert (split.per_expert, split.moe_layers) == ((pc.per_expert, pc.moe_layers) if cfg.num_experts else (0, 0))
    tied_head = pc.embedding if cfg.tie_word_embeddings else 0
    assert split.dense + split.top_k * split.per_expert * split.moe_layers == pc.active - pc.embedding - norms + tied_head


def test_published_sizes():
    """Published figures: LLaDA2.0-flash model card (huggingface.co/inclusionAI/LLaDA2.0-flash): 100B total,
    6.1B activated; Ling-flash-2.0 card (its AR base, the same architecture): 4.8B non-embedding activated;
    LLaDA2.0-flash checkpoint: 205,782,433,824 bytes of safetensors, bf16 (snapshot 744c3f8);
    LLaDA2.0-mini: 16B (LLaDA2.X README), 1.44B activated (LLaDA2.0-mini-preview card)."""
    flash, mini = parameter_counts(CONFIGS["llada2-flash"]), parameter_counts(CONFIGS["llada2-mini"])
    assert flash.total == pytest.approx(100e9, rel=0.03)
    assert flash.total == pytest.approx(205_782_433_824 / 2, rel=1e-4)      # the checkpoint: headers, fp32 biases
    assert flash.active == pytest.approx(6.1e9, rel=0.02)
    assert flash.active_non_embedding == pytest.approx(4.8e9, rel=0.02)
    assert mini.total == pytest.approx(16e9, rel=0.03)
    assert mini.active == pytest.approx(1.44e9, rel=0.02)
    assert parameter_counts(CONFIGS["llada2-mini-2.1"]) == mini              # LLaDA2.1 keeps 2.0's architecture
    flash21 = parameter_counts(CONFIGS["llada2-flash-2.1"])                 # derived: 2.0-flash + 2.1's context
    assert flash21 == flash and flash21.total == pytest.approx(205_782_452_128 / 2, rel=1e-4)   # its checkpoint's bytes
    assert CONFIGS["llada2-flash-2.1"].max_position_embeddings == CONFIGS["llada2-mini-2.1"].max_position_embeddings == 32768


def test_a_model_larger_than_the_free_memory_is_refused_before_any_allocation(monkeypatch):
    """llada2-flash's 103B parameters do not fit one device: a one-line error naming the size and
    the fix, from the weights' size on the meta device (nothing allocated)."""
    import models.limits as limits
    from models import load_model
    monkeypatch.setattr(limits, "free_memory_bytes", lambda device: 10**9)
    with pytest.raises(ValueError, match=r"^llada2-flash: its weights take 411\.6 GB in float32, more than the 1\.0 GB "
                                         r"free on cpu \(one device holds the whole model\): use a smaller config"):
        load_model("llada2-flash", no_weights=True)
    tiny = sum(p.numel() for p in load_model("sdar-tiny", no_weights=True).module.parameters()) * 4
    monkeypatch.setattr(limits, "free_memory_bytes", lambda device: tiny * 3 // 4)   # fits in bf16, not fp32
    with pytest.raises(ValueError, match=r"^sdar-tiny: .* use --dtype bfloat16$"):
        load_model("sdar-tiny", no_weights=True)
