"""What the runner records around the decode call: warm-up, forward split, CPU time, seeding."""
import json

import run_bench


def test_forward_split_warmup_and_timing_fields(tmp_path):
    assert run_bench.main(["--out-dir", str(tmp_path), "--run-id", "t", "--limit", "4", "--batch-size", "2",
                           "--methods", "fixed:steps=3,threshold", "--time-forwards", "true", "--no-progress"]) == 0
    d = tmp_path / "t"
    reqs = [json.loads(l) for l in (d / "requests.jsonl").read_text().splitlines()]
    for r in reqs:
        batch = [x for x in reqs if x["batch_id"] == r["batch_id"]]
        # one forward call per loop step: as many as the slowest row of the batch needed
        assert r["batch_forward_calls"] == max(x["steps"] for x in batch)
        assert 0 < r["batch_forward_s"] <= r["batch_latency_s"] <= r["batch_wall_s"]
        assert r["batch_cpu_s"] > 0 and r["batch_index"] in (0, 1)
        assert r["energy_j"] is None and r["batch_peak_mem_bytes"] is None   # CPU: null, never 0
    warm = [json.loads(l) for l in (d / "warmup.jsonl").read_text().splitlines()]
    assert [w["method"] for w in warm] == ["fixed:steps=3", "threshold"] and all(w["latency_s"] > 0 for w in warm)
    assert all(w["energy_j"] is None for w in warm)   # CPU (and, on GPU, windows under the counter's resolution)
    rows = json.loads((d / "summary.json").read_text())["rows"]
    assert all(0 < r["forward_frac"] <= 1 and r["cpu_time_s"] > 0 and r["tokens_per_s_fastdllm"] > 0 for r in rows)
    info = json.loads((d / "run.json").read_text())
    assert info["spec"]["time_forwards"] is True and "seeding" in info
    for k in ("cudnn_benchmark", "float32_matmul_precision", "argv", "host", "packages", "git_dirty"):
        assert k in info["env"], k
