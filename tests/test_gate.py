"""The CI regression gate: fails on a worse run, passes on an equal one, with CI exit codes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import run_bench
from bench.check import binom_cdf, min_correct
from runfiles import samples, write_run

ROOT = Path(__file__).resolve().parent.parent


def base_run(tmp_path, name="base", **kw):
    methods = {"fixed": samples(40, 36, 48), "fixed@s": 2.0, "threshold": samples(40, 34, 12), "threshold@s": 0.5}
    methods.update(kw)
    return write_run(tmp_path / name, methods, spec={"limit": 40})


@pytest.fixture
def baseline(tmp_path):
    run = base_run(tmp_path)
    path = tmp_path / "baselines" / "b.json"
    assert run_bench.main(["check", "--update", "--baseline", str(path), str(run)]) == 0
    return path


def test_update_writes_the_baseline(baseline):
    b = json.loads(baseline.read_text())
    assert b["reference_method"] == "fixed" and b["latency_basis"] == "cpu_time"
    assert b["rows"]["threshold"] == {"n": 40, "correct": 34, "accuracy": 0.85, "nfe_mean": 12.0,
                                      "latency_ratio": 0.25}
    assert b["tolerances"] == {"accuracy_alpha": 0.01, "nfe_rel": 0.05, "latency_ratio_rel": 0.5}


def test_equal_run_passes_with_exit_0(tmp_path, baseline, capsys):
    run = base_run(tmp_path, "again")
    assert run_bench.main(["check", "--baseline", str(baseline), str(run)]) == 0
    out = capsys.readouterr().out
    assert "check: PASS" in out and "FAIL" not in out.replace("check: PASS", "")


def test_faster_machine_same_ratios_passes(tmp_path, baseline):
    # every absolute time 10x smaller (another machine): only ratios are compared
    run = base_run(tmp_path, "fast", **{"fixed@s": 0.2, "threshold@s": 0.05})
    assert run_bench.main(["check", "--baseline", str(baseline), str(run)]) == 0


@pytest.mark.parametrize("change, metric", [
    ({"threshold": samples(40, 22, 12)}, "accuracy"),        # 34/40 -> 22/40: far beyond chance
    ({"threshold": samples(40, 34, 14)}, "NFE"),             # +17% NFE
    ({"threshold@s": 1.2}, "cpu time / fixed"),             # ratio 0.25 -> 0.6
])
def test_worse_run_fails_with_exit_1_and_names_the_metric(tmp_path, baseline, capsys, change, metric):
    run = base_run(tmp_path, "worse", **change)
    assert run_bench.main(["check", "--baseline", str(baseline), str(run)]) == 1
    out = capsys.readouterr().out
    fail_lines = [l for l in out.splitlines() if l.startswith("|") and l.split("|")[-2].strip() == "FAIL"]
    assert len(fail_lines) == 1 and f"| {metric}" in fail_lines[0] and "threshold" in fail_lines[0]
    assert "check: FAIL" in out


def test_load_from_other_processes_does_not_fail_a_cpu_run(tmp_path, baseline):
    # a busy neighbour tripled threshold's wall time; its own CPU time did not change
    run = base_run(tmp_path, "loaded", **{"threshold@s": 1.5, "threshold@cpu": 0.5})
    assert run_bench.main(["check", "--baseline", str(baseline), str(run)]) == 0
    # ... but a method that really costs more CPU fails
    run = base_run(tmp_path, "costly", **{"threshold@s": 1.5, "threshold@cpu": 1.5})
    assert run_bench.main(["check", "--baseline", str(baseline), str(run)]) == 1


def test_gpu_runs_compare_wall_time_and_never_mix_with_a_cpu_baseline(tmp_path, baseline, capsys):
    methods = {"fixed": samples(40, 36, 48), "fixed@s": 2.0, "threshold": samples(40, 34, 12), "threshold@s": 0.5}
    gpu = write_run(tmp_path / "gpu", methods, spec={"limit": 40}, gpu="NVIDIA H100 80GB HBM3")
    assert run_bench.main(["check", "--baseline", str(baseline), str(gpu)]) == 2
    assert "make the baseline on the same kind of device" in capsys.readouterr().err
    gbase = tmp_path / "g.json"
    assert run_bench.main(["check", "--update", "--baseline", str(gbase), str(gpu)]) == 0
    assert json.loads(gbase.read_text())["latency_basis"] == "wall"
    slow = write_run(tmp_path / "gpu-slow", dict(methods, **{"threshold@s": 1.2, "threshold@cpu": 0.5}),
                     spec={"limit": 40}, gpu="NVIDIA H100 80GB HBM3")
    assert run_bench.main(["check", "--baseline", str(gbase), str(slow)]) == 1


def test_small_accuracy_wobble_passes(tmp_path, baseline):
    run = base_run(tmp_path, "wobble", threshold=samples(40, 32, 12))   # 34 -> 32 of 40: chance
    assert run_bench.main(["check", "--baseline", str(baseline), str(run)]) == 0


def test_missing_method_fails(tmp_path, baseline, capsys):
    run = write_run(tmp_path / "partial", {"fixed": samples(40, 36, 48), "fixed@s": 2.0},
                    spec={"limit": 40, "methods": "fixed,threshold"})
    assert run_bench.main(["check", "--baseline", str(baseline), str(run)]) == 1
    assert "missing" in capsys.readouterr().out


def test_other_spec_or_missing_baseline_is_an_input_error_exit_2(tmp_path, baseline, capsys):
    run = write_run(tmp_path / "other", {"fixed": samples(8, 8, 48), "fixed@s": 1.0}, spec={"limit": 8})
    assert run_bench.main(["check", "--baseline", str(baseline), str(run)]) == 2
    assert "differs in: limit=8 vs 40" in capsys.readouterr().err
    assert run_bench.main(["check", "--baseline", str(tmp_path / "none.json"), str(run)]) == 2
    assert "check --update" in capsys.readouterr().err


def test_exit_status_seen_by_ci(tmp_path, baseline):
    worse = base_run(tmp_path, "worse", **{"threshold@s": 1.9})
    equal = base_run(tmp_path, "equal")
    cmd = [sys.executable, str(ROOT / "run_bench.py"), "check", "--baseline", str(baseline)]
    assert subprocess.run(cmd + [str(equal)], capture_output=True).returncode == 0
    r = subprocess.run(cmd + [str(worse)], capture_output=True, text=True)
    assert r.returncode == 1 and "FAIL" in r.stdout


def test_binomial_bound():
    assert binom_cdf(40, 40, 0.5) == pytest.approx(1.0)
    assert binom_cdf(0, 10, 0.5) == pytest.approx(1 / 1024)
    assert binom_cdf(5, 10, 0.5) == pytest.approx(638 / 1024)
    k = min_correct(100, 0.8, 0.01)
    assert binom_cdf(k, 100, 0.8) >= 0.01 > binom_cdf(k - 1, 100, 0.8) and 65 < k < 75


def test_a_setting_added_after_the_baseline_counts_only_when_not_default(tmp_path, baseline, capsys):
    # run.json specs written by a newer harness carry settings the baseline never saw
    same = write_run(tmp_path / "newer", {"fixed": samples(40, 36, 48), "fixed@s": 2.0, "threshold": samples(40, 34, 12),
                                          "threshold@s": 0.5}, spec={"limit": 40, "chat": "none"})
    assert run_bench.main(["check", "--baseline", str(baseline), str(same)]) == 0
    other = write_run(tmp_path / "chat", {"fixed": samples(40, 36, 48), "fixed@s": 2.0, "threshold": samples(40, 34, 12),
                                          "threshold@s": 0.5}, spec={"limit": 40, "chat": "single-turn"})
    assert run_bench.main(["check", "--baseline", str(baseline), str(other)]) == 2
    assert "chat='single-turn'" in capsys.readouterr().err
