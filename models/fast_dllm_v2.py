"""Fast-dLLM v2 (NVlabs; Efficient-Large-Model/Fast_dLLM_v2_7B and _1.5B) in plain PyTorch:
Qwen2.5 layers (q/k/v biases, no q/k norm, Qwen2's cast-then-scale RMSNorm) with block-causal
attention over blocks of `bd_size` (32) positions counted from position 0, mask id 151665, stop
token 151645 (<|im_end|>). Logits are shifted (token shift: position i is predicted from hidden
state i-1, as in the AR model it was converted from), which the adapter applies
(`logit_shift=True`).

Facts from the authors' modeling.py / configuration (the checkpoint's remote code, model_type
"Fast_dLLM_Qwen", architectures Fast_dLLM_QwenForCausalLM, config field bd_size): the eval mask is
key_block <= query_block with blocks = position // bd_size; generate() prefills the prompt's whole
blocks, decodes the next block in sub-blocks (small_block_size 8) with a confidence threshold, and
takes the first token of each new block from the last logit of the finished block (AR style).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from .qwen_block_causal import BlockCausalQwen

MASK_ID, IM_END_ID, EOS_ID = 151665, 151645, 151643


@dataclass
class FastDLLMv2Config:
    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    rope_scaling: dict | None = None
    tie_word_embeddings: bool = False
    use_sliding_window: bool = False
    bd_size: int = 32
    mask_token_id: int = MASK_ID
    eos_token_id: int = IM_END_ID
    bos_token_id: int = EOS_ID
    pad_token_id: int | None = IM_END_ID

    qkv_bias = True
    qk_norm = False
    norm_weight_fp32 = False

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def block_size(self) -> int:
        return self.bd_size

    @classmethod
    def from_hf(cls, d: dict) -> "FastDLLMv2Config":
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        if isinstance(d.get("eos_token_id"), list):      # Qwen configs may list several; <|im_end|> ends a turn
            cfg = replace(cfg, eos_token_id=IM_END_ID)
        if cfg.rope_scaling not in (None, {}) and cfg.rope_scaling.get("rope_type", cfg.rope_scaling.get("type")) != "default":
            raise ValueError(f"Fast-dLLM v2 config has rope_scaling={cfg.rope_scaling}, which this implementation does not support")
        if cfg.hidden_act != "silu" or cfg.use_sliding_window:
            raise ValueError("Fast-dLLM v2 config with a non-silu activation or sliding window is not supported")
        return cfg

    def to_hf(self) -> dict:
        return {"model_type": "Fast_dLLM_Qwen", "architectures": ["Fast_dLLM_QwenForCausalLM"],
                "layer_types": ["full_attention"] * self.num_hidden_layers, **asdict(self)}


_7B = FastDLLMv2Config()
# fast-dllm-v2-7b is field for field Efficient-Large-Model/Fast_dLLM_v2_7B's config.json (a copy of the
# checkpoint in Satgoy152/DualDiffusion FastDLLM_inferencing/Fast_dLLM_v2_7B). fast-dllm-v2-1.5b
# (Efficient-Large-Model/Fast_dLLM_v2_1.5B) is NOT verified against its config.json: it takes
# Qwen2.5-1.5B-Instruct's sizes (tied embeddings), the model it was converted from.
CONFIGS = {
    "fast-dllm-v2-7b": _7B,
    "fast-dllm-v2-1.5b": replace(_7B, vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                                 num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True),
    "fast-dllm-v2-small": replace(_7B, hidden_size=512, intermediate_size=1536, num_hidden_layers=4,
                                  num_attention_heads=8, num_key_value_heads=2),
    # CPU-test size; small vocabulary with its own special ids
    "fast-dllm-v2-tiny": FastDLLMv2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, bd_size=8, mask_token_id=500,
                                          eos_token_id=501, bos_token_id=501, pad_token_id=501),
}


class FastDLLMv2(BlockCausalQwen):
    """Fast-dLLM v2: BlockCausalQwen with the Qwen2.5 config (unshifted logits; the adapter shifts)."""
