"""Accuracy, NFE and latency of CDLM students against the teacher's methods, on the first N
arith test problems.

    OMP_NUM_THREADS=1 python -m experiments.cdlm_compare --student /tmp/cdlm_cpu --limit 100
    python -m experiments.cdlm_compare --student OUT/tiny-cdlm --limit 500 --device cuda --json OUT/cdlm_compare.json

Every row decodes through the reference decode loop (decoding.loop.decode, every step eager), the
same code for all rows: the teacher (`tiny`, bidirectional) with each --teacher-methods spec
(gen_length 48, block_length 16, early stop at EOS); then `tiny-block` (the untrained student:
the teacher's weights under the block-causal mask) and each --student directory with
`threshold:tau=<tau>` on the model's own blocks (decoding/block_causal.py: exact block K/V cache,
the threshold inside the block, stop at EOS: CDLM's inference, and what `run_bench.py --model
<student dir> --methods threshold` runs). All models in float32 on --device.

Timing (tokenization and scoring outside the timed windows; torch.cuda.synchronize before and
after each timed decode on a GPU):
- batch_s_per_problem: all N problems in batches of --batch, after one untimed warm-up decode of
  the first batch; the summed wall seconds of the decode calls / N;
- latency_s: batch size 1 (the paper's setting) on the first --latency-problems problems, after
  one untimed warm-up decode of the first problem; mean wall seconds per problem, and its speedup
  against the first row.
Prints a markdown table; --json also writes the rows with the run's settings and machine.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from decoding.base import GenConfig
from decoding.block_causal import model_gen
from decoding.loop import decode
from decoding.registry import build_method, parse_methods
from models import load_model
from tasks.arith import extract_answer, test_problems

GEN = GenConfig(gen_length=48, block_length=16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_decode(model, method, prompts, gen) -> tuple[object, float]:
    _sync(model.device)
    t0 = time.perf_counter()
    res = decode(model, method, prompts, gen)
    _sync(model.device)
    return res, time.perf_counter() - t0


def until_eos(res, row: int, eos_ids) -> list[int]:
    toks = res.tokens[row, :int(res.gen_tokens[row])].tolist()
    return toks[:next((k for k, t in enumerate(toks) if t in eos_ids), len(toks))]


def measure(model, spec: str, problems, batch: int, latency_problems: int) -> dict:
    """One row: accuracy, NFE and timings of `spec` on `model` (see the module docstring)."""
    gen = model_gen(model, GEN, False)
    method = build_method(parse_methods(spec)[0], gen)
    prompts = [model.tokenizer.encode(p.prompt) for p in problems]
    decode(model, method, prompts[:batch], gen)                      # warm-up, untimed
    ok, nfe, gen_tokens, wall = [], [], [], 0.0
    for i in range(0, len(prompts), batch):
        res, secs = timed_decode(model, method, prompts[i:i + batch], gen)
        wall += secs
        for j, p in enumerate(problems[i:i + batch]):
            toks = until_eos(res, j, model.eos_ids)
            ok.append(extract_answer(model.tokenizer.decode(toks)) == p.answer)
            gen_tokens.append(len(toks))
        nfe += res.nfe.tolist()
    lat = []
    if latency_problems:
        decode(model, method, prompts[:1], gen)                      # warm-up at batch 1, untimed
        lat = [timed_decode(model, method, [ids], gen)[1] for ids in prompts[:latency_problems]]
    acc = sum(ok) / len(ok)
    return {"n": len(ok), "accuracy": round(acc, 4), "accuracy_stderr": round(math.sqrt(acc * (1 - acc) / len(ok)), 4),
            "nfe_mean": round(sum(nfe) / len(nfe), 3), "gen_tokens_mean": round(sum(gen_tokens) / len(gen_tokens), 2),
            "batch": batch, "batch_s_per_problem": round(wall / len(ok), 6),
            "latency_problems": len(lat), "latency_s": round(sum(lat) / len(lat), 6) if lat else None,
            "method": method.name, "settings": method.settings(), "block_length": gen.block_length}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m experiments.cdlm_compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", action="append", default=[], help="student directory (repeatable)")
    ap.add_argument("--limit", type=int, default=100, help="the first N arith test problems")
    ap.add_argument("--tau", type=float, default=0.9, help="the students' threshold")
    ap.add_argument("--teacher-methods", default="fixed,threshold,threshold:cache=dual")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--latency-problems", type=int, default=50, help="batch-1 latency on the first K problems; 0: none")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--json", default=None, help="write the rows and settings here")
    a = ap.parse_args(argv)
    if a.limit <= 0 or a.batch <= 0 or a.latency_problems < 0:
        ap.error("--limit and --batch must be positive, --latency-problems >= 0")
    if not 0 < a.tau <= 1:
        ap.error("--tau must be in (0, 1]")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here; use --device cpu")
    for d in a.student:
        if not (Path(d) / "config.json").is_file():
            ap.error(f"--student {d}: no student directory there; write one with python -m training.cdlm_train --out {d}")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    problems = test_problems(a.limit)
    a.latency_problems = min(a.latency_problems, a.limit)
    rows = []
    teacher = load_model("tiny", device=a.device)
    for spec in a.teacher_methods.split(","):
        rows.append({"decoder": f"teacher tiny `{spec}`", "model": "tiny",
                     **measure(teacher, spec, problems, a.batch, a.latency_problems)})
    for name in ["tiny-block", *a.student]:
        m = load_model(name, device=a.device)
        label = "untrained student `tiny-block`" if name == "tiny-block" else f"student `{name}`"
        rows.append({"decoder": f"{label} threshold tau={a.tau} (block {m.block_size})", "model": name,
                     **measure(m, f"threshold:tau={a.tau}", problems, a.batch, a.latency_problems)})
    base = rows[0]["latency_s"]
    for r in rows:
        r["latency_speedup"] = round(base / r["latency_s"], 3) if base and r["latency_s"] else None
    dev = torch.device(a.device)
    machine = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"| decoder ({a.limit} arith test problems, gen 48, {machine}) | accuracy | NFE mean | tokens | "
          f"s/problem (batch {a.batch}) | latency s (batch 1, {a.latency_problems} problems) | latency speedup |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        lat = f"{r['latency_s']:.4f}" if r["latency_s"] is not None else "n/a"
        sp = f"{r['latency_speedup']:.2f}x" if r["latency_speedup"] is not None else "n/a"
        print(f"| {r['decoder']} | {r['accuracy']:.3f} ± {r['accuracy_stderr']:.3f} | {r['nfe_mean']:.2f} | "
              f"{r['gen_tokens_mean']:.1f} | {r['batch_s_per_problem']:.5f} | {lat} | {sp} |")
    if a.json:
        out = {"command": "python -m experiments.cdlm_compare " + " ".join(sys.argv[1:] if argv is None else argv),
               "problems": f"arith test, first {a.limit}", "gen": {"gen_length": GEN.gen_length,
                                                                   "block_length": GEN.block_length},
               "dtype": "float32", "device": machine, "torch": torch.__version__, "tau": a.tau,
               "batch": a.batch, "latency_problems": a.latency_problems,
               "students": {d: json.loads((Path(d) / "config.json").read_text()).get("training", {}).get("command")
                            for d in a.student},
               "rows": rows}
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
