"""The built-in dLLM: a small bidirectional transformer in plain PyTorch.

RMSNorm, rotary positions, SwiGLU, full (non-causal) attention through
scaled_dot_product_attention with a key padding mask. Same shape of network as LLaDA, only tiny.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .layers import CacheCall, KVCache, attend, key_padding_mask


@dataclass
class TinyConfig:
    vocab_size: int
    d_model: int = 192
    n_layers: int = 6
    n_heads: int = 6
    d_ff: int = 512
    max_len: int = 256
    rope_theta: float = 10000.0

    def to_dict(self) -> dict:
        return asdict(self)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)
    ang = positions.float()[..., None] * inv                # [B, L, hd/2]
    return ang.cos()[:, :, None], ang.sin()[:, :, None]     # [B, L, 1, hd/2]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class Block(nn.Module):
    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.attn_norm = nn.RMSNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.mlp_norm = nn.RMSNorm(cfg.d_model)
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x, cos, sin, attn_mask, layer: int = 0, kv: CacheCall | None = None):
        B, L, D = x.shape
        qkv = self.qkv(self.attn_norm(x)).view(B, L, 3 * self.n_heads, -1)   # token-major q, k, v heads
        qk = apply_rope(qkv[:, :, :2 * self.n_heads], cos, sin)
        qkv = torch.cat([qk, qkv[:, :, 2 * self.n_heads:]], 2)
        x = x + self.out(attend(qkv, self.n_heads, layer, kv, attn_mask))
        g, u = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(nn.functional.silu(g) * u)


class TinyDLLM(nn.Module):
    attention_matrix = True   # attention_mask may be 4-D [B, 1, L, L] (query x key)
    takes_logits_from = True  # forward(..., logits_from): logits and hidden of positions >= logits_from
    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def new_cache(self, batch: int, length: int, dtype=None, device=None) -> KVCache:
        p, c = self.embed.weight, self.cfg
        return KVCache.empty(c.n_layers, batch, c.n_heads, length, c.d_model // c.n_heads,
                             dtype or p.dtype, device or p.device)

    def forward(self, input_ids, attention_mask=None, positions=None, kv: CacheCall | None = None,
                logits_from: int = 0):
        B, L = input_ids.shape
        if positions is None:
            positions = torch.arange(L, device=input_ids.device).expand(B, L)
        cos, sin = rope_tables(positions, self.cfg.d_model // self.cfg.n_heads, self.cfg.rope_theta)
        mask = key_padding_mask(attention_mask)   # padding keys are never attended to (or a 4-D mask)
        x = self.embed(input_ids)
        for i, blk in enumerate(self.blocks):
            x = blk(x, cos, sin, mask, i, kv)
        h = self.norm(x[:, logits_from:] if logits_from else x)
        return self.head(h), h
