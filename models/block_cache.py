"""The exact K/V cache of block-causal dLLMs (SDAR/TraDo, LLaDA2.x, Fast-dLLM v2) and their
attention masks.

Block-causal attention: the sequence is cut into blocks of `block_size` positions counted from
each row's first real token (position 0); a token at position p sees every token at position k
with k // block_size <= p // block_size. Finished blocks therefore never see later tokens, and
their K/V, once computed from their final tokens, are exact for the rest of the generation.

The cache holds, per row, the K/V of positions [0, length) (whole finished blocks), stored at the
index equal to the position (per layer [B, capacity + 1, 2 * H_kv, head_dim], token-major, K heads
then V heads, RoPE applied; the last slot takes the writes of padding tokens and is never read).
A block forward feeds the next tokens of each row (the current block, optionally preceded by
blocks to append), writes their fresh K/V at their positions, attends to the cached prefix plus
the fed tokens under the block-causal mask, and, when asked, appends the first `commit` fed
tokens of each row (which must be whole finished blocks) by moving `length` past them: the K/V
written by that forward are the cache; nothing is recomputed.

    cache = model.new_block_cache(batch, capacity)
    logits, hidden = model.block_forward(prompt_ids, cache, valid=prompt_mask, commit=n_full)  # prefill
    logits, hidden = model.block_forward(block_ids, cache)                    # a denoising step
    logits, hidden = model.block_forward(block_ids, cache, commit=block_size)  # final: append it

A row's fed tokens are its next positions: valid token j of row b gets position
length[b] + (number of valid tokens before j); padding (valid False) must come first (left padding).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kernels import block_attention, qk_rope_write

from .layers import fused_qk_norm_rope, fused_qkv_rope


def block_of(positions: torch.Tensor, block_size: int, origin: torch.Tensor | None = None) -> torch.Tensor:
    """The block of each position: position // block_size (blocks counted from each row's first
    token); with `origin` [B] (blocks counted from there: CDLM's grid), the positions before it
    (the prompt) form one block, -1, and position p >= origin is in (p - origin) // block_size."""
    if origin is None:
        return positions // block_size
    o = origin.view(-1, *([1] * (positions.dim() - 1)))
    return torch.where(positions < o, -1, (positions - o).div(block_size, rounding_mode="floor"))


def block_causal_mask(positions: torch.Tensor, block_size: int, valid: torch.Tensor | None = None,
                      origin: torch.Tensor | None = None) -> torch.Tensor:
    """[B, 1, L, L] bool mask of a whole-sequence forward: query p sees key k when k is a real
    token and k's block is not after p's (block_of). Padding queries see every key (their outputs
    are ignored; a row of all-False would give NaN)."""
    blk = block_of(positions, block_size, origin)
    m = blk[:, None, :] <= blk[:, :, None]
    if valid is not None:
        v = valid.bool()
        m = (m & v[:, None, :]) | ~v[:, :, None]
    return m[:, None]


MASKED = -65504.0   # the additive mask's value at a hidden key: what SDPA's cuDNN path writes for a False
                    # key of a bool mask; exp of it underflows to 0 beside any real score, as -inf does


@dataclass
class BlockStep:
    """How one block forward reads and writes the cache (computed once, shared by the layers)."""
    positions: torch.Tensor    # [B, W] positions of the fed tokens (padding: its row's length)
    write_idx: torch.Tensor    # [B, W] cache index each fed token's K/V is written to (padding: the dump slot)
    key_mask: torch.Tensor     # [B, 1, W, K] bool
    key_len: int               # K: cache slots read
    new_length: torch.Tensor   # [B] length after this forward (length + commit)
    rows: torch.Tensor         # [B, 1] row index for the indexed writes
    bias: torch.Tensor | None = field(default=None, repr=False)   # key_mask as an additive mask (additive_mask)
    flat: tuple | None = field(default=None, repr=False)          # (rows, slots) per fed token (flat_writes)

    def additive_mask(self, dtype: torch.dtype) -> torch.Tensor:
        """key_mask as SDPA's additive mask in `dtype` (0 where a key is seen, MASKED where not), made
        at the first layer and shared by the others: SDPA would convert a bool mask in every layer."""
        if self.bias is None or self.bias.dtype != dtype:
            self.bias = torch.zeros(self.key_mask.shape, dtype=dtype, device=self.key_mask.device).masked_fill_(
                ~self.key_mask, MASKED)
        return self.bias

    def flat_writes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(cache row, cache slot) of each fed token, [B * W] each, made at the first layer and
        shared by the others."""
        if self.flat is None:
            B, W = self.write_idx.shape
            # contiguous: at batch 1 the expanded rows would flatten to a view of stride 0
            self.flat = (self.rows.expand(B, W).contiguous().view(-1), self.write_idx.contiguous().view(-1))
        return self.flat


@dataclass
class BlockKVCache:
    kv: list[torch.Tensor]     # per layer [B, capacity + 1, 2 * H_kv, head_dim]: K heads, then V heads
    length: torch.Tensor       # [B] long: positions [0, length) hold finished blocks
    block_size: int
    origin: torch.Tensor | None = None   # [B] long: where the block grid starts (block_of); None: at 0

    @classmethod
    def empty(cls, n_layers: int, batch: int, n_kv_heads: int, capacity: int, head_dim: int, block_size: int,
              dtype: torch.dtype, device) -> "BlockKVCache":
        shape = (batch, capacity + 1, 2 * n_kv_heads, head_dim)
        return cls([torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)],
                   torch.zeros(batch, dtype=torch.long, device=device), block_size)

    def start_grid_at(self, origin: torch.Tensor) -> None:
        """Count blocks from `origin` [B] (a row's prompt is then one block, cached whole: CDLM)."""
        if self.origin is None:
            self.origin = torch.zeros_like(self.length)
        self.origin.copy_(origin)

    @property
    def capacity(self) -> int:
        return self.kv[0].shape[1] - 1

    def step(self, valid: torch.Tensor, commit: int | torch.Tensor = 0, key_len: int | None = None,
             checked: bool = True) -> BlockStep:
        """The positions, writes and mask of feeding `valid` [B, W] (bool; padding first) next tokens,
        `commit` of which (per row, int or [B]) are appended. `key_len`: cache slots to read (default:
        the largest end position, one host sync; the capacity reads every slot, masked, and is what a
        CUDA graph uses). `checked=False` skips the commit check (a host sync): a captured forward's
        caller has checked its inputs."""
        B, W = valid.shape
        if B != self.length.shape[0]:
            raise ValueError(f"block forward of {B} rows on a cache of {self.length.shape[0]} rows")
        valid = valid.bool()
        n = valid.sum(-1)
        pos = self.length[:, None] + valid.long().cumsum(-1) - 1
        pos = torch.where(valid, pos, self.length[:, None])
        end = self.length + n
        commit = torch.as_tensor(commit, device=valid.device).expand(B)
        new_length = self.length + commit
        grid = new_length if self.origin is None else new_length - self.origin
        if checked and bool(((commit < 0) | (commit > n) | (grid % self.block_size != 0) & (commit > 0)).any()):
            raise ValueError(f"commit {commit.tolist()} must be whole blocks of {self.block_size} among the "
                             f"{n.tolist()} fed tokens, ending at a block boundary (cache lengths {self.length.tolist()})")
        K = int(end.max()) if key_len is None else key_len
        if K > self.capacity:
            raise ValueError(f"block forward reaches position {K}; the cache holds {self.capacity}: make it longer")
        write_idx = torch.where(valid, pos, self.capacity)
        k = torch.arange(K, device=valid.device)
        qb = block_of(pos, self.block_size, self.origin)
        kb = block_of(k.expand(B, K), self.block_size, self.origin)
        mask = (k[None, None, :] < end[:, None, None]) & (kb[:, None, :] <= qb[:, :, None])
        mask = mask | ~valid[:, :, None]
        rows = torch.arange(B, device=valid.device)[:, None]
        return BlockStep(pos, write_idx, mask[:, None], K, new_length, rows)

    def advance(self, step: BlockStep) -> None:
        self.length.copy_(step.new_length)   # in place: a captured forward reads and writes this tensor


def cached_forward(run, input_ids: torch.Tensor, cache: BlockKVCache, valid: torch.Tensor | None, commit,
                   key_len: int | None, checked: bool):
    """The block forward every block-causal model shares: the step's positions, writes and mask
    (BlockKVCache.step), `run(step)` through the layers, then the append of `commit` tokens."""
    if valid is None:
        valid = torch.ones(input_ids.shape, dtype=torch.bool, device=input_ids.device)
    step = cache.step(valid, commit, key_len, checked)
    out = run(step)
    cache.advance(step)
    return out


def block_heads(qkv: torch.Tensor, n_heads: int, n_kv: int, cos: torch.Tensor, sin: torch.Tensor,
                norm: tuple[torch.Tensor, torch.Tensor, float, bool] | None, layer: int,
                cache: BlockKVCache | None, step: BlockStep | None) -> torch.Tensor:
    """A fused [B, W, (H + 2 H_kv) * hd] projection -> token-major heads [B, W, H + 2 H_kv, hd]:
    q and k through their per-head RMSNorms (norm: q weight, k weight, eps, fp32_scale; None: no
    norms) and RoPE (cos/sin [B, W, 1, R]), v as projected; with a cache, the fed K/V written at
    step.write_idx (attend_block then reads them: written=True). On the GPU with a cache one Triton
    kernel does it all (kernels/qk_rope_write.py), else the compiled passes of layers.py and an
    indexed write."""
    def torch_heads():
        if norm is None:
            return fused_qkv_rope(qkv, n_heads, n_kv, cos, sin)
        return fused_qk_norm_rope(qkv, n_heads, n_kv, norm[0], norm[1], norm[2], norm[3], cos, sin)
    if cache is None:
        return torch_heads()
    B, W, _ = qkv.shape
    nh = n_heads + 2 * n_kv
    flat = qkv.view(B * W, nh, -1)
    if qk_rope_write.ready(flat):
        buf, (rows, slots) = cache.kv[layer], step.flat_writes()
        c, s = cos.reshape(B * W, -1), sin.reshape(B * W, -1)
        args = (flat, n_heads, n_kv, c, s, norm, buf, rows, slots)
        if qk_rope_write.trusted(*args, reference=lambda: torch_heads().view(B * W, nh, -1)):
            return qk_rope_write.qk_rope_write(*args).view(B, W, nh, -1)
    heads = torch_heads()
    cache.kv[layer].index_put_((step.rows, step.write_idx), heads[:, :, n_heads:])
    return heads


def attend_block(qkv: torch.Tensor, n_heads: int, layer: int, cache: BlockKVCache | None, step: BlockStep | None,
                 mask: torch.Tensor | None, written: bool = False) -> torch.Tensor:
    """Attention over a token-major qkv [B, W, H + 2 H_kv, hd] (RoPE applied) -> [B, W, H * hd].
    Without a cache: the fed sequence alone under `mask` ([B, 1, W, W], block_causal_mask).
    With one: the fed K/V are written at step.write_idx (unless `written`: block_heads wrote them),
    then the queries read the first step.key_len cache slots under step.key_mask (as an additive
    mask made once per forward); at small batch or narrow blocks on the GPU through
    kernels/block_attention.py's Triton kernels."""
    kv = qkv[:, :, n_heads:]
    if cache is not None:
        buf = cache.kv[layer]
        if not written:
            buf.index_put_((step.rows, step.write_idx), kv)
        kv, mask = buf[:, :step.key_len], step.additive_mask(qkv.dtype)
        if block_attention.available(qkv, n_heads) and block_attention.trusted(qkv, n_heads, kv, step.key_mask, mask):
            return block_attention.block_attention(qkv, n_heads, kv, step.key_mask)
    return block_attention.sdpa(qkv, n_heads, kv, mask)
