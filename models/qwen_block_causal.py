"""A Qwen2/Qwen3-style decoder with block-causal attention, shared by SDAR/TraDo (Qwen3: per-head
q/k RMSNorm before RoPE, no biases) and Fast-dLLM v2 (Qwen2.5: q/k/v biases, no q/k norm).

Parameter names are those of the published checkpoints: `model.embed_tokens`,
`model.layers.N.self_attn.{q,k,v,o}_proj` (+ `q_norm`, `k_norm` for Qwen3),
`model.layers.N.mlp.{gate,up,down}_proj`, `model.layers.N.{input,post_attention}_layernorm`,
`model.norm`, `lm_head` (absent when the embeddings are tied).

The config object passed in provides: vocab_size, hidden_size, intermediate_size,
num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim, rms_norm_eps, rope_theta,
tie_word_embeddings, block_size, and the properties qkv_bias, qk_norm and norm_weight_fp32 (scale
the normalised activations by the norm weight in fp32 before casting, as SDAR's fused Triton
RMSNorm does; False: cast, then scale, as Qwen2's eager RMSNorm does; equal in fp32).

forward(input_ids, attention_mask, positions): a whole-sequence forward under the block-causal
mask (blocks counted from positions); block_forward(...): the cached forward of block_cache.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .block_cache import BlockKVCache, attend_block, block_causal_mask, block_heads, cached_forward
from .layers import (add_rms_norm, default_positions, fuse_linears_, fused_norm_layers,
                     rms_norm, rms_norm_fp32_scale, rope_cos_sin, swiglu)


class Norm(nn.Module):
    def __init__(self, dim: int, eps: float, fp32_scale: bool):
        super().__init__()
        self.eps, self.fp32_scale = eps, fp32_scale
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return (rms_norm_fp32_scale if self.fp32_scale else rms_norm)(x, self.weight, self.eps)

    def add(self, x: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x + delta, this norm of it) in one pass."""
        return add_rms_norm(x, delta, self.weight, self.eps, self.fp32_scale)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        hd = c.head_dim
        self.n_heads, self.n_kv, self.hd = c.num_attention_heads, c.num_key_value_heads, hd
        self.q_proj = nn.Linear(c.hidden_size, self.n_heads * hd, bias=c.qkv_bias)
        self.k_proj = nn.Linear(c.hidden_size, self.n_kv * hd, bias=c.qkv_bias)
        self.v_proj = nn.Linear(c.hidden_size, self.n_kv * hd, bias=c.qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * hd, c.hidden_size, bias=False)
        if c.qk_norm:
            self.q_norm = Norm(hd, c.rms_norm_eps, c.norm_weight_fp32)
            self.k_norm = Norm(hd, c.rms_norm_eps, c.norm_weight_fp32)

    def forward(self, x, cos, sin, mask, layer, cache, step):
        if not hasattr(self, "w_qkv"):   # fused q/k/v weight; parameters stay views (names unchanged)
            self.w_qkv, self.b_qkv = fuse_linears_(self.q_proj, self.k_proj, self.v_proj)
        B, W, _ = x.shape
        H, Hk = self.n_heads, self.n_kv
        qkv = F.linear(x, self.w_qkv, self.b_qkv)
        qn = getattr(self, "q_norm", None)   # Qwen3: per-head RMSNorm of q and k, then RoPE
        norm = None if qn is None else (qn.weight, self.k_norm.weight, qn.eps, qn.fp32_scale)
        heads = block_heads(qkv, H, Hk, cos, sin, norm, layer, cache, step)
        return self.o_proj(attend_block(heads, H, layer, cache, step, mask, written=True))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        if not hasattr(self, "w_gu"):
            self.w_gu, _ = fuse_linears_(self.gate_proj, self.up_proj)
        return self.down_proj(swiglu(F.linear(x, self.w_gu)))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = Norm(c.hidden_size, c.rms_norm_eps, c.norm_weight_fp32)
        self.post_attention_layernorm = Norm(c.hidden_size, c.rms_norm_eps, c.norm_weight_fp32)

    def forward(self, x, h, cos, sin, mask, layer, cache, step, next_norm: Norm):
        """x: the residual stream, h = input_layernorm(x) -> (new residual, next_norm(new residual)):
        each residual add is fused with the norm after it."""
        x, h = self.post_attention_layernorm.add(x, self.self_attn(h, cos, sin, mask, layer, cache, step))
        return next_norm.add(x, self.mlp(h))


class _Base(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.num_hidden_layers))
        self.norm = Norm(c.hidden_size, c.rms_norm_eps, c.norm_weight_fp32)


class BlockCausalQwen(nn.Module):
    """forward(input_ids, attention_mask, positions) -> (logits [B, L, V], last hidden [B, L, d]);
    block_forward(input_ids, cache, valid, commit) -> the same for the fed tokens, against the cache."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = _Base(cfg)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    @property
    def block_size(self) -> int:
        return self.cfg.block_size

    def new_block_cache(self, batch: int, capacity: int, dtype=None, device=None) -> BlockKVCache:
        p, c = self.model.embed_tokens.weight, self.cfg
        return BlockKVCache.empty(c.num_hidden_layers, batch, c.num_key_value_heads, capacity, c.head_dim,
                                  c.block_size, dtype or p.dtype, device or p.device)

    def _run(self, input_ids, positions, mask, cache, step, logits_last):
        c, m = self.cfg, self.model
        x = m.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(positions, c.head_dim, c.rope_theta, x.dtype)
        h = fused_norm_layers(m.layers, m.norm, x, cos, sin, mask, cache, step)
        h = h if logits_last is None else h[:, -logits_last:]
        w = m.embed_tokens.weight if c.tie_word_embeddings else self.lm_head.weight
        return F.linear(h, w), h

    def forward(self, input_ids, attention_mask=None, positions=None, kv=None):
        if kv is not None:
            raise ValueError("block-causal models take their cache through block_forward, not a CacheCall; "
                             "cache=prefix|dual do not apply to them")
        positions = default_positions(input_ids, positions)
        mask = block_causal_mask(positions, self.cfg.block_size, attention_mask)
        return self._run(input_ids, positions, mask, None, None, None)

    def block_forward(self, input_ids, cache: BlockKVCache, valid=None, commit=0, logits_last: int | None = None,
                      key_len: int | None = None,
                      checked: bool = True):
        """Feed each row's next tokens (see block_cache.py); append the first `commit` of them
        (whole finished blocks) to the cache. `logits_last`: logits and hidden of the last n fed
        tokens only (a long prefill needs only the current block's)."""
        return cached_forward(lambda step: self._run(input_ids, step.positions, None, cache, step, logits_last),
                              input_ids, cache, valid, commit, key_len, checked)
