"""Loading LLaDA and Dream: real checkpoints (hub id or local HF directory), random weights from a
named config (--no-weights), or the authors' remote code through transformers (--model-backend hf).

    load_real("llada", path="GSAI-ML/LLaDA-8B-Instruct")           # native, real weights
    load_real("llada", name="llada-8b", no_weights=True)             # native, random weights, no download
    load_real("dream", path="/models/Dream-v0-Instruct-7B", backend="hf")
"""
from __future__ import annotations

from dataclasses import asdict

import torch

from . import dream, llada
from .base import ModelAdapter
from .checkpoint import load_remote_code, load_weights, random_init_, read_config, resolve_dir
from .hf_tokenizer import ByteTokenizer, HFTokenizer, MissingTokenizer, has_tokenizer
from .limits import check_fits

FAMILIES = {
    "llada": dict(net=llada.LLaDA, cfg=llada.LLaDAConfig, configs=llada.CONFIGS, hub=llada.DEFAULT_HUB_ID,
                  default_config="llada-8b", shift=False),
    "dream": dict(net=dream.Dream, cfg=dream.DreamConfig, configs=dream.CONFIGS, hub=dream.DEFAULT_HUB_ID,
                  default_config="dream-7b", shift=True),
}
NO_WEIGHTS_NOTE = "random weights (--no-weights): outputs are noise, accuracy is not applicable"


def family_ids(family: str, cfg) -> dict:
    """mask/pad/EOS ids from the config; the end-of-turn token (LLaDA <|eot_id|>, Dream <|im_end|>)
    also ends a generation when the vocabulary has it."""
    eot = llada.EOT_ID if family == "llada" else dream.IM_END_ID
    eos = (cfg.eos_token_id,) + ((eot,) if eot < cfg.vocab_size and eot != cfg.eos_token_id else ())
    if cfg.pad_token_id == cfg.mask_token_id:
        raise ValueError(f"{family} config has pad_token_id == mask_token_id ({cfg.mask_token_id}); they must differ")
    return dict(mask_id=cfg.mask_token_id, pad_id=cfg.pad_token_id, eos_ids=eos)


def load_real(family: str, path: str | None = None, name: str | None = None, no_weights: bool = False,
              device: str = "cpu", dtype: torch.dtype = torch.float32, backend: str = "native",
              seed: int = 0) -> ModelAdapter:
    fam = FAMILIES[family]
    if backend not in ("native", "hf"):
        raise ValueError(f"--model-backend {backend!r}: choose native or hf")
    if name is not None and name != family and not no_weights:
        raise ValueError(f"{name} is a named architecture without weights; add --no-weights, or load real "
                         f"weights with --model {family} --model-path <hub id or directory>")
    if backend == "hf":
        if no_weights:
            raise ValueError("--model-backend hf loads real checkpoints only; drop --no-weights or use the native backend")
        return _load_hf(family, path or fam["hub"], device, dtype)

    d = None
    if no_weights and path is None:  # named config, no files at all
        cname = name if name not in (None, family) else fam["default_config"]
        if cname not in fam["configs"]:
            raise ValueError(f"unknown {family} config {cname!r}; available: {', '.join(fam['configs'])}")
        cfg, tok, origin = fam["configs"][cname], ByteTokenizer(), f"config {cname}"
    else:
        d = resolve_dir(path or fam["hub"])
        cfg, origin = fam["cfg"].from_hf(read_config(d)), str(d)
        # a directory without tokenizer files: random weights take the byte tokenizer as a named
        # config does; real weights decode token ids, and only text needs the files
        tok = HFTokenizer(d) if has_tokenizer(d) else ByteTokenizer() if no_weights else MissingTokenizer(d)

    with torch.device("meta"):
        net = fam["net"](cfg)
    check_fits(net, dtype, device, name or family)
    if no_weights:
        net = net.to(dtype=dtype).to_empty(device=device)
        random_init_(net, seed=seed)
    else:
        load_weights(net, d, device, dtype)
    net.eval()
    return ModelAdapter(
        name=name or family, module=net, tokenizer=tok, logit_shift=fam["shift"],
        chat_template=getattr(tok, "chat_template", None), **family_ids(family, cfg),
        info={"family": family, "backend": "native", "weights": None if no_weights else origin,
              "config_from": origin, "config": asdict(cfg), "random_weights": no_weights,
              **({"accuracy_note": NO_WEIGHTS_NOTE} if no_weights else {})})


class HFModule(torch.nn.Module):
    """The authors' remote code behind our forward signature (no KV cache: cache=none only).
    LLaDA's reference code ignores attention masks; Dream's takes a 4-D bool mask and positions."""

    def __init__(self, hf_model, family: str):
        super().__init__()
        self.hf, self.family = hf_model, family

    def forward(self, input_ids, attention_mask=None, positions=None, kv=None):
        if kv is not None:
            raise ValueError("--model-backend hf supports cache=none only; use the native backend for prefix/dual")
        if self.family == "llada":
            out = self.hf(input_ids, output_hidden_states=True)
        else:
            mask = None
            if attention_mask is not None:
                m = attention_mask.bool()
                mask = m[:, None, None, :] & m[:, None, :, None]
            out = self.hf(input_ids, attention_mask=mask, position_ids=positions, output_hidden_states=True)
        return out.logits, out.hidden_states[-1]


def _load_hf(family: str, path: str, device, dtype) -> ModelAdapter:
    hf, d = load_remote_code(path, "AutoModel", device, dtype)
    cfg = FAMILIES[family]["cfg"].from_hf(read_config(d))
    tok = HFTokenizer(d) if has_tokenizer(d) else MissingTokenizer(d)
    return ModelAdapter(name=family, module=HFModule(hf, family), tokenizer=tok, logit_shift=FAMILIES[family]["shift"],
                        chat_template=tok.chat_template, **family_ids(family, cfg),
                        info={"family": family, "backend": "hf", "weights": str(d), "config": asdict(cfg),
                              "random_weights": False})
