"""The PRR controller: a small MLP scoring each masked position's convergence progress s in (0, 1).

    LayerNorm(d + 11) -> Linear(d + 11, H) -> GELU -> Dropout
      -> residual [Linear(H, H) -> GELU -> Dropout -> Linear(H, H) -> Dropout]
      -> Linear(H, 1) -> sigmoid

as the reference code (H = 1024 for d = 4096, about 6.3M parameters); H is a setting, scaled down
for small models. A checkpoint is
`<name>.pt` (weights and architecture, loaded with weights_only=True) plus `<name>.json` (the
training record written by training.prr_train).
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
        z = self.drop(self.act(self.inp(self.norm(torch.cat([hidden.float(), feats.float()], -1)))))
        return self.out(z + self.res(z)).squeeze(-1)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def save_controller(ctrl: Controller, path: str | Path, record: dict) -> tuple[Path, Path]:
    path = Path(path).with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    w, j = path.with_suffix(".pt"), path.with_suffix(".json")
    state = {k: v.detach().float().cpu().contiguous() for k, v in ctrl.state_dict().items()}
    torch.save({"config": asdict(ctrl.cfg), "state_dict": state}, str(w))
    j.write_text(json.dumps({"config": asdict(ctrl.cfg), "params": ctrl.n_params, **record}, indent=1) + "\n")
    return w, j


def resolve_checkpoint(name: str) -> Path:
    """A path to a .pt checkpoint (suffix optional), or the name of a committed one (e.g. `tiny`)."""
    p = Path(name)
    cands = [p, p.with_suffix(".pt"), CHECKPOINT_DIR / f"{name}.pt"]
    for c in cands:
        if c.is_file():
            return c
    have = sorted(x.stem for x in CHECKPOINT_DIR.glob("*.pt"))
    raise FileNotFoundError(f"prr: no controller checkpoint {name!r} (looked at {', '.join(map(str, cands))}); "
                            f"committed ones: {', '.join(have) or 'none'}; train one with "
                            f"`python -m training.prr_train --out <path>`, or use prr:controller=off")


def load_controller(name: str, device="cpu") -> Controller:
    path = resolve_checkpoint(name)
    blob = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
        raise ValueError(f"prr: {path} is not a controller checkpoint written by training.prr_train")
    ctrl = Controller(ControllerConfig(**blob["config"]))
    ctrl.load_state_dict(blob["state_dict"])
    return ctrl.to(device).eval()
