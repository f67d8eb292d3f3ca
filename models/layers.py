"""Plain-PyTorch blocks shared by our dLLMs (LLaDA, Dream, tiny): RMSNorm, RoPE, SwiGLU and
bidirectional attention through scaled_dot_product_attention, with an optional KV cache.

KV cache (used by the prefix/dual cache modes of decoding/cache.py): one buffer per layer of
shape [B, L, 2 * H_kv, head_dim], token-major, K heads then V heads, RoPE already applied (RoPE is
per position, so rotating once at write time equals rotating the whole cache at every read, as the
reference code does). Token-major K/V is the layout of the fused q/k/v projection itself, so a
window's fresh K/V are written with one indexed copy and attention reads q, K and V as strided views
(no transposing copies). A forward uses the cache as a `CacheCall` says:
  - pos is None: the whole sequence is fed (a refresh): its K/V are stored for every position;
  - pos [b, W]: only the tokens at those sequence indices are fed (a window): their fresh K/V
    overwrite the cached ones at those indices and the window's queries attend to all L keys.
Prefix mode feeds the window [block start, L); dual mode feeds the block alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kernels import window_attention
from kernels.compiled import on_gpu_compiled


@dataclass
class KVCache:
    kv: list[torch.Tensor]   # per layer [B, L, 2 * H_kv, head_dim]: K heads, then V heads

    @classmethod
    def empty(cls, n_layers: int, batch: int, n_kv_heads: int, length: int, head_dim: int,
              dtype: torch.dtype, device) -> "KVCache":
        shape = (batch, length, 2 * n_kv_heads, head_dim)
        return cls([torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)])

    def keys(self, layer: int) -> torch.Tensor:
        """[B, L, H_kv, head_dim] view of one layer's cached keys."""
        t = self.kv[layer]
        return t[:, :, :t.shape[2] // 2]


@dataclass
class CacheCall:
    """How one forward reads and writes the cache."""
    cache: KVCache
    rows: torch.Tensor | None = None      # [b] cache rows of the fed batch rows; None: all rows in order
    pos: torch.Tensor | None = None       # [b, W] sequence indices of the fed tokens; None: whole sequence
    key_mask: torch.Tensor | None = None  # [b, L] bool keys that may be attended (window only), or [b, W, L]
                                          # per fed token (a block-causal window); None: all

    def row_index(self, b: int, device) -> torch.Tensor:
        """[b, 1] cache rows of the fed rows, made once per forward (not once per layer)."""
        if self.rows is not None:
            return self.rows[:, None]
        if getattr(self, "_all_rows", None) is None or self._all_rows.shape[0] != b:
            self._all_rows = torch.arange(b, device=device)[:, None]
        return self._all_rows


@on_gpu_compiled
def _rms_norm_rows(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Normalize in fp32, cast back, then scale (the LLaDA/Qwen2 order of operations)."""
    return _rms_norm_rows(x.reshape(-1, x.shape[-1]), weight, eps).view(x.shape)


@on_gpu_compiled
def _rms_norm_fp32_scale_rows(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return (h * weight.float()).to(x.dtype)


def rms_norm_fp32_scale(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Normalize and scale in fp32, then cast (SDAR's fused RMSNorm order; equal to rms_norm in fp32)."""
    return _rms_norm_fp32_scale_rows(x.reshape(-1, x.shape[-1]), weight, eps).view(x.shape)


@on_gpu_compiled(row_args=(0, 1))
def _add_rms_norm_fp32_scale_rows(x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, eps: float):
    s = x + delta
    h = s.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return s, (h * weight.float()).to(s.dtype)


def add_rms_norm(x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, eps: float,
                 fp32_scale: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual add and the norm after it in one pass: (x + delta, norm(x + delta)); the norm
    as rms_norm_fp32_scale when `fp32_scale`, else rms_norm."""
    fn = _add_rms_norm_fp32_scale_rows if fp32_scale else _add_rms_norm_rows
    s, h = fn(x.reshape(-1, x.shape[-1]), delta.reshape(-1, x.shape[-1]), weight, eps)
    return s.view(x.shape), h.view(x.shape)


@on_gpu_compiled(row_args=(0, 3, 4))
def _qk_norm_rope_rows(t: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                       n_heads: int, n_kv: int, eps: float, fp32_scale: bool) -> torch.Tensor:
    def norm(x, w):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return (h * w.float()).to(x.dtype) if fp32_scale else w * h.to(x.dtype)
    qk = torch.cat([norm(t[:, :n_heads], wq), norm(t[:, n_heads:n_heads + n_kv], wk)], dim=1)
    return torch.cat([_rope(qk, cos, sin), t[:, n_heads + n_kv:]], dim=1)


def fused_qk_norm_rope(qkv: torch.Tensor, n_heads: int, n_kv: int, wq: torch.Tensor, wk: torch.Tensor, eps: float,
                       fp32_scale: bool, cos, sin) -> torch.Tensor:
    """Qwen3's per-head RMSNorm of q and k, then RoPE, in one pass: a fused [B, W, (H + 2 H_kv) * hd]
    projection -> [B, W, H + 2 H_kv, hd] (v copied through), as fused_qkv_rope after the norms."""
    B, W, _ = qkv.shape
    t = qkv.view(B * W, n_heads + 2 * n_kv, -1)
    out = _qk_norm_rope_rows(t, wq, wk, cos.flatten(0, 1), sin.flatten(0, 1), n_heads, n_kv, eps, fp32_scale)
    return out.view(B, W, n_heads + 2 * n_kv, -1)


@on_gpu_compiled(row_args=(0, 1))
def _add_rms_norm_rows(x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, eps: float):
    s = x + delta
    h = s.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return s, weight * h.to(s.dtype)


@on_gpu_compiled
def _swiglu_rows(gate_up: torch.Tensor) -> torch.Tensor:
    g, u = gate_up.chunk(2, dim=-1)
    return F.silu(g) * u


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(g) * u of a fused [.., 2F] gate/up projection."""
    out = _swiglu_rows(gate_up.reshape(-1, gate_up.shape[-1]))
    return out.view(*gate_up.shape[:-1], out.shape[-1])


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)

    def add(self, x: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The residual add and the next norm in one pass: (x + delta, norm(x + delta))."""
        s, h = _add_rms_norm_rows(x.reshape(-1, x.shape[-1]), delta.reshape(-1, x.shape[-1]), self.weight, self.eps)
        return s.view(x.shape), h.view(x.shape)


def fused_norm_layers(layers, final_norm, x, cos, sin, mask, cache, step) -> torch.Tensor:
    """Run decoder layers whose residual adds are fused with the norm after them: layer i takes
    (x, h = its input norm of x, cos, sin, mask, i, cache, step, the next layer's input norm or
    `final_norm`) and returns (new x, that norm of it) -> the final norm of the last residual."""
    h = layers[0].input_layernorm(x)
    for i, layer in enumerate(layers):
        x, h = layer(x, h, cos, sin, mask, i, cache, step,
                     layers[i + 1].input_layernorm if i + 1 < len(layers) else final_norm)
    return h


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, L, 1, head_dim] tables for rotate-half RoPE (heads-last layout: they broadcast over
    the heads of a [B, L, H, hd] projection), angles computed in fp32."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float) / head_dim)
    ang = positions.float()[..., None] * inv
    emb = torch.cat([ang, ang], dim=-1)[:, :, None]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def fused_qkv_rope(qkv: torch.Tensor, n_heads: int, n_kv: int, cos, sin) -> torch.Tensor:
    """A fused [B, W, (H + 2 H_kv) * hd] projection -> [B, W, H + 2 H_kv, hd] with RoPE applied to
    the q and k heads (one pass, v copied through): the token-major layout `attend` reads."""
    B, W, _ = qkv.shape
    t = qkv.view(B * W, n_heads + 2 * n_kv, -1)
    c, s = cos.flatten(0, 1), sin.flatten(0, 1)
    return _rope_qk_rows(t, c, s, n_heads + n_kv).view(B, W, n_heads + 2 * n_kv, -1)


@on_gpu_compiled(row_args=(0, 1, 2))
def _rope_qk_rows(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_rot: int) -> torch.Tensor:
    return torch.cat([_rope(t[:, :n_rot], cos, sin), t[:, n_rot:]], dim=1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on the first cos.shape[-1] dims of each head (all of them, or a partial
    rotary width such as LLaDA2's half), the rest copied through."""
    r = cos.shape[-1]
    if r < x.shape[-1]:
        return torch.cat([_rope(x[..., :r], cos, sin), x[..., r:]], dim=-1)
    xc = x.to(cos.dtype)
    x1, x2 = xc.chunk(2, dim=-1)
    return (xc * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x.dtype)


def qkv_attention(qkv: torch.Tensor, n_heads: int, n_kv: int, cos, sin, layer: int,
                  call: CacheCall | None, mask: torch.Tensor | None) -> torch.Tensor:
    """RoPE and attention of a fused [b, W, (H + 2 H_kv) * hd] q/k/v projection -> [b, W, H * hd].
    Cache window steps that would leave SDPA's kernel short of work take the Triton kernels of
    window_attention.py (RoPE, K/V write and split-key attention in one pass); everything else
    RoPE in one compiled pass and SDPA."""
    b, W, width = qkv.shape
    heads = qkv.view(b, W, n_heads + 2 * n_kv, -1)
    if (call is not None and call.pos is not None and (call.key_mask is None or call.key_mask.dim() == 2)
            and window_attention.available(heads, n_heads)):
        rows = call.row_index(b, qkv.device)[:, 0]
        return window_attention.window_attention(heads, cos, sin, n_heads, call.cache.kv[layer], rows,
                                                 call.pos, call.key_mask)
    return attend(fused_qkv_rope(qkv, n_heads, n_kv, cos, sin), n_heads, layer, call, mask)


def attend(qkv: torch.Tensor, n_heads: int, layer: int, call: CacheCall | None,
           mask: torch.Tensor | None) -> torch.Tensor:
    """Bidirectional attention over a token-major qkv [b, W, H + 2 H_kv, hd] (RoPE applied to q
    and k) -> [b, W, H * hd]. `mask`: bool mask broadcastable to [b, 1, W, W] (query x key) for a
    full forward: a key mask, or a 4-D one (None: no padding)."""
    b, W = qkv.shape[:2]
    kv = qkv[:, :, n_heads:]                       # [b, W, 2 H_kv, hd]
    if call is not None:
        cached = call.cache.kv[layer]
        if call.pos is None:                       # refresh: store everything
            if call.rows is None:
                cached.copy_(kv)
            else:
                cached[call.rows] = kv
        else:                                      # window: write fresh K/V, attend to all keys
            cached.index_put_((call.row_index(b, kv.device), call.pos), kv)
            kv = cached if call.rows is None else cached[call.rows]
            km = call.key_mask
            mask = None if km is None else km[:, None, None, :] if km.dim() == 2 else km[:, None]
    n_kv = kv.shape[2] // 2
    q = qkv[:, :, :n_heads].transpose(1, 2)        # strided [b, H, W, hd] views: no copies
    k, v = kv[:, :, :n_kv].transpose(1, 2), kv[:, :, n_kv:].transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=n_heads != n_kv)
    return out.transpose(1, 2).reshape(b, W, -1)


def key_padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """[B, L] 0/1 attention mask -> [B, 1, 1, L] bool key mask (None stays None). A 4-D mask
    [B, 1, L, L] (query x key, True: may attend) is taken as it is, as bool."""
    if attention_mask is None:
        return None
    if attention_mask.dim() == 4:
        return attention_mask.bool()
    return attention_mask.bool()[:, None, None, :]


def default_positions(input_ids: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    if positions is not None:
        return positions
    B, L = input_ids.shape
    return torch.arange(L, device=input_ids.device).expand(B, L)


@torch.no_grad()
def fuse_linears_(*linears: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concatenate the weights (and biases) of linears that read the same input into one tensor
    and make each original parameter a view into it: one matrix product instead of several, no
    extra memory, state_dict() names unchanged."""
    w = torch.cat([l.weight for l in linears])
    b = torch.cat([l.bias for l in linears]) if linears[0].bias is not None else None
    o = 0
    for l in linears:
        n = l.weight.shape[0]
        l.weight = nn.Parameter(w[o:o + n], requires_grad=False)
        if b is not None:
            l.bias = nn.Parameter(b[o:o + n], requires_grad=False)
        o += n
    return w, b
