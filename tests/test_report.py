"""Reports from saved result files: the tables for two saved runs match the stored expected ones."""
from pathlib import Path

import pytest

import run_bench
from bench.report import pareto_front, report

DATA = Path(__file__).parent / "data" / "report"
RUNS = [str(DATA / "cpu-a"), str(DATA / "h100-b")]


def test_two_saved_runs_match_the_expected_tables(tmp_path):
    text, notes = report(RUNS, baseline="fixed", out_dir=str(tmp_path))
    for name in ("report.md", "report.tex", "report.csv"):
        assert (tmp_path / name).read_text() == (DATA / "expected" / name).read_text(), name
    # stdout is report.md without its notes: the method table, then the AUP table
    assert (DATA / "expected" / "report.md").read_text().startswith(text + "\n\n- ")
    assert "| cpu-a | tiny    | arith  | threshold       | 1 of 2        | 87.5                | 225.0 |" in text
    assert any("leaves out 1 of 2 points" in n and "TPF 3.50 at 62.5%" in n for n in notes)


def test_cli_prints_each_format(capsys):
    assert run_bench.main(["report", *RUNS, "--baseline", "fixed", "--format", "latex"]) == 0
    out = capsys.readouterr().out
    assert out == (DATA / "expected" / "report.tex").read_text() + "\n"
    assert r"\toprule" in out and r"\textbf{960.0}" in out


def test_speedup_is_never_taken_across_runs(capsys):
    # run h100-b has no threshold:tau=0.7, so with that baseline it gets no speedup at all
    text, notes = report(RUNS, baseline="threshold:tau=0.7")
    rows = [l for l in text.splitlines() if l.startswith("| h100-b")]
    assert rows and all(l.rstrip(" |").endswith("n/a") for l in rows)
    assert any("never taken across runs" in n for n in notes)


def test_bad_run_directory_is_named(tmp_path, capsys):
    assert run_bench.main(["report", str(tmp_path)]) == 2
    assert "not a run directory (no run.json)" in capsys.readouterr().err


def test_pareto_front():
    pts = [(48, 0.9), (10, 0.8), (12, 0.7), (8, 0.6), (50, 0.95)]
    assert pareto_front(pts) == [3, 1, 0, 4]


def test_pareto_png_when_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    report(RUNS, baseline="fixed", out_dir=str(tmp_path))
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_point_labels_never_overlap_even_when_crowded():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from bench.plots import place_labels
    fig, ax = plt.subplots(figsize=(4, 3))
    pts = [(5 + 0.05 * i, 0.9 + 0.001 * (i % 5)) for i in range(30)]   # 30 points in a small cloud
    ax.plot(*zip(*pts), "o")
    ax.set_xlim(4, 7)
    ax.set_ylim(0.85, 0.95)
    anns, left_out = place_labels(ax, [(x, y, f"tau=0.{i:02d}", "k") for i, (x, y) in enumerate(pts)])
    boxes = [a.get_window_extent(fig.canvas.get_renderer()) for a in anns]
    assert len(anns) + left_out == 30 and len(anns) >= 5
    assert not any(boxes[i].overlaps(boxes[j]) for i in range(len(boxes)) for j in range(i + 1, len(boxes)))
    plt.close(fig)


def test_a_speedup_timed_under_load_is_flagged_not_printed_as_fact(tmp_path):
    # loads.jsonl (bench/load.py) says the machine was loaded while `threshold` decoded: its
    # latency, tok/s and speedup carry a dagger in every format, with the reason in a note;
    # the baseline's speedup (1.00 by definition) and the other columns stay plain.
    import json
    import shutil
    run = tmp_path / "cpu-a"
    shutil.copytree(DATA / "cpu-a", run)
    snap = {"time_unix": 0.0, "load1": 0.1}
    methods = json.loads((run / "run.json").read_text())["methods"]
    with open(run / "loads.jsonl", "w") as f:
        for m in methods:
            loaded = m.startswith("threshold")
            f.write(json.dumps({"task": "arith", "method": m, "session": "s", "launch": "s", "start": snap,
                                "end": {**snap, "time_unix": 1.0}, "under_load": loaded,
                                "load_reason": "1-min load average 7.2 at the start > 1.5" if loaded else None}) + "\n")
    text, notes = report([str(run)], fmt="md")
    rows = {line.split("|")[5].strip(): line for line in text.splitlines()[2:] if line.startswith("|")}
    assert all(c.strip().endswith("†") for c in rows["threshold"].split("|")[10:12])   # latency p50, tok/s
    assert rows["threshold"].split("|")[-2].strip().endswith("†")                       # speedup
    assert "†" not in rows["fixed"]
    assert any(n.startswith("† timed under load") and "7.2" in n for n in notes)
    tex, _ = report([str(run)], fmt="latex")
    assert r"$^\dagger$" in tex
    plain, _ = report([str(DATA / "cpu-a")], fmt="md")
    assert "†" not in plain
