"""Dream-7B (Base, Instruct) in plain PyTorch: Qwen2-style, bidirectional, logits shifted.

Parameter names and config fields are those of the published checkpoints (`model.embed_tokens`,
`model.layers.N.self_attn.{q,k,v,o}_proj` with q/k/v biases, `model.layers.N.mlp.{gate,up,down}_proj`,
`model.layers.N.{input,post_attention}_layernorm`, `model.norm`, `lm_head`; config hidden_size,
intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads, rope_theta,
rms_norm_eps, tie_word_embeddings, mask_token_id, pad_token_id). The logit shift (position i is
predicted from hidden state i-1) is applied by the adapter (`logit_shift=True`), not here.
RoPE is computed with tables cast to the activation dtype, as the reference code does.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch.nn.functional as F
from torch import nn

from .layers import (CacheCall, KVCache, RMSNorm, default_positions, fuse_linears_, qkv_attention,
                     key_padding_mask, rope_cos_sin, swiglu)

MASK_ID, PAD_ID, EOS_ID = 151666, 151643, 151643
IM_END_ID = 151645
DEFAULT_HUB_ID = "Dream-org/Dream-v0-Instruct-7B"


@dataclass
class DreamConfig:
    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    hidden_act: str = "silu"
    max_position_embeddings: int = 131072
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    rope_scaling: dict | None = None
    tie_word_embeddings: bool = False
    mask_token_id: int = MASK_ID
    pad_token_id: int = PAD_ID
    eos_token_id: int = EOS_ID
    bos_token_id: int = PAD_ID

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_hf(cls, d: dict) -> "DreamConfig":
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        if cfg.rope_scaling not in (None, {}) and cfg.rope_scaling.get("rope_type", cfg.rope_scaling.get("type")) != "default":
            raise ValueError(f"Dream config has rope_scaling={cfg.rope_scaling}, which this implementation does "
                             f"not support; use --model-backend hf")
        if cfg.hidden_act != "silu":
            raise ValueError(f"Dream config hidden_act={cfg.hidden_act!r} is not supported (silu only)")
        return cfg

    def to_hf(self) -> dict:
        return {"model_type": "Dream", "architectures": ["DreamModel"], **asdict(self)}


CONFIGS = {
    "dream-7b": DreamConfig(),
    "dream-small": DreamConfig(hidden_size=512, intermediate_size=1536, num_hidden_layers=4,
                               num_attention_heads=8, num_key_value_heads=2),
    # CPU-test size; small vocabulary with its own special ids
    "dream-tiny": DreamConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, mask_token_id=500,
                              pad_token_id=501, eos_token_id=501, bos_token_id=501),
}


class DreamAttention(nn.Module):
    def __init__(self, c: DreamConfig):
        super().__init__()
        hd = c.head_dim
        self.hd, self.n_heads, self.n_kv = hd, c.num_attention_heads, c.num_key_value_heads
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * hd, bias=True)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * hd, bias=True)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * hd, bias=True)
        self.o_proj = nn.Linear(c.num_attention_heads * hd, c.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask, layer, kv):
        if not hasattr(self, "w_qkv"):  # fused q/k/v weight; parameters stay views (names unchanged)
            self.w_qkv, self.b_qkv = fuse_linears_(self.q_proj, self.k_proj, self.v_proj)
        qkv = F.linear(x, self.w_qkv, self.b_qkv)
        return self.o_proj(qkv_attention(qkv, self.n_heads, self.n_kv, cos, sin, layer, kv, mask))


class DreamMLP(nn.Module):
    def __init__(self, c: DreamConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        if not hasattr(self, "w_gu"):
            self.w_gu, _ = fuse_linears_(self.gate_proj, self.up_proj)
        return self.down_proj(swiglu(F.linear(x, self.w_gu)))


class DreamLayer(nn.Module):
    def __init__(self, c: DreamConfig):
        super().__init__()
        self.self_attn = DreamAttention(c)
        self.mlp = DreamMLP(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, x, h, cos, sin, mask, layer, kv, next_norm: RMSNorm):
        """x: the residual stream, h = input_layernorm(x) -> (new residual, next_norm(new residual)):
        each residual add is fused with the norm that follows it."""
        x, h = self.post_attention_layernorm.add(x, self.self_attn(h, cos, sin, mask, layer, kv))
        return next_norm.add(x, self.mlp(h))


class _Base(nn.Module):
    def __init__(self, c: DreamConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(DreamLayer(c) for _ in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class Dream(nn.Module):
    """forward(input_ids, attention_mask, positions, kv, logits_from) -> (unshifted logits [B, W, V],
    last hidden) of the positions from logits_from."""
    attention_matrix = True   # attention_mask may be 4-D [B, 1, L, L] (query x key)
    takes_logits_from = True

    def __init__(self, cfg: DreamConfig):
        super().__init__()
        self.cfg = cfg
        self.model = _Base(cfg)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def new_cache(self, batch: int, length: int, dtype=None, device=None) -> KVCache:
        p = self.model.embed_tokens.weight
        c = self.cfg
        return KVCache.empty(c.num_hidden_layers, batch, c.num_key_value_heads, length, c.head_dim,
                             dtype or p.dtype, device or p.device)

    def forward(self, input_ids, attention_mask=None, positions=None, kv: CacheCall | None = None,
                logits_from: int = 0):
        c, m = self.cfg, self.model
        x = m.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(default_positions(input_ids, positions), c.head_dim, c.rope_theta, x.dtype)
        mask = key_padding_mask(attention_mask)
        layers = m.layers
        h = layers[0].input_layernorm(x)
        for i, layer in enumerate(layers):
            x, h = layer(x, h, cos, sin, mask, i, kv, layers[i + 1].input_layernorm if i + 1 < len(layers) else m.norm)
        w = m.embed_tokens.weight if c.tie_word_embeddings else self.lm_head.weight
        h = h[:, logits_from:] if logits_from else h
        return nn.functional.linear(h, w), h
