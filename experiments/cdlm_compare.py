"""Accuracy and NFE of a CDLM student (block-causal threshold decode, training/cdlm/evaluate.py)
against the teacher's methods through the decode loop, on the first N arith test problems.

    OMP_NUM_THREADS=1 python -m experiments.cdlm_compare --student /tmp/cdlm_cpu --limit 100

Rows: each --student directory (and `tiny-block`, the untrained student) at --tau; the teacher
(`tiny`) with each of --teacher-methods (gen_length 48, block_length 16, early stop at EOS).
"""
from __future__ import annotations

import argparse
import time

import torch

from decoding.base import GenConfig
from decoding.loop import decode
from decoding.registry import build_method, parse_methods
from models import load_model
from tasks.arith import test_problems
from training.cdlm.evaluate import evaluate_student, score, BlockDecodeOutput


def teacher_row(spec: str, problems, gen: GenConfig, batch: int) -> dict:
    model = load_model("tiny")
    method = build_method(parse_methods(spec)[0], gen)
    prompts = [model.tokenizer.encode(p.prompt) for p in problems]
    toks, nfe = [], []
    for i in range(0, len(prompts), batch):
        res = decode(model, method, prompts[i:i + batch], gen)
        toks += [res.tokens[j, :int(res.gen_tokens[j])].tolist() for j in range(len(res.tokens))]
        nfe.append(res.nfe)
    toks = [[t for t in row[:next((k for k, t in enumerate(row) if t in model.eos_ids), len(row))]] for row in toks]
    return score(model, BlockDecodeOutput(toks, torch.cat(nfe), torch.ones(len(toks), dtype=torch.bool)), problems)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", action="append", default=[], help="student directory (repeatable)")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--tau", type=float, default=0.9)
    ap.add_argument("--teacher-methods", default="fixed,threshold,threshold:cache=dual")
    ap.add_argument("--batch", type=int, default=50)
    a = ap.parse_args(argv)
    problems = test_problems(a.limit)
    gen = GenConfig(gen_length=48, block_length=16)
    rows = []
    for spec in a.teacher_methods.split(","):
        t0 = time.time()
        rows.append((f"teacher tiny {spec}", teacher_row(spec, problems, gen, a.batch), time.time() - t0))
    for name in ["tiny-block", *a.student]:
        m = load_model(name)
        t0 = time.time()
        rows.append((f"student {name} threshold tau={a.tau} (block {m.block_size})",
                     evaluate_student(m, problems, 48, a.tau, a.batch), time.time() - t0))
    print(f"| decoder ({a.limit} arith test problems, gen 48) | accuracy | NFE mean | CPU wall s |")
    print("|---|---|---|---|")
    for name, r, secs in rows:
        print(f"| {name} | {r['accuracy']:.3f} ± {r['accuracy_stderr']:.3f} | {r['nfe_mean']:.2f} | {secs:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
