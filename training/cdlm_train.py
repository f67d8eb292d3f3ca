"""Train a CDLM student (arXiv 2511.19269): a block-causal copy of the built-in bidirectional model,
fine-tuned on the teacher's own decoding trajectories. docs/cdlm.md has the method and its sources.

    python -m training.cdlm_train --out models/tiny-cdlm --train-problems 2000 --epochs 8 --device cuda

1. Rollouts (training/cdlm/rollout.py): the teacher decodes training-split problems one token per
   step with low-confidence remasking, block by block on the student's block grid, storing each
   finalized token's step and the teacher's last hidden state there (--rollout-temperatures: one
   rollout per problem and temperature; the paper uses 0.0 and 0.5).
2. Training (training/cdlm/step.py): per batch, trajectory states y with their block-completion
   states y* (distillation KL to the teacher at the block's positions still masked at y,
   consistency KL to the stop-gradient student at y* on positions still masked there) plus the
   masked-diffusion CE on randomly masked ground-truth answers; total = w_distill * distill +
   w_cons * consistency + w_dlm * dlm. Full fine-tuning, AdamW, cosine schedule.
3. After every epoch, held-out accuracy and NFE of the student's block-causal threshold decode
   (training/cdlm/evaluate.py) on training-split problems never trained on; epoch 0 is the
   untrained student (the teacher's weights under the block-causal mask). The best epoch (accuracy,
   then fewer NFE) is written to --out as a student directory (model.safetensors, config.json
   with the training record, tokenizer.json), loadable with `--model <out>`; the record is also
   written to <out>/training.json.
4. --max-minutes: a wall-clock budget from the start (rollouts included). Training stops after
   an epoch once the budget is spent, or before an epoch that would not fit it (judged by the
   longest epoch so far, held-out decode included); the best epoch so far is kept and the
   record says where it stopped ("stopped_early"), with the optimizer steps actually taken.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

from models import load_model
from models.tiny_block import save_student, student_from_teacher
from tasks.arith import train_problems
from training.cdlm.batches import dlm_batch, pick_solutions, sample_pairs
from training.cdlm.evaluate import evaluate_student
from training.cdlm.losses import LossWeights
from training.cdlm.rollout import Trajectories, teacher_rollout
from training.cdlm.step import cdlm_losses

HELDOUT_SHARD = 1000


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m training.cdlm_train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="student directory to write, e.g. models/tiny-cdlm")
    ap.add_argument("--teacher", default="tiny", help="bidirectional teacher (the built-in model)")
    ap.add_argument("--block-size", type=int, default=16, help="student block size (positions from the first token)")
    ap.add_argument("--gen-length", type=int, default=48)
    ap.add_argument("--train-problems", type=int, default=2000, help="arith train-split problems rolled out")
    ap.add_argument("--heldout-problems", type=int, default=200, help="train-split shard %d, never trained on" % HELDOUT_SHARD)
    ap.add_argument("--rollout-temperatures", default="0.0", help="comma list; the paper uses 0.0,0.5")
    ap.add_argument("--correct-only", action="store_true", help="drop rollouts whose answer is wrong (not in the paper)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="wall-clock budget from the start; stop after the epoch that spends it or before one that "
                         "would not fit (the best epoch so far is kept); default: none")
    ap.add_argument("--pairs-per-trajectory", type=int, default=4, help="(y, y*) pairs drawn per trajectory per epoch")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--w-distill", type=float, default=1.0)
    ap.add_argument("--w-cons", type=float, default=0.5)
    ap.add_argument("--w-dlm", type=float, default=0.1, help="paper: 0.1 for LLaDA, 0.01 for Dream")
    ap.add_argument("--kl-temperature", type=float, default=1.0)
    ap.add_argument("--tau", type=float, default=0.9, help="threshold of the held-out decode")
    ap.add_argument("--rollout-batch", type=int, default=64)
    ap.add_argument("--decode-batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    a = ap.parse_args(argv)
    checks = [(a.block_size > 0, "--block-size must be positive"), (a.gen_length > 0, "--gen-length must be positive"),
              (a.train_problems > 0, "--train-problems must be positive"), (a.heldout_problems > 0, "--heldout-problems must be positive"),
              (a.epochs > 0, "--epochs must be positive"), (a.batch_size > 0, "--batch-size must be positive"),
              (a.max_minutes is None or a.max_minutes > 0, "--max-minutes must be positive (or left out: no budget)"),
              (a.pairs_per_trajectory > 0, "--pairs-per-trajectory must be positive"),
              (0 < a.tau <= 1, "--tau must be in (0, 1]"), (a.kl_temperature > 0, "--kl-temperature must be > 0"),
              (min(a.w_distill, a.w_cons, a.w_dlm) >= 0, "loss weights must be >= 0")]
    for ok, msg in checks:
        if not ok:
            ap.error(msg)
    try:
        a.temperatures = [float(t) for t in a.rollout_temperatures.split(",")]
    except ValueError:
        ap.error(f"--rollout-temperatures {a.rollout_temperatures!r}: give numbers separated by commas, e.g. 0.0,0.5")
    if any(t < 0 for t in a.temperatures):
        ap.error("--rollout-temperatures must be >= 0")
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here; use --device cpu")
    if Path(a.out).exists() and not Path(a.out).is_dir():
        ap.error(f"--out {a.out} exists and is not a directory")
    return a


def rollouts(teacher, problems, a, log) -> tuple[Trajectories, dict]:
    from tasks.arith import extract_answer
    prompts = [teacher.tokenizer.encode(p.prompt) for p in problems]
    parts, ok = [], []
    g = torch.Generator(device=teacher.device).manual_seed(a.seed)
    for temp in a.temperatures:
        for i in range(0, len(prompts), a.rollout_batch):
            tr = teacher_rollout(teacher, prompts[i:i + a.rollout_batch], a.gen_length, a.block_size, temp, g)
            parts.append(tr)
            for j, p in enumerate(problems[i:i + a.rollout_batch]):
                gen = [t for t in tr.generated(j) if t not in teacher.eos_ids]
                ok.append(extract_answer(teacher.tokenizer.decode(gen)) == p.answer)
        log(f"  rollouts at temperature {temp}: {len(prompts)} problems")
    traj = Trajectories.cat(parts, teacher.pad_id)
    correct = torch.tensor(ok)
    info = {"rollouts": len(traj), "rollout_accuracy": round(float(correct.float().mean()), 4),
            "teacher_steps_mean": round(float(traj.steps.float().mean()), 2)}
    if a.correct_only:
        traj = traj.subset(correct)
        info["rollouts_kept"] = len(traj)
    return traj, info


def student_adapter(teacher, net, block_size):
    from models.base import ModelAdapter
    return ModelAdapter(name="tiny-block", module=net, tokenizer=teacher.tokenizer, mask_id=teacher.mask_id,
                        pad_id=teacher.pad_id, eos_ids=teacher.eos_ids, regime="block_causal", block_size=block_size)


def run(a) -> int:
    t_start = time.time()
    log = lambda m: print(m, flush=True)
    torch.manual_seed(a.seed)
    teacher = load_model(a.teacher, device=a.device)
    if teacher.regime != "bidirectional" or not hasattr(teacher.module, "head"):
        raise ValueError(f"--teacher {a.teacher}: CDLM here distils the built-in bidirectional architecture (tiny)")
    train = list(itertools.islice(train_problems(a.data_seed, shard=0), a.train_problems))
    heldout = list(itertools.islice(train_problems(a.data_seed, shard=HELDOUT_SHARD), a.heldout_problems))
    device_name = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    record = {"command": "python -m training.cdlm_train " + " ".join(sys.argv[1:] if a.argv is None else a.argv),
              "args": {k: v for k, v in vars(a).items() if k not in ("argv",)}, "teacher": a.teacher,
              "device": device_name, "torch": __import__("torch").__version__, "seed": a.seed,
              "train_split": f"arith train stream, data_seed {a.data_seed}, shard 0, first {a.train_problems}",
              "heldout": f"arith train stream shard {HELDOUT_SHARD}, first {a.heldout_problems}",
              "weights": {"distill": a.w_distill, "consistency": a.w_cons, "dlm": a.w_dlm}, "epochs": []}
    t0 = time.time()
    traj, info = rollouts(teacher, train, a, log)
    info["time_s"] = round(time.time() - t0, 1)
    record["rollouts"] = info
    log(f"rollouts: {info}")

    net = student_from_teacher(teacher.module, a.block_size).train()
    for p in teacher.module.parameters():
        p.requires_grad_(False)
    student = student_adapter(teacher, net, a.block_size)
    weights = LossWeights(a.w_distill, a.w_cons, a.w_dlm)
    rng, g = random.Random(a.seed), torch.Generator().manual_seed(a.seed)
    per_epoch = math.ceil(len(traj) * a.pairs_per_trajectory / a.batch_size)
    total_steps = per_epoch * a.epochs
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
    solutions_of = train * len(a.temperatures)        # trajectory row -> its problem

    def held_out(epoch: int, losses: dict | None, secs: float) -> dict:
        net.eval()
        ev = evaluate_student(student, heldout, a.gen_length, a.tau, a.decode_batch)
        net.train()
        e = {"epoch": epoch, "steps": epoch * per_epoch, **({"train_loss": losses} if losses else {}),
             "heldout": ev, "elapsed_s": round(time.time() - t_start, 1), "epoch_time_s": round(secs, 1)}
        record["epochs"].append(e)
        log(f"epoch {epoch}: {e}")
        return e

    best = held_out(0, None, 0.0)
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    budget_s = a.max_minutes * 60 if a.max_minutes else None
    steps_done, longest_epoch_s, stopped = 0, 0.0, None
    for ep in range(1, a.epochs + 1):
        elapsed = time.time() - t_start
        if budget_s is not None and ep > 1 and (elapsed >= budget_s or elapsed + longest_epoch_s > budget_s):
            stopped = {"after_epoch": ep - 1, "planned_epochs": a.epochs, "elapsed_s": round(elapsed, 1),
                       "budget_s": round(budget_s, 1), "longest_epoch_s": round(longest_epoch_s, 1),
                       "reason": "budget spent" if elapsed >= budget_s else "the next epoch would not fit the budget"}
            log(f"--max-minutes {a.max_minutes}: stopping after epoch {ep - 1} of {a.epochs} ({stopped['reason']})")
            break
        t0, sums, n = time.time(), {}, 0
        order = torch.randperm(len(traj), generator=g).repeat(a.pairs_per_trajectory)
        for i in range(0, len(order), a.batch_size):
            rows = order[i:i + a.batch_size]
            pair = sample_pairs(traj, rows, teacher.mask_id, g)
            dlm = dlm_batch(pick_solutions([solutions_of[r] for r in rows.tolist()], teacher.tokenizer, a.gen_length,
                                           a.block_size, rng), teacher.pad_id, teacher.mask_id, g)
            losses = cdlm_losses(net, teacher.module.head, pair, dlm, weights, a.kl_temperature)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            for k, v in losses.items():      # summed on the device: no host sync per step
                sums[k] = sums.get(k, 0.0) + v.detach()
            n += 1
        steps_done += n
        e = held_out(ep, {k: round(float(v) / n, 5) for k, v in sums.items()}, time.time() - t0)
        longest_epoch_s = max(longest_epoch_s, time.time() - t0)
        if (e["heldout"]["accuracy"], -e["heldout"]["nfe_mean"]) > (best["heldout"]["accuracy"], -best["heldout"]["nfe_mean"]):
            best, best_state = e, {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    record["kept_epoch"] = best["epoch"]
    record["optimizer_steps"] = steps_done
    record["planned_steps"] = total_steps
    record["steps_per_epoch"] = per_epoch
    record["max_minutes"] = a.max_minutes
    record["stopped_early"] = stopped
    record["train_time_s"] = round(time.time() - t_start, 1)
    out = save_student(net.eval(), teacher.tokenizer, a.out, record)
    (out / "training.json").write_text(json.dumps(record, indent=1))
    log(f"kept epoch {best['epoch']} (held-out {best['heldout']}); wrote {out}")
    return 0


def main(argv=None) -> int:
    a = parse_args(argv)
    a.argv = argv
    try:
        return run(a)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
