"""A run killed mid-way and resumed gives the same results as one never interrupted."""
import json

import pytest

import run_bench
from bench import results

TIME_KEYS = ("latency", "time", "tokens_per_s", "speedup", "forward_frac", "load", "decode_wall_s")
ARGS = ["--limit", "6", "--batch-size", "2", "--methods", "fixed:steps=3,threshold:tau=0.5", "--warmup-batches", "0",
        "--no-progress"]


def summary_without_times(path):
    rows = json.loads((path / "summary.json").read_text())["rows"]
    return [{k: v for k, v in r.items() if not any(t in k for t in TIME_KEYS)} for r in rows]


def test_resume_after_crash_equals_uninterrupted(tmp_path, monkeypatch):
    assert run_bench.main(["--out-dir", str(tmp_path), "--run-id", "whole", *ARGS]) == 0

    # crash on the 4th batch write (of 6), like kill -9 in the middle of writing: half a batch on disk
    real_append, calls = results.RunDir.append_requests, {"n": 0}

    def crashing_append(self, lines):
        calls["n"] += 1
        if calls["n"] == 4:
            with open(self.requests_jsonl, "a") as f:
                f.write(json.dumps(lines[0]) + "\n" + json.dumps(lines[1])[:30])
            raise KeyboardInterrupt("simulated kill")
        real_append(self, lines)

    monkeypatch.setattr(results.RunDir, "append_requests", crashing_append)
    with pytest.raises(KeyboardInterrupt):
        run_bench.main(["--out-dir", str(tmp_path), "--run-id", "crashed", *ARGS])
    monkeypatch.setattr(results.RunDir, "append_requests", real_append)
    crashed = tmp_path / "crashed"
    assert len((crashed / "requests.jsonl").read_text().splitlines()) == 8   # 3 whole batches + 1 line + a cut line
    assert not (crashed / "summary.json").exists()

    assert run_bench.main(["--out-dir", str(tmp_path), "--run-id", "crashed", "--resume", *ARGS]) == 0
    whole = [json.loads(l) for l in (tmp_path / "whole" / "requests.jsonl").read_text().splitlines()]
    resumed = [json.loads(l) for l in (crashed / "requests.jsonl").read_text().splitlines()]
    assert len(resumed) == 12
    key = lambda r: (r["method"], r["doc_id"], r["output"], r["nfe"], r["correct"], r["batch_index"])
    assert sorted(map(key, resumed)) == sorted(map(key, whole))
    assert summary_without_times(crashed) == summary_without_times(tmp_path / "whole")
    info = json.loads((crashed / "run.json").read_text())
    assert len(info["sessions"]) == 2                       # both processes are recorded


def test_resume_refuses_another_protocol_or_machine(tmp_path, capsys):
    assert run_bench.main(["--out-dir", str(tmp_path), "--run-id", "r", *ARGS[:2], "--methods", "threshold",
                           "--warmup-batches", "0", "--no-progress"]) == 0
    run_json = tmp_path / "r" / "run.json"
    info = json.loads(run_json.read_text())
    info["machine"]["gpu_name"] = "NVIDIA H100 80GB HBM3"
    run_json.write_text(json.dumps(info))
    assert run_bench.main(["--out-dir", str(tmp_path), "--run-id", "r", *ARGS[:2], "--methods", "threshold",
                           "--warmup-batches", "0", "--no-progress", "--resume"]) == 2
    assert "different machine (differs in: gpu_name)" in capsys.readouterr().err
