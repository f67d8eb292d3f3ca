#!/usr/bin/env python
"""dllm-bench command line.

    python run_bench.py                                   # the embedded default: tiny model, arith task
    python run_bench.py --methods fixed,threshold:tau=0.7 --limit 500 --seed 0
    python run_bench.py list                              # models, tasks, methods and their settings

    python run_bench.py --model llada --model-path GSAI-ML/LLaDA-8B-Instruct --methods threshold:cache=dual
    python run_bench.py --model llada-8b --no-weights --task arith --methods fixed,threshold:cache=dual
    python run_bench.py verify-model /models/LLaDA-8B-Instruct      # our logits vs the authors' code

Subcommands: run (the default), list, verify-model.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

SUBCOMMANDS = ("run", "list", "verify-model")


def _offline_default() -> None:
    # The built-in model and task never touch the network; make sure nothing we import tries.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    from bench.runner import RunSpec
    d = RunSpec()
    ap = argparse.ArgumentParser(prog="run_bench.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command")
    r = sub.add_parser("run", help="decode, score and write result files (the default)")
    r.add_argument("--model", default=d.model, help="model name (see `list`); default %(default)s")
    r.add_argument("--task", "--tasks", dest="task", default=d.task, help="task name; default %(default)s")
    r.add_argument("--methods", default=d.methods,
                   help="comma-separated method specs, e.g. fixed,threshold:tau=0.7; default %(default)s")
    r.add_argument("--limit", type=int, default=d.limit, help="number of problems; default %(default)s")
    r.add_argument("--seed", type=int, default=d.seed)
    r.add_argument("--batch-size", type=int, default=d.batch_size)
    r.add_argument("--gen-length", type=int, default=None, help="default: the task's protocol")
    r.add_argument("--block-length", type=int, default=None, help="default: the task's protocol")
    r.add_argument("--early-stop", type=_bool, default=d.early_stop,
                   help="stop a row once a completed block holds EOS; default %(default)s")
    r.add_argument("--max-steps", type=int, default=None, help="per-sample step cap; default gen_length")
    r.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N; default %(default)s")
    r.add_argument("--dtype", default=d.dtype, help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    r.add_argument("--warmup-batches", type=int, default=d.warmup_batches)
    r.add_argument("--baseline", default=None, help="method label that speedups are relative to; default the first")
    r.add_argument("--out-dir", default=d.out_dir)
    r.add_argument("--run-id", default=None, help="directory name under --out-dir; default time + spec hash")
    r.add_argument("--resume", action="store_true", help="continue the run in --run-id, skipping finished samples")
    r.add_argument("--no-progress", dest="progress", action="store_false")
    r.add_argument("--model-path", default=None,
                   help="llada/dream: hub id or local Hugging Face directory (default: the Instruct model)")
    r.add_argument("--no-weights", action="store_true",
                   help="random weights (named configs llada-8b, dream-7b, llada-small, ...): speed and energy "
                        "without a download; accuracy is reported as not applicable")
    r.add_argument("--model-backend", default=d.model_backend, choices=("native", "hf"),
                   help="native (ours, with KV cache) or hf (transformers AutoModel, trust_remote_code)")
    sub.add_parser("list", help="list models, tasks and methods with their settings")
    v = sub.add_parser("verify-model", help="compare our native model's logits with the authors' remote code")
    v.add_argument("checkpoint", help="hub id or local directory of a LLaDA or Dream checkpoint")
    v.add_argument("--family", choices=("llada", "dream"), default=None, help="default: from config.json model_type")
    v.add_argument("--device", default="auto")
    v.add_argument("--dtype", default="float32", help="float32 (default; exact comparison) or bfloat16")
    return ap


def cmd_run(args) -> int:
    from bench.runner import RunSpec, run
    from bench.table import summary_table
    fields = {f.name for f in dataclasses.fields(RunSpec)}
    spec = RunSpec(**{k: v for k, v in vars(args).items() if k in fields})
    summary = run(spec, log=lambda m: print(m, file=sys.stderr))
    print(summary_table(summary["rows"]))
    notes = {r["accuracy_note"] for r in summary["rows"] if r.get("accuracy_note")}
    for n in sorted(notes):
        print(f"accuracy: {n}")
    if summary["energy_note"]:
        print(f"energy: {summary['energy_note']}")
    print(f"results: {summary['path']}")
    return 0


def cmd_list(args) -> int:
    from bench.models import MODELS
    from methods.registry import METHODS
    from tasks import TASKS
    print("models: " + ", ".join(sorted(MODELS)))
    print("tasks:  " + ", ".join(sorted(TASKS)))
    print("methods:")
    for name, cls in sorted(METHODS.items()):
        settings = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(cls.Config))
        print(f"  {name}: {settings}")
    print("  every method also takes cache=none|prefix|dual (KV cache, methods/cache.py)")
    return 0


def cmd_verify(args) -> int:
    import json as _json

    from bench.models import load_model
    from bench.models.checkpoint import read_config, resolve_dir
    from bench.runner import resolve_device, resolve_dtype
    from bench.verify import verify
    d = resolve_dir(args.checkpoint)
    family = args.family or {"llada": "llada", "dream": "dream"}.get(str(read_config(d).get("model_type", "")).lower())
    if family is None:
        raise ValueError(f"cannot tell the model family from {d / 'config.json'}; pass --family llada or dream")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    ours = load_model(family, device=str(device), dtype=dtype, path=str(d))
    ref = load_model(family, device=str(device), dtype=dtype, path=str(d), backend="hf")
    ok, rows, text = verify(ours, ref, dtype)
    print("| prompt | max abs err | max rel err | argmax agreement |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r.prompt[:48]!r} | {r.max_abs:.3e} | {r.max_rel:.3e} | {r.argmax_agree:.4f} |")
    print(text)
    return 0 if ok else 1


def main(argv=None) -> int:
    _offline_default()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS + ("-h", "--help"):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    try:
        return {"run": cmd_run, "list": cmd_list, "verify-model": cmd_verify}[args.command](args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
