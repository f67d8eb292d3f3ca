"""CPU probe: the ATen ops a method's `decide` runs per step and the bytes each writes, on a model
with a real vocabulary (llada-small: V 126464) so the passes over [rows, V] stand out. A count of
what the method does beside the forward, not a GPU timing (on the GPU, compiled row functions
fuse several of these ops into one kernel).

    python experiments/speed/decide_ops_cpu.py "prr:controller=random" [--batch 1] [--cache none]
"""
import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from decoding.base import GenConfig  # noqa: E402
from decoding.loop import decode  # noqa: E402
from decoding.registry import build_method, parse_methods  # noqa: E402
from models import load_model  # noqa: E402


class OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = Counter()
        self.bytes = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, (tuple, list)) else [out]
        n = sum(t.numel() * t.element_size() for t in outs if isinstance(t, torch.Tensor))
        shape = next((tuple(t.shape) for t in outs if isinstance(t, torch.Tensor)), ())
        key = (str(func), shape, next((str(t.dtype)[6:] for t in outs if isinstance(t, torch.Tensor)), ""))
        self.ops[key] += 1
        self.bytes[key] += n
        return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("spec")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--model", default="llada-small")
    ap.add_argument("--min-mb", type=float, default=0.5, help="list ops writing at least this per step")
    a = ap.parse_args()
    spec = a.spec
    m = load_model(a.model, no_weights=True)
    if "controller=random" in spec:
        from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
        torch.manual_seed(0)
        save_controller(Controller(ControllerConfig(d_model=m.module.cfg.d_model)), "/tmp/random-controller-probe",
                        {"note": "random"})
        spec = spec.replace("controller=random", "controller=/tmp/random-controller-probe")
    gen = GenConfig(gen_length=64, block_length=32, early_stop=False)
    meth = build_method(parse_methods(spec)[0], gen)
    log, steps = OpLog(), [0]
    orig = meth.decide

    def logged(view, out):
        steps[0] += 1
        with log:
            return orig(view, out)
    meth.decide = logged
    prompts = [list(range(10, 74))] * a.batch
    with torch.no_grad():
        decode(m, meth, prompts, gen)
    s = steps[0]
    total = sum(log.bytes.values()) / s / 2**20
    print(f"{a.spec} batch {a.batch}: {sum(log.ops.values()) / s:.0f} ops and {total:.1f} MiB written per decide "
          f"({s} decides)")
    for key, b in sorted(log.bytes.items(), key=lambda kv: -kv[1]):
        if b / s / 2**20 >= a.min_mb:
            print(f"  {b / s / 2**20:8.1f} MiB  x{log.ops[key] / s:4.1f}  {key[0]} {key[1]} {key[2]}")


if __name__ == "__main__":
    main()
