"""Where a captured step's time goes (GPU): for each method spec, decode once (LLaDA-8B random
weights, calibrated confidence, as bench/bench_speed.py), then for each step graph of the kept
captured decode: its replay time (CUDA events; every row finished, so the replay changes nothing)
and the kernels of the same step run eagerly on a copy of the state under torch.profiler (their
count and the top ones by GPU time); then a second decode on the kept graphs, timed whole, against
its step graphs' replays timed apart (where a block-causal step graph holds the forward, the gap is
the host loop's); `--ab SWITCH` also times that decode with the switch on and off. For a
block-causal model, last, the block forward alone as bench_speed times it, by kernel.

    python experiments/speed/profile_step.py --batch 1 --methods "prr:controller=/tmp/random-controller;eb:cache=dual"
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from acceleration import Decoder  # noqa: E402
from acceleration.captured import copy_tree  # noqa: E402
from bench.bench_speed import cuda_time  # noqa: E402
from calibrated import calibrated, speed_args  # noqa: E402
from decoding.registry import build_method, parse_methods  # noqa: E402


@torch.no_grad()
def main():
    ap = speed_args()
    ap.add_argument("--ab", default="", help="a speed switch (e.g. DLLM_QUEUE_AHEAD) whose decode is also timed on and off")
    a = ap.parse_args()
    model, prompts, gen = calibrated(a)
    decoder = Decoder(model)
    for spec in a.methods:
        m = build_method(parse_methods(spec)[0], gen)
        res = decoder(m, prompts, gen)
        used = [d for d in decoder.pool.decodes.values() if d.method is m]
        if not used:
            print(f"{spec}: not captured")
            continue
        d = used[0]
        print(f"== {spec}: {int(res.steps.max())} steps, replays {d.replays}, compiled {d.compiled_kinds}")
        switched = {}
        for value in (["1", "0"] if a.ab else []):   # the decode with the switch on, then off (read per call)
            os.environ[a.ab] = value
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            r = decoder(build_method(parse_methods(spec)[0], gen), prompts, gen)
            torch.cuda.synchronize()
            switched[value] = ((time.perf_counter() - t0) / int(r.steps.max()), int(r.steps.max()), d.ahead_steps)
        if a.ab:
            os.environ.pop(a.ab)
        before = dict(d.replays)   # a second decode on the kept graphs, timed whole
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = decoder(build_method(parse_methods(spec)[0], gen), prompts, gen)
        torch.cuda.synchronize()
        wall, steps = time.perf_counter() - t0, int(res.steps.max())
        counts = {k: v - before.get(k, 0) for k, v in d.replays.items() if v - before.get(k, 0)}
        for value, (t, n, ahead) in switched.items():
            print(f"  {a.ab}={value}: {t * 1e3:.3f} ms/step wall, {n} steps, {ahead} queued ahead")
        replay_s = {}
        for kind, graph in d.steps.items():
            t = replay_s[kind] = cuda_time(graph.replay, warmup=3, reps=20)
            st = copy_tree(d.state)
            d.step_fns[kind](st, d.launched[kind])
            torch.cuda.synchronize()
            print_kernels(f"  {kind}: step graph replay {t * 1e3:.3f} ms", lambda: d.step_fns[kind](st, d.launched[kind]), a.top)
        graphs_s = sum(n * replay_s.get(k, 0.0) for k, n in counts.items())
        print(f"  decode again: {steps} steps, {wall / steps * 1e3:.3f} ms/step wall; its step graphs replayed "
              f"apart {graphs_s / steps * 1e3:.3f} ms/step ({counts}, {d.ahead_steps} queued ahead; eager steps and "
              f"forwards outside the step graphs not in it)")
    if model.regime == "block_causal":
        block_forward_alone(model, a)


def print_kernels(title: str, fn, top: int) -> None:
    """Run fn once under the CUDA profiler: its kernel count, GPU time and the top kernels."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    ev = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.device_time_total for e in ev)
    print(f"{title}; eager: {sum(e.count for e in ev)} kernels, {total / 1e3:.3f} ms GPU")
    for e in sorted(ev, key=lambda e: -e.device_time_total)[:top]:
        print(f"    {e.device_time_total / 1e3:8.3f} ms  x{e.count:<4d} {e.key[:110]}")


def block_forward_alone(model, a) -> None:
    """The block forward that bench_speed times as a block-causal step's forward (its last block:
    a block of masks against the prompt and every block before it), graphed and by kernel, to set
    beside the step graphs above."""
    from bench.bench_speed_block import _prefilled, block_step, graphed_block_step
    from kernels.compiled import compiling_for_graph
    net, bs, dev = model.module, model.block_size, model.device
    pre = a.prompt // bs * bs
    cache = _prefilled(net, a.batch, pre + a.gen - bs, pre + a.gen + 2 * bs, dev,
                       torch.Generator(device=dev).manual_seed(0))
    blk = torch.full((a.batch, bs), model.mask_id, device=dev)
    t = cuda_time(graphed_block_step(net, cache, blk, 0, bs), warmup=3, reps=20)
    step, inputs = block_step(net, cache, blk, 0, bs)

    def eager():   # the graphed function, run eagerly with the kernels its graph holds
        with compiling_for_graph():
            step(*inputs)
    eager()
    print_kernels(f"== the block forward alone (bench_speed's last-block step): graph replay {t * 1e3:.3f} ms", eager, a.top)


if __name__ == "__main__":
    main()
