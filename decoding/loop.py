"""The decode loop shared by every method (the reference path; acceleration/ runs the same step).

    state = DecodeState(prompts)                 x = [left-padded prompt | MASK * gen_length]
    method.start(...)
    while rows are decoding:                     (one host sync per step: which rows)
        plan = method.plan(view)                 full or truncated forward (+ the KV cache's plan)
        out  = forward(state, rows, plan)        StepOutput: x0, conf, fresh (+ logits / hidden)
        dec  = method.decide(view, out)          Decision: commit, remask, edit
        apply_decision(state, ...)               tokens, history, counters; blocks move on; rows stop

Rows progress independently: a row moves to its next block when its block has no masks, and
stops once a completed block holds EOS (early_stop), all blocks are done or the step cap is hit.
Finished rows drop out of the forward batch, and each row's NFE is counted separately. Greedy
decoding is deterministic. See docs/decode-loop.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from models.base import ModelAdapter
from .base import GenConfig, Method, step_cap
from .cache import CacheStepper
from .contract import History
from .forward import Forward, ModelCalls
from .state import Constants, Counters, DecodeState, apply_decision


@dataclass
class DecodeResult:
    tokens: torch.Tensor      # [B, gen_length] generated ids; positions after the first EOS hold EOS
    nfe: torch.Tensor         # [B] model forward calls per row (CFG counts two per step)
    steps: torch.Tensor       # [B] decode steps per row
    gen_tokens: torch.Tensor  # [B] generated tokens before the first EOS
    capped: torch.Tensor      # [B] the step cap ended the row (remaining masks took the last argmax)
    nfe_truncated: torch.Tensor | None = None  # [B] of nfe, forwards fed a truncated sequence (Plan.extent)
    remasks: torch.Tensor | None = None  # [B] written tokens taken back to MASK (Decision.remask)
    edits: torch.Tensor | None = None    # [B] written tokens replaced (Decision.edit)
    trace: list[list[dict]] | None = None  # per row, per step (when asked for)


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    P = max(map(len, prompts))
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    attn = torch.zeros((len(prompts), P), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, P - len(p):] = torch.tensor(p)
            attn[i, P - len(p):] = 1
    return ids, attn


def first_eos_index(tokens: torch.Tensor, eos_ids: tuple[int, ...]) -> torch.Tensor:
    """[B] index of the first EOS in each row, or the row length when there is none."""
    is_eos = torch.isin(tokens, torch.tensor(eos_ids, device=tokens.device))
    N = tokens.shape[-1]
    idx = torch.where(is_eos, torch.arange(N, device=tokens.device), N)
    return idx.min(-1).values


def new_state(model: ModelAdapter, method: Method, prompts: list[list[int]], gen: GenConfig,
              trace: bool = False) -> DecodeState:
    dev, reads = model.device, method.reads()
    p_ids, p_attn = left_pad(prompts, model.pad_id)
    B, P, G = len(prompts), p_ids.shape[1], gen.gen_length
    padded = bool((p_attn == 0).any())
    attn = torch.cat([p_attn, torch.ones((B, G), dtype=torch.long)], 1).to(dev)
    z = lambda dt=torch.long: torch.zeros(B, dtype=dt, device=dev)
    k = Constants(eos=torch.tensor(model.eos_ids, device=dev), pos=torch.arange(G, device=dev),
                  step_cap=torch.tensor(step_cap(method, gen, gen.gen_length, gen.num_blocks), device=dev),
                  mask_id=model.mask_id,
                  block_length=gen.block_length, num_blocks=gen.num_blocks, early_stop=gen.early_stop)
    return DecodeState(
        tokens=torch.cat([p_ids, torch.full((B, G), model.mask_id, dtype=torch.long)], 1).to(dev),
        attn=attn, attn_fwd=attn if padded else None,   # no padding: no mask (SDPA's flash kernel)
        P=P, gen=gen, prompt_len=p_attn.sum(1).to(dev),
        rows=Counters(z(), z(), z(), z(torch.bool), z(torch.bool)), k=k,
        nfe=z(), nfe_truncated=z(), remasks=z(), edits=z(),
        history=History.empty(B, G, dev, reads.topk) if (reads.history or reads.topk) else None,
        trace=[[] for _ in range(B)] if trace else None)


def new_forward(model: ModelAdapter, method: Method, state: DecodeState, generator,
                calls: ModelCalls | None = None) -> Forward:
    calls = calls if calls is not None else ModelCalls(model)
    B, L = state.tokens.shape
    stepper = None
    if method.cache != "none":   # KV cache: refresh or window forwards (decoding/cache.py)
        stepper = CacheStepper(model, method.cache, B, L, state.P, state.gen.gen_length,
                               state.gen.block_length, padded=state.attn_fwd is not None, calls=calls)
    return Forward(model, method, method.reads(), calls, stepper, generator, B, state.gen.gen_length)


def step(state: DecodeState, method: Method, forward: Forward, rows: torch.Tensor) -> None:
    """One step of `rows` (the rows still decoding): plan, forward, decide, apply."""
    view = state.view(rows, rows)
    out = forward(state, rows, method.plan(view))
    decide_and_apply(state, method, rows, rows, out)


def decide_and_apply(state: DecodeState, method: Method, rows, every, out, act=None) -> None:
    """The method's decision on a forward's output, applied to the state: the part of a step a
    captured step (acceleration/) runs over every row (rows = slice(None), act = rows decoding)."""
    view = state.view(rows, every, act)
    apply_decision(state, rows, view, out, method.decide(view, out), act)


def result(state: DecodeState, eos_ids: tuple[int, ...]) -> DecodeResult:
    gen_x = state.tokens[:, state.P:]
    first = first_eos_index(gen_x, eos_ids)
    # Everything from the first EOS on (including masks of blocks never decoded) reads as EOS.
    tokens = torch.where(state.k.pos.unsqueeze(0) >= first.unsqueeze(1), eos_ids[0], gen_x)
    host = lambda t: t.to("cpu", copy=True)   # copies: a kept captured decode reuses the state tensors
    return DecodeResult(tokens=host(tokens), nfe=host(state.nfe), steps=host(state.rows.step),
                        gen_tokens=host(first), capped=host(state.rows.capped),
                        nfe_truncated=host(state.nfe_truncated), remasks=host(state.remasks),
                        edits=host(state.edits), trace=state.trace)


@torch.no_grad()
def decode(model: ModelAdapter, method: Method, prompts: list[list[int]], gen: GenConfig,
           generator: torch.Generator | None = None, trace: bool = False,
           calls: ModelCalls | None = None) -> DecodeResult:
    """Decode `prompts` (token ids) with `method`: the reference loop, every step eager. `calls`
    lets acceleration/ run the model calls as graphs; acceleration.decode is the fast entry point.
    A block-causal model decodes block by block against its exact cache (decoding/block_causal.py)."""
    if model.regime == "block_causal":
        from .block_causal import decode as block_decode
        return block_decode(model, method, prompts, gen, generator, trace)
    state = new_state(model, method, prompts, gen, trace)
    method.start(len(prompts), model.device, generator)
    forward = new_forward(model, method, state, generator, calls)
    while True:
        rows = (~state.rows.done).nonzero().squeeze(1)   # the loop's one host sync per step
        if rows.numel() == 0:
            break
        step(state, method, forward, rows)
    return result(state, model.eos_ids)
