"""A new prompt length builds a new captured decode; its compiled step should come from the
compiled code of the last one (acceleration/captured.py, capture_step). Decodes the same method at
several prompt lengths (LLaDA-8B random weights, batch 1, gen 256, block 32) and prints each
call's wall time and whether its steps were compiled.

    python experiments/speed/compile_reuse.py --methods "prr:controller=/tmp/random-controller,cache=dual;eb"
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from acceleration import Decoder  # noqa: E402
from decoding.base import GenConfig  # noqa: E402
from decoding.registry import build_method, parse_methods  # noqa: E402
from models import load_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="llada-8b")
    ap.add_argument("--prompts", type=lambda s: [int(v) for v in s.split(",")], default=[512, 500, 488, 512])
    ap.add_argument("--methods", type=lambda s: s.split(";"), required=True)
    a = ap.parse_args()
    model = load_model(a.config, device="cuda", dtype=torch.bfloat16, no_weights=True)
    gen = GenConfig(gen_length=256, block_length=32, early_stop=False, max_steps=64)
    decoder = Decoder(model)
    g = torch.Generator(device="cuda").manual_seed(0)
    for spec in a.methods:
        for P in a.prompts:
            ids = torch.randint(2000, 100000, (1, P), device="cuda", generator=g).tolist()
            m = build_method(parse_methods(spec)[0], gen)
            t0 = time.perf_counter()
            decoder(m, ids, gen)
            torch.cuda.synchronize()
            used = [d for d in decoder.pool.decodes.values() if d.method is m]
            print(f"{spec} prompt {P}: {time.perf_counter() - t0:.2f} s, compiled {used[0].compiled_kinds if used else None}",
                  flush=True)


if __name__ == "__main__":
    main()
