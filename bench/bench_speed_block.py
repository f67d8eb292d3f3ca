"""Speed of a block-causal model's block step against its floor, and the decode loop's overhead
(GPU; random bf16 weights). bench/bench_speed.py calls `run_block` when --config names a
block-causal model (sdar-8b, llada2-mini, fast-dllm-v2-7b, ...):

    python -m bench.bench_speed --config llada2-mini --prompt 512 --gen 256 --batch 1,8 \
        --out results/speed/llada2-mini_h200.json

Measured per batch size b (prompt P, gen G, the model's block bs; each row's prompt P whole blocks
when bs divides P):
  - block step: `block_forward` of the current block (bs tokens) against a cache holding the
    prompt (first block) and P + G - bs positions (last block), as the captured decode runs it
    (a CUDA graph, every cache slot read under the mask: graphed_block_step), and eagerly;
  - fold step: a block's first step under append=fold, the finished block and the next one fed
    together (2 bs tokens, the first bs appended);
  - append step: a finished block appended by a forward of its own (append=separate, Fast-dLLM v2;
    bs tokens, the last position's logits), and the eager prefill of the prompt's whole blocks;
  - each against its floor max(FLOPs / matmul rate, bytes / copy bandwidth) (the ceilings measured
    as bench_speed.py measures them), where bytes are the *active* weights (every matrix outside
    the routed experts, plus, per MoE layer, the distinct experts this step's tokens route to,
    counted by recording the router in an untimed forward of the same inputs) and the K/V cache
    read; FLOPs are 2 * (dense params + top_k routed experts) per token plus attention
    4 * tokens * keys * (heads * head_dim) per layer;
  - decode loop overhead: a decode of b rows (acceleration.Decoder: a captured block decode,
    acceleration/captured_block.py, whose step graph holds the forward and the decision) with each
    method given, after a first decode of the same shapes that builds the graphs; the overhead is
    the decode time minus its forwards timed apart: the steps of each fed width (the decode
    counts them) times that width's graphed block step (the mean of the first- and last-block
    points for bs; the fold step for 2 bs; the append step for an append graph), plus the eager
    first step (prompt blocks + block) or, where blocks are appended on their own, the prefill.
    The decode's block_length is the model's default (Fast-dLLM v2: its sub-block of 8).
    A block of masks routes an MoE layer's tokens to other experts than the blocks a decode feeds,
    so each decode's width-bs steps are also timed on the blocks it fed (recorded from the
    reference loop of the same method and prompts, `recording_block_steps`, a captured block step
    replayed on each, `replay_time`), giving a second loop overhead that does not count the
    routing's content as loop; and the decode's middle block step is timed against its floor
    (step_own_block).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from decoding.block_causal import CAPACITY_MULTIPLE


@dataclass
class ParamSplit:
    """Matrix parameters of a block-causal model, split by what a step reads."""
    dense: int                 # every matrix outside the routed experts (attention, dense MLPs,
                               # shared experts, routers, output head; the input embedding is a gather)
    per_expert: int            # one routed expert's parameters (0: no MoE)
    moe_layers: int            # layers with routed experts
    top_k: int                 # experts per token


def param_split(net) -> ParamSplit:
    dense, experts = 0, {}
    for name, p in net.named_parameters():
        if p.dim() != 2:
            continue
        if ".mlp.experts." in name:                       # model.layers.L.mlp.experts.E.{gate,up,down}_proj
            key = name.split(".mlp.experts.")[0], name.split(".mlp.experts.")[1].split(".")[0]
            experts[key] = experts.get(key, 0) + p.numel()
        elif "embed" not in name:
            dense += p.numel()
    cfg = net.cfg
    if getattr(cfg, "tie_word_embeddings", False):        # the head reads the embedding matrix
        dense += cfg.vocab_size * cfg.hidden_size
    layers = {k[0] for k in experts}
    per_expert = next(iter(experts.values())) if experts else 0
    return ParamSplit(dense, per_expert, len(layers), getattr(cfg, "num_experts_per_tok", 0) if experts else 0)


def kv_bytes_per_position(net, dtype_bytes: int = 2) -> int:
    """K and V of one position over every layer."""
    c = net.cfg
    return 2 * c.num_key_value_heads * c.head_dim * c.num_hidden_layers * dtype_bytes


def block_step_cost(split: ParamSplit, distinct_experts: list[int], tokens: int, key_positions: int,
                    kv_per_position: int, q_dim: int, n_layers: int, batch: int,
                    dtype_bytes: int = 2) -> tuple[int, int]:
    """(FLOPs, bytes) of one block forward: `tokens` fed in all (batch rows together), each row
    reading `key_positions` cached + fed positions; `distinct_experts` per MoE layer this step."""
    active = split.dense + split.per_expert * sum(distinct_experts)
    flops = 2 * tokens * (split.dense + split.top_k * split.per_expert * split.moe_layers)
    flops += 4 * tokens * key_positions * q_dim * n_layers
    nbytes = active * dtype_bytes + batch * key_positions * kv_per_position
    return flops, nbytes


@contextmanager
def routed_experts():
    """Record, per MoE layer call, how many distinct experts the call's tokens route to."""
    from models import moe
    counts: list[int] = []
    inner = moe.route

    def recording(*a, **k):
        idx, w = inner(*a, **k)
        counts.append(int(torch.unique(idx).numel()))
        return idx, w
    moe.route = recording
    try:
        yield counts
    finally:
        moe.route = inner


def _tokens(cfg, shape, dev, g):
    """Random ordinary token ids (clear of the special ids at the vocabulary's ends)."""
    lo, hi = (2000, 100000) if cfg.vocab_size > 100000 else (0, cfg.vocab_size // 2)
    return torch.randint(lo, hi, shape, device=dev, generator=g)


def _prefilled(net, b, P, capacity, dev, g):
    ids = _tokens(net.cfg, (b, P), dev, g)
    cache = net.new_block_cache(b, capacity)
    if P:
        net.block_forward(ids, cache, commit=P)
    return cache


def block_step(net, cache, ids: torch.Tensor, commit: int, logits_last: int):
    """block_forward(ids) at its fixed width as a captured block decode runs it (every cache slot
    read under the mask, no host sync), first restoring the cache's length so that each call is
    the same step: -> (the step function, its inputs)."""
    b = ids.shape[0]
    base = cache.length.clone()
    valid = torch.ones_like(ids, dtype=torch.bool)
    commits = torch.full((b,), commit, dtype=torch.long, device=ids.device)

    def step(ids, valid, commits):
        cache.length.copy_(base)
        return net.block_forward(ids, cache, valid=valid, commit=commits, logits_last=logits_last,
                                 key_len=cache.capacity, checked=False)
    return step, (ids, valid, commits)


def graphed_block_step(net, cache, ids: torch.Tensor, commit: int, logits_last: int):
    """`block_step` in a CUDA graph: -> a function that replays it."""
    from acceleration.graphs import GraphedCall
    step, inputs = block_step(net, cache, ids, commit, logits_last)
    g = GraphedCall(step, *inputs)
    return lambda: g(*g.inputs)


@contextmanager
def recording_block_steps(net, width: int):
    """Record the fed tokens and valid mask of every `net.block_forward` call of `width` tokens that
    appends nothing (a decode's block step) -> list of (ids [b, width], valid [b, width]). Run
    around the reference loop (decoding.loop.decode), whose steps feed what the captured decode's
    do (the same tokens, experiments/gpu_checks/fast_vs_reference.py), it gives the blocks the
    decode fed: an MoE model's step time depends on what its block holds (how many experts its
    tokens route to), so its forwards are timed on these, not on blocks of masks."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    inner = net.block_forward

    def recording(input_ids, cache, valid=None, commit=0, **kw):
        if input_ids.shape[1] == width and not bool((torch.as_tensor(commit) != 0).any()):
            calls.append((input_ids.clone(), torch.ones_like(input_ids, dtype=torch.bool) if valid is None
                          else valid.clone()))
        return inner(input_ids, cache, valid=valid, commit=commit, **kw)
    net.block_forward = recording
    try:
        yield calls
    finally:
        del net.block_forward


def replay_time(call, steps: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean seconds of a captured block step (a GraphedCall of `block_step`) fed each recorded
    (ids, valid) of `steps` in turn: one loop of copy-then-replay timed whole, less the same loop's
    copies alone."""
    ids, valid = call.inputs[0], call.inputs[1]

    def loop(replay: bool) -> float:
        a, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for x, v in steps:
            ids.copy_(x)
            valid.copy_(v)
            if replay:
                call.graph.replay()
        e.record()
        e.synchronize()
        return a.elapsed_time(e) / 1000
    loop(True)
    return (loop(True) - loop(False)) / len(steps)


def _step_point(net, cache, ids, commit, bs, ceil, split, kvp, q_dim, n_layers, cuda_time, floor, logits_last=None):
    """Time block_forward(ids, cache, commit) at the cache's current length (restored before each
    call), eagerly and as the captured decode runs it (a CUDA graph), and give its floor.
    `logits_last`: the positions whose logits it computes (default the block, bs)."""
    b, W = ids.shape
    base = cache.length.clone()
    last = bs if logits_last is None else logits_last

    def eager():
        cache.length.copy_(base)
        net.block_forward(ids, cache, commit=commit, logits_last=last)
    with routed_experts() as counts:
        eager()
    t_eager = cuda_time(eager, warmup=2, reps=10)
    graphed = graphed_block_step(net, cache, ids, commit, last)
    t = cuda_time(graphed, warmup=3, reps=30)
    cache.length.copy_(base)
    keys = int(base.max()) + W
    flops, nbytes = block_step_cost(split, counts, b * W, keys, kvp, q_dim, n_layers, b)
    f = floor(flops, nbytes, ceil)
    return {"time_s": t, "time_s_eager": t_eager, "tokens": b * W, "key_positions": keys,
            "distinct_experts_per_layer": counts, **f, "ratio_to_floor": t / f["floor_s"]}


def _memory(where: str) -> None:
    print(f"[memory] {where}: {torch.cuda.memory_allocated() / 2**30:.2f} GiB allocated, peak "
          f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB", flush=True)


@torch.no_grad()
def run_block(args, model, ceil) -> dict:
    from acceleration import Decoder
    from acceleration.captured_block import APPEND
    from bench.bench_speed import cuda_time, floor
    from decoding.base import GenConfig
    from decoding.block_causal import default_block
    from decoding.loop import decode
    from decoding.registry import build_method, parse_methods
    dev = model.device
    net, cfg, bs = model.module, model.module.cfg, model.block_size
    P, G = args.prompt, args.gen
    if G % bs:
        raise SystemExit(f"error: --gen {G} must be a multiple of {args.config}'s block size {bs}")
    split = param_split(net)
    kvp = kv_bytes_per_position(net)
    q_dim, n_layers = cfg.num_attention_heads * cfg.head_dim, cfg.num_hidden_layers
    out = {"config": args.config, "regime": "block_causal", "block": bs, "prompt": P, "gen": G, "ceilings": ceil,
           "params": {"dense_matrix": split.dense, "per_routed_expert": split.per_expert,
                      "moe_layers": split.moe_layers, "top_k": split.top_k},
           "env": {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(dev)}, "batches": {}}
    decoder = Decoder(model)
    methods = ["fixed", "threshold"] if args.methods == ["all"] else [
        m for m in args.methods if "cache=" not in m]     # cache modes mean nothing for these models
    for b in args.batch:
        decoder.pool.clear()
        torch.cuda.empty_cache()
        g = torch.Generator(device=dev).manual_seed(0)
        r = {}
        _memory(f"b={b} start")
        pre = P // bs * bs
        # the cache a decode of this shape holds (decoding.block_causal.block_capacity's rounding):
        # its graphed steps read every slot, so the key length is this
        capacity = -(-(pre + G + 2 * bs) // CAPACITY_MULTIPLE) * CAPACITY_MULTIPLE
        for point, length in (("first_block", pre), ("last_block", pre + G - bs)):
            cache = _prefilled(net, b, length, capacity, dev, g)
            blk = _tokens(cfg, (b, 2 * bs), dev, g)
            blk[:, bs:] = model.mask_id
            r[f"step_{point}"] = _step_point(net, cache, blk[:, bs:], 0, bs, ceil, split, kvp, q_dim, n_layers,
                                             cuda_time, floor)
            if point == "last_block":   # append=separate, Fast-dLLM v2: a finished block appended on its own
                r["append_step"] = _step_point(net, cache, blk[:, :bs], bs, bs, ceil, split, kvp, q_dim, n_layers,
                                               cuda_time, floor, logits_last=1)
            if point == "last_block":   # the fold step: finished block appended with the next one's first step
                cache.length.sub_(bs)
                r["fold_step"] = _step_point(net, cache, blk, bs, bs, ceil, split, kvp, q_dim, n_layers, cuda_time,
                                             floor)
            del cache
            torch.cuda.empty_cache()
        for k in ("step_first_block", "step_last_block", "fold_step", "append_step"):
            s = r[k]
            routed = s["distinct_experts_per_layer"]
            print(f"b={b} {k}: {s['time_s'] * 1e3:.3f} ms (eager {s['time_s_eager'] * 1e3:.2f}), floor {s['floor_s'] * 1e3:.3f} ms ({s['bound']}), ratio "
                  f"{s['ratio_to_floor']:.2f}" + (f"; distinct experts routed per MoE layer: mean "
                                                   f"{sum(routed) / len(routed):.1f}, max {max(routed)}" if routed else ""),
                  flush=True)
        _memory(f"b={b} after the step points")
        # the first step feeds the prompt's whole blocks with the first block (eagerly, not captured)
        cache = net.new_block_cache(b, capacity)
        ids = _tokens(cfg, (b, pre + bs), dev, g)
        zero = cache.length.clone()

        def first():
            cache.length.copy_(zero)
            net.block_forward(ids, cache, commit=pre, logits_last=bs)
        r["first_step_s"] = cuda_time(first, warmup=1, reps=5)

        def prefill():   # append=separate, Fast-dLLM v2: the prompt's whole blocks on their own (eager)
            cache.length.copy_(zero)
            net.block_forward(ids[:, :pre], cache, commit=pre, logits_last=1)
        r["prefill_s"] = cuda_time(prefill, warmup=1, reps=5) if pre else 0.0
        del cache
        # a captured block step to replay on the blocks each decode fed, against a cache half way through
        content_cache = _prefilled(net, b, pre + G // 2 // bs * bs, capacity, dev, g)
        from acceleration.graphs import GraphedCall
        content_call = GraphedCall(*_flat(block_step(net, content_cache, torch.full((b, bs), model.mask_id, device=dev),
                                                     0, bs)))
        t_kind = {bs: (r["step_first_block"]["time_s"] + r["step_last_block"]["time_s"]) / 2,
                  2 * bs: r["fold_step"]["time_s"], "eager": r["first_step_s"], APPEND: r["append_step"]["time_s"]}
        gen = GenConfig(gen_length=G, block_length=default_block(model), early_stop=False)
        prompts = _tokens(cfg, (b, P), "cpu", torch.Generator().manual_seed(1)).tolist()
        r["decode"] = {}
        for spec in methods:
            decoder(build_method(parse_methods(spec)[0], gen), prompts, gen)   # builds and keeps the step graphs
            torch.cuda.synchronize()
            m = build_method(parse_methods(spec)[0], gen)
            kept = list(decoder.pool.decodes.values())
            before = dict(kept[-1].replays) if kept else {}
            t0 = time.perf_counter()
            res = decoder(m, prompts, gen)
            torch.cuda.synchronize()
            total = time.perf_counter() - t0
            steps = int(res.steps.max())
            row = {"total_s": total, "steps": steps, "nfe_per_row": res.nfe.tolist(), "step_s": total / steps}
            if kept and kept[-1] is list(decoder.pool.decodes.values())[-1]:
                kinds = {k: v - before.get(k, 0) for k, v in kept[-1].replays.items() if v - before.get(k, 0)}
                fwd = sum(n * t_kind[k] for k, n in kinds.items()) + (r["prefill_s"] if kept[-1].forward.separate else 0.0)
                row.update({"captured": True, "steps_by_width": {("append" if k == APPEND else str(k)): n
                                                                 for k, n in kinds.items()},
                            "ahead_steps": kept[-1].ahead_steps,   # launched before the host read the step before
                            "forward_s_per_step": fwd / steps, "overhead_s_per_step": (total - fwd) / steps,
                            "overhead_pct": 100 * (total - fwd) / total})
                print(f"b={b} decode {spec}: {steps} steps ({row['steps_by_width']}, {row['ahead_steps']} queued "
                      f"ahead), {row['step_s'] * 1e3:.2f} "
                      f"ms/step, forwards timed apart {row['forward_s_per_step'] * 1e3:.2f} ms/step, loop overhead "
                      f"{row['overhead_pct']:.2f}%", flush=True)
                if bs in kinds:   # the width-bs steps timed again on the blocks this decode fed
                    with recording_block_steps(net, bs) as own:
                        decode(model, build_method(parse_methods(spec)[0], gen), prompts, gen)
                    t_own = replay_time(content_call, own)
                    fwd_own = fwd + kinds[bs] * (t_own - t_kind[bs])
                    row.update({"block_step_own_blocks_s": t_own, "own_blocks_recorded": len(own),
                                "forward_s_per_step_own_blocks": fwd_own / steps,
                                "overhead_pct_own_blocks": 100 * (total - fwd_own) / total})
                    print(f"b={b} decode {spec}, its width-{bs} steps timed on the blocks it fed ({len(own)} recorded "
                          f"from the reference loop, {kinds[bs]} in the decode): {t_own * 1e3:.3f} ms (blocks of masks "
                          f"{t_kind[bs] * 1e3:.3f}), forwards {fwd_own / steps * 1e3:.2f} ms/step, loop overhead "
                          f"{row['overhead_pct_own_blocks']:.2f}%", flush=True)
                    if "step_own_block" not in r:   # the decode's middle block step against its floor
                        p = _step_point(net, content_cache, own[len(own) // 2][0], 0, bs, ceil, split, kvp, q_dim,
                                        n_layers, cuda_time, floor)
                        r["step_own_block"] = p
                        routed = p["distinct_experts_per_layer"]
                        print(f"b={b} step_own_block (the decode's middle block step): {p['time_s'] * 1e3:.3f} ms, "
                              f"floor {p['floor_s'] * 1e3:.3f} ms ({p['bound']}), ratio {p['ratio_to_floor']:.2f}"
                              + (f"; distinct experts routed per MoE layer: mean {sum(routed) / len(routed):.1f}, "
                                 f"max {max(routed)}" if routed else ""), flush=True)
            else:
                row["captured"] = False
                print(f"b={b} decode {spec}: {steps} steps, {row['step_s'] * 1e3:.2f} ms/step (not captured)",
                      flush=True)
            r["decode"][spec] = row
            _memory(f"b={b} after decode {spec}")
        del content_call, content_cache
        out["batches"][str(b)] = r
    return out


def _flat(step_and_inputs):
    step, inputs = step_and_inputs
    return (step, *inputs)


def table(res: dict) -> str:
    c = res["ceilings"]
    lines = [f"{res['config']} (block-causal, block {res['block']}), prompt {res['prompt']}, gen {res['gen']}; device "
             f"{res['env']['gpu']}, torch {res['env']['torch']}; measured ceilings: bf16 matmul "
             f"{c['matmul_tflops']:.0f} TFLOP/s, copy {c['copy_tb_s']:.2f} TB/s",
             "| batch | what | CUDA graph (ms) | eager (ms) | floor (ms) | bound | graph / floor |",
             "|---|---|---|---|---|---|---|"]
    for b, r in res["batches"].items():
        for k in ("step_first_block", "step_last_block", "fold_step", "append_step", "step_own_block"):
            if k not in r:
                continue
            f = r[k]
            lines.append(f"| {b} | {k} | {f['time_s'] * 1e3:.3f} | {f['time_s_eager'] * 1e3:.2f} | "
                         f"{f['floor_s'] * 1e3:.3f} | {f['bound']} | {f['ratio_to_floor']:.2f} |")
    lines += ["", "| batch | method | steps (by fed width) | step (ms) | forwards timed apart (ms/step) | loop overhead "
              "| the same, forwards on the decode's own blocks |", "|---|---|---|---|---|---|---|"]
    for b, r in res["batches"].items():
        for k, d in r["decode"].items():
            if d["captured"]:
                own = (f"{d['forward_s_per_step_own_blocks'] * 1e3:.2f} ms/step, {d['overhead_pct_own_blocks']:.2f}%"
                       if "overhead_pct_own_blocks" in d else "")
                lines.append(f"| {b} | {k} | {d['steps']} {d['steps_by_width']} | {d['step_s'] * 1e3:.2f} | "
                             f"{d['forward_s_per_step'] * 1e3:.2f} | {d['overhead_pct']:.2f}% | {own} |")
            else:
                lines.append(f"| {b} | {k} | {d['steps']} | {d['step_s'] * 1e3:.2f} | not captured | | |")
    return "\n".join(lines)
