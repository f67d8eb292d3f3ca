"""Sweeps in one run (bench/sweep.py): batch sizes and templates, their sensitivity tables."""
import json

import pytest

import run_bench
from bench.sweep import render, sensitivity, write_sensitivity

ARGS = ["--limit", "5", "--methods", "fixed:steps=6,threshold", "--warmup-batches", "0", "--no-progress"]


def test_batch_size_sweep_records_each_point_and_compares_tokens(tmp_path, capsys):
    args = ["--out-dir", str(tmp_path), "--run-id", "sw", "--batch-size", "1,3", *ARGS]
    assert run_bench.main(args) == 0
    out = capsys.readouterr().out
    root = tmp_path / "sw"
    sweep = json.loads((root / "sweep.json").read_text())
    assert [(p["chat"], p["batch_size"]) for p in sweep["points"]] == [("none", 1), ("none", 3)]
    for p in sweep["points"]:
        spec = json.loads((root / p["dir"] / "run.json").read_text())["spec"]
        assert spec["batch_size"] == p["batch_size"]
    rows = json.loads((root / "summary.json").read_text())["rows"]
    assert [(r["batch_size"], r["method"]) for r in rows] == [(1, "fixed:steps=6"), (1, "threshold"),
                                                              (3, "fixed:steps=6"), (3, "threshold")]
    sens = json.loads((root / "sensitivity.json").read_text())
    (entry,) = sens["batch_sizes"]
    for m in ("fixed:steps=6", "threshold"):   # greedy: a batch of 3 gives the tokens of single runs
        assert entry["methods"][m]["greedy"]
        assert entry["methods"][m]["by_batch_size"]["3"]["differs_from_reference"] == []
    assert "## Batch sizes: arith/none" in out and "all equal" in out
    assert (root / "sensitivity.md").read_text() in out

    # a sample whose batched tokens differ is named
    reqs_path = root / "points" / "none_bs3" / "requests.jsonl"
    reqs = [json.loads(l) for l in reqs_path.read_text().splitlines()]
    for r in reqs:
        if r["method"] == "threshold" and r["doc_id"] == reqs[1]["doc_id"]:
            r["tokens_sha"] = "0" * 16
    reqs_path.write_text("".join(json.dumps(r) + "\n" for r in reqs))
    text = write_sensitivity(root, [("none", b, root / "points" / f"none_bs{b}") for b in (1, 3)])
    assert f"threshold at batch size 3: tokens or NFE differ from batch size 1 for doc ids {reqs[1]['doc_id']}" in text
    assert "| threshold |" in text and "DIFFER: bs 3: 1 sample(s)" in text

    assert run_bench.main(args) == 2                          # an existing sweep is not overwritten
    assert "pass --resume" in capsys.readouterr().err
    assert run_bench.main([*args, "--resume"]) == 0           # every point is done: nothing decoded again
    assert reqs_path.read_text().count("\n") == 10


def _point(d, chat, bs, acc: dict, tasks=("gsm8k", "gsm8k_cot")):
    d.mkdir(parents=True)
    methods = list(next(iter(acc.values())))
    (d / "run.json").write_text(json.dumps({
        "tasks": list(tasks), "methods": {m: {} for m in methods},
        "spec": {"methods": ",".join(methods)}, "protocol": {"gen_length": 256, "block_length": 32}}))
    (d / "summary.json").write_text(json.dumps({"rows": [
        {"task": t, "method": m, "accuracy": acc[t][m], "nfe_mean": 10.0, "tokens_per_s": 1.0}
        for t in tasks for m in methods]}))
    (d / "requests.jsonl").write_text("")
    return chat, bs, d


def test_template_table_says_when_the_ranking_changes(tmp_path):
    pts = [_point(tmp_path / "a", "none", 8, {"gsm8k": {"fixed": 0.5, "threshold": 0.4},
                                               "gsm8k_cot": {"fixed": 0.3, "threshold": 0.6}}),
           _point(tmp_path / "b", "single-turn", 8, {"gsm8k": {"fixed": 0.7, "threshold": 0.2},
                                                      "gsm8k_cot": {"fixed": 0.5, "threshold": 0.1}})]
    sens = sensitivity(pts)
    (t,) = sens["templates"]
    assert t["templates"] == ["gsm8k/none", "gsm8k_cot/none", "gsm8k/single-turn", "gsm8k_cot/single-turn"]
    assert t["ranking_changes"] and t["ranking"]["gsm8k_cot/none"] == "threshold > fixed"
    text = render(sens)
    assert "The ranking by accuracy CHANGES with the template: gsm8k/none: fixed > threshold; " \
           "gsm8k_cot/none: threshold > fixed;" in text
    assert "| fixed | 0.500 / 10.0 | 0.300 / 10.0 | 0.700 / 10.0 | 0.500 / 10.0 |" in text

    same = [_point(tmp_path / "c", "none", 8, {"gsm8k": {"fixed": 0.5, "threshold": 0.4},
                                               "gsm8k_cot": {"fixed": 0.6, "threshold": 0.1}})]
    assert "the same under every template: fixed > threshold" in render(sensitivity(same))


@pytest.mark.parametrize("args, message", [
    (["--chat", "none,single-turn"], "task arith has no chat format; use --chat none"),
    (["--batch-size", "1,x"], "--batch-size '1,x': give a value or a comma-separated list"),
    (["--batch-size", "1,0"], "--batch-size must be positive"),
    (["--chat", "none,chatty"], "unknown chat mode 'chatty'"),
])
def test_bad_sweeps_stop_before_any_work(tmp_path, capsys, args, message):
    assert run_bench.main(["--out-dir", str(tmp_path), *ARGS, *args]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
