"""Train a PRR controller: rollouts -> convergence labels -> class-weighted BCE -> progressive rounds.

    python -m training.prr_train --out decoding/decoding/methods/prr/checkpoints/tiny --rounds 3 --train-problems 2000

Round 0 decodes training problems (the task's train split, never the test set) with the plain
quota policy (one token per step; the controller off), logs every step (decoding.methods.prr.trajectory),
labels each record by empirical convergence progress from the rollout itself (decoding.methods.prr.labels)
and trains the controller (backbone frozen) with BCE, positives reweighted by neg/pos.
Each further round decodes fresh training problems with PRR and the newest controller, relabels
every logged state by a full-fidelity branch continuation (so tokens the controller committed
early get their observed future), and fine-tunes the controller on the new records plus a replay
sample of earlier rounds. After every round PRR is scored on held-out training-split problems;
the rounds stop when held-out accuracy drops by more than --stop-tol, keeping the last good
controller. The checkpoint is <out>.safetensors plus <out>.json, the training record (command,
arguments, seeds, data, per-round losses and held-out numbers).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from dataclasses import asdict

import torch
import torch.nn.functional as F

from models import load_model
from tasks.arith import extract_answer, train_problems
from decoding.base import GenConfig
from acceleration import decode
from decoding.loop import first_eos_index
from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
from decoding.methods.prr.labels import convergence_labels
from decoding.methods.prr.method import PRRConfig, PRRMethod
from decoding.methods.prr.trajectory import Trajectories, branch_labels, rollout

HELDOUT_SHARD = 1000


def make_policy(ctrl: Controller | None, gen: GenConfig, tau: float, shaping: str, alpha: float) -> PRRMethod:
    """PRR with an in-memory controller (None: the quota baseline)."""
    m = PRRMethod(PRRConfig(controller="off" if ctrl is None else "zero", tau=tau, shaping=shaping,
                            alpha=alpha), gen)
    m.ctrl = ctrl.eval() if ctrl is not None else None
    return m


def scorer(model, problems):
    eos = model.eos_ids

    def score(i: int, tokens: torch.Tensor) -> bool:
        n = int(first_eos_index(tokens.unsqueeze(0), eos)[0])
        return extract_answer(model.tokenizer.decode(tokens[:n].tolist())) == problems[i].answer
    return score


def evaluate(model, method, problems, gen, batch_size) -> dict:
    prompts = [model.tokenizer.encode(p.prompt) for p in problems]
    score = scorer(model, problems)
    ok, nfe = [], []
    for i in range(0, len(prompts), batch_size):
        res = decode(model, method, prompts[i:i + batch_size], gen)
        ok += [score(i + j, res.tokens[j]) for j in range(len(res.tokens))]
        nfe += res.nfe.tolist()
    acc = sum(ok) / len(ok)
    return {"n": len(ok), "accuracy": acc, "accuracy_stderr": math.sqrt(acc * (1 - acc) / len(ok)),
            "nfe_mean": sum(nfe) / len(nfe)}


def label_records(model, traj: Trajectories, gen, from_branches: bool, batch_size: int):
    if from_branches:
        return branch_labels(model, traj, gen, batch_size=batch_size)
    return convergence_labels(traj.row, traj.pos, traj.step, traj.argmax, traj.commit)


def train_controller(hidden, feats, y, rows, *, cfg: ControllerConfig, init: Controller | None = None,
                     epochs: int = 4, lr: float = 1e-3, batch_size: int = 2048, seed: int = 0,
                     device="cpu", val_frac: float = 0.05, class_weight: str = "balanced",
                     log=print) -> tuple[Controller, dict]:
    """Class-weighted BCE on (hidden, feats) -> y (positives weighted neg/pos; `class_weight="none"`:
    plain BCE); a rollout-grouped split of val_frac for validation."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    ctrl = Controller(cfg) if init is None else init
    ctrl = ctrl.to(device).train()
    uniq = torch.unique(rows)
    val_rows = uniq[torch.randperm(len(uniq), generator=g)[:max(1, int(len(uniq) * val_frac))]]
    is_val = torch.isin(rows, val_rows) if len(uniq) > 1 else torch.zeros_like(rows, dtype=torch.bool)
    tr, va = (~is_val).nonzero().squeeze(1), is_val.nonzero().squeeze(1)
    y = y.float()
    pos = float(y[tr].sum())
    neg = len(tr) - pos
    if class_weight not in ("balanced", "none"):
        raise ValueError(f"--class-weight {class_weight!r}; choose balanced or none")
    pos_weight = torch.tensor(neg / pos if pos > 0 and class_weight == "balanced" else 1.0, device=device)
    H, Fe, Y = hidden.to(device), feats.to(device), y.to(device)
    opt = torch.optim.AdamW(ctrl.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(tr) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps), pct_start=0.1)
    hist = []
    for ep in range(epochs):
        perm = tr[torch.randperm(len(tr), generator=g)].to(device)
        tot, n = 0.0, 0
        for i in range(0, len(perm), batch_size):
            b = perm[i:i + batch_size]
            loss = F.binary_cross_entropy_with_logits(ctrl(H[b], Fe[b]), Y[b], pos_weight=pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot, n = tot + loss.item() * len(b), n + len(b)
        v = _val(ctrl, H, Fe, Y, va.to(device), pos_weight)
        hist.append({"epoch": ep + 1, "train_loss": round(tot / max(n, 1), 5), **v})
        log(f"    epoch {ep + 1}: train loss {tot / max(n, 1):.4f}  val {v}")
    return ctrl.eval(), {"records_train": len(tr), "records_val": len(va), "positive_rate": pos / max(len(tr), 1),
                         "pos_weight": float(pos_weight), "epochs": hist}


@torch.no_grad()
def _val(ctrl, H, Fe, Y, va, pos_weight) -> dict:
    if len(va) == 0:
        return {}
    ctrl.eval()
    z = torch.cat([ctrl(H[va[i:i + 8192]], Fe[va[i:i + 8192]]) for i in range(0, len(va), 8192)])
    ctrl.train()
    y = Y[va]
    pred = z > 0
    return {"val_loss": round(F.binary_cross_entropy_with_logits(z, y, pos_weight=pos_weight).item(), 5),
            "val_acc": round((pred == y.bool()).float().mean().item(), 4),
            "val_precision": round(((pred & y.bool()).sum() / pred.sum().clamp(min=1)).item(), 4),
            "val_recall": round(((pred & y.bool()).sum() / y.sum().clamp(min=1)).item(), 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.prr_train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--out", required=True, help="checkpoint path without suffix, e.g. decoding/decoding/methods/prr/checkpoints/tiny")
    ap.add_argument("--rounds", type=int, default=3, help="training rounds (round 0 = baseline rollouts)")
    ap.add_argument("--train-problems", type=int, default=2000, help="fresh training problems per round")
    ap.add_argument("--heldout-problems", type=int, default=500)
    ap.add_argument("--gen-length", type=int, default=48)
    ap.add_argument("--block-length", type=int, default=16)
    ap.add_argument("--tau", type=float, default=0.9, help="PRR policy of rounds >= 1 and held-out scoring")
    ap.add_argument("--shaping", default="weighted")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--hidden", type=int, default=256, help="controller hidden size H")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--finetune-lr", type=float, default=5e-4)
    ap.add_argument("--train-batch", type=int, default=2048)
    ap.add_argument("--decode-batch", type=int, default=256)
    ap.add_argument("--class-weight", default="balanced", help="balanced (positives weighted neg/pos) or none")
    ap.add_argument("--replay", type=float, default=0.5, help="replayed old records per new record")
    ap.add_argument("--all-rollouts", action="store_true", help="round 0: keep rollouts with wrong answers too")
    ap.add_argument("--stop-tol", type=float, default=0.01, help="stop when held-out accuracy drops by more")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--save-trajectories", default=None, help="directory to save each round's trajectories")
    a = ap.parse_args(argv)
    try:
        return run(a)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(a) -> int:
    t_start = time.time()
    if a.rounds < 1:
        raise ValueError("--rounds must be >= 1")
    device = "cuda" if a.device == "auto" and torch.cuda.is_available() else ("cpu" if a.device == "auto" else a.device)
    model = load_model(a.model, device=device, dtype=torch.float32)
    gen = GenConfig(gen_length=a.gen_length, block_length=a.block_length)
    heldout = list(itertools.islice(train_problems(a.data_seed, shard=HELDOUT_SHARD), a.heldout_problems))
    log = lambda m: print(m, flush=True)
    d_model = model.info.get("config", {}).get("d_model") or model.module.cfg.d_model
    ccfg = ControllerConfig(d_model=d_model, hidden=a.hidden)
    record = {"command": "python -m training.prr_train " + " ".join(sys.argv[1:]), "args": vars(a),
              "model": a.model, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
              "torch": torch.__version__, "gen": asdict(gen), "train_split": f"arith train stream, data_seed "
              f"{a.data_seed}, shard r for round r", "heldout": f"arith train stream shard {HELDOUT_SHARD}, "
              f"first {a.heldout_problems}", "rounds": []}
    ref = {"quota": evaluate(model, make_policy(None, gen, a.tau, a.shaping, a.alpha), heldout, gen, a.decode_batch)}
    from ..threshold import ThresholdConfig, ThresholdMethod
    ref["threshold"] = evaluate(model, ThresholdMethod(ThresholdConfig(tau=a.tau), gen), heldout, gen, a.decode_batch)
    record["heldout_reference"] = ref
    log(f"held-out reference: {ref}")
    ctrl, best, replay = None, None, []
    for r in range(a.rounds):
        t0 = time.time()
        probs = list(itertools.islice(train_problems(a.data_seed, shard=r), a.train_problems))
        prompts = [model.tokenizer.encode(p.prompt) for p in probs]
        policy = make_policy(ctrl, gen, a.tau, a.shaping, a.alpha)
        traj = rollout(model, policy, prompts, gen, batch_size=a.decode_batch, score=scorer(model, probs))
        info = {"round": r, "policy": "quota (controller off)" if ctrl is None else
                f"prr {a.shaping} alpha={a.alpha} tau={a.tau} with round {r - 1}'s controller",
                "rollouts": len(prompts), "rollout_accuracy": float(traj.correct.float().mean()),
                "rollout_nfe_mean": float(traj.nfe.float().mean())}
        if ctrl is None and not a.all_rollouts:
            traj = traj.subset_rows(traj.correct)
            info["rollouts_kept"] = int(traj.correct.sum())
        label, valid = label_records(model, traj, gen, from_branches=ctrl is not None, batch_size=4 * a.decode_batch)
        info.update(records=int(valid.sum()), labels="rollout" if ctrl is None else "branch continuations",
                    label_time_s=round(time.time() - t0, 1))
        if a.save_trajectories:
            from pathlib import Path
            Path(a.save_trajectories).mkdir(parents=True, exist_ok=True)
            traj.save(Path(a.save_trajectories) / f"round{r}.pt")
        v = valid.nonzero().squeeze(1)
        new = (traj.hidden[v], traj.feats[v], label[v], traj.row[v] + r * 10_000_000)
        data = new
        if replay:
            old = [torch.cat(t) for t in zip(*replay)]
            k = min(len(old[0]), int(a.replay * len(v)))
            pick = torch.randperm(len(old[0]), generator=torch.Generator().manual_seed(a.seed + r))[:k]
            data = tuple(torch.cat([n, o[pick]]) for n, o in zip(new, old))
            info["replay_records"] = k
        replay.append(new)
        log(f"round {r}: {info}")
        init = None if ctrl is None else Controller(ccfg).to(device)
        if init is not None:
            init.load_state_dict(ctrl.state_dict())
        cand, tlog = train_controller(*data, cfg=ccfg, init=init, epochs=a.epochs,
                                      lr=a.lr if ctrl is None else a.finetune_lr, batch_size=a.train_batch,
                                      seed=a.seed + r, device=device, class_weight=a.class_weight, log=log)
        info["train"] = tlog
        info["heldout"] = evaluate(model, make_policy(cand, gen, a.tau, a.shaping, a.alpha), heldout, gen,
                                   a.decode_batch)
        info["time_s"] = round(time.time() - t0, 1)
        log(f"round {r} held-out: {info['heldout']}")
        drop = best is not None and info["heldout"]["accuracy"] < best["accuracy"] - a.stop_tol
        info["kept"] = not drop
        record["rounds"].append(info)
        if drop:
            log(f"held-out accuracy dropped ({info['heldout']['accuracy']:.3f} < {best['accuracy']:.3f} - "
                f"{a.stop_tol}): stopping, keeping round {r - 1}'s controller")
            break
        ctrl, best = cand, info["heldout"]
        record["kept_round"] = r
        record["train_time_s"] = round(time.time() - t_start, 1)
        save_controller(ctrl, a.out, record)        # after every accepted round: an interrupted run keeps it
    record["kept_round"] = max(i["round"] for i in record["rounds"] if i["kept"])
    record["train_time_s"] = round(time.time() - t_start, 1)
    w, j = save_controller(ctrl, a.out, record)
    log(f"wrote {w} and {j}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
