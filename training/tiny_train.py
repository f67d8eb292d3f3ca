"""Train the built-in dLLM on the built-in arith task with the masked-diffusion objective.

    python -m training.tiny_train --out models/tiny --steps 30000 --device cuda

Objective (LLaDA SFT): the prompt is never masked; every answer position (answer tokens, then EOS
up to the generation length) is masked independently with probability t ~ U(eps, 1); the loss is
the cross-entropy on masked positions weighted 1/t, divided by the number of answer positions.
Each training answer is one of the problem's valid worked solutions, drawn uniformly, so the
model learns a spread over the valid step orders. Writes model.safetensors, config.json
(model config plus the training record) and tokenizer.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from tasks.arith import test_problems, train_problems
from models.tiny_net import TinyConfig, TinyDLLM
from models.tokenizer import WordTokenizer

GEN_LENGTHS = (48, 64)  # trained on both so either works at inference


def build_tokenizer(data_seed: int) -> WordTokenizer:
    words: set[str] = set()
    for p in itertools.islice(train_problems(data_seed), 20000):
        for text in (p.prompt, *p.solutions):
            words.update(re.findall(r"[A-Za-z]+", text))
    return WordTokenizer.build(words)


MAX_PROMPT = 64


def encode_example(p, tok: WordTokenizer, rng: random.Random) -> tuple[list[int], list[int]]:
    """Prompt left-padded to MAX_PROMPT, answer (a random valid solution) + EOS to max gen length."""
    pr = tok.encode(p.prompt)
    an = tok.encode(rng.choice(p.solutions)) + [tok.eos_id] * max(GEN_LENGTHS)
    if len(pr) > MAX_PROMPT:
        raise ValueError(f"prompt of {len(pr)} tokens exceeds MAX_PROMPT={MAX_PROMPT}")
    return [tok.pad_id] * (MAX_PROMPT - len(pr)) + pr + an[: max(GEN_LENGTHS)], [len(pr)]


def _shard(args) -> torch.Tensor:
    data_seed, shard, n, tokens = args
    tok, rng = WordTokenizer(tokens), random.Random(f"pick:{data_seed}:{shard}")
    rows = [sum(encode_example(p, tok, rng), []) for p in itertools.islice(train_problems(data_seed, shard), n)]
    return torch.tensor(rows, dtype=torch.int16)


def build_dataset(n: int, tok: WordTokenizer, data_seed: int, workers: int) -> torch.Tensor:
    """[n, MAX_PROMPT + max gen + 1] int16 rows: ids, then the prompt length."""
    from concurrent.futures import ProcessPoolExecutor
    per = -(-n // workers)
    with ProcessPoolExecutor(workers) as ex:
        parts = list(ex.map(_shard, [(data_seed, s, per, tok.tokens) for s in range(workers)]))
    return torch.cat(parts)[:n]


def batch_from(data: torch.Tensor, idx: torch.Tensor, gen_length: int, pad_id: int):
    rows = data[idx].long()
    plen = rows[:, -1]
    P = int(plen.max())
    ids = rows[:, MAX_PROMPT - P: MAX_PROMPT + gen_length]
    attn = (ids != pad_id).long()
    attn[:, P:] = 1  # answer region is always attended (pad id never appears there)
    return ids, attn, P


def diffusion_loss(net, ids, attn, P, mask_id, eps=1e-3):
    B, L = ids.shape
    t = eps + (1 - eps) * torch.rand(B, 1, device=ids.device)
    masked = torch.zeros_like(ids, dtype=torch.bool)
    masked[:, P:] = torch.rand(B, L - P, device=ids.device) < t
    noisy = torch.where(masked, torch.full_like(ids, mask_id), ids)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    logits, _ = net(noisy, attention_mask=attn, positions=positions)
    ce = F.cross_entropy(logits[masked].float(), ids[masked], reduction="none")
    weights = (1.0 / t).expand(B, L)[masked]
    return (ce * weights).sum() / (B * (L - P))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).parent / "tiny"))
    ap.add_argument("--steps", type=int, default=30000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--d-model", type=int, default=192)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--d-ff", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--log-every", type=int, default=500)
    ap.add_argument("--time-budget-s", type=float, default=None,
                    help="shrink --steps to what fits in this many seconds, timed on the first 200 steps")
    ap.add_argument("--examples", type=int, default=2_000_000, help="pre-generated training examples")
    ap.add_argument("--workers", type=int, default=max(1, (__import__("os").cpu_count() or 2) - 1))
    a = ap.parse_args(argv)

    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    tok = build_tokenizer(a.data_seed)
    cfg = TinyConfig(vocab_size=len(tok), d_model=a.d_model, n_layers=a.layers, n_heads=a.heads, d_ff=a.d_ff)
    net = TinyDLLM(cfg).to(a.device)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / a.warmup)
                                              * 0.5 * (1 + math.cos(math.pi * min(s, a.steps) / a.steps)))
    calib_steps = 200 if a.time_budget_s else None
    t_data = time.time()
    data = build_dataset(a.examples, tok, a.data_seed, a.workers).to(a.device)
    print(f"built {len(data)} training examples in {time.time() - t_data:.1f} s", flush=True)
    hrng = random.Random(0)
    heldout = torch.tensor([sum(encode_example(p, tok, hrng), []) for p in test_problems(256, a.data_seed)],
                           dtype=torch.int16, device=a.device)
    gen = torch.Generator(device=a.device).manual_seed(a.seed)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if a.device.startswith("cuda") else torch.autocast("cpu", enabled=False)
    losses, t0 = [], time.time()
    step = 0
    while step < a.steps:
        if step == calib_steps:  # fit the schedule to the time budget
            per_step = (time.time() - t0) / step
            a.steps = max(step + 1, min(a.steps, int(a.time_budget_s / per_step)))
            print(f"{per_step * 1000:.1f} ms/step: training for {a.steps} steps", flush=True)
        G = rng.choice(GEN_LENGTHS)
        idx = torch.randint(len(data), (a.batch_size,), device=a.device, generator=gen)
        ids, attn, P = batch_from(data, idx, G, tok.pad_id)
        with amp:
            loss = diffusion_loss(net, ids, attn, P, tok.mask_id)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % a.log_every == 0 or step == a.steps - 1:
            net.eval()
            with torch.no_grad(), amp:
                hids, hattn, hP = batch_from(heldout, torch.arange(len(heldout), device=a.device), 48, tok.pad_id)
                torch.manual_seed(1234)
                hl = diffusion_loss(net, hids, hattn, hP, tok.mask_id).item()
            torch.manual_seed(a.seed + step)
            net.train()
            losses.append({"step": step + 1, "train_loss": round(loss.item(), 5), "heldout_loss": round(hl, 5),
                           "elapsed_s": round(time.time() - t0, 1)})
            print(json.dumps(losses[-1]), flush=True)
        step += 1

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(out / "model.safetensors"))
    tok.save(out / "tokenizer.json")
    record = {"command": "python -m training.tiny_train " + " ".join(argv or __import__("sys").argv[1:]),
              "args": vars(a), "steps_run": step, "device": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "params": sum(p.numel() for p in net.parameters()),
              "train_time_s": round(time.time() - t0, 1), "log": losses}
    (out / "config.json").write_text(json.dumps({"model": cfg.to_dict(), "training": record}, indent=1))
    print(f"wrote {out} ({record['params']} parameters, {record['train_time_s']} s)")


if __name__ == "__main__":
    main()
