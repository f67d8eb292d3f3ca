"""Train a PRR controller: rollouts -> convergence labels -> class-weighted BCE -> progressive rounds.

    python -m training.prr_train --out decoding/methods/prr/checkpoints/tiny --rounds 3 --train-problems 2000
    python -m training.prr_train --model llada --model-path GSAI-ML/LLaDA-8B-Instruct --task gsm8k \
        --data-dir ../shared/data --out controllers/llada-gsm8k
    python -m training.prr_train --model llada-small --no-weights --rounds 1 --train-problems 16 \
        --heldout-problems 8 --out /tmp/smoke            # a smoke run: random weights, no download
    python run_bench.py --model llada --model-path ... --methods prr:controller=controllers/llada-gsm8k

Any model run_bench.py loads (`--model`, `--model-path`, `--no-weights`), on the train split of a
task (`--task arith`, the built-in stream; `gsm8k` and `mbpp` from `--data-dir`, see
tasks/train_splits.py; never the test set). Round 0 decodes training problems with the plain
quota policy (one token per step; the controller off), logs every step (decoding.methods.prr.trajectory),
labels each record by empirical convergence progress from the rollout itself (decoding.methods.prr.labels)
and trains the controller (backbone frozen) with BCE, positives reweighted by neg/pos. Round 0
keeps only rollouts with a correct answer (`--all-rollouts`: all of them; implied by
`--no-weights`, whose answers are noise).
Each further round decodes fresh training problems with PRR and the newest controller, relabels
every logged state by a full-fidelity branch continuation (so tokens the controller committed
early get their observed future), and fine-tunes the controller on the new records plus a replay
sample of earlier rounds. After every round PRR is scored on held-out training-split problems;
the rounds stop when held-out accuracy drops by more than --stop-tol, keeping the last good
controller. The checkpoint is <out>.safetensors plus <out>.json, the training record (command,
arguments, seeds, data, per-round losses and held-out numbers); `prr:controller=<out>` loads it.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import asdict

import torch
import torch.nn.functional as F

from models import MODELS, load_model
from models.limits import hidden_size, max_positions
from tasks.train_splits import TRAIN_TASKS, TrainSplit, load_train_split
from decoding.base import GenConfig
from acceleration import decode
from decoding.loop import first_eos_index
from decoding.methods.prr.controller import Controller, ControllerConfig, save_controller
from decoding.methods.prr.labels import convergence_labels
from decoding.methods.prr.method import PRRConfig, PRRMethod
from decoding.methods.prr.trajectory import Trajectories, branch_labels, rollout
from decoding.methods.threshold import ThresholdConfig, ThresholdMethod


def make_policy(ctrl: Controller | None, gen: GenConfig, tau: float, shaping: str, alpha: float,
                features: str = "reference") -> PRRMethod:
    """PRR with an in-memory controller (None: the quota baseline), its features in `features`."""
    m = PRRMethod(PRRConfig(controller="off" if ctrl is None else "zero", tau=tau, shaping=shaping,
                            alpha=alpha, features=features), gen)
    m.ctrl = ctrl.eval() if ctrl is not None else None
    return m


def scorer(model, split: TrainSplit, docs):
    eos = model.eos_ids

    def score(i: int, tokens: torch.Tensor) -> bool:
        n = int(first_eos_index(tokens.unsqueeze(0), eos)[0])
        return split.correct(docs[i], model.tokenizer.decode(tokens[:n].tolist()))
    return score


def evaluate(model, method, split: TrainSplit, docs, gen, batch_size) -> dict:
    prompts = [model.tokenizer.encode(p.prompt) for p in docs]
    score = scorer(model, split, docs)
    ok, nfe = [], []
    for i in range(0, len(prompts), batch_size):
        res = decode(model, method, prompts[i:i + batch_size], gen)
        ok += [score(i + j, res.tokens[j]) for j in range(len(res.tokens))]
        nfe += res.nfe.tolist()
    acc = sum(ok) / len(ok)
    return {"n": len(ok), "accuracy": acc, "accuracy_stderr": math.sqrt(acc * (1 - acc) / len(ok)),
            "nfe_mean": sum(nfe) / len(nfe)}


class _NoMaskProposals(torch.nn.Module):
    """The model with the mask token's logit at -inf. Branch continuations commit the argmax until
    no mask is left in the block; a model whose argmax is the mask token itself (random weights do
    this) would otherwise never finish (decoding/methods/prr/trajectory.py `_continue`)."""

    def __init__(self, inner: torch.nn.Module, mask_id: int):
        super().__init__()
        self.inner, self.mask_id = inner, mask_id

    def forward(self, *args, **kwargs):
        logits, hidden = self.inner(*args, **kwargs)
        logits = logits.clone()
        logits[..., self.mask_id] = float("-inf")
        return logits, hidden


def label_records(model, traj: Trajectories, gen, from_branches: bool, batch_size: int):
    if from_branches:
        safe = dataclasses.replace(model, module=_NoMaskProposals(model.module, model.mask_id), cuda_graphs=False)
        return branch_labels(safe, traj, gen, batch_size=batch_size)
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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m training.prr_train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    m = ap.add_argument_group("model (as run_bench.py loads it)")
    m.add_argument("--model", default="tiny", help="model name (run_bench.py list); default %(default)s")
    m.add_argument("--model-path", default=None, help="llada/dream: hub id or local Hugging Face directory")
    m.add_argument("--no-weights", action="store_true",
                   help="random weights (llada-small, llada-8b, dream-7b, ...): a smoke run of the pipeline")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N; default %(default)s")
    m.add_argument("--dtype", default="float32", choices=("auto", "float32", "bfloat16", "float16"),
                   help="model weights (auto: bf16 on GPU, fp32 on CPU); the controller trains in fp32; "
                        "default %(default)s")
    d = ap.add_argument_group("data (train split only; the held-out problems come from it too)")
    d.add_argument("--task", default="arith", choices=TRAIN_TASKS, help="default %(default)s")
    d.add_argument("--data-dir", default=None, help="gsm8k, mbpp: local data (the ../shared/data layout)")
    d.add_argument("--shots", type=int, default=None,
                   help="few-shot examples before each prompt; default the scored task's (gsm8k 5, mbpp 3, arith 0)")
    d.add_argument("--allow-code-exec", action="store_true",
                   help="mbpp: run generated programs in the sandbox (tasks/sandbox.py) to score rollouts")
    d.add_argument("--code-timeout", type=float, default=3.0, help="mbpp: CPU seconds per program; default %(default)s")
    d.add_argument("--train-problems", type=int, default=2000, help="fresh training problems per round; default %(default)s")
    d.add_argument("--heldout-problems", type=int, default=500, help="held-out problems scored after every round")
    d.add_argument("--data-seed", type=int, default=0, help="arith: the stream; gsm8k/mbpp: the shuffle")
    d.add_argument("--gen-length", type=int, default=48, help="generation length (the task's protocol: arith 48, "
                   "gsm8k/mbpp 256); default %(default)s")
    d.add_argument("--block-length", type=int, default=16, help="block length (arith 16, gsm8k/mbpp 32); default %(default)s")
    t = ap.add_argument_group("training")
    t.add_argument("--out", default=None, help="checkpoint path without suffix: writes <out>.safetensors and "
                   "<out>.json; default controllers/<model>")
    t.add_argument("--rounds", type=int, default=3, help="training rounds (round 0 = baseline rollouts)")
    t.add_argument("--tau", type=float, default=0.9, help="PRR policy of rounds >= 1 and held-out scoring")
    t.add_argument("--shaping", default="weighted", help="temperature, weighted or gating; default %(default)s")
    t.add_argument("--alpha", type=float, default=1.0, help="shaping strength")
    t.add_argument("--hidden", type=int, default=256, help="controller hidden size H")
    t.add_argument("--epochs", type=int, default=4, help="epochs per round")
    t.add_argument("--lr", type=float, default=1e-3, help="round 0's learning rate")
    t.add_argument("--finetune-lr", type=float, default=5e-4, help="learning rate of rounds >= 1")
    t.add_argument("--train-batch", type=int, default=2048, help="records per optimizer step")
    t.add_argument("--decode-batch", type=int, default=256, help="rollouts decoded together")
    t.add_argument("--class-weight", default="balanced", help="balanced (positives weighted neg/pos) or none")
    t.add_argument("--replay", type=float, default=0.5, help="replayed old records per new record")
    t.add_argument("--all-rollouts", action="store_true", help="round 0: keep rollouts with wrong answers too")
    t.add_argument("--stop-tol", type=float, default=0.01, help="stop when held-out accuracy drops by more")
    t.add_argument("--seed", type=int, default=0, help="controller init, batches and random weights")
    t.add_argument("--save-trajectories", default=None, help="directory to save each round's trajectories")
    t.add_argument("--features", default="reference", choices=("reference", "ours"),
                   help="PRR feature convention (decoding/methods/prr/features.py), recorded in the JSON; "
                        "default %(default)s")
    return ap


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(argv)
    a.command = "python -m training.prr_train " + " ".join(argv)
    try:
        return run(a)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _check(a) -> None:
    for name in ("rounds", "train_problems", "heldout_problems", "gen_length", "block_length", "epochs",
                 "train_batch", "decode_batch", "hidden"):
        if getattr(a, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(a, name)} must be >= 1")
    if a.gen_length % a.block_length:
        raise ValueError(f"--gen-length {a.gen_length} must be a multiple of --block-length {a.block_length}")
    if a.model not in MODELS:
        raise ValueError(f"unknown model {a.model!r}; available: {', '.join(sorted(MODELS))}")


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"--device {name!r}: choose auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for a GPU but torch sees none; use --device cpu")
    return name


def run(a) -> int:
    t_start = time.time()
    _check(a)
    split = load_train_split(a.task, a.data_dir, a.shots, a.data_seed, a.allow_code_exec, a.code_timeout)
    split.check_size(a.rounds, a.train_problems, a.heldout_problems)
    device = _device(a.device)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        a.dtype, torch.bfloat16 if device.startswith("cuda") else torch.float32)
    model = load_model(a.model, device=device, dtype=dtype, path=a.model_path, no_weights=a.no_weights, seed=a.seed)
    out = a.out or f"controllers/{a.model}"
    gen = GenConfig(gen_length=a.gen_length, block_length=a.block_length)
    heldout = split.heldout(a.heldout_problems)
    longest = max(len(model.tokenizer.encode(p.prompt)) for p in heldout + split.round_docs(0, a.train_problems,
                                                                                             a.heldout_problems))
    limit = max_positions(model)
    if limit is not None and longest + a.gen_length > limit:
        raise ValueError(f"model {a.model} takes at most {limit} positions; the longest {a.task} prompt has {longest} "
                         f"tokens + --gen-length {a.gen_length}: use fewer --shots or a model with a longer context")
    all_rollouts = a.all_rollouts or a.no_weights
    log = lambda m: print(m, flush=True)
    ccfg = ControllerConfig(d_model=hidden_size(model), hidden=a.hidden)
    train_desc, heldout_desc = split.describe(a.rounds, a.train_problems, a.heldout_problems)
    args = {k: v for k, v in vars(a).items() if k != "command"}
    record = {"command": a.command, "args": args,
              "model": a.model, "model_path": a.model_path, "no_weights": a.no_weights,
              "model_config": model.info.get("config_from") or a.model, "task": a.task,
              "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "gen": asdict(gen), "train_split": train_desc, "heldout": heldout_desc,
              "round0_rollouts": "all" if all_rollouts else "correct only", "features": a.features, "rounds": []}
    ref = {"quota": evaluate(model, make_policy(None, gen, a.tau, a.shaping, a.alpha, a.features), split, heldout, gen,
                             a.decode_batch)}
    ref["threshold"] = evaluate(model, ThresholdMethod(ThresholdConfig(tau=a.tau), gen), split, heldout, gen,
                                a.decode_batch)
    record["heldout_reference"] = ref
    log(f"held-out reference: {ref}")
    ctrl, best, replay = None, None, []
    for r in range(a.rounds):
        t0 = time.time()
        probs = split.round_docs(r, a.train_problems, a.heldout_problems)
        prompts = [model.tokenizer.encode(p.prompt) for p in probs]
        policy = make_policy(ctrl, gen, a.tau, a.shaping, a.alpha, a.features)
        traj = rollout(model, policy, prompts, gen, batch_size=a.decode_batch, score=scorer(model, split, probs))
        info = {"round": r, "policy": "quota (controller off)" if ctrl is None else
                f"prr {a.shaping} alpha={a.alpha} tau={a.tau} with round {r - 1}'s controller",
                "rollouts": len(prompts), "rollout_accuracy": float(traj.correct.float().mean()),
                "rollout_nfe_mean": float(traj.nfe.float().mean())}
        if ctrl is None and not all_rollouts:
            if not traj.correct.any():
                raise ValueError(f"round 0: none of {len(prompts)} rollouts answered correctly, so there is nothing "
                                 f"to learn convergence from; pass --all-rollouts to train on every rollout")
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
        info["heldout"] = evaluate(model, make_policy(cand, gen, a.tau, a.shaping, a.alpha, a.features), split, heldout, gen,
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
        save_controller(ctrl, out, record)        # after every accepted round: an interrupted run keeps it
    record["kept_round"] = max(i["round"] for i in record["rounds"] if i["kept"])
    record["train_time_s"] = round(time.time() - t_start, 1)
    w, j = save_controller(ctrl, out, record)
    log(f"wrote {w} and {j}; decode with --methods prr:controller={w.with_suffix('')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
