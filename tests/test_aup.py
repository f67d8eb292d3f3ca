"""AUP (bench/aup.py) against d3LLM's published leaderboard, and per method family in a run."""
import json

import pytest

from bench.aup import aup, family_aups, split_label
from bench.results import RunDir
from bench.score import summarize

from runfiles import samples, write_run

# hao-ai-lab/d3LLM at e5bfcaccb775ee75759c24ccc9a28218b8372b34, AUP_leaderboard/data_llada.yaml:
# GSM8K-CoT (lines 6-22) and MATH (lines 23-39), (TPF, accuracy %) per method. y_max is the best
# accuracy of any method on the task (AUP_leaderboard/main.py line 63).
GSM8K_COT = {"Qwen-2.5-7B-it": [(1.0, 74.1)], "LLaDA": [(1.0, 72.55)],
             "Fast-dLLM-LLaDA": [(1.0, 74.79), (2.77, 74.68)], "D2F": [(1.0, 74.98), (2.88, 74.39)],
             "dParallel-LLaDA": [(1.0, 74.0), (5.14, 72.63)], "d3LLM-LLaDA": [(1.0, 74.02), (9.11, 73.09)]}
MATH = {"Qwen-2.5-7B-it": [(1.0, 41.15)], "LLaDA": [(1.0, 32.2)], "Fast-dLLM-LLaDA": [(1.0, 32.1), (1.97, 30.82)],
        "D2F": [(1.0, 29.1), (2.66, 28.94)], "dParallel-LLaDA": [(1.0, 32.0), (3.17, 30.18)],
        "d3LLM-LLaDA": [(1.0, 32.76), (5.74, 30.36)]}
# the published values: the leaderboard in the same repository, asset/imgs/dllm_leaderboard.png
# (also on hao-ai-lab.github.io/blogs/text-diffusion): d3LLM-LLaDA 637.7 on GSM8K-CoT and 107.6 on
# MATH, dParallel-LLaDA 358.1 on GSM8K-CoT and 64.5 on MATH.
PUBLISHED = [(GSM8K_COT, "d3LLM-LLaDA", 637.7), (GSM8K_COT, "dParallel-LLaDA", 358.1),
             (MATH, "d3LLM-LLaDA", 107.6), (MATH, "dParallel-LLaDA", 64.5)]


@pytest.mark.parametrize("task,method,published", PUBLISHED)
def test_reproduces_d3llm_leaderboard(task, method, published):
    y_max = max(y for pts in task.values() for _, y in pts)
    res = aup(task[method], y_max)
    assert round(res.value, 1) == published and res.dropped == []


def test_points_more_than_5_below_the_lowest_tpf_point_are_dropped():
    pts = [(1.0, 80.0), (2.0, 79.0), (3.0, 74.0), (4.0, 76.0)]
    res = aup(pts, 80.0)
    assert res.dropped == [(3.0, 74.0)] and res.points == [(1.0, 80.0), (2.0, 79.0), (4.0, 76.0)]
    assert res.value == pytest.approx(aup([(1.0, 80.0), (2.0, 79.0), (4.0, 76.0)], 80.0).value)
    # first term unweighted, then the trapezoid rule on y * W(y)
    w = lambda y: min(2.718281828459045 ** (-3 * (1 - y / 80.0)), 1.0)  # noqa: E731
    assert res.value == pytest.approx(80 + 0.5 * (80 * w(80) + 79 * w(79)) + 0.5 * 2 * (79 * w(79) + 76 * w(76)))


def test_family_is_the_method_with_its_non_numeric_settings():
    assert split_label("threshold:tau=0.7") == ("threshold", "tau=0.7")
    assert split_label("prr:shaping=temperature,tau=0.9") == ("prr (shaping=temperature)", "tau=0.9")
    assert split_label("threshold:cache=dual,tau=0.9") == ("threshold (cache=dual)", "tau=0.9")
    assert split_label("fixed") == ("fixed", "")


def test_family_aups_over_a_run_say_why_a_sweep_has_none():
    rows = [{"model": "m", "task": "t", "method": "fixed", "accuracy": 0.9, "tpf": 1.0},
            {"model": "m", "task": "t", "method": "threshold:tau=0.9", "accuracy": 0.88, "tpf": 2.0},
            {"model": "m", "task": "t", "method": "threshold:tau=0.7", "accuracy": 0.86, "tpf": 3.0},
            {"model": "m", "task": "u", "method": "threshold:tau=0.9", "accuracy": None, "tpf": 2.0},
            {"model": "m", "task": "u", "method": "threshold:tau=0.7", "accuracy": None, "tpf": 3.0}]
    out = family_aups(rows)
    assert [(a["task"], a["family"]) for a in out] == [("t", "threshold"), ("u", "threshold")]   # fixed: 1 point
    t, u = out
    assert t["y_max"] == 90.0 and t["aup"] == pytest.approx(aup([(2.0, 88.0), (3.0, 86.0)], 90.0).value)
    assert u["aup"] is None and "no accuracy" in u["reason"]


def test_summary_json_has_an_aup_section(tmp_path):
    d = write_run(tmp_path / "r", {"fixed": samples(8, 8, 48, 30), "fixed@s": 1.0,
                                   "threshold:tau=0.9": samples(8, 8, 12, 30), "threshold:tau=0.9@s": 0.5,
                                   "threshold:tau=0.7": samples(8, 8, 8, 30), "threshold:tau=0.7@s": 0.4},
                  spec={"methods": "fixed,threshold:tau=0.9,threshold:tau=0.7"})
    info = json.loads((d / "run.json").read_text())
    (d / "run.json").write_text(json.dumps({**info, "tasks": ["arith"], "model": {"name": "tiny"}}))
    summary = summarize(RunDir(d))
    (entry,) = summary["aup"]
    assert entry["family"] == "threshold" and entry["methods"] == ["threshold:tau=0.9", "threshold:tau=0.7"]
    assert entry["aup"] == pytest.approx(2.5 * 100 + 0.5 * (3.75 - 2.5) * (100 + 100))   # TPF 30/12, 30/8
    assert json.loads((d / "summary.json").read_text())["aup"] == summary["aup"]
