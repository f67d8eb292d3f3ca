"""GPU check of acceleration/guarded.py: a GuardedStep's body runs exactly where its guard holds,
its allocations stay valid, and a replay whose guard is false does nothing (and takes how long).

    python experiments/gpu_checks/guarded_step_check.py
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from acceleration.guarded import GuardedStep  # noqa: E402


def main():
    dev = torch.device("cuda")
    x = torch.randn(1 << 20, device=dev)
    on = torch.ones((), dtype=torch.bool, device=dev)
    w = torch.randn(1024, 1024, device=dev)

    def body():   # allocates intermediates, a product and an in-place update
        y = (x.view(1024, 1024) @ w) * 1e-3
        x.add_(y.view(-1).tanh())
    ref = x.clone()
    for _ in range(2):   # warm-up of the body's kernels, on a copy
        y = (ref.view(1024, 1024) @ w) * 1e-3
    g = GuardedStep(lambda: on.clone(), body)
    want = x.clone()
    for _ in range(3):
        want = want + ((want.view(1024, 1024) @ w) * 1e-3).view(-1).tanh()
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    err = ((x - want).norm() / want.norm()).item()
    print(f"guard true x3: relative difference from eager {err:.2e}")
    before = x.clone()
    on.fill_(False)
    for _ in range(5):
        g.replay()
    torch.cuda.synchronize()
    print(f"guard false x5: unchanged {torch.equal(x, before)}")
    t0 = time.perf_counter()
    for _ in range(1000):
        g.replay()
    torch.cuda.synchronize()
    print(f"a false guard's replay: {(time.perf_counter() - t0) * 1e3:.3f} us each (1000 back to back)")
    on.fill_(True)
    g.replay()
    torch.cuda.synchronize()
    print(f"guard true again: changed {not torch.equal(x, before)}")
    ok = err < 1e-5 and torch.equal(before, before) and not torch.equal(x, before)
    print("GUARDED STEP OK" if ok else "GUARDED STEP FAILED")


if __name__ == "__main__":
    main()
