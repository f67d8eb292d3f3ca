"""The built-in architecture under block-causal attention (`tiny-block`): the student of CDLM.

Same parameters and names as `tiny` (models/tiny_net.py: embed, blocks.N.{attn_norm, qkv, out,
mlp_norm, gate_up, down}, norm, head), so the bidirectional teacher's weights load unchanged;
only the attention differs: causal across blocks of `block_size` positions counted from each
row's first real token, bidirectional inside a block, with the exact block K/V cache of
models/block_cache.py (`new_block_cache`, `block_forward`), as SDAR/LLaDA2/Fast-dLLM v2 have.

A student directory holds config.json ({"regime": "block_causal", "block_size": B, "model":
<TinyConfig>, "training": <record>}), model.safetensors and tokenizer.json; it loads with
`--model <dir>` or `--model tiny-block --model-path <dir>`. `--model tiny-block` alone is the
built-in teacher's weights under the block-causal mask (an untrained student).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .base import ModelAdapter
from .block_cache import BlockKVCache, attend_block, block_causal_mask, cached_forward
from .layers import default_positions
from .tiny_net import Block, TinyConfig, apply_rope, rope_tables
from .tokenizer import WordTokenizer

REGIME = "block_causal"
DEFAULT_BLOCK = 16


class TinyBlockDLLM(nn.Module):
    """forward(input_ids, attention_mask, positions) -> (logits, hidden) under the block-causal
    mask; block_forward(input_ids, cache, valid, commit) -> the same for the fed tokens, against
    the cache (models/block_cache.py)."""

    def __init__(self, cfg: TinyConfig, block_size: int = DEFAULT_BLOCK):
        super().__init__()
        if block_size <= 0:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.cfg, self.block_size = cfg, block_size
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def new_block_cache(self, batch: int, capacity: int, dtype=None, device=None) -> BlockKVCache:
        p, c = self.embed.weight, self.cfg
        return BlockKVCache.empty(c.n_layers, batch, c.n_heads, capacity, c.d_model // c.n_heads, self.block_size,
                                  dtype or p.dtype, device or p.device)

    def _layer(self, blk: Block, x, cos, sin, mask, layer, cache, step):
        B, L, _ = x.shape
        H = self.cfg.n_heads
        qkv = blk.qkv(blk.attn_norm(x)).view(B, L, 3 * H, -1)      # token-major q, k, v heads
        qkv = torch.cat([apply_rope(qkv[:, :, :2 * H], cos, sin), qkv[:, :, 2 * H:]], 2)
        x = x + blk.out(attend_block(qkv, H, layer, cache, step, mask))
        g, u = blk.gate_up(blk.mlp_norm(x)).chunk(2, dim=-1)
        return x + blk.down(nn.functional.silu(g) * u)

    def _run(self, input_ids, positions, mask, cache, step, logits_last=None):
        cos, sin = rope_tables(positions, self.cfg.d_model // self.cfg.n_heads, self.cfg.rope_theta)
        x = self.embed(input_ids)
        for i, blk in enumerate(self.blocks):
            x = self._layer(blk, x, cos, sin, mask, i, cache, step)
        h = self.norm(x if logits_last is None else x[:, -logits_last:])
        return self.head(h), h

    def forward(self, input_ids, attention_mask=None, positions=None, kv=None):
        if kv is not None:
            raise ValueError("block-causal models take their cache through block_forward, not a CacheCall; "
                             "cache=prefix|dual do not apply to them")
        positions = default_positions(input_ids, positions)
        return self._run(input_ids, positions, block_causal_mask(positions, self.block_size, attention_mask),
                         None, None)

    def block_forward(self, input_ids, cache: BlockKVCache, valid=None, commit=0, logits_last: int | None = None,
                      key_len: int | None = None, checked: bool = True):
        """Feed each row's next tokens (left padding = valid False); append the first `commit` of
        them (whole finished blocks) to the cache. `logits_last`: logits and hidden of the last n fed
        tokens only (the decode loop needs only the current block's)."""
        return cached_forward(lambda step: self._run(input_ids, step.positions, None, cache, step, logits_last),
                              input_ids, cache, valid, commit, key_len, checked)


def student_from_teacher(teacher: nn.Module, block_size: int = DEFAULT_BLOCK) -> TinyBlockDLLM:
    """A block-causal copy of a tiny teacher (TinyDLLM): same weights, new tensors."""
    net = TinyBlockDLLM(teacher.cfg, block_size)
    net.load_state_dict({k: v.detach().clone() for k, v in teacher.state_dict().items()})
    return net.to(teacher.embed.weight.device)


def save_student(net: TinyBlockDLLM, tokenizer: WordTokenizer, out: str | Path, record: dict) -> Path:
    """Write <out>/{model.safetensors, config.json, tokenizer.json}; returns the directory."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()},
              str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps({"regime": REGIME, "block_size": net.block_size,
                                                 "model": net.cfg.to_dict(), "training": record}, indent=1))
    tokenizer.save(out / "tokenizer.json")
    return out


def is_student_dir(path: str | Path) -> bool:
    """Whether `path` is a directory whose config.json declares a block-causal tiny student."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        d = json.loads(cfg.read_text())
    except json.JSONDecodeError:
        return False
    return isinstance(d, dict) and d.get("regime") == REGIME and "model" in d


def load_tiny_block(path: str | Path | None = None, device: str = "cpu", dtype: torch.dtype = torch.float32,
                    random_weights: bool = False, block_size: int = DEFAULT_BLOCK) -> ModelAdapter:
    """A student directory, or (path None) the built-in teacher's weights under block-causal attention."""
    from .tiny import WEIGHTS_DIR
    d = Path(path) if path else WEIGHTS_DIR
    files = [d / n for n in ("config.json", "tokenizer.json")] + ([] if random_weights else [d / "model.safetensors"])
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"student directory {d} lacks {', '.join(missing)}; write one with "
                                f"`python -m training.cdlm_train --out {d}`")
    raw = json.loads((d / "config.json").read_text())
    if path is not None and raw.get("regime") != REGIME:
        raise ValueError(f"{d}/config.json does not declare \"regime\": \"{REGIME}\"; load a bidirectional "
                         f"tiny directory with --model tiny --model-path {d}")
    block_size = int(raw.get("block_size", block_size))
    cfg = TinyConfig(**raw["model"])
    tok = WordTokenizer.load(d / "tokenizer.json")
    net = TinyBlockDLLM(cfg, block_size)
    if not random_weights:
        net.load_state_dict(load_file(str(d / "model.safetensors")))
    net = net.to(device=device, dtype=dtype).eval()
    origin = str(d) if path else f"built-in tiny weights ({d}) under block-causal attention, untrained"
    return ModelAdapter(name="tiny-block", module=net, tokenizer=tok, mask_id=tok.mask_id, pad_id=tok.pad_id,
                        eos_ids=(tok.eos_id,), regime=REGIME, block_size=block_size,
                        info={"path": str(d), "weights": None if random_weights else origin,
                              "config": cfg.to_dict(), "regime": REGIME, "block_size": block_size,
                              "random_weights": random_weights,
                              **({"training_command": raw["training"].get("command")}
                                 if path and isinstance(raw.get("training"), dict) else {}),
                              **({"accuracy_note": "random weights (--no-weights): accuracy is not applicable"}
                                 if random_weights else {})})
