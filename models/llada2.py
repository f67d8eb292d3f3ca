"""LLaDA2.0 / 2.1 (inclusionAI: LLaDA2.0-mini, 16B MoE) in plain PyTorch: the Ling-2.0
(BailingMoeV2) architecture with block-causal attention, block 32, mask id 156895; logits not
shifted.

Facts from the authors' modeling_llada2_moe.py and configuration_llada2_moe.py (the LLaDA2.0-mini
Hugging Face files, as vendored in ZHZisZZ/dllm `dllm/pipelines/llada2/models/`):
- names: `model.word_embeddings`, `model.layers.N.attention.{query_key_value,dense}` (fused q/k/v,
  token-major heads q|k|v), `attention.{query,key}_layernorm` (per-head RMSNorm before RoPE),
  `model.layers.N.{input,post_attention}_layernorm`, layer 0..first_k_dense_replace-1:
  `mlp.{gate,up,down}_proj`; later layers: `mlp.gate.weight`, `mlp.gate.expert_bias`,
  `mlp.experts.E.{gate,up,down}_proj`, `mlp.shared_experts.{gate,up,down}_proj`; `model.norm`,
  `lm_head`.
- RoPE on the first head_dim * partial_rotary_factor dims of each head (rotate-half inside them),
  frequencies over that width, tables cast to the activation dtype; logits returned in fp32.
- MoE routing: models/moe.py.
- generate(): block_length 32, steps 32, threshold 0.95, eos_id 156892, mask_id 156895; the
  sequence is cut into blocks from the first prompt token, the prompt's tail shares a block with
  the first masks, and every step recomputes the whole prefix under the block-causal mask (no
  cache); a block with an EOS ends the generation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch.nn.functional as F
from torch import nn

from .block_cache import BlockKVCache, attend_block, block_causal_mask, block_heads, cached_forward
from .layers import RMSNorm, default_positions, fused_norm_layers, rope_cos_sin
from .moe import Expert, SparseMoE

MASK_ID, EOS_ID = 156895, 156892
BLOCK = 32


@dataclass
class LLaDA2Config:
    vocab_size: int = 157184
    hidden_size: int = 2048
    intermediate_size: int = 5120
    num_hidden_layers: int = 20
    num_attention_heads: int = 16
    num_key_value_heads: int = 4
    head_dim: int = 128
    hidden_act: str = "silu"
    use_qkv_bias: bool = False
    use_qk_norm: bool = True
    use_bias: bool = False
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 16384
    rope_theta: float = 600000.0
    rope_scaling: dict | None = None
    partial_rotary_factor: float = 0.5
    num_experts: int = 256
    num_shared_experts: int = 1
    num_experts_per_tok: int = 8
    n_group: int = 8
    topk_group: int = 4
    routed_scaling_factor: float = 2.5
    moe_intermediate_size: int = 512
    first_k_dense_replace: int = 1
    score_function: str = "sigmoid"
    use_sliding_window: bool = False
    block_size: int = BLOCK
    mask_token_id: int = MASK_ID
    eos_token_id: int = EOS_ID
    pad_token_id: int = EOS_ID

    @property
    def rope_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    @classmethod
    def from_hf(cls, d: dict) -> "LLaDA2Config":
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        bad = {k: getattr(cfg, k) for k, ok in (("hidden_act", "silu"), ("score_function", "sigmoid"),
                                                 ("use_sliding_window", False)) if getattr(cfg, k) != ok}
        if cfg.rope_scaling not in (None, {}) and cfg.rope_scaling.get("rope_type", cfg.rope_scaling.get("type")) != "default":
            bad["rope_scaling"] = cfg.rope_scaling
        if bad:
            raise ValueError(f"LLaDA2 config uses settings this implementation does not support: {bad}")
        return cfg

    def to_hf(self) -> dict:
        return {"model_type": "llada2_moe", "architectures": ["LLaDA2MoeModelLM"], **asdict(self)}


# Named configs, each field for field a published config.json (fields not in the file: our defaults,
# the 2.0-mini values; eos 156892 and mask 156895 come from the tokenizer and generate code, not config.json).
# - llada2-mini, LLaDA2.0-mini: inclusionAI/dFactory configs/model_configs/llada2_mini/config.json (the
#   authors' training repo, commit c29d72c); the same sizes in Zigeng/DMax-Math-16B's config.json (an
#   LLaDA2.0-mini fine-tune) and in LLaDA2.1-mini's. max_position_embeddings 16384 in both 2.0 copies.
# - llada2-mini-2.1, LLaDA2.1-mini: huggingface.co/inclusionAI/LLaDA2.1-mini/blob/main/config.json, read up
#   to "transformers_version" (vocab_size and the use_* flags after it not seen): 2.0-mini's architecture,
#   max_position_embeddings 32768.
# - llada2-flash, LLaDA2.0-flash (100B): inclusionAI/dFactory configs/model_configs/llada2_flash/config.json
#   (commit c29d72c): hidden 4096, intermediate 9216, 32 layers, 32 heads, moe_intermediate 1024, the rest as
#   mini. Its parameter count (parameter_counts: 102,889,697,280) is the published checkpoint's 205,782,433,824
#   bf16 bytes / 2 to 0.002%, and the model card's 100B total / 6.1B active.
# None of these files sets a field from_hf refuses; their other fields (norm_topk_prob true, norm_head,
# using_split_qkv_in_self_attention, router_dtype fp32, rotary_dim 64 = head_dim * partial_rotary_factor,
# sliding_window with use_sliding_window false) are what this implementation computes or are not read (as
# dInfer's copy of modeling_llada2_moe.py reads them).
# - llada2-flash-2.1, LLaDA2.1-flash: derived, not read (no copy of its config.json was found): llada2-flash's
#   architecture with max_position_embeddings 32768, as LLaDA2.1-mini changed only that field from 2.0-mini.
#   Its checkpoint is 205,782,452,128 bf16 bytes, 18,304 more than 2.0-flash's (102.89B parameters either
#   way); SGLang's cookbook lists both 2.1 models at a 32,768-token context, and FluxServe's LLaDA2.1 page
#   loads them through the LLaDA2.0 model class with no overrides.
CONFIGS = {
    "llada2-mini": LLaDA2Config(),
    "llada2-mini-2.1": LLaDA2Config(max_position_embeddings=32768),
    "llada2-flash": LLaDA2Config(hidden_size=4096, intermediate_size=9216, num_hidden_layers=32, num_attention_heads=32,
                                 moe_intermediate_size=1024),
    "llada2-flash-2.1": LLaDA2Config(hidden_size=4096, intermediate_size=9216, num_hidden_layers=32,
                                     num_attention_heads=32, moe_intermediate_size=1024, max_position_embeddings=32768),
    "llada2-small": LLaDA2Config(hidden_size=512, intermediate_size=1280, num_hidden_layers=4, num_attention_heads=8,
                                 num_key_value_heads=2, head_dim=64, num_experts=32, num_experts_per_tok=4,
                                 n_group=4, topk_group=2, moe_intermediate_size=128),
    # CPU-test size; small vocabulary with its own special ids
    "llada2-tiny": LLaDA2Config(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=8,
                                num_experts_per_tok=2, n_group=4, topk_group=2, moe_intermediate_size=32,
                                block_size=8, mask_token_id=500, eos_token_id=501, pad_token_id=501),
}


@dataclass(frozen=True)
class ParamCount:
    """Parameters of LLaDA2(cfg), from the config's fields alone (no model built)."""
    total: int           # every parameter (matrices and norm weights; the routers' expert_bias is a buffer)
    active: int          # what one token uses: every parameter but the routed experts it is not sent to
    embedding: int       # the input embedding, vocab x hidden
    head: int            # the output head (0 when tied to the embedding)
    per_expert: int      # one routed expert: gate, up and down projections
    moe_layers: int      # layers with routed experts

    @property
    def active_non_embedding(self) -> int:
        """active without the input embedding and the output head, as model cards also count it."""
        return self.active - self.embedding - self.head


def parameter_counts(c: LLaDA2Config) -> ParamCount:
    d, hd, H, Hk, L = c.hidden_size, c.head_dim, c.num_attention_heads, c.num_key_value_heads, c.num_hidden_layers
    attention = d * (H + 2 * Hk) * hd + (H + 2 * Hk) * hd * c.use_qkv_bias + H * hd * d + d * c.use_bias
    attention += 2 * hd * c.use_qk_norm
    per_expert = 3 * d * c.moe_intermediate_size
    moe_layers = max(L - c.first_k_dense_replace, 0) if c.num_experts else 0
    moe_fixed = c.num_experts * d + c.num_shared_experts * per_expert          # router + shared experts
    per_layer = attention + 2 * d                                              # + input/post-attention norms
    embedding = c.vocab_size * d
    head = 0 if c.tie_word_embeddings else embedding
    total = (L * per_layer + (L - moe_layers) * 3 * d * c.intermediate_size
             + moe_layers * (moe_fixed + c.num_experts * per_expert) + d + embedding + head)   # + final norm
    active = total - moe_layers * (c.num_experts - c.num_experts_per_tok) * per_expert
    return ParamCount(total, active, embedding, head, per_expert, moe_layers)


Norm = RMSNorm   # normalize in fp32, cast, then scale, as the reference's LLaDA2MoeRMSNorm


class Attention(nn.Module):
    def __init__(self, c: LLaDA2Config):
        super().__init__()
        self.H, self.Hk, self.hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.query_key_value = nn.Linear(c.hidden_size, (self.H + 2 * self.Hk) * self.hd, bias=c.use_qkv_bias)
        self.dense = nn.Linear(self.H * self.hd, c.hidden_size, bias=c.use_bias)
        if c.use_qk_norm:
            self.query_layernorm = Norm(self.hd, c.rms_norm_eps)
            self.key_layernorm = Norm(self.hd, c.rms_norm_eps)

    def forward(self, x, cos, sin, mask, layer, cache, step):
        H, Hk = self.H, self.Hk
        qkv = self.query_key_value(x)
        qn = getattr(self, "query_layernorm", None)   # per-head RMSNorm of q and k, then partial RoPE
        norm = None if qn is None else (qn.weight, self.key_layernorm.weight, qn.eps, False)
        heads = block_heads(qkv, H, Hk, cos, sin, norm, layer, cache, step)
        return self.dense(attend_block(heads, H, layer, cache, step, mask, written=True))


class Layer(nn.Module):
    def __init__(self, c: LLaDA2Config, i: int):
        super().__init__()
        self.attention = Attention(c)
        self.mlp = SparseMoE(c) if c.num_experts and i >= c.first_k_dense_replace else Expert(c.hidden_size, c.intermediate_size)
        self.input_layernorm = Norm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = Norm(c.hidden_size, c.rms_norm_eps)

    def forward(self, x, h, cos, sin, mask, layer, cache, step, next_norm: Norm):
        """x: the residual stream, h = input_layernorm(x) -> (new residual, next_norm(new residual)):
        each residual add is fused with the norm after it."""
        x, h = self.post_attention_layernorm.add(x, self.attention(h, cos, sin, mask, layer, cache, step))
        return next_norm.add(x, self.mlp(h))


class _Base(nn.Module):
    def __init__(self, c: LLaDA2Config):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(Layer(c, i) for i in range(c.num_hidden_layers))
        self.norm = Norm(c.hidden_size, c.rms_norm_eps)


class LLaDA2(nn.Module):
    """forward(input_ids, attention_mask, positions) -> (logits [B, L, V] in the weights' dtype, last
    hidden) (the reference casts them to fp32, exactly; every consumer here reads them in fp32);
    block_forward(input_ids, cache, valid, commit): the cached forward of block_cache.py."""

    def __init__(self, cfg: LLaDA2Config):
        super().__init__()
        self.cfg = cfg
        self.model = _Base(cfg)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    @property
    def block_size(self) -> int:
        return self.cfg.block_size

    def new_block_cache(self, batch: int, capacity: int, dtype=None, device=None) -> BlockKVCache:
        p, c = self.model.word_embeddings.weight, self.cfg
        return BlockKVCache.empty(c.num_hidden_layers, batch, c.num_key_value_heads, capacity, c.head_dim,
                                  c.block_size, dtype or p.dtype, device or p.device)

    def _run(self, input_ids, positions, mask, cache, step, logits_last):
        c, m = self.cfg, self.model
        x = m.word_embeddings(input_ids)
        cos, sin = rope_cos_sin(positions, c.rope_dim, c.rope_theta, x.dtype)
        h = fused_norm_layers(m.layers, m.norm, x, cos, sin, mask, cache, step)
        h = h if logits_last is None else h[:, -logits_last:]
        w = m.word_embeddings.weight if c.tie_word_embeddings else self.lm_head.weight
        return F.linear(h, w), h

    def forward(self, input_ids, attention_mask=None, positions=None, kv=None):
        if kv is not None:
            raise ValueError("block-causal models take their cache through block_forward, not a CacheCall; "
                             "cache=prefix|dual do not apply to them")
        positions = default_positions(input_ids, positions)
        return self._run(input_ids, positions, block_causal_mask(positions, self.cfg.block_size, attention_mask),
                         None, None, None)

    def block_forward(self, input_ids, cache: BlockKVCache, valid=None, commit=0, logits_last: int | None = None,
                      key_len: int | None = None,
                      checked: bool = True):
        return cached_forward(lambda step: self._run(input_ids, step.positions, None, cache, step, logits_last),
                              input_ids, cache, valid, commit, key_len, checked)
