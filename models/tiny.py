"""Loading the built-in model (`tiny`): weights, config and tokenizer committed in the repo."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from .base import ModelAdapter
from .tiny_net import TinyConfig, TinyDLLM
from .tokenizer import WordTokenizer

WEIGHTS_DIR = Path(__file__).parent / "tiny"


def load_tiny(path: str | Path | None = None, device: str = "cpu", dtype: torch.dtype = torch.float32,
              random_weights: bool = False) -> ModelAdapter:
    path = Path(path) if path else WEIGHTS_DIR
    cfg_file, tok_file, w_file = path / "config.json", path / "tokenizer.json", path / "model.safetensors"
    missing = [f.name for f in (cfg_file, tok_file) if not f.exists()]
    if not random_weights and not w_file.exists():
        missing.append(w_file.name)
    if missing:
        raise FileNotFoundError(
            f"built-in model directory {path} lacks {', '.join(missing)}; retrain it with "
            f"`python -m training.tiny_train --out {path}` or reinstall the package")
    raw = json.loads(cfg_file.read_text())
    if raw.get("regime", "bidirectional") != "bidirectional":
        raise ValueError(f"{path} holds a {raw['regime']} student; load it with --model {path} "
                         f"(or --model tiny-block --model-path {path})")
    cfg = TinyConfig(**raw["model"])
    tok = WordTokenizer.load(tok_file)
    net = TinyDLLM(cfg)
    if not random_weights:
        net.load_state_dict(load_file(str(w_file)))
    net = net.to(device=device, dtype=dtype).eval()
    return ModelAdapter(name="tiny", module=net, tokenizer=tok, mask_id=tok.mask_id, pad_id=tok.pad_id,
                        eos_ids=(tok.eos_id,), info={"path": str(path), "config": cfg.to_dict(),
                                                    "random_weights": random_weights,
                                                    **({"accuracy_note": "random weights (--no-weights): accuracy is not applicable"}
                                                       if random_weights else {})})
