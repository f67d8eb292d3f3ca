"""The trajectory picture of one sample (`run_bench.py trace`, bench/trajectory.py)."""
import json
import math

import pytest

import run_bench
from bench.trajectory import events

# a hand-made trace, 4 positions in 2 blocks of 2, in the decode loop's trace format, plus the
# `remask` / `edit` position lists a revocable or editing decoder records
HAND = {"gen_length": 4, "block_length": 2, "tokens": [7, 8, 9, 2], "token_text": ["a", "b", "c", ""],
        "eos_ids": [2], "spec": {"model": "hand", "task": "t", "method": "m"}, "doc_id": 0, "nfe": 4,
        "steps": [
            {"step": 0, "masked": [0, 1, 2, 3], "argmax": [7, 5, 9, 2], "p1": [0.9, 0.4, 0.5, 0.6], "commit": [0]},
            {"step": 1, "masked": [1, 2, 3], "argmax": [8, 9, 2], "p1": [0.8, 0.5, 0.6], "commit": [1],
             "remask": [0]},
            {"step": 2, "masked": [0, 2, 3], "argmax": [7, 4, 2], "p1": [0.95, 0.7, 0.9], "commit": [0, 2, 3]},
            {"step": 3, "masked": [], "argmax": [], "p1": [], "commit": [], "edit": [2]}]}


def test_events_of_a_hand_made_trace():
    ev = events(HAND)
    assert ev.commits == [(0, 0), (1, 1), (2, 0), (2, 2), (2, 3)]
    # position 1's argmax went 5 -> 8; position 2's 9 -> 9 -> 4; a remasked position starts afresh
    assert ev.flips == [(1, 1), (2, 2)]
    assert ev.remasks == [(1, 0)] and ev.edits == [(3, 2)]
    assert ev.conf[0] == [0.9, 0.4, 0.5, 0.6] and ev.conf[2][0] == 0.95 and math.isnan(ev.conf[1][0])


def test_trace_from_a_saved_file_draws_remasks_and_edits(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "hand.json").write_text(json.dumps(HAND))
    assert run_bench.main(["trace", "--from", str(tmp_path / "hand.json"), "--out", str(tmp_path / "hand.png")]) == 0
    assert (tmp_path / "hand.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trace_decodes_one_sample_of_the_builtin_model(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "t.png"
    assert run_bench.main(["trace", "--method", "threshold:tau=0.9", "--doc", "3", "--out", str(out)]) == 0
    trace = json.loads(out.with_suffix(".json").read_text())
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert trace["doc_id"] == 3 and trace["nfe"] == len(trace["steps"])
    # every committed position holds the argmax it had when committed, and the final token
    for st in trace["steps"]:
        for pos in st["commit"]:
            assert trace["tokens"][pos] == st["argmax"][st["masked"].index(pos)] or \
                trace["tokens"].index(trace["eos_ids"][0]) < pos


def test_trace_bad_input_is_one_line(tmp_path, capsys):
    assert run_bench.main(["trace", "--out", str(tmp_path / "t.svg")]) == 2
    assert "give a .png path" in capsys.readouterr().err
    (tmp_path / "x.json").write_text("{}")
    assert run_bench.main(["trace", "--from", str(tmp_path / "x.json"), "--out", str(tmp_path / "t.png")]) == 2
    assert "is not a trace file" in capsys.readouterr().err
    assert run_bench.main(["trace", "--method", "fixed,threshold", "--out", str(tmp_path / "t.png")]) == 2
    assert "trace takes one method" in capsys.readouterr().err
