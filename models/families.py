"""Which model family a checkpoint directory holds, from its config.json `model_type`."""
from __future__ import annotations

# config.json model_type -> our family (TraDo checkpoints are SDAR's architecture: model_type sdar)
MODEL_TYPES = {"llada": "llada", "dream": "dream", "sdar": "sdar", "llada2_moe": "llada2",
               "fast_dllm_qwen": "fast-dllm-v2"}


def family_of_config(cfg: dict, where: str = "config.json") -> str:
    """The family of a checkpoint's config, or a one-line error naming the supported architectures."""
    mt = str(cfg.get("model_type", "")).lower()
    if mt in MODEL_TYPES:
        return MODEL_TYPES[mt]
    supported = ", ".join(f"{t} ({f})" for t, f in MODEL_TYPES.items())
    raise ValueError(f"{where}: model_type {cfg.get('model_type')!r} (architectures {cfg.get('architectures')}) is not "
                     f"a supported architecture; supported model_types: {supported}")
