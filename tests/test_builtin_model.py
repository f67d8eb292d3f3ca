"""The committed built-in model loads offline and actually solves the built-in task."""
import torch

from decoding.base import GenConfig
from decoding.loop import decode
from decoding.registry import build_method, parse_methods
from tasks import load_task

GEN = GenConfig(gen_length=48, block_length=16)


def _solve(model, spec, docs, trace=False):
    task = load_task("arith")
    m = build_method(parse_methods(spec)[0], GEN)
    res = decode(model, m, [model.tokenizer.encode(d.prompt) for d in docs], GEN, trace=trace)
    texts = [model.tokenizer.decode(res.tokens[i, :int(res.gen_tokens[i])].tolist()) for i in range(len(docs))]
    return res, [task.score(d, t)["correct"] for d, t in zip(docs, texts)], texts


def test_builtin_model_solves_arith_with_fixed_and_threshold(builtin_model):
    docs = load_task("arith").docs(16)
    res_f, ok_f, texts = _solve(builtin_model, "fixed", docs)
    res_t, ok_t, _ = _solve(builtin_model, "threshold", docs)
    assert sum(ok_f) >= 14 and sum(ok_t) >= 14, (ok_f, ok_t)
    assert all("####" in t for t in texts)
    # the confidence threshold commits several tokens per forward on this model
    assert res_t.nfe.sum() * 3 <= res_f.nfe.sum()
    assert torch.all(res_t.gen_tokens > 0)


def test_trace_records_argmax_and_top1_prob_of_every_masked_position(builtin_model):
    docs = load_task("arith").docs(2)
    res, _, _ = _solve(builtin_model, "threshold", docs, trace=True)
    for row, steps in enumerate(res.trace):
        assert len(steps) == int(res.steps[row])
        for s in steps:
            assert len(s["masked"]) == len(s["argmax"]) == len(s["p1"])
            assert set(s["commit"]) <= set(s["masked"]) and s["commit"]
            assert all(0.0 <= p <= 1.0 for p in s["p1"])
        # a step's committed positions were proposed with the top-1 prob that crossed tau or were the best
        for s in steps:
            probs = dict(zip(s["masked"], s["p1"]))
            assert any(probs[p] >= 0.9 for p in s["commit"]) or len(s["commit"]) == 1
