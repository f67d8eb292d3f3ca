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
    assert text + "\n" == (DATA / "expected" / "report.md").read_text().split("\n\n")[0] + "\n"


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
    assert "is not a run directory" in capsys.readouterr().err


def test_pareto_front():
    pts = [(48, 0.9), (10, 0.8), (12, 0.7), (8, 0.6), (50, 0.95)]
    assert pareto_front(pts) == [3, 1, 0, 4]


def test_pareto_png_when_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    report(RUNS, baseline="fixed", out_dir=str(tmp_path))
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
