"""The PRR controller: a small MLP scoring each masked position's convergence progress s in (0, 1).

    LayerNorm(d + 11) -> Linear(d + 11, H) -> GELU -> Dropout
      -> residual [Linear(H, H) -> GELU -> Dropout -> Linear(H, H) -> Dropout]
      -> Linear(H, 1) -> sigmoid

as the reference code (H = 1024 for d = 4096, about 6.3M parameters); H is a setting, scaled down
for small models. A checkpoint is `<name>.safetensors` (the weights; the architecture in its
metadata) plus `<name>.json` (the architecture and the training record written by
training.prr_train). Checkpoints in the earlier `<name>.pt` format (a dict of config and
state_dict, loaded with weights_only=True) still load.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .features import N_FEATURES

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"


@dataclass
class ControllerConfig:
    d_model: int              # the backbone's hidden size
    hidden: int = 256         # H
    dropout: float = 0.1
    n_features: int = N_FEATURES


class Controller(nn.Module):
    def __init__(self, cfg: ControllerConfig):
        super().__init__()
        self.cfg = cfg
        d, H = cfg.d_model + cfg.n_features, cfg.hidden
        self.norm = nn.LayerNorm(d)
        self.inp = nn.Linear(d, H)
        self.res = nn.Sequential(nn.Linear(H, H), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(H, H),
                                 nn.Dropout(cfg.dropout))
        self.act, self.drop = nn.GELU(), nn.Dropout(cfg.dropout)
        self.out = nn.Linear(H, 1)

    def forward(self, hidden: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """Logits [...]: hidden [..., d], feats [..., 11]; s = sigmoid(logits)."""
        dt = self.inp.weight.dtype   # float32, or bfloat16 for prr:bf16=true
        z = self.drop(self.act(self.inp(self.norm(torch.cat([hidden.to(dt), feats.to(dt)], -1)))))
        return self.out(z + self.res(z)).squeeze(-1)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


SUFFIXES = (".safetensors", ".pt", ".json")
TRAIN_HINT = ("train one with `python -m training.prr_train --model MODEL --out PATH` (add --model-path and "
              "--no-weights as for the run), then use prr:controller=PATH")


def _stem(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in SUFFIXES else p


def save_controller(ctrl: Controller, path: str | Path, record: dict) -> tuple[Path, Path]:
    """Write <path>.safetensors and <path>.json (a given suffix is replaced)."""
    from safetensors.torch import save_file
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    w, j = stem.parent / (stem.name + ".safetensors"), stem.parent / (stem.name + ".json")
    state = {k: v.detach().float().cpu().contiguous() for k, v in ctrl.state_dict().items()}
    save_file(state, str(w), metadata={"format": "dllm-bench prr controller",
                                       "config": json.dumps(asdict(ctrl.cfg))})
    j.write_text(json.dumps({"config": asdict(ctrl.cfg), "params": ctrl.n_params, **record}, indent=1) + "\n")
    return w, j


def resolve_checkpoint(name: str) -> Path:
    """A path to a checkpoint (.safetensors or the earlier .pt; suffix optional), or the name of a
    committed one (e.g. `tiny`)."""
    stem = _stem(name)
    cands = [Path(name)] if Path(name).suffix in (".safetensors", ".pt") else []
    cands += [stem.parent / (stem.name + s) for s in (".safetensors", ".pt")]
    cands += [CHECKPOINT_DIR / f"{name}{s}" for s in (".safetensors", ".pt")]
    for c in cands:
        if c.is_file():
            return c
    have = sorted({x.stem for x in CHECKPOINT_DIR.glob("*.safetensors")} | {x.stem for x in CHECKPOINT_DIR.glob("*.pt")})
    raise FileNotFoundError(f"prr: no controller checkpoint {name!r} (looked at {', '.join(map(str, cands))}); "
                            f"committed ones: {', '.join(have) or 'none'}; {TRAIN_HINT}, or use prr:controller=off")


def _read(path: Path) -> tuple[dict, dict]:
    """(architecture, state dict) of a checkpoint file."""
    if path.suffix == ".pt":   # the earlier format
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
            raise ValueError(f"prr: {path} is not a controller checkpoint written by training.prr_train")
        return blob["config"], blob["state_dict"]
    from safetensors import safe_open
    from safetensors.torch import load_file
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise ValueError(f"prr: {path} is not a safetensors file ({e})") from None
    if "config" in meta:
        cfg = json.loads(meta["config"])
    else:
        side = path.with_suffix(".json")
        if not side.is_file() or "config" not in json.loads(side.read_text()):
            raise ValueError(f"prr: {path} holds no controller architecture (neither in its metadata nor in {side})")
        cfg = json.loads(side.read_text())["config"]
    return cfg, load_file(str(path))


def trained_features(name: str) -> str:
    """The feature set (decoding/methods/prr/features.py) the controller was trained with, from its
    training record's `features`; a record without it was trained with `ours`."""
    record = resolve_checkpoint(name).with_suffix(".json")
    if not record.is_file():
        return "ours"
    return json.loads(record.read_text()).get("features", "ours")


def load_controller(name: str, device="cpu") -> Controller:
    path = resolve_checkpoint(name)
    cfg, state = _read(path)
    ctrl = Controller(ControllerConfig(**cfg))
    ctrl.load_state_dict(state)
    return ctrl.to(device).eval()
