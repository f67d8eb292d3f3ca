"""Run directories as DataFrames (bench/frame.py), and the report's handling of the result files a
user has: several tasks in one run, .gz files, empty directories, corrupted lines, incomplete runs."""
import gzip
import json
import shutil
from pathlib import Path

import run_bench
from bench.frame import load
from bench.report import report

from runfiles import samples, write_run

DATA = Path(__file__).parent / "data" / "report"


def _three_task_run(path):
    """One run over arith, gsm8k and mbpp (the arith lines relabelled), two methods."""
    d = write_run(path, {"fixed": samples(12, 12, 48, 30), "fixed@s": 1.0,
                         "threshold": samples(12, 5, 12, 30), "threshold@s": 0.5},
                  spec={"methods": "fixed,threshold", "limit": 4, "task": "arith,gsm8k,mbpp"})
    lines = [json.loads(l) for l in (d / "requests.jsonl").read_text().splitlines()]
    for l in lines:   # docs 0-3 arith, 4-7 gsm8k, 8-11 mbpp; mbpp all wrong
        l["task"] = ["arith", "gsm8k", "mbpp"][l["doc_id"] // 4]
        l["doc_id"] %= 4
        l["correct"] = l["correct"] and l["task"] != "mbpp"
        l["batch_id"] += "-" + l["task"]
    (d / "requests.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    info = json.loads((d / "run.json").read_text())
    (d / "run.json").write_text(json.dumps({**info, "tasks": ["arith", "gsm8k", "mbpp"]}))
    return d


def test_one_row_per_model_task_and_method_never_blended(tmp_path):
    d = _three_task_run(tmp_path / "multi")
    text, _ = report([str(d)])
    table = [l for l in text.splitlines() if l.startswith("| multi")]
    assert [l.split("|")[4].strip() for l in table] == ["arith", "arith", "gsm8k", "gsm8k", "mbpp", "mbpp"]
    csv_rows = report([str(d)], fmt="csv")[0].splitlines()[1:]
    assert [r.split(",")[3] for r in csv_rows] == ["arith", "arith", "gsm8k", "gsm8k", "mbpp", "mbpp"]
    tex = report([str(d)], fmt="latex")[0]
    assert tex.count("& mbpp &") == 2
    rows = load(d).methods()
    assert list(zip(rows["task"], rows["method"])) == [(t, m) for t in ("arith", "gsm8k", "mbpp")
                                                      for m in ("fixed", "threshold")]
    assert list(rows["n"]) == [4] * 6
    assert list(rows["accuracy"]) == [1.0, 1.0, 1.0, 0.25, 0.0, 0.0]


def test_samples_frame_and_method_aggregation():
    res = load([DATA / "cpu-a", DATA / "h100-b"])
    assert len(res.samples) == 24 + 16
    assert {"run", "machine", "model", "task", "method", "family", "doc_id", "nfe", "correct"} <= set(res.samples)
    m = res.methods(baseline="fixed")
    assert list(m["method"]) == ["fixed", "threshold", "threshold:tau=0.7", "fixed", "threshold"]
    assert list(m["family"]) == ["fixed", "threshold", "threshold", "fixed", "threshold"]
    assert list(m["speedup"].round(2)) == [1.0, 4.0, 5.0, 1.0, 3.2]
    # the per-method aggregation equals a groupby over the samples
    acc = res.samples.groupby(["run", "method"], sort=False)["correct"].mean()
    assert list(acc.round(4)) == list(m["accuracy"].round(4))


def test_gz_run_reports_like_the_plain_one(tmp_path):
    shutil.copytree(DATA / "cpu-a", tmp_path / "cpu-a")
    req = tmp_path / "cpu-a" / "requests.jsonl"
    with gzip.open(req.with_suffix(".jsonl.gz"), "wt") as f:
        f.write(req.read_text())
    req.unlink()
    assert report([str(tmp_path / "cpu-a")])[0] == report([str(DATA / "cpu-a")])[0]


def test_empty_directories_are_skipped_with_a_note(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "debris").mkdir()   # a failed start: run.json and nothing decoded
    shutil.copy(DATA / "cpu-a" / "run.json", tmp_path / "debris" / "run.json")
    code = run_bench.main(["report", str(tmp_path / "empty"), str(DATA / "cpu-a"), str(tmp_path / "debris")])
    out, err = capsys.readouterr()
    assert code == 0 and "| cpu-a" in out
    assert f"{tmp_path / 'empty'} skipped: not a run directory" in err
    assert f"{tmp_path / 'debris'} skipped: no finished samples" in err


def test_corrupted_line_is_named_with_file_and_line(tmp_path, capsys):
    shutil.copytree(DATA / "cpu-a", tmp_path / "cpu-a")
    req = tmp_path / "cpu-a" / "requests.jsonl"
    lines = req.read_text().splitlines(keepends=True)
    lines[6] = lines[6][:40] + "\n"
    req.write_text("".join(lines))
    assert run_bench.main(["report", str(tmp_path / "cpu-a")]) == 2
    assert f"error: {req} line 7 is not valid JSON" in capsys.readouterr().err


def test_cut_last_line_of_a_run_in_progress_is_left_out_with_a_note(tmp_path):
    shutil.copytree(DATA / "cpu-a", tmp_path / "cpu-a")
    req = tmp_path / "cpu-a" / "requests.jsonl"
    req.write_text(req.read_text() + '{"task": "arith", "doc_id": 0, "mod')
    text, notes = report([str(tmp_path / "cpu-a")])
    assert text == report([str(DATA / "cpu-a")])[0]
    assert any(f"{req} line 25: the last line is cut off" in n for n in notes)


def test_incomplete_run_is_flagged(tmp_path):
    d = write_run(tmp_path / "part", {"fixed": samples(8, 8, 48, 30), "fixed@s": 1.0,
                                      "threshold": samples(3, 3, 12, 30), "threshold@s": 0.5},
                  spec={"methods": "fixed,threshold,eb"})
    info = json.loads((d / "run.json").read_text())
    info["methods"]["eb"] = {"name": "eb", "settings": {}}   # in the run, never decoded
    (d / "run.json").write_text(json.dumps(info))
    (d / "prompts.jsonl").write_text("".join(json.dumps({"task": "arith", "doc_id": i}) + "\n" for i in range(8)))
    text, notes = report([str(d)])
    rows = {l.split("|")[5].strip(): l.split("|")[6].strip() for l in text.splitlines() if l.startswith("| part")}
    assert rows == {"fixed": "8", "threshold": "3 of 8*", "eb": "0 of 8*"}
    assert "* incomplete: run part, tiny/arith, threshold: 3 of 8 samples" in notes
    assert "* incomplete: run part, tiny/arith, eb: no samples" in notes
    m = load(d).methods()
    assert list(m["complete"]) == [True, False, False] and list(m["expected_n"]) == [8, 8, 8]


def test_score_stops_on_a_corrupted_line_and_leaves_the_file(tmp_path, capsys):
    shutil.copytree(DATA / "cpu-a", tmp_path / "cpu-a")
    req = tmp_path / "cpu-a" / "requests.jsonl"
    lines = [json.dumps({**json.loads(l), "output": " #### 1"}) + "\n" for l in req.read_text().splitlines()]
    (tmp_path / "cpu-a" / "prompts.jsonl").write_text("".join(
        json.dumps({"task": "arith", "doc_id": i, "prompt": "1 + 0 =", "target": "1", "messages": None}) + "\n"
        for i in range(8)))
    info = json.loads((tmp_path / "cpu-a" / "run.json").read_text())
    (tmp_path / "cpu-a" / "run.json").write_text(json.dumps({**info, "tasks": ["arith"], "model": {"name": "tiny"}}))
    lines[10] = "{not json\n"
    before = "".join(lines)
    req.write_text(before)
    assert run_bench.main(["score", str(tmp_path / "cpu-a")]) == 2
    assert f"error: {req} line 11 is not valid JSON" in capsys.readouterr().err
    assert req.read_text() == before   # nothing dropped, nothing rewritten
