"""LLaDA (8B-Base, 8B-Instruct, 1.5) in plain PyTorch.

Module and parameter names are those of the published checkpoints (`model.transformer.wte`,
`model.transformer.blocks.N.{attn_norm,q_proj,k_proj,v_proj,attn_out,ff_norm,ff_proj,up_proj,
ff_out}`, `model.transformer.ln_f`, `model.transformer.ff_out`), so their safetensors load as they
are; the config reads the checkpoints' own config.json fields (d_model, n_heads, n_kv_heads,
n_layers, mlp_hidden_size, vocab_size, embedding_size, rope_theta, rms_norm_eps, weight_tying,
include_bias, include_qkv_bias, ...). Llama-style block: x + attn(rms(x)); x + ff_out(silu(ff_proj(h))
* up_proj(h)); attention is bidirectional; logits are not shifted. Ids from METHODS.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .layers import (CacheCall, KVCache, RMSNorm, default_positions, fuse_linears_, qkv_attention,
                     key_padding_mask, rope_cos_sin, swiglu)

MASK_ID, EOS_ID, EOT_ID = 126336, 126081, 126348
DEFAULT_HUB_ID = "GSAI-ML/LLaDA-8B-Instruct"


@dataclass
class LLaDAConfig:
    d_model: int = 4096
    n_heads: int = 32
    n_kv_heads: int | None = 32
    n_layers: int = 32
    mlp_hidden_size: int | None = 12288
    mlp_ratio: int = 4
    vocab_size: int = 126464
    embedding_size: int | None = 126464
    rope_theta: float = 500000.0
    rms_norm_eps: float = 1e-5
    max_sequence_length: int = 4096
    weight_tying: bool = False
    include_bias: bool = False
    include_qkv_bias: bool | None = False
    rope_full_precision: bool = True
    mask_token_id: int = MASK_ID
    eos_token_id: int = EOS_ID
    pad_token_id: int = EOS_ID
    # fields that change the architecture in ways we do not implement; checked on load
    block_type: str = "llama"
    layer_norm_type: str = "rms"
    activation_type: str = "silu"
    rope: bool = True
    alibi: bool = False
    attention_layer_norm: bool = False
    input_emb_norm: bool = False
    scale_logits: bool = False
    block_group_size: int = 1

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ff_size(self) -> int:
        return self.mlp_hidden_size or self.mlp_ratio * self.d_model

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def from_hf(cls, d: dict) -> "LLaDAConfig":
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        unsupported = {"block_type": "llama", "layer_norm_type": "rms", "rope": True, "alibi": False,
                       "attention_layer_norm": False, "input_emb_norm": False, "scale_logits": False,
                       "block_group_size": 1}
        bad = {k: getattr(cfg, k) for k, want in unsupported.items() if getattr(cfg, k) != want}
        if cfg.activation_type not in ("silu", "swiglu"):
            bad["activation_type"] = cfg.activation_type
        if bad:
            raise ValueError(f"LLaDA config uses settings this implementation does not support: {bad}; "
                             f"use --model-backend hf for such checkpoints")
        return cfg

    def to_hf(self) -> dict:
        return {"model_type": "llada", "architectures": ["LLaDAModelLM"], **asdict(self)}


# Named configs for --no-weights (the architecture of a real checkpoint, random weights).
CONFIGS = {
    "llada-8b": LLaDAConfig(),
    "llada-small": LLaDAConfig(d_model=512, n_heads=8, n_kv_heads=8, n_layers=4, mlp_hidden_size=1536,
                               max_sequence_length=4096),
    # CPU-test size; small vocabulary with its own special ids
    "llada-tiny": LLaDAConfig(d_model=64, n_heads=4, n_kv_heads=4, n_layers=2, mlp_hidden_size=128,
                              vocab_size=512, embedding_size=512, mask_token_id=500, eos_token_id=501,
                              pad_token_id=501),
}


class LLaDABlock(nn.Module):
    def __init__(self, c: LLaDAConfig):
        super().__init__()
        self.c = c
        qkv_bias = bool(c.include_bias or c.include_qkv_bias)
        kv = c.kv_heads * c.head_dim
        self.attn_norm = RMSNorm(c.d_model, c.rms_norm_eps)
        self.ff_norm = RMSNorm(c.d_model, c.rms_norm_eps)
        self.q_proj = nn.Linear(c.d_model, c.d_model, bias=qkv_bias)
        self.k_proj = nn.Linear(c.d_model, kv, bias=qkv_bias)
        self.v_proj = nn.Linear(c.d_model, kv, bias=qkv_bias)
        self.attn_out = nn.Linear(c.d_model, c.d_model, bias=c.include_bias)
        self.ff_proj = nn.Linear(c.d_model, c.ff_size, bias=c.include_bias)
        self.up_proj = nn.Linear(c.d_model, c.ff_size, bias=c.include_bias)
        self.ff_out = nn.Linear(c.ff_size, c.d_model, bias=c.include_bias)

    def fuse_(self) -> None:
        """One weight for q/k/v and one for ff_proj/up_proj (fewer, larger matrix products); the
        original parameters become views into them, so state_dict() keeps the checkpoint names."""
        self.w_qkv, self.b_qkv = fuse_linears_(self.q_proj, self.k_proj, self.v_proj)
        self.w_gu, self.b_gu = fuse_linears_(self.ff_proj, self.up_proj)

    def forward(self, x, h, cos, sin, mask, layer: int, kv: CacheCall | None, next_norm: RMSNorm):
        """x: the residual stream, h = attn_norm(x) -> (new residual, next_norm(new residual)):
        each residual add is fused with the norm that follows it."""
        if not hasattr(self, "w_qkv"):
            self.fuse_()
        a = qkv_attention(F.linear(h, self.w_qkv, self.b_qkv), self.c.n_heads, self.c.kv_heads, cos, sin, layer, kv, mask)
        x, h = self.ff_norm.add(x, self.attn_out(a))
        return next_norm.add(x, self.ff_out(swiglu(F.linear(h, self.w_gu, self.b_gu))))


class _Transformer(nn.Module):
    def __init__(self, c: LLaDAConfig):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c.embedding_size or c.vocab_size, c.d_model),
            blocks=nn.ModuleList(LLaDABlock(c) for _ in range(c.n_layers)),
            ln_f=RMSNorm(c.d_model, c.rms_norm_eps),
        ))
        if not c.weight_tying:
            self.transformer["ff_out"] = nn.Linear(c.d_model, c.embedding_size or c.vocab_size, bias=c.include_bias)


class LLaDA(nn.Module):
    """forward(input_ids, attention_mask, positions, kv, logits_from) -> (logits [B, W, V], last hidden
    [B, W, d]) of the positions from logits_from."""
    attention_matrix = True   # attention_mask may be 4-D [B, 1, L, L] (query x key)
    takes_logits_from = True

    def __init__(self, cfg: LLaDAConfig):
        super().__init__()
        self.cfg = cfg
        self.model = _Transformer(cfg)

    def new_cache(self, batch: int, length: int, dtype=None, device=None) -> KVCache:
        p = self.model.transformer.wte.weight
        c = self.cfg
        return KVCache.empty(c.n_layers, batch, c.kv_heads, length, c.head_dim, dtype or p.dtype, device or p.device)

    def forward(self, input_ids, attention_mask=None, positions=None, kv: CacheCall | None = None,
                logits_from: int = 0):
        c, t = self.cfg, self.model.transformer
        x = t.wte(input_ids)
        tab_dtype = torch.float32 if c.rope_full_precision else x.dtype
        cos, sin = rope_cos_sin(default_positions(input_ids, positions), c.head_dim, c.rope_theta, tab_dtype)
        mask = key_padding_mask(attention_mask)
        blocks = t.blocks
        h = blocks[0].attn_norm(x)
        for i, blk in enumerate(blocks):
            x, h = blk(x, h, cos, sin, mask, i, kv, blocks[i + 1].attn_norm if i + 1 < len(blocks) else t.ln_f)
        w = t.wte.weight if c.weight_tying else t.ff_out.weight
        h = h[:, logits_from:] if logits_from else h
        logits = nn.functional.linear(h, w, None if c.weight_tying else t.ff_out.bias)
        return logits[..., :c.vocab_size], h
