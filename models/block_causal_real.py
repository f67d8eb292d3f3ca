"""Loading the block-causal families (SDAR/TraDo, LLaDA2.x MoE, Fast-dLLM v2): real checkpoints
(hub id or local HF directory), random weights from a named config (--no-weights), or the
authors' remote code through transformers (--model-backend hf, for verify-model).

    load_block_causal("sdar", path="/models/SDAR-8B-Chat")
    load_block_causal("sdar", name="sdar-8b", no_weights=True)
"""
from __future__ import annotations

from dataclasses import asdict

import torch

from . import fast_dllm_v2, llada2, sdar
from .base import ModelAdapter
from .block_cache import block_causal_mask
from .checkpoint import load_remote_code, load_weights, random_init_, read_config, resolve_dir
from .families import family_of_config
from .hf_tokenizer import ByteTokenizer, HFTokenizer
from .limits import check_fits

FAMILIES = {
    "sdar": dict(net=sdar.SDAR, cfg=sdar.SDARConfig, configs=sdar.CONFIGS, hub="JetLM/SDAR-8B-Chat",
                 default_config="sdar-8b", shift=False, eot=sdar.IM_END_ID, arch="sdar"),
    "trado": dict(net=sdar.SDAR, cfg=sdar.SDARConfig, configs=sdar.CONFIGS, hub="Gen-Verse/TraDo-8B-Instruct",
                  default_config="trado-8b", shift=False, eot=sdar.IM_END_ID, arch="sdar"),
    "llada2": dict(net=llada2.LLaDA2, cfg=llada2.LLaDA2Config, configs=llada2.CONFIGS, hub="inclusionAI/LLaDA2.0-mini",
                   default_config="llada2-mini", shift=False, eot=llada2.EOS_ID, arch="llada2"),
    "fast-dllm-v2": dict(net=fast_dllm_v2.FastDLLMv2, cfg=fast_dllm_v2.FastDLLMv2Config, configs=fast_dllm_v2.CONFIGS,
                         hub="Efficient-Large-Model/Fast_dLLM_v2_7B", default_config="fast-dllm-v2-7b", shift=True,
                         eot=fast_dllm_v2.IM_END_ID, arch="fast-dllm-v2"),
}
NO_WEIGHTS_NOTE = "random weights (--no-weights): outputs are noise, accuracy is not applicable"


def family_ids(family: str, cfg) -> dict:
    """mask/pad/EOS ids from the config; the end-of-turn token also ends a generation."""
    eot = FAMILIES[family]["eot"]
    eos = (cfg.eos_token_id,) + ((eot,) if eot < cfg.vocab_size and eot != cfg.eos_token_id else ())
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else cfg.eos_token_id
    if pad == cfg.mask_token_id:
        raise ValueError(f"{family} config has pad id == mask_token_id ({cfg.mask_token_id}); they must differ")
    return dict(mask_id=cfg.mask_token_id, pad_id=pad, eos_ids=eos)


def load_block_causal(family: str, path: str | None = None, name: str | None = None, no_weights: bool = False,
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
    if no_weights and path is None:
        cname = name if name not in (None, family) else fam["default_config"]
        if cname not in fam["configs"]:
            raise ValueError(f"unknown {family} config {cname!r}; available: {', '.join(fam['configs'])}")
        cfg, tok, origin = fam["configs"][cname], ByteTokenizer(), f"config {cname}"
    else:
        d = resolve_dir(path or fam["hub"])
        raw = read_config(d)
        found = family_of_config(raw, str(d / "config.json"))
        if found not in (family, fam["arch"]):
            raise ValueError(f"{d} holds a {found} checkpoint (model_type {raw.get('model_type')!r}), not {family}; "
                             f"load it with --model {found}")
        cfg, origin = fam["cfg"].from_hf(raw), str(d)
        tok = HFTokenizer(d)

    with torch.device("meta"):
        net = fam["net"](cfg)
    check_fits(net, dtype, device, name or family)
    if no_weights:
        net = net.to(dtype=dtype).to_empty(device=device)
        random_init_(net, seed=seed)
        for b in net.buffers():      # MoE expert biases: zero (to_empty leaves buffers unset)
            b.zero_()
    else:
        load_weights(net, d, device, dtype)
    net.eval()
    return ModelAdapter(
        name=name or family, module=net, tokenizer=tok, logit_shift=fam["shift"], ar_blocks=fam["shift"],
        chat_template=getattr(tok, "chat_template", None), regime="block_causal", block_size=cfg.block_size,
        **family_ids(family, cfg),
        info={"family": family, "backend": "native", "weights": None if no_weights else origin,
              "config_from": origin, "config": asdict(cfg), "random_weights": no_weights,
              "regime": "block_causal", "block_size": cfg.block_size,
              **({"accuracy_note": NO_WEIGHTS_NOTE} if no_weights else {})})


class HFBlockCausal(torch.nn.Module):
    """The authors' remote code behind our whole-sequence forward (no cache), with the block-causal
    mask each reference expects."""

    def __init__(self, hf_model, family: str, block_size: int):
        super().__init__()
        self.hf, self.family, self.block_size = hf_model, family, block_size

    def forward(self, input_ids, attention_mask=None, positions=None, kv=None):
        if kv is not None:
            raise ValueError("--model-backend hf has no cache for block-causal models")
        if positions is None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand(input_ids.shape)
        mask = block_causal_mask(positions, self.block_size, attention_mask)
        out = self.hf(input_ids, attention_mask=mask, position_ids=positions, output_hidden_states=True)
        return out.logits, out.hidden_states[-1]


def _load_hf(family: str, path: str, device, dtype) -> ModelAdapter:
    hf, d = load_remote_code(path, "AutoModelForCausalLM", device, dtype)
    cfg = FAMILIES[family]["cfg"].from_hf(read_config(d))
    tok = HFTokenizer(d)
    return ModelAdapter(name=family, module=HFBlockCausal(hf, family, cfg.block_size), tokenizer=tok,
                        logit_shift=FAMILIES[family]["shift"], ar_blocks=FAMILIES[family]["shift"],
                        chat_template=tok.chat_template,
                        regime="block_causal", block_size=cfg.block_size, **family_ids(family, cfg),
                        info={"family": family, "backend": "hf", "weights": str(d), "config": asdict(cfg),
                              "random_weights": False})
