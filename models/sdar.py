"""SDAR (JetAstra: SDAR-1.7B/4B/8B-Chat) and TraDo (Gen-Verse: TraDo-4B/8B-Instruct, SDAR weights
after RL) in plain PyTorch: Qwen3 layers (per-head q/k RMSNorm before RoPE, no biases, explicit
head_dim) with block-causal attention, block 4, mask id 151669 (`<MASK>`); logits are not
shifted (position i predicts token i).

Facts from the authors' code (JetAstra/SDAR training/model/SDAR-8B-Chat/{config.json,
modeling_sdar.py}, generate.py):
- config fields: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
  num_key_value_heads, head_dim, rms_norm_eps, rope_theta, tie_word_embeddings, attention_bias,
  block_size (4), mask_token_id (151669), eos_token_id (151643); generation_config.json stops on
  [151645 <|im_end|>, 151643 <|endoftext|>].
- RMSNorm is flash-attn's fused Triton rms_norm_fn: the norm weight scales the fp32 activations
  before the cast (norm_weight_fp32 here).
- block_diffusion_generate: blocks are counted from the first prompt token; the prompt's whole
  blocks are prefilled into the cache (block-causal among themselves), and the prompt's tail
  (a partial block) is decoded together with the first masks as one block (bidirectional inside
  it); a finished block's K/V are stored by one more forward of the block (store_kv=True).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from .qwen_block_causal import BlockCausalQwen

MASK_ID, EOS_ID, IM_END_ID = 151669, 151643, 151645


@dataclass
class SDARConfig:
    vocab_size: int = 151936
    hidden_size: int = 4096
    intermediate_size: int = 12288
    num_hidden_layers: int = 36
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int = 128
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    rope_scaling: dict | None = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    use_sliding_window: bool = False
    block_size: int = 4
    mask_token_id: int = MASK_ID
    eos_token_id: int = EOS_ID
    bos_token_id: int = EOS_ID
    pad_token_id: int | None = None

    qk_norm = True
    norm_weight_fp32 = True

    @property
    def qkv_bias(self) -> bool:
        return self.attention_bias

    @classmethod
    def from_hf(cls, d: dict) -> "SDARConfig":
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        if cfg.rope_scaling not in (None, {}) and cfg.rope_scaling.get("rope_type", cfg.rope_scaling.get("type")) != "default":
            raise ValueError(f"SDAR config has rope_scaling={cfg.rope_scaling}, which this implementation does not support")
        if cfg.hidden_act != "silu" or cfg.use_sliding_window:
            raise ValueError(f"SDAR config with hidden_act={cfg.hidden_act!r}, use_sliding_window={cfg.use_sliding_window} "
                             f"is not supported (silu, no sliding window)")
        return cfg

    def to_hf(self) -> dict:
        return {"model_type": "sdar", "architectures": ["SDARForCausalLM"], **asdict(self)}


_8B = SDARConfig()
# Hub ids: JetLM/SDAR-1.7B-Chat, JetLM/SDAR-4B-Chat, JetLM/SDAR-8B-Chat (JetAstra/SDAR README; block-32
# variants are published as ...-Chat-b32), Gen-Verse/TraDo-4B-Instruct and -8B-Instruct.
# sdar-8b and sdar-4b are field for field the authors' config.json (JetAstra/SDAR training/model/
# SDAR-{8B,4B}-Chat/config.json: vocab 151936, hidden 4096/2560, intermediate 12288/9728, 36 layers,
# 32 heads, 8 kv heads, head_dim 128, untied, rope_theta 1e6, block 4, mask 151669, eos 151643).
# NOT verified against a published config.json: sdar-1.7b (Qwen3-1.7B's sizes; whether SDAR unties its
# embeddings as SDAR-4B does is unknown) and trado-4b/8b (assumed SDAR-4B/8B's, the weights they start from).
CONFIGS = {
    "sdar-8b": _8B,
    "sdar-4b": replace(_8B, hidden_size=2560, intermediate_size=9728),
    "sdar-1.7b": replace(_8B, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                         num_attention_heads=16, tie_word_embeddings=True),
    "trado-8b": _8B,
    "trado-4b": replace(_8B, hidden_size=2560, intermediate_size=9728),
    "sdar-small": replace(_8B, hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8,
                          num_key_value_heads=2, head_dim=64),
    # CPU-test size; small vocabulary with its own special ids
    "sdar-tiny": SDARConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=16, mask_token_id=500,
                            eos_token_id=501, bos_token_id=501),
}


class SDAR(BlockCausalQwen):
    """SDAR/TraDo: BlockCausalQwen with the SDAR config."""
