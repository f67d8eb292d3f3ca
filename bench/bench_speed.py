"""Speed of our native models against their hardware floors (GPU; random weights, no download).

    python -m bench.bench_speed --config llada-8b --prompt 512 --gen 256 --block 32 --batch 1,8 \
        --out results/speed_llada8b_h100.json

A block-causal config (sdar-8b, llada2-mini, fast-dllm-v2-7b, ...) times its block steps against
the exact cache instead (bench/bench_speed_block.py; --block is the model's own).

Measured in one process, on one device:
  - ceilings: bf16 matmul rate (8192^3 products on random data) and copy bandwidth (a large
    device-to-device copy, bytes read + written), each the median of timed repetitions;
  - full forward (prompt + gen tokens, batch b) vs floor max(FLOPs / matmul rate, weight bytes / copy bw);
  - dual-cache window step (the block's tokens against the cached K/V) vs its floor
    max(FLOPs / rate, (weight bytes + K/V bytes read) / bw);
  - decode loop overhead: the share of decode time (acceleration.Decoder, as the harness runs it)
    outside its forwards, for the methods given (`--methods all`: every registered method, cache
    none and dual where it allows; prr with a random controller of the model's hidden size), with
    whether the method's step was captured in a CUDA graph (acceleration/policy.py). The forwards are timed inside the loop by CUDA events around
    each call (no added syncs), so they run under the loop's own clocks; a GPU that runs a long
    decode at a lower clock than a short timing burst would otherwise put the slowdown on the loop.
    Also given: the overhead against the forward timed apart (as the loop runs it: a CUDA graph
    when launch-bound, acceleration/graphs.py; eager and unmasked otherwise), and, without a cache, the
    decode's own forwards run back to back, as many as it ran (no_cache_forwards, back_to_back_s,
    `forward_s_sustained`). For a method with a verification block (WINO) that
    forward is its verification graph, replayed apart; for truncated forwards held in the step
    graphs (SlowFast, acceleration/captured_truncated.py), each step's forward at the length it was
    cut at, that length's full-forward graph replayed apart (unmasked where the step's is). With the dual cache
    each step's own forwards (dual_forwards_s, from the kinds and rows at a block start the decode
    recorded): a refresh of every row, a window of every row, or, where some rows start a block
    (rows out of step at batch > 1), the window of every row plus the refresh of those rows, each
    row count's refresh timed apart as the step runs it, and the same forwards run back to back
    (dual_forwards_back_to_back_s, `forward_s_sustained`). Steps queued ahead (acceleration/captured.py) hold
    their forward inside their own graph, where no event reaches: a decode with any
    (`ahead_steps`) reports only the overhead against the forward timed apart
    (DLLM_QUEUE_AHEAD=0 gives the in-loop figure).
FLOPs count what the forward computes: 2 * matmul params * tokens, the output head only over the
generated positions whose logits a decode reads (logits_from=P), + attention 4 * tokens * keys *
d_model per layer. Timing: CUDA events, warm-up
excluded, median.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from bench.measure import EventForwardTimer, UnqueuedEventForwardTimer
from kernels.compiled import compiling_for_graph
from models import load_model
from models.calibrate import calibrate_confidence_
from models.layers import CacheCall
from decoding.base import GenConfig
from decoding.registry import METHODS, build_method, parse_methods
from acceleration import Decoder
from acceleration.graphs import GraphedCall, launch_bound
from acceleration.policy import capture_blocker
from acceleration.pool import graphed_window


def cuda_time(fn, warmup: int = 3, reps: int = 10) -> float:
    """Median seconds of fn() on the GPU (events around each call)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1000)
    return statistics.median(times)


def graphed_us(fn, warmup: int = 5, reps: int = 50) -> float:
    """Median microseconds of fn() captured in one CUDA graph (fn run once before the capture, and
    captured with the compiled kernels a graph takes: kernels.compiled.compiling_for_graph); for
    the kernel probes of experiments/speed/."""
    with compiling_for_graph():
        fn()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
    return cuda_time(graph.replay, warmup=warmup, reps=reps) * 1e6


def wall_time(fn, warmup: int = 2, reps: int = 8) -> float:
    """Median wall seconds of fn() started on an empty GPU queue (synchronized before and after),
    as the decode loop calls it after its per-step sync."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def wall_loop(fn, warmup: int = 3, reps: int = 20) -> float:
    """Mean wall seconds per call of fn() called back to back (each call ends in a host sync)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def ceilings(dev) -> dict:
    n = 8192
    a, b = (torch.randn(n, n, device=dev, dtype=torch.bfloat16) for _ in range(2))
    t_mm = cuda_time(lambda: a @ b, warmup=5, reps=20)
    nbytes = 2 << 30
    src = torch.randn(nbytes // 4, device=dev)
    dst = torch.empty_like(src)
    t_cp = cuda_time(lambda: dst.copy_(src), warmup=5, reps=20)
    del a, b, src, dst
    torch.cuda.empty_cache()
    return {"matmul_tflops": 2 * n ** 3 / t_mm / 1e12, "copy_tb_s": 2 * nbytes / t_cp / 1e12,
            "matmul_shape": [n, n, n], "copy_bytes": nbytes}


def matmul_params(net) -> int:
    """Parameters that take part in matrix products (the input embedding is a gather)."""
    return sum(p.numel() for n, p in net.named_parameters() if p.dim() == 2 and "wte" not in n and "embed" not in n)


def head_params(cfg, d_model: int) -> tuple[int, bool]:
    """(the output head's parameters, whether it is the input embedding: then not in matmul_params)."""
    tied = bool(getattr(cfg, "weight_tying", getattr(cfg, "tie_word_embeddings", False)))
    return cfg.vocab_size * d_model, tied


def floor(flops, nbytes, ceil) -> dict:
    t_c = flops / (ceil["matmul_tflops"] * 1e12)
    t_m = nbytes / (ceil["copy_tb_s"] * 1e12)
    return {"flops": flops, "bytes": nbytes, "t_compute_s": t_c, "t_memory_s": t_m, "floor_s": max(t_c, t_m),
            "bound": "compute" if t_c >= t_m else "memory"}


def run(args) -> dict:
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    ceil = ceilings(dev)
    print(f"ceilings: matmul {ceil['matmul_tflops']:.0f} TFLOP/s, copy {ceil['copy_tb_s']:.2f} TB/s", flush=True)
    t0 = time.perf_counter()
    model = load_model(args.config, device="cuda", dtype=torch.bfloat16, no_weights=True)
    torch.cuda.synchronize()
    print(f"built {args.config} (random bf16) in {time.perf_counter() - t0:.1f} s", flush=True)
    if args.confident_share is not None:   # realistic confidence: multi-token commits (models/calibrate.py)
        g = torch.Generator(device=dev).manual_seed(1)
        sample = torch.randint(2000, 100000, (1, args.prompt), device=dev, generator=g)
        sample = torch.cat([sample, torch.full((1, args.gen), model.mask_id, device=dev)], 1)
        cal = calibrate_confidence_(model, sample, args.confident_share, tau=0.9)
        print(f"confidence calibrated: final norm x{cal.scale:.1f}, {cal.measured_share:.3f} of "
              f"{cal.positions} masked positions at top-1 >= 0.9", flush=True)
    if model.regime == "block_causal":   # block steps against the exact cache: bench/bench_speed_block.py
        from bench.bench_speed_block import run_block
        return run_block(args, model, ceil)
    net, cfg = model.module, model.module.cfg
    d_model = getattr(cfg, "d_model", None) or cfg.hidden_size
    n_layers = getattr(cfg, "n_layers", None) or cfg.num_hidden_layers
    kv_dim = model.module.new_cache(1, 1).keys(0)[0, 0].numel()   # H_kv * head_dim
    Nm = matmul_params(net)
    head, tied = head_params(cfg, d_model)
    body = Nm - (0 if tied else head)   # run at every position; the head only where logits are read
    w_bytes = (body + head) * 2
    P, G, BL = args.prompt, args.gen, args.block
    L = P + G
    out = {"config": args.config, "prompt": P, "gen": G, "block": BL, "ceilings": ceil,
           "matmul_params": Nm, "env": {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(dev)},
           "batches": {}, "confidence": model.info.get("confidence")}
    decoder = Decoder(model)   # the model's graphs and caches, kept across calls as the harness keeps them
    methods = all_methods(model, d_model) if args.methods == ["all"] else args.methods
    for b in args.batch:
        g = torch.Generator(device=dev).manual_seed(0)
        prompt = torch.randint(2000, 100000, (b, P), device=dev, generator=g)
        x = torch.cat([prompt, torch.full((b, G), model.mask_id, device=dev)], 1)
        attn = torch.ones_like(x)
        r = {}
        # full forward: eager with and without the attention mask, and as the no-cache loop runs
        # it (unpadded prompts: no mask; a launch-bound forward replays a CUDA graph; logits of the
        # generated region only)
        attn_flops = 4 * b * L * L * d_model * n_layers
        fl = floor(2 * body * b * L + 2 * head * b * G + attn_flops, w_bytes, ceil)
        t_eager = cuda_time(lambda: model.forward(x, attn, logits_from=P))
        t_eager_nomask = cuda_time(lambda: model.forward(x, None, logits_from=P))
        graph = decoder.pool.full_graph(x, None, False, P)
        t_graph = cuda_time(lambda: graph(x, None)) if graph is not None else None
        t_full = t_graph if graph is not None else t_eager_nomask
        t_full_wall = (wall_time(lambda: graph(x, None)) if graph is not None
                       else wall_time(lambda: model.forward(x, None, logits_from=P)))
        # the floor of a host-synchronized loop: the forward plus one small device->host read per step
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        fwd_call = (lambda: graph(x, None)) if graph is not None else (lambda: model.forward(x, None, logits_from=P))
        t_sync = wall_loop(lambda: (fwd_call(), (~done).nonzero()))
        r["forward_plus_sync_s"] = t_sync
        r["full_forward"] = {"time_s": t_full, "cuda_graph": graph is not None, "time_s_eager_mask": t_eager,
                             "time_s_eager_no_mask": t_eager_nomask, "time_s_graph": t_graph,
                             "wall_s_cold_queue": t_full_wall, **fl, "ratio_to_floor": t_full / fl["floor_s"]}
        print(f"b={b} full forward {t_full * 1e3:.2f} ms ({'CUDA graph' if graph is not None else 'eager, no mask'}; "
              f"eager with mask {t_eager * 1e3:.2f}, without {t_eager_nomask * 1e3:.2f}; synchronized wall "
              f"{t_full_wall * 1e3:.2f}), floor {fl['floor_s'] * 1e3:.2f} ms ({fl['bound']}), "
              f"ratio {t_full / fl['floor_s']:.2f}; forward + one host sync per step {t_sync * 1e3:.2f} ms", flush=True)
        del graph
        # dual-cache window step
        cache = model.new_cache(b, L)
        model.forward(x, None, kv=CacheCall(cache))
        pos = (P + torch.arange(BL, device=dev)).expand(b, BL)
        ids = x.gather(1, pos)
        call = CacheCall(cache, pos=pos)
        t_win_eager = cuda_time(lambda: model.forward(ids, None, positions=pos, kv=call), warmup=5, reps=30)
        graphed = graphed_window(model, cache, ids, pos, call, False)
        t_win = cuda_time(lambda: graphed(ids, pos, pos, None), warmup=5, reps=30)
        kv_bytes = 2 * b * L * kv_dim * n_layers * 2
        flw = floor(2 * Nm * b * BL + 4 * b * BL * L * d_model * n_layers, w_bytes + kv_bytes, ceil)
        r["dual_step"] = {"time_s": t_win, "time_s_eager": t_win_eager, **flw, "ratio_to_floor": t_win / flw["floor_s"]}
        print(f"b={b} dual window step {t_win * 1e3:.2f} ms (CUDA graph; eager {t_win_eager * 1e3:.2f}), floor {flw['floor_s'] * 1e3:.2f} ms ({flw['bound']}), "
              f"ratio {t_win / flw['floor_s']:.2f}", flush=True)
        refresh = (GraphedCall(lambda ids: model.forward(ids, None, kv=CacheCall(cache), logits_from=P), x)
                   if launch_bound(model, x.numel()) else None)
        refresh_call = refresh and (lambda: refresh(x)) or (lambda: model.forward(x, None, kv=CacheCall(cache), logits_from=P))
        window_call = lambda: graphed(ids, pos, pos, None)   # noqa: E731
        t_refresh = cuda_time(refresh_call, warmup=1, reps=5)
        r["dual_refresh_s"] = t_refresh
        # decode loop overhead: step time minus the forward time of that step
        gen = GenConfig(gen_length=G, block_length=BL, early_stop=False)
        warm = GenConfig(gen_length=G, block_length=BL, early_stop=False, max_steps=G // BL)  # same shapes
        prompts = prompt.tolist()
        r["decode"] = {}
        for spec in methods:
            m = build_method(parse_methods(spec)[0], gen)
            full = full_warm_up(args.warm_up, m, b)
            t0 = time.perf_counter()
            decoder(build_method(parse_methods(spec)[0], gen if full else warm), prompts, gen if full else warm)
            torch.cuda.synchronize()
            warm_s = time.perf_counter() - t0
            before = {id(d): dict(d.replays) for d in decoder.pool.decodes.values()}
            with EventForwardTimer(model, [dev]) as timer:   # events around each forward, no syncs
                t0 = time.perf_counter()
                res = decoder(m, prompts, gen)
                torch.cuda.synchronize()
                total = time.perf_counter() - t0
            fwd_in_loop, n_fwd = timer.take()
            used = [d for d in decoder.pool.decodes.values() if d.method is m]   # none: the reference loop ran
            ahead = used[0].ahead_steps if used else 0   # steps queued ahead: their forwards are not timed
            steps = int(res.steps.max())
            blocks = G // BL
            fwd = (blocks * t_refresh + (steps - blocks) * t_win) / steps if m.cache == "dual" else t_full
            fwd_wall = fwd if m.cache == "dual" else t_full_wall
            verify = decoder.pool.kept_verify_graph(x, BL, m.reads().hidden) if m.reads().verify else None
            if verify is not None:   # WINO: its forward is the verification graph (sequence + shadow block)
                fwd = fwd_wall = cuda_time(lambda: verify(*verify.inputs))
            mix = {}
            if m.cache == "dual" and used and used[0].forward.stepper is not None:   # the steps' own forwards
                fwd, mix = dual_forwards_s(used[0], t_refresh, t_win)
                fwd = fwd_wall = fwd / steps
                sustained = dual_forwards_back_to_back_s(used[0], refresh_call, window_call) / steps
            cut = cut_lengths(used[0], before.get(id(used[0]), {})) if used else {}
            if cut:   # truncated forwards inside the step graphs: each length's forward graph timed apart
                fwd = fwd_wall = sum(n * truncated_forward_s(decoder.pool, x, attn, L, P) for L, n in cut.items()) / steps
            step = total / steps
            row = {"captured": capture_blocker(m) is None, "not_captured_because": capture_blocker(m),
                   "total_s": total, "steps": steps, "nfe_per_row": res.nfe.tolist(), "step_s": step,
                   "forward_s_per_step": fwd, "overhead_s_per_step": step - fwd,
                   "overhead_pct": 100 * (step - fwd) / step,
                   "forward_wall_s_per_step": fwd_wall,
                   "overhead_vs_wall_pct": 100 * (step - fwd_wall) / step,
                   "overhead_beyond_sync_floor_pct": None if m.cache == "dual" else 100 * (step - t_sync) / step,
                   "forward_calls_in_loop": n_fwd, "forward_s_per_step_in_loop": fwd_in_loop / steps,
                   "ahead_steps": ahead, "forward_is_verification": verify is not None,
                   "steps_by_cut_length": {(f"{-L} no mask" if L < 0 else str(L)): n for L, n in cut.items()},
                   "dual_steps_by_kind_and_starts": mix,
                   "overhead_in_loop_pct": None if ahead or cut else 100 * (total - fwd_in_loop) / total}
            if mix:
                row["forward_s_sustained"] = sustained
            if ahead and not cut:   # queued steps' forwards are not timed: time them in a decode that queues none
                # (not for truncated steps: their graph holds the forward and the decision, timed as one)
                row.update(unqueued_forwards(lambda: decoder(build_method(parse_methods(spec)[0], gen), prompts, gen),
                                             UnqueuedEventForwardTimer(model, [dev]), steps, step))
            if m.cache == "none":   # the decode's forwards back to back: the forwards under sustained load
                again = decoder.pool.full_graph(x, None, False, P)   # the loop's graph (kept in the pool)
                call = (lambda: again(x, None)) if again is not None else (lambda: model.forward(x, None, logits_from=P))
                plan = no_cache_forwards(call, steps, cut, lambda L: truncated_forward(decoder.pool, x, attn, L, P),
                                         (lambda: verify(*verify.inputs)) if verify is not None else None)
                row["forward_s_sustained"] = back_to_back_s(plan) / steps
                row["sustained_forwards"] = ({(f"{-L} no mask" if L < 0 else str(L)): n for L, n in cut.items()} if cut
                                             else {"verification" if verify is not None else "full": steps})
            if args.ab:
                row["ab"] = switch_ab(args.ab, args.ab_reps, lambda: decoder(build_method(parse_methods(spec)[0], gen),
                                                                        prompts, gen), steps, fwd)
            row["warm_up_s"] = warm_s   # graph captures and compiles included
            row["step_compiled"] = used[0].compiled_kinds if used else []   # per step graph: its decide compiled
            r["decode"][spec] = row
            out["batches"][str(b)] = r
            save(out, args.out)   # each decode as it finishes: a later failure keeps what was measured
            in_loop = (f"{ahead} steps queued ahead (forwards inside their graphs, not timed)" if ahead else
                       "truncated forwards inside the step graphs (not timed)" if cut else
                       f"forwards inside the loop {fwd_in_loop / steps * 1e3:.2f} ms/step ({n_fwd} calls), "
                       f"loop overhead {row['overhead_in_loop_pct']:.2f}%")
            if args.ab:
                print(f"b={b} decode {spec}: {args.ab} on/off, alternating, median of {args.ab_reps}: "
                      + "; ".join(f"{k} {v['step_s'] * 1e3:.2f} ms/step, overhead {v['overhead_pct']:.2f}%"
                                  for k, v in row["ab"].items())
                      + "".join(f"; STEPS DIFFER {v['steps_differ']}" for v in row["ab"].values()
                                if "steps_differ" in v), flush=True)
            if "forward_s_per_step_unqueued" in row:
                in_loop += (f"; its forwards timed inside a decode with none queued ahead "
                            f"{row['forward_s_per_step_unqueued'] * 1e3:.2f} ms/step: "
                            + (row["unqueued_steps_differ"] if "unqueued_steps_differ" in row
                               else f"{row['overhead_vs_unqueued_pct']:.2f}%"))
            print(f"b={b} decode {spec}: {steps} steps, {step * 1e3:.2f} ms/step; {in_loop}; "
                  f"against the forward timed apart {fwd * 1e3:.2f} ms: {row['overhead_pct']:.2f}%"
                  + (f"; its {steps} forwards back to back {row['forward_s_sustained'] * 1e3:.2f} ms each: "
                     f"{100 * (step - row['forward_s_sustained']) / step:.2f}%" if m.cache == "none" else "")
                  + (f"; its steps' forwards back to back {row['forward_s_sustained'] * 1e3:.2f} ms/step: "
                     f"{100 * (step - row['forward_s_sustained']) / step:.2f}%" if mix else "")
                  + f"; warm-up decode {warm_s:.1f} s, step compiled {row['step_compiled']}",
                  flush=True)
        out["batches"][str(b)] = r
        torch.cuda.empty_cache()
    return out


def unqueued_forwards(decode, timer, steps: int, step_s: float) -> dict:
    """The forwards of a decode timed inside a second decode of the same method with no step queued
    ahead (`timer`: an UnqueuedEventForwardTimer), per step of the first decode's `steps`, and the
    first decode's overhead against them (its step time `step_s`); a second decode that takes other
    steps is recorded and gives no overhead."""
    with timer:
        res = decode()
    fwd, calls = timer.take()
    again = int(res.steps.max())
    row = {"forward_s_per_step_unqueued": fwd / again, "forward_calls_unqueued": calls}
    if again != steps:
        row["unqueued_steps_differ"] = f"{again} steps with none queued ahead, the timed decode {steps}"
        row["overhead_vs_unqueued_pct"] = None
    else:
        row["overhead_vs_unqueued_pct"] = 100 * (step_s - fwd / steps) / step_s
    return row


def cut_lengths(decode, replays_before: dict) -> dict:
    """{length: steps} of a decode whose truncated forwards ran inside its step graphs
    (acceleration/captured_truncated.py: the kinds are the lengths, negated where the forward
    takes no mask), this call's steps only."""
    from acceleration.captured_truncated import CapturedTruncatedDecode
    if not isinstance(decode, CapturedTruncatedDecode):
        return {}
    return {k: n - replays_before.get(k, 0) for k, n in decode.replays.items()
            if isinstance(k, int) and n > replays_before.get(k, 0)}


def truncated_forward(pool, x, attn, L: int, P: int):
    """A callable running a forward of every row cut at length L (with a mask, as a truncated step
    runs it; at -L without one), its graph replayed where the pool has one."""
    xs, mask = x[:, :abs(L)], (attn[:, :L] if L > 0 else None)
    g = pool.full_graph(xs, mask, False, P)
    return (lambda: g(xs, mask)) if g is not None else (lambda: pool.model.forward(xs, mask, logits_from=P))


def truncated_forward_s(pool, x, attn, L: int, P: int) -> float:
    """truncated_forward timed apart (median of its replays)."""
    return cuda_time(truncated_forward(pool, x, attn, L, P))


def back_to_back_s(plan, sync=None) -> float:
    """(callable, times) pairs run back to back, each callable once untimed first, with one wait for
    the device before the timed run and one after it: seconds in all (forwards under the sustained
    load of a decode, `forward_s_sustained`)."""
    sync = sync or torch.cuda.synchronize
    for fn, _ in plan:
        fn()
    sync()
    t0 = time.perf_counter()
    for fn, times in plan:
        for _ in range(times):
            fn()
    sync()
    return time.perf_counter() - t0


def no_cache_forwards(full, steps: int, cut: dict, truncated=None, verify=None) -> list:
    """The forwards a decode without a cache ran, as back_to_back_s's plan: its truncated forwards
    by length (cut: L -> steps; truncated(L) -> a callable), or its verification graph each step
    (wino), else the full forward each step."""
    if cut:
        return [(truncated(L), n) for L, n in cut.items()]
    return [(verify or full, steps)]


def refresh_rows(decode):
    """n -> a callable running a captured dual-cache decode's refresh forward of its rows 0..n-1
    (CacheStepper.refresh_forward), as a step where n rows start a block runs it."""
    st, s, hidden = decode.forward.stepper, decode.state, decode.method.reads().hidden

    def rows(n: int):
        ri = torch.arange(n, device=s.tokens.device)
        return lambda: st.refresh_forward(ri, s.tokens[ri], s.attn[ri], hidden)
    return rows


def dual_forwards_s(decode, t_refresh: float, t_win: float, timer=None) -> tuple[float, dict]:
    """The forwards of a captured dual-cache decode's last call, timed apart step by step as its
    steps ran them (CapturedDecode.starts: each step's kind and rows at a block start n): a
    refresh of every row (t_refresh), a window of every row (t_win), or, where n rows start a
    block and the others do not, the window of every row plus the refresh forward of those n rows
    (CacheStepper.refresh_forward: a graph for one launch-bound row, else eager; a reference step
    with DLLM_MIXED_STEPS=0 runs the window for fewer rows, so this is its upper bound).
    -> (seconds, {"kind n": steps}). `timer`: times a callable (default cuda_time)."""
    timer = timer or (lambda fn: cuda_time(fn, warmup=1, reps=3))
    rows, rows_s, total = refresh_rows(decode), {}, 0.0
    for (kind, n), steps in decode.starts.items():
        if kind == "refresh":
            t = t_refresh
        elif kind == "window":
            t = t_win
        else:
            if n not in rows_s:
                rows_s[n] = timer(rows(n))
            t = t_win + rows_s[n]
        total += steps * t
    return total, {f"{k} {n}": v for (k, n), v in sorted(decode.starts.items(), key=str)}


def dual_forwards_back_to_back_s(decode, refresh, window, sync=None) -> float:
    """The same forwards as dual_forwards_s counts, run back to back (grouped by kind, each kind
    called once untimed first) with one wait for the device at the end: seconds in all. The
    forwards under the sustained load of a decode, as `forward_s_sustained` is without a cache.
    `refresh`, `window`: callables of a refresh and a window step of every row."""
    rows = refresh_rows(decode)
    plan = [(refresh if kind == "refresh" else window if kind == "window"
             else (lambda r=rows(n): (window(), r())), steps) for (kind, n), steps in decode.starts.items()]
    return back_to_back_s(plan, sync)


def switch_ab(switch: str, reps: int, decode, steps: int, fwd: float, sync=None) -> dict:
    """A speed switch (an environment variable the decode reads per call) on and off in turn, in
    this process on the same kept graphs: per setting the median decode time over `reps` pairs,
    per step (each decode's own steps), its overhead against the forward timed apart (`fwd` s per
    step), and each decode's steps. A switch changes speed, never tokens: a decode whose steps
    differ from the timed decode's (`steps`) is recorded (`steps_differ`), not raised, so the run
    goes on and keeps what it measured. `sync`: waits for the device (torch.cuda.synchronize)."""
    sync = sync or torch.cuda.synchronize
    saved, times = os.environ.get(switch), {"on": [], "off": []}
    took = {"on": [], "off": []}
    try:
        for _ in range(reps):
            for name, value in (("on", "1"), ("off", "0")):
                os.environ[switch] = value
                t0 = time.perf_counter()
                res = decode()
                sync()
                times[name].append(time.perf_counter() - t0)
                took[name].append(int(res.steps.max()))
    finally:
        if saved is None:
            os.environ.pop(switch, None)
        else:
            os.environ[switch] = saved
    out = {}
    for name, ts in times.items():
        step = statistics.median(t / n for t, n in zip(ts, took[name]))
        out[name] = {"step_s": step, "overhead_pct": 100 * (step - fwd) / step, "decode_s": ts, "steps": took[name]}
        if any(n != steps for n in took[name]):
            out[name]["steps_differ"] = f"{switch}={'1' if name == 'on' else '0'}: {took[name]} steps, the timed decode {steps}"
    return out


def full_warm_up(how: str, method, batch: int) -> bool:
    """Whether the warm-up decodes in full (else the first steps of each block, same shapes).
    `auto`: in full where the timed decode would meet shapes a short one does not: truncated
    forwards (a graph per fed length) and, at batch > 1 with the dual cache, the eager steps where
    some rows start a block and others do not (their compiled kernels compile per row count)."""
    if how != "auto":
        return how == "full"
    return method.reads().truncated or (method.cache == "dual" and batch > 1)


def all_methods(model, d_model: int) -> list[str]:
    """Every registered method with its defaults, at cache none and dual where it allows a cache;
    prr with a random-weight controller of the model's hidden size (its cost, not its choices)."""
    import tempfile
    from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
    gen = GenConfig(gen_length=32, block_length=32)
    ctl = Path(tempfile.mkdtemp()) / "random-controller"
    torch.manual_seed(0)
    save_controller(Controller(ControllerConfig(d_model=d_model)), ctl, {"note": "random weights, speed only"})
    specs = []
    for name in METHODS:
        base = f"prr:controller={ctl}" if name == "prr" else name
        for cache in ("none", "dual"):
            spec = base if cache == "none" else f"{base}{',' if ':' in base else ':'}cache={cache}"
            try:
                build_method(parse_methods(spec)[0], gen)
            except ValueError:   # e.g. slowfast's truncated forwards take no cache
                continue
            specs.append(spec)
    return specs


def table(res: dict) -> str:
    c = res["ceilings"]
    lines = [f"device {res['env']['gpu']}, torch {res['env']['torch']}; measured ceilings: bf16 matmul "
             f"{c['matmul_tflops']:.0f} TFLOP/s, copy {c['copy_tb_s']:.2f} TB/s",
             "| batch | what | measured (ms) | floor (ms) | bound | measured / floor |", "|---|---|---|---|---|---|"]
    for b, r in res["batches"].items():
        for k in ("full_forward", "dual_step"):
            f = r[k]
            lines.append(f"| {b} | {k} | {f['time_s'] * 1e3:.2f} | {f['floor_s'] * 1e3:.2f} | {f['bound']} | "
                         f"{f['ratio_to_floor']:.2f} |")
    lines += ["", "| batch | method | steps | step (ms) | forwards in the loop (ms/step) | loop overhead | "
              "forward timed apart (ms) | overhead against it |", "|---|---|---|---|---|---|---|---|"]
    for b, r in res["batches"].items():
        for k, d in r["decode"].items():
            in_loop = ((f"{d['forward_s_per_step_in_loop'] * 1e3:.2f} | {d['overhead_in_loop_pct']:.2f}%")
                       if d.get("overhead_in_loop_pct") is not None else f"{d['ahead_steps']} steps queued ahead | ")
            lines.append(f"| {b} | {k} | {d['steps']} | {d['step_s'] * 1e3:.2f} | {in_loop} | "
                         f"{d['forward_s_per_step'] * 1e3:.2f} | {d['overhead_pct']:.2f}% |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="llada-8b")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--batch", type=lambda s: [int(v) for v in s.split(",")], default=[1, 8])
    ap.add_argument("--methods", type=lambda s: s.split(";"),
                    default=["fixed", "threshold", "fixed:cache=dual", "threshold:cache=dual"],
                    help="method specs separated by ';', or 'all' (every registered method, cache none and dual)")
    ap.add_argument("--confident-share", type=float, default=None,
                    help="scale the random model's final norm so this share of masked positions predicts with "
                         "top-1 >= 0.9 (models/calibrate.py), so adaptive methods commit several tokens per step")
    ap.add_argument("--warm-up", choices=("auto", "full", "short"), default="auto",
                    help="the untimed decode before each method's timed one: full, the first steps of each "
                         "block (short), or full only where the timed decode would meet new shapes (auto)")
    ap.add_argument("--ab", default=None, metavar="SWITCH",
                    help="also time each decode with this speed switch (e.g. DLLM_QUEUE_AHEAD) on and off in "
                         "turn, in this process (--ab-reps pairs)")
    ap.add_argument("--ab-reps", type=int, default=3)
    ap.add_argument("--out", default=None, help="write the full results as JSON here")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("error: bench_speed needs a CUDA GPU")
    res = run(args)
    if res.get("regime") == "block_causal":
        from bench.bench_speed_block import table as block_table
        print(block_table(res))
    else:
        print(table(res))
    save(res, args.out)


def save(res: dict, path: str | None) -> None:
    """Write the results as JSON at `path` (none: nothing), replacing the file whole."""
    if path:
        with open(f"{path}.tmp", "w") as f:
            json.dump(res, f, indent=2)
        os.replace(f"{path}.tmp", path)


if __name__ == "__main__":
    main()
