"""The set-up the GPU profiling scripts share (profile_step.py, decode_timeline.py): their common
arguments, and a model with random weights and calibrated confidence (as bench/bench_speed.py
makes it: half the masked positions confident), its prompts and the GenConfig."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from decoding.base import GenConfig  # noqa: E402
from models import load_model  # noqa: E402
from models.calibrate import calibrate_confidence_  # noqa: E402


def speed_args(batch: int = 1) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="llada-8b")
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--methods", type=lambda s: s.split(";"), required=True)
    ap.add_argument("--top", type=int, default=12)
    return ap


def calibrated(a) -> tuple:
    """(model on the GPU, bf16, random weights, confidence calibrated; prompts [batch][prompt]; gen)."""
    dev = torch.device("cuda")
    model = load_model(a.config, device="cuda", dtype=torch.bfloat16, no_weights=True)
    g = torch.Generator(device=dev).manual_seed(1)
    sample = torch.randint(2000, 100000, (1, a.prompt), device=dev, generator=g)
    calibrate_confidence_(model, torch.cat([sample, torch.full((1, a.gen), model.mask_id, device=dev)], 1), 0.5, tau=0.9)
    prompts = torch.randint(2000, 100000, (a.batch, a.prompt), device=dev,
                            generator=torch.Generator(device=dev).manual_seed(0)).tolist()
    return model, prompts, GenConfig(gen_length=a.gen, block_length=a.block, early_stop=False)
