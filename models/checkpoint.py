"""Hugging Face format checkpoints: a directory with config.json, *.safetensors (single file or
shards listed in model.safetensors.index.json) and the tokenizer files.

`resolve_dir` takes a local directory or a hub id. A hub id is looked up in the local HF cache
first and downloaded only when the hub is reachable and HF_HUB_OFFLINE is not set; a local
directory never touches the network.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def resolve_dir(path_or_id: str) -> Path:
    p = Path(path_or_id).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise FileNotFoundError(f"{p} has no config.json; point --model-path at a Hugging Face model directory")
        return p
    if path_or_id.count("/") != 1 or path_or_id.startswith((".", "/")):
        raise FileNotFoundError(f"model path {path_or_id!r} does not exist and is not a hub id (owner/name)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(f"{path_or_id!r} is not a local directory and huggingface_hub is not installed; "
                                f"download the checkpoint and pass its directory") from None
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.py", "*.jinja", "tokenizer*"]
    try:  # the local cache first, the network only when allowed
        return Path(snapshot_download(path_or_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise FileNotFoundError(
                f"{path_or_id!r} is not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1); "
                f"download it first (huggingface-cli download {path_or_id}) or pass a local directory, "
                f"or set HF_HUB_OFFLINE=0") from None
    return Path(snapshot_download(path_or_id, allow_patterns=patterns))


def read_config(d: Path) -> dict:
    return json.loads((d / "config.json").read_text())


def weight_files(d: Path) -> list[Path]:
    index = d / "model.safetensors.index.json"
    if index.exists():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [n for n in names if not (d / n).exists()]
        if missing:
            raise FileNotFoundError(f"{d} lacks shards {missing} listed in {index.name}")
        return [d / n for n in names]
    files = sorted(d.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{d} has no *.safetensors weights (pytorch .bin files are not supported; "
                                f"convert them, or use --no-weights for random weights)")
    return files


def load_weights(module: torch.nn.Module, d: Path, device, dtype: torch.dtype) -> None:
    """Load every shard into `module` (built on the meta device or anywhere), exact names, strict."""
    state: dict[str, torch.Tensor] = {}
    for f in weight_files(d):
        for k, t in load_file(str(f), device=str(device)).items():
            state[k] = t.to(dtype) if t.is_floating_point() else t
    expected = set(module.state_dict().keys())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"checkpoint {d} does not match the {type(module).__name__} architecture: "
                         f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                         f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    module.load_state_dict(state, strict=True, assign=True)


def save_checkpoint(module: torch.nn.Module, config: dict, d: Path, shard_size: int | None = None) -> None:
    """Write an HF-format directory (config.json + safetensors, sharded when shard_size is given)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}  # clone: fused views
    if shard_size is None:
        save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
        return
    shards, cur, size = [], {}, 0
    for k, v in state.items():
        if cur and size + v.numel() * v.element_size() > shard_size:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = v
        size += v.numel() * v.element_size()
    shards.append(cur)
    weight_map = {}
    for i, s in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(s, str(d / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in s})
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))


@torch.no_grad()
def random_init_(module: torch.nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Random weights in place (normal(0, std) for matrices and embeddings, ones for norms, zeros
    for biases), drawn on the module's own device and dtype, reproducible from `seed`."""
    dev = next(module.parameters()).device
    g = torch.Generator(device=dev).manual_seed(seed)
    for name, p in module.named_parameters():
        if name.endswith("bias"):
            p.zero_()
        elif p.dim() == 1:
            p.fill_(1.0)
        else:
            p.normal_(0.0, std, generator=g)


def load_remote_code(path: str, auto_class: str, device, dtype):
    """The authors' modeling code of checkpoint `path` through transformers' remote code
    (`trust_remote_code=True`) as `auto_class` (e.g. "AutoModel"); returns (model, resolved dir).
    One-line errors when transformers, the config's auto_map entry or an import of that code is
    missing."""
    try:
        import transformers
    except ImportError:
        raise ValueError("--model-backend hf needs transformers: pip install transformers") from None
    d = resolve_dir(path)
    if auto_class not in read_config(d).get("auto_map", {}):
        raise ValueError(f"{d}/config.json has no auto_map entry for {auto_class}, so transformers cannot find the "
                         f"authors' modeling code; --model-backend hf and verify-model need the checkpoint as "
                         f"published (config.json with auto_map and its modeling_*.py files)")
    try:
        hf = getattr(transformers, auto_class).from_pretrained(str(d), trust_remote_code=True, torch_dtype=dtype)
    except ImportError as e:   # a package the authors' modeling code imports
        raise ValueError(f"the authors' modeling code in {d} cannot be imported: {e}") from None
    return hf.to(device).eval(), d
