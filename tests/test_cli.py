"""run_bench.py as a user runs it: files written, errors named, results never lost."""
import json

import pytest

import run_bench
from bench.results import SUMMARY_FIELDS


def run(tmp_path, *args):
    return run_bench.main(["--out-dir", str(tmp_path), "--no-progress", *args])


def test_run_writes_result_files_with_the_contract_fields(tmp_path, capsys):
    rc = run(tmp_path, "--limit", "6", "--batch-size", "3", "--methods", "fixed:steps=12,threshold",
             "--run-id", "r1", "--warmup-batches", "0")
    assert rc == 0
    out = capsys.readouterr().out
    assert "fixed:steps=12" in out and "threshold" in out and "accuracy" in out
    d = tmp_path / "r1"
    info = json.loads((d / "run.json").read_text())
    assert info["spec"]["methods"] == "fixed:steps=12,threshold"
    assert info["protocol"]["gen_length"] == 48 and info["methods"]["threshold"]["settings"]["tau"] == 0.9
    assert "git_commit" in info["env"] and info["energy"]["available"] is False
    reqs = [json.loads(l) for l in (d / "requests.jsonl").read_text().splitlines()]
    assert len(reqs) == 12 and {r["method"] for r in reqs} == {"fixed:steps=12", "threshold"}
    assert all(r["nfe"] <= 12 for r in reqs if r["method"] == "fixed:steps=12")
    summary = json.loads((d / "summary.json").read_text())
    assert [r["method"] for r in summary["rows"]] == ["fixed:steps=12", "threshold"]
    for row in summary["rows"]:
        assert set(SUMMARY_FIELDS) <= set(row)
        assert row["energy_j_per_sample"] is None and row["n"] == 6
        for k in ("accuracy", "nfe_mean", "tpf", "latency_s_mean", "latency_s_p50", "tokens_per_s"):
            assert isinstance(row[k], (int, float)), k
        assert row["accuracy"] == sum(r["correct"] for r in reqs if r["method"] == row["method"]) / 6
    assert summary["rows"][0]["speedup"] == 1.0
    assert summary["energy_note"].startswith("no GPU")


@pytest.mark.parametrize("args, message", [
    (["--methods", "nope"], "unknown method 'nope'; available: dico, eb, edit, fixed, klass, localleap, prr, slowfast, threshold, wino"),
    (["--methods", "threshold:tau=1.5"], "tau=1.5 must be in (0, 1]"),
    (["--methods", "threshold:tua=0.5"], "unknown setting 'tua'"),
    (["--methods", "fixed:steps=7"], "steps=7 must be a positive multiple"),
    (["--model", "gpt5"], "unknown model 'gpt5'"),
    (["--task", "mmlu"], "unknown task 'mmlu'"),
    (["--gen-length", "50"], "must be a multiple of block_length"),
    (["--baseline", "fixed:steps=3"], "is not one of the methods run"),
])
def test_bad_input_exits_2_with_a_clear_error(tmp_path, capsys, args, message):
    assert run(tmp_path, "--limit", "2", *args) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "nothing written for a run that never started"


def test_gpu_option_without_gpu_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert run(tmp_path, "--limit", "2", "--device", "cuda") == 2
    assert "use --device cpu" in capsys.readouterr().err


def test_existing_run_is_never_overwritten_and_resume_skips_done(tmp_path, capsys):
    args = ["--limit", "4", "--batch-size", "2", "--methods", "threshold", "--run-id", "r", "--warmup-batches", "0"]
    assert run(tmp_path, *args) == 0
    reqs = (tmp_path / "r" / "requests.jsonl").read_text()
    assert run(tmp_path, *args) == 2                       # same id without --resume: refused
    assert "pass --resume" in capsys.readouterr().err
    assert run(tmp_path, *args[:-2], "--warmup-batches", "1", "--resume") == 2   # another spec: refused
    assert "different spec" in capsys.readouterr().err
    assert (tmp_path / "r" / "requests.jsonl").read_text() == reqs

    # simulate a crash: drop the last two samples and leave half a line behind
    lines = reqs.splitlines(keepends=True)
    (tmp_path / "r" / "requests.jsonl").write_text("".join(lines[:2]) + lines[2][:20])
    assert run(tmp_path, *args, "--resume") == 0
    redone = (tmp_path / "r" / "requests.jsonl").read_text().splitlines()
    assert len(redone) == 4
    key = lambda l: {k: v for k, v in json.loads(l).items() if not k.startswith("batch") and k != "session"}
    assert [key(l) for l in redone] == [key(l) for l in reqs.splitlines()]


def test_list_names_methods_and_settings(capsys):
    assert run_bench.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "threshold: tau=0.9, factor=None" in out and "tiny" in out and "arith" in out


def test_truncated_forwards_are_counted_in_the_summary(tmp_path):
    # the paper's rule truncates on the built-in model (the code preset's K full forwards fill its blocks)
    assert run(tmp_path, "--limit", "8", "--batch-size", "8", "--methods", "slowfast:preset=paper,threshold",
               "--run-id", "t", "--warmup-batches", "0") == 0
    reqs = [json.loads(l) for l in (tmp_path / "t" / "requests.jsonl").read_text().splitlines()]
    rows = {r["method"]: r for r in json.loads((tmp_path / "t" / "summary.json").read_text())["rows"]}
    sf = [r for r in reqs if r["method"] == "slowfast:preset=paper"]
    assert rows["slowfast:preset=paper"]["nfe_truncated_mean"] == sum(r["nfe_truncated"] for r in sf) / 8 > 0
    assert all(r["nfe_truncated"] <= r["nfe"] for r in sf)
    assert rows["threshold"]["nfe_truncated_mean"] == 0
