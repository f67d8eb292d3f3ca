#!/usr/bin/env python
"""dllm-bench command line.

    python run_bench.py                                   # the embedded default: tiny model, arith task
    python run_bench.py --methods fixed,threshold:tau=0.7 --limit 500 --seed 0
    python run_bench.py list                              # models, tasks, methods and their settings
    python run_bench.py --tasks gsm8k,mbpp --data-dir ../shared/data --allow-code-exec --model oracle
    python run_bench.py score results/runs/RUN --allow-code-exec   # re-score stored generations
    python run_bench.py report results/runs/A results/runs/B --baseline fixed --out report/
    python run_bench.py check --baseline results/baselines/tiny-arith.json results/runs/ci
    python run_bench.py trace --method threshold:tau=0.7 --doc 3 --out trace.png   # one sample's decode

    python run_bench.py --model llada --model-path GSAI-ML/LLaDA-8B-Instruct --methods threshold:cache=dual
    python run_bench.py --model llada-8b --no-weights --methods fixed,threshold:cache=dual   # speed, no download
    python run_bench.py verify-model /models/LLaDA-8B-Instruct      # our logits vs the authors' code

Subcommands: run (the default), decode RUN, score RUN, list, report RUN..., check RUN,
trace, verify-model CHECKPOINT. Every option of a run: `run_bench.py run --help`; of a subcommand:
`run_bench.py SUBCOMMAND --help`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

SUBCOMMANDS = ("run", "decode", "score", "list", "report", "check", "trace", "verify-model")


def _offline_default(argv: list[str]) -> None:
    # The built-in model and task never touch the network; make sure nothing we import tries.
    # lm-eval tasks without --data-dir load their data from the Hugging Face hub: leave the hub on.
    from tasks import is_lmeval
    tasks = ""
    for i, a in enumerate(argv):
        if a in ("--task", "--tasks") and i + 1 < len(argv):
            tasks = argv[i + 1]
        elif a.startswith(("--task=", "--tasks=")):
            tasks = a.split("=", 1)[1]
    hub = any(is_lmeval(t.strip()) for t in tasks.split(",")) and not any(
        a == "--data-dir" or a.startswith("--data-dir=") for a in argv)
    if hub or (argv and argv[0] == "score"):
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _limit(text: str) -> int | None:
    if text.lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of problems or `all`, got {text!r}") from None


def version() -> str:
    """The project's version, from the installed package or else pyproject.toml next to this file."""
    from pathlib import Path
    pyproject = Path(__file__).resolve().parent / "pyproject.toml"
    if pyproject.exists():
        import re
        m = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M)
        if m:
            return m.group(1)
    from importlib.metadata import version as installed
    return installed("dllm-bench")


def build_parser() -> argparse.ArgumentParser:
    from bench.runner import RunSpec
    d = RunSpec()
    ap = argparse.ArgumentParser(prog="run_bench.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"dllm-bench {version()}")
    sub = ap.add_subparsers(dest="command", metavar="SUBCOMMAND",
                            help="run (the default when the first argument is an option), decode, score, list, "
                                 "report, check, trace, verify-model; each has --help")
    r = sub.add_parser("run", help="decode, score and write result files (the default)")
    r.add_argument("--model", default=d.model, help="model name (see `list`) or a CDLM student directory "
                   "(python -m training.cdlm_train --out DIR); default %(default)s")
    r.add_argument("--task", "--tasks", dest="task", default=d.task, help="task name; default %(default)s")
    r.add_argument("--methods", default=d.methods,
                   help="comma-separated method specs, e.g. fixed,threshold:tau=0.7; default %(default)s")
    r.add_argument("--limit", type=_limit, default=d.limit,
                   help="the first N problems of each task, or `all` (GSM8K 1319, MBPP 500, HumanEval 164); "
                        "default %(default)s")
    r.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the random numbers (random weights, sampling), reseeded per batch; default %(default)s")
    r.add_argument("--batch-size", default=str(d.batch_size),
                   help="batch size, or a comma-separated sweep such as 1,8,32 (bench/sweep.py); default %(default)s")
    r.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU intra-op threads of the decode; default 1 on the CPU (or OMP_NUM_THREADS if set), "
                        "torch's on a GPU; recorded in run.json (threads)")
    r.add_argument("--gen-length", type=int, default=None, help="default: the task's protocol")
    r.add_argument("--block-length", type=int, default=None, help="default: the task's protocol")
    r.add_argument("--early-stop", type=_bool, default=d.early_stop,
                   help="stop a row once a completed block holds EOS; default %(default)s")
    r.add_argument("--max-steps", type=int, default=None, help="per-sample step cap; default gen_length (plus the forwards slowfast's code preset and edit spend on a block with no masks)")
    r.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N; default %(default)s")
    r.add_argument("--dtype", default=d.dtype, help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    r.add_argument("--warmup-batches", type=int, default=d.warmup_batches,
                   help="untimed batches per method before timing (recorded in warmup.jsonl); default %(default)s")
    r.add_argument("--time-forwards", type=_bool, default=d.time_forwards,
                   help="synchronize and time every model forward to split latency into forward / other "
                        "(perturbs timing: use for a separate instrumented run); default %(default)s")
    r.add_argument("--baseline", default=None, help="method label that speedups are relative to; default the first")
    r.add_argument("--out-dir", default=d.out_dir, help="where run directories go; default %(default)s")
    r.add_argument("--run-id", default=None, help="directory name under --out-dir; default time + spec hash")
    r.add_argument("--resume", action="store_true", help="continue the run in --run-id, skipping finished samples")
    r.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    r.add_argument("--data-dir", default=None,
                   help="local data for lm-eval tasks (the ../shared/data layout); sets the HF offline "
                        "variables; default: the Hugging Face hub")
    r.add_argument("--chat", default=d.chat,
                   help="chat template use: none, single-turn (whole few-shot prompt as one user message), "
                        "multiturn (each shot a turn), or a comma-separated sweep such as none,single-turn; "
                        "default %(default)s")
    r.add_argument("--allow-code-exec", action="store_true",
                   help="let MBPP/HumanEval scoring run generated code in the sandbox (tasks/sandbox.py)")
    r.add_argument("--code-timeout", type=float, default=d.code_timeout, metavar="SECONDS",
                   help="CPU seconds each generated program may run when scoring; default %(default)s "
                        "(lm-eval's); recorded in run.json (scoring.code_exec)")
    r.add_argument("--stop-after", default=d.stop_after, choices=["build", "decode", "score"],
                   help="stop after this stage (build: prompts.jsonl; decode: requests.jsonl); default %(default)s")
    dec = sub.add_parser("decode", help="decode a run directory's built requests (no lm-eval needed)")
    dec.add_argument("run_dir", help="a run directory made by `run --stop-after build` (or an interrupted run)")
    dec.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    dec.add_argument("--stop-after", default="decode", choices=["decode", "score"],
                     help="score too (needs lm-eval for lm-eval tasks); default %(default)s")
    dec.add_argument("--allow-code-exec", action="store_true",
                     help="with --stop-after score: let MBPP/HumanEval scoring run generated code in the sandbox")
    dec.add_argument("--code-timeout", type=float, default=d.code_timeout, metavar="SECONDS",
                     help="CPU seconds each generated program may run; default %(default)s")
    sc = sub.add_parser("score", help="(re-)score the generations of a run directory from its files")
    sc.add_argument("run_dir", help="a run directory holding requests.jsonl")
    sc.add_argument("--allow-code-exec", action="store_true",
                    help="let MBPP/HumanEval scoring run generated code in the sandbox")
    sc.add_argument("--code-timeout", type=float, default=d.code_timeout, metavar="SECONDS",
                    help="CPU seconds each generated program may run; default %(default)s")
    sc.add_argument("--data-dir", default=None, help="local data (default: the run's recorded source)")
    r.add_argument("--model-path", default=None,
                   help="llada/dream: hub id or local Hugging Face directory (default: the Instruct model)")
    r.add_argument("--no-weights", action="store_true",
                   help="random weights (named configs llada-8b, dream-7b, llada-small, ...): speed and energy "
                        "without a download; accuracy is reported as not applicable")
    r.add_argument("--model-backend", default="native", choices=("native", "hf"),
                   help="native (ours, with KV cache) or hf (transformers AutoModel, trust_remote_code)")
    sub.add_parser("list", help="list models, tasks and methods, one line each, with the methods' settings")
    v = sub.add_parser("verify-model", help="compare our native model's logits with the authors' remote code")
    v.add_argument("checkpoint", help="hub id or local directory of a checkpoint (LLaDA, Dream, SDAR/TraDo, ...)")
    v.add_argument("--family", choices=("llada", "dream", "sdar", "trado", "llada2", "fast-dllm-v2"), default=None,
                   help="default: from config.json model_type")
    v.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N; default %(default)s")
    v.add_argument("--dtype", default="float32", help="float32 (default; exact comparison) or bfloat16")
    rp = sub.add_parser("report", help="leaderboard tables (markdown, LaTeX, CSV) and Pareto plot from result files")
    rp.add_argument("runs", nargs="+", metavar="RUN", help="run directories (results/runs/<run_id>)")
    rp.add_argument("--baseline", default=None, help="method label for speedups (within each run); default each run's own")
    rp.add_argument("--format", default="md", choices=("md", "latex", "csv"), help="what to print; default %(default)s")
    rp.add_argument("--out", default=None, help="also write report.md, report.tex, report.csv and pareto.png here")
    tp = sub.add_parser("trace", help="one sample's decode as a step x position picture (trace.png + trace.json)")
    tp.add_argument("--model", default="tiny", help="model name (see `list`); default %(default)s")
    tp.add_argument("--model-path", default=None, help="as for run: hub id or local checkpoint directory")
    tp.add_argument("--no-weights", action="store_true", help="as for run: random weights of a named architecture")
    tp.add_argument("--task", default="arith", help="default %(default)s")
    tp.add_argument("--method", default="threshold", help="one method spec, e.g. threshold:tau=0.7; default %(default)s")
    tp.add_argument("--doc", type=int, default=0, help="index of the task's request to decode; default %(default)s")
    tp.add_argument("--seed", type=int, default=0, help="seed of the random numbers; default %(default)s")
    tp.add_argument("--gen-length", type=int, default=None, help="default: the task's protocol")
    tp.add_argument("--block-length", type=int, default=None, help="default: the task's protocol")
    tp.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N; default %(default)s")
    tp.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16; default %(default)s")
    tp.add_argument("--data-dir", default=None, help="local data for lm-eval tasks")
    tp.add_argument("--chat", default="none", choices=["none", "single-turn", "multiturn"],
                    help="chat template use, as for run; default %(default)s")
    tp.add_argument("--from", dest="from_json", default=None, metavar="TRACE_JSON",
                    help="redraw a saved trace.json instead of decoding")
    tp.add_argument("--out", default="trace.png", help="picture to write; the trace goes beside it as .json")
    cp = sub.add_parser("check", help="regression gate: exit 1 with a diff table when a run is worse than a baseline")
    cp.add_argument("run", metavar="RUN", help="run directory to check")
    cp.add_argument("--baseline", required=True, help="baseline file, e.g. results/baselines/tiny-arith.json")
    cp.add_argument("--update", action="store_true", help="rewrite the baseline from RUN instead of checking")
    return ap


def cmd_run(args) -> int:
    from bench.runner import RunSpec
    from bench.sweep import parse_list
    sizes = parse_list(args.batch_size, int, "--batch-size")
    chats = parse_list(args.chat, str, "--chat")
    fields = {f.name for f in dataclasses.fields(RunSpec)}
    spec = RunSpec(**{**{k: v for k, v in vars(args).items() if k in fields}, "batch_size": sizes[0], "chat": chats[0]})
    from bench.validate import check_resume
    check_resume(spec, sweep=len(chats) > 1 or len(sizes) > 1)
    if spec.data_dir:
        from tasks.lmeval_tasks import set_offline
        set_offline()
    return _run_and_print(spec, chats, sizes)


def _run_and_print(spec, chats=None, sizes=None) -> int:
    """One process, or one rank under torchrun (bench/distributed.py): rank 0 prints the summary.
    Several chat modes or batch sizes: a sweep (bench/sweep.py), one run per point."""
    from pathlib import Path
    from bench.distributed import Ranks, ReportedByRankZero, finish, run_distributed
    from bench.runner import run
    from bench.sweep import run_sweep, write_sensitivity
    log = lambda m: print(m, file=sys.stderr)
    ranks = Ranks.from_env()
    one = (lambda s: run(s, log=log)) if ranks is None else (lambda s: run_distributed(s, ranks, log=log))
    try:
        if len(chats or []) > 1 or len(sizes or []) > 1:
            summary = run_sweep(spec, chats, sizes, one, rank=ranks.rank if ranks else 0, log=log)
        else:
            summary = one(spec)
            if summary is not None and summary.get("rows"):
                summary["sensitivity"] = write_sensitivity(Path(summary["path"]),
                                                           [(spec.chat, spec.batch_size, Path(summary["path"]))])
    except ReportedByRankZero:
        return 2
    finally:
        finish()
    if summary is not None:
        _print_summary(summary)
    return 0


def _run_info(summary) -> dict:
    import json
    from pathlib import Path
    try:
        return json.loads((Path(summary["path"]) / "run.json").read_text())
    except (OSError, KeyError, ValueError):
        return {}


def _limit_note(summary) -> str | None:
    """Say when --limit cut a task short (the run's rows hold exactly `limit` problems)."""
    limit = _run_info(summary).get("spec", {}).get("limit")
    cut = sorted({r["task"] for r in summary["rows"] if limit is not None and r.get("n") == limit})
    if not cut:
        return None
    return (f"limit: the first {limit} problems of {', '.join(cut)} (--limit {limit}); "
            f"--limit all runs the full sets")


def _print_summary(summary) -> None:
    from bench.table import summary_table
    print(summary_table(summary["rows"]))
    note = _limit_note(summary)
    if note:
        print(note)
    for w in _run_info(summary).get("warnings", []):
        print(f"warning: {w}")
    if summary.get("sensitivity"):
        print("\n" + summary["sensitivity"])
    for note in sorted({r["accuracy_note"] for r in summary["rows"] if r.get("accuracy_note")}):
        print(f"accuracy: {note}")
    if summary.get("energy_note"):
        print(f"energy: {summary['energy_note']}")
    print(f"results: {summary['path']}")


def cmd_decode(args) -> int:
    import json
    from pathlib import Path
    from bench.runner import RunSpec
    run_json = Path(args.run_dir) / "run.json"
    if not run_json.exists():
        raise FileNotFoundError(f"{run_json} not found; give a run directory made by `run_bench.py run`")
    spec = RunSpec(**json.loads(run_json.read_text())["spec"])
    spec.out_dir, spec.run_id, spec.resume = str(Path(args.run_dir).parent), Path(args.run_dir).name, True
    spec.progress, spec.stop_after, spec.allow_code_exec = args.progress, args.stop_after, args.allow_code_exec
    spec.code_timeout = args.code_timeout
    return _run_and_print(spec)


def cmd_score(args) -> int:
    from pathlib import Path
    from bench.results import RunDir
    from bench.score import score_run
    if args.data_dir:
        from tasks.lmeval_tasks import set_offline
        set_offline()
    d = RunDir(Path(args.run_dir))
    if not d.run_json.exists():
        raise FileNotFoundError(f"{d.run_json} not found; give a run directory made by `run_bench.py run`")
    from bench.runner import check_code_timeout
    check_code_timeout(args.code_timeout)
    _print_summary(score_run(d, allow_code_exec=args.allow_code_exec, data_dir=args.data_dir,
                             code_timeout=args.code_timeout))
    return 0


def cmd_list(args) -> int:
    from models import MODELS
    from decoding.registry import METHODS
    from tasks import TASKS
    from bench.runner import PSEUDO_MODELS
    from bench.catalog import method_line, model_line, task_line
    print("models:")
    for name in sorted(MODELS) + list(PSEUDO_MODELS):
        print(f"  {name} - {model_line(name)}")
    print("tasks:")
    for name in sorted(TASKS):
        print(f"  {name} - {task_line(name)}")
    print("methods (settings as name:key=value,...):")
    for name, cls in sorted(METHODS.items()):
        settings = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(cls.Config))
        print(f"  {name} - {method_line(cls)}")
        print(f"      {name}: {settings}")
    print("  every method also takes cache=none|prefix|dual (KV cache, decoding/cache.py)")
    return 0


def cmd_verify(args) -> int:
    from models import load_model
    from models.checkpoint import read_config, resolve_dir
    from bench.runner import resolve_device, resolve_dtype
    from bench.verify import verify
    from models.families import family_of_config
    d = resolve_dir(args.checkpoint)
    family = args.family or family_of_config(read_config(d), str(d / "config.json"))
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


def cmd_report(args) -> int:
    from bench.report import report
    text, notes = report(args.runs, baseline=args.baseline, out_dir=args.out, fmt=args.format)
    print(text)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if args.out:
        print(f"written: {args.out}/report.md, report.tex, report.csv" +
              ("" if any("Pareto plot skipped" in n for n in notes) else ", pareto.png"), file=sys.stderr)
    return 0


def cmd_trace(args) -> int:
    from pathlib import Path
    from bench import trajectory
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: give a .png path (the trace is written beside it as .json)")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("trace draws with matplotlib, which is not installed: pip install 'dllm-bench[plot]'")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        trace = trajectory.load(args.from_json)
    else:
        fields = {f for f in trajectory.TraceSpec.__dataclass_fields__}
        trace = trajectory.record(trajectory.TraceSpec(**{k: v for k, v in vars(args).items() if k in fields}))
        trajectory.save(trace, out.with_suffix(".json"))
    trajectory.draw(trace, out)
    print(f"written: {out}" + ("" if args.from_json else f", {out.with_suffix('.json')}"), file=sys.stderr)
    return 0


def cmd_check(args) -> int:
    from bench.check import check, update
    if args.update:
        print(update(args.baseline, args.run))
        return 0
    ok, table = check(args.baseline, args.run)
    print(table)
    print("check: PASS" if ok else f"check: FAIL (run {args.run} regressed against {args.baseline})")
    return 0 if ok else 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS + ("-h", "--help", "--version"):
        argv.insert(0, "run")
    _offline_default(argv)
    args = build_parser().parse_args(argv)
    try:
        return {"run": cmd_run, "decode": cmd_decode, "score": cmd_score, "list": cmd_list,
                "report": cmd_report, "check": cmd_check, "trace": cmd_trace, "verify-model": cmd_verify}[args.command](args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
