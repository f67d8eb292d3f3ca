"""Accuracy-vs-NFE frontier of the decoding methods on one model and task, and PRR's controller cost.

    python -m bench.frontier run --out results/methods-frontier --limit 500 --device cuda --dtype float32
    python -m bench.frontier report results/methods-frontier      # frontier.md (+ frontier.png with matplotlib)

`run` sweeps each method's main knob (threshold/PRR tau, EB gamma, SlowFast thresholds and
presets, LocalLeap thresholds) in one benchmark run (bench.runner: same problems, seed, batch
size for every method), then times the PRR controller apart from the model. `report` reads only
the result files, so it can be rebuilt without rerunning; it also checks the PRR target: at
least 15% fewer mean NFE than `threshold` at equal-or-better accuracy (within one standard error)
at some operating point with accuracy >= 0.97 x fixed-step accuracy.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

TAUS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)
SWEEPS = {
    "fixed": ["fixed"],
    "threshold": [f"threshold:tau={t}" for t in TAUS],
    "prr (weighted)": [f"prr:tau={t}" for t in TAUS],
    "prr (temperature)": [f"prr:shaping=temperature,tau={t}" for t in TAUS],
    "prr ablations": ["prr:controller=off", "prr:controller=zero", "prr:controller=zero,tau=0.7"],
    "eb": [f"eb:gamma={g}" for g in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)],
    "slowfast": ["slowfast", "slowfast:preset=paper", "slowfast:reuse=false"]
                + [f"slowfast:tau_high={t}" for t in (0.6, 0.7, 0.8, 0.95)],
    "localleap": ["localleap"] + [f"localleap:tau_relaxed={t}" for t in (0.5, 0.6)]
                 + ["localleap:tau_anchor=0.8,tau_relaxed=0.6"],
}


def family(label: str) -> str:
    for fam, labels in SWEEPS.items():
        if label in labels:
            return fam
    if label.startswith("prr:") and "controller=" in label:   # another controller checkpoint
        kv = dict(x.split("=", 1) for x in label[4:].split(","))
        extra = "" if kv.get("alpha", "1.0") == "1.0" else f", alpha {kv['alpha']}"
        return f"prr ({kv.get('shaping', 'weighted')}{extra}, {Path(kv['controller']).name})"
    return label.split(":")[0]


def cmd_run(a) -> int:
    from bench.runner import RunSpec, run
    methods = ",".join(m for fam in SWEEPS.values() for m in fam) if not a.methods else a.methods
    spec = RunSpec(model=a.model, task=a.task, methods=methods, limit=a.limit, seed=a.seed,
                   batch_size=a.batch_size, device=a.device, dtype=a.dtype, out_dir=str(Path(a.out)),
                   run_id="run", resume=a.resume, progress=False)
    summary = run(spec, log=lambda m: print(m, file=sys.stderr))
    cost = controller_cost(a.model, a.device, a.dtype, a.batch_size)
    (Path(a.out) / "controller_cost.json").write_text(json.dumps(cost, indent=1) + "\n")
    print(json.dumps(cost, indent=1))
    return 0


def controller_cost(model_name: str, device: str, dtype: str, batch: int, reps: int = 50) -> dict:
    """Median wall time of one model forward vs one PRR controller step (features + MLP) on the same
    batch of the task's prompts, synchronized; parameter counts of both."""
    import torch
    with torch.no_grad():
        return _controller_cost(torch, model_name, device, dtype, batch, reps)


def _controller_cost(torch, model_name, device, dtype, batch, reps) -> dict:
    from models import load_model
    from bench.runner import resolve_device, resolve_dtype
    from decoding.base import GenConfig
    from decoding.loop import left_pad
    from decoding.methods.prr.controller import load_controller
    from decoding.methods.prr.features import History, step_features, token_features
    from decoding.select import token_stats
    from tasks import load_task
    dev = resolve_device(device)
    model = load_model(model_name, device=str(dev), dtype=resolve_dtype(dtype, dev))
    task = load_task("arith")
    gen = GenConfig(task.protocol.gen_length, task.protocol.block_length)
    ctrl = load_controller("tiny", device=dev)
    prompts = [model.tokenizer.encode(d.prompt) for d in task.docs(batch)]
    ids, attn = left_pad(prompts, model.pad_id)
    P, G = ids.shape[1], gen.gen_length
    x = torch.cat([ids, torch.full((batch, G), model.mask_id)], 1).to(dev)
    am = torch.cat([attn, torch.ones((batch, G), dtype=torch.long)], 1).to(dev)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)

    def timeit(fn):
        for _ in range(5):
            fn()
        ts = []
        for _ in range(reps):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t0)
        return sorted(ts)[len(ts) // 2]

    out = model.forward(x, am, output_hidden=True, logits_from=P)   # as the decode loop runs it
    logits, hidden = out.logits.float(), out.hidden
    x0, conf = token_stats(logits)
    cand = torch.zeros((batch, G), dtype=torch.bool, device=dev)
    cand[:, :gen.block_length] = True
    z = torch.zeros(batch, dtype=torch.long, device=dev)
    hist = History.empty(batch, G, dev)
    rows = torch.arange(batch, device=dev)

    def controller_step():
        since = hist.update(rows, x0, z)
        f = step_features(candidates=cand, block=z, step=z, step_in_block=z, since_change=since,
                          prompt_len=attn.sum(1).to(dev), block_length=gen.block_length, total_steps=G,
                          tok=token_features(logits, conf))
        idx = cand.nonzero(as_tuple=True)
        return torch.sigmoid(ctrl(hidden[idx], f[idx]))

    t_model = timeit(lambda: model.forward(x, am, output_hidden=True, logits_from=P))
    t_ctrl = timeit(controller_step)
    return {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "batch": batch,
            "seq_len": P + G, "scored_positions_per_step": int(cand.sum()),
            "model_params": sum(p.numel() for p in model.module.parameters()), "controller_params": ctrl.n_params,
            "model_forward_s_median": t_model, "controller_step_s_median": t_ctrl,
            "controller_over_model": t_ctrl / t_model, "reps": reps,
            "note": "controller step = 11 features (incl. top-2 and entropy over the vocabulary) + MLP on the "
                    "active block's masked positions; model forward = one full forward with hidden states"}


def load_rows(out: Path) -> list[dict]:
    """Rows of <out>/run and of every <out>/<sub>/run (further sweeps on the same protocol); a method
    label already seen is skipped (greedy decoding repeats it exactly)."""
    rows, seen = [], set()
    for run_dir in [out / "run", *sorted(out.glob("*/run"))]:
        trunc = {}
        req = run_dir / "requests.jsonl"
        opener = open if req.exists() else (lambda p: gzip.open(p.with_suffix(".jsonl.gz"), "rt"))
        with opener(req) as f:
            for line in f:
                r = json.loads(line)
                t = trunc.setdefault(r["method"], [0, 0])
                t[0] += r.get("nfe_truncated", 0)
                t[1] += 1
        for r in json.loads((run_dir / "summary.json").read_text())["rows"]:
            if r["method"] in seen:
                continue
            seen.add(r["method"])
            r["family"] = family(r["method"])
            r["nfe_truncated_mean"] = trunc[r["method"]][0] / trunc[r["method"]][1]
            r["source"] = str(run_dir.relative_to(out))
            rows.append(r)
    return rows


def target_check(rows: list[dict]) -> dict:
    """PRR vs threshold, three readings of "equal or better accuracy (within one standard error),
    >= 15% fewer mean NFE, at an operating point with accuracy >= 0.97 x fixed":

    - `letter`: any (PRR point, threshold point) pair with PRR accuracy >= threshold accuracy - se
      (se = the larger of the two std errors); this may pick a threshold point that threshold's own
      sweep dominates (e.g. tau 0.99, slower than tau 0.95 at no better accuracy);
    - `frontier_match`: each PRR point against the cheapest threshold point that reaches the PRR
      point's accuracy (the NFE threshold needs for that accuracy, read off its sweep);
    - `frontier_se`: the same, but threshold may fall one std error short of the PRR point's
      accuracy (threshold gets the benefit of the doubt: the strictest reading).
    """
    fixed = next(r for r in rows if r["method"] == "fixed")
    floor = 0.97 * fixed["accuracy"]
    th = [r for r in rows if r["family"] == "threshold" and r["accuracy"] >= floor]
    prr = [r for r in rows if r["family"].startswith("prr (") and r["accuracy"] >= floor]

    def pair(p, t):
        return {"prr": p["method"], "threshold": t["method"], "nfe_reduction": round(1 - p["nfe_mean"] / t["nfe_mean"], 4),
                "prr_accuracy": p["accuracy"], "threshold_accuracy": t["accuracy"],
                "prr_nfe": p["nfe_mean"], "threshold_nfe": t["nfe_mean"]}

    out = {"fixed_accuracy": fixed["accuracy"], "accuracy_floor": floor}
    letter = [pair(p, t) for p in prr for t in th
              if p["accuracy"] >= t["accuracy"] - max(t["accuracy_stderr"], p["accuracy_stderr"])]
    out["letter"] = max(letter, key=lambda d: d["nfe_reduction"], default=None)
    for name, slack in (("frontier_se", True), ("frontier_match", False)):
        best = []
        for p in prr:
            need = p["accuracy"] - (max(p["accuracy_stderr"], 1e-9) if slack else 0.0)
            ok = [t for t in th if t["accuracy"] >= need - 1e-12]
            if ok:
                best.append(pair(p, min(ok, key=lambda t: t["nfe_mean"])))
        out[name] = sorted(best, key=lambda d: -d["nfe_reduction"])
    out["met_letter"] = out["letter"] is not None and out["letter"]["nfe_reduction"] >= 0.15
    out["met_frontier_se"] = any(d["nfe_reduction"] >= 0.15 for d in out["frontier_se"])
    out["met_frontier_match"] = any(d["nfe_reduction"] >= 0.15 for d in out["frontier_match"])
    return out


def cmd_report(a) -> int:
    out = Path(a.out)
    rows = load_rows(out)
    chk = target_check(rows)
    lines = ["| family | method | accuracy | ± se | mean NFE | truncated NFE | tok/fwd | run |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | `{r['method']}` | {r['accuracy']:.3f} | {r['accuracy_stderr']:.3f} | "
                     f"{r['nfe_mean']:.2f} | {r['nfe_truncated_mean']:.2f} | {r['tpf']:.2f} | {r['source']} |")
    (out / "frontier_table.md").write_text("\n".join(lines) + "\n")
    (out / "target_check.json").write_text(json.dumps(chk, indent=1) + "\n")
    print("\n".join(lines))
    print(json.dumps(chk, indent=1))
    try:
        plot(rows, out / "frontier.png")
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib; it is not a dependency)")
    return 0


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5.5))
    fams = list(SWEEPS) + sorted({r["family"] for r in rows} - set(SWEEPS))
    marks = dict(zip(fams, "s o ^ v x D P * h X d".split()))
    for fam in fams:
        pts = sorted((r["nfe_mean"], r["accuracy"], r["accuracy_stderr"]) for r in rows if r["family"] == fam)
        if not pts:
            continue
        xs, ys, es = zip(*pts)
        line = "-" if len(pts) > 2 and fam not in ("prr ablations", "slowfast", "localleap") else "none"
        ax.errorbar(xs, ys, yerr=es, marker=marks.get(fam, "o"), linestyle=line, capsize=2, label=fam, alpha=0.85)
    ax.set_xlabel("mean NFE per sample (lower is faster)")
    ax.set_ylabel("accuracy")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("tiny / arith (500 test problems): accuracy vs mean NFE")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.frontier", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--model", default="tiny")
    r.add_argument("--task", default="arith")
    r.add_argument("--methods", default=None, help="override the sweep (comma-separated specs)")
    r.add_argument("--limit", type=int, default=500)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--device", default="auto")
    r.add_argument("--dtype", default="float32")
    r.add_argument("--resume", action="store_true")
    p = sub.add_parser("report")
    p.add_argument("out")
    a = ap.parse_args(argv)
    return {"run": cmd_run, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
