"""Machine load around each method's decode: recorded, judged by the documented rule, flagged in
the summary and the printed table."""
import json
import os

import pytest

import run_bench
from bench import load


def snap(l1, cpus=16, other=None):
    return {"loadavg_1m": l1, "cpu_count": cpus, "gpu_processes_other": other}


@pytest.mark.parametrize("start, end, threads, flagged", [
    (snap(8.4), snap(8.4), 1, False),          # limit 1 + 0.5 * 15 = 8.5
    (snap(8.4), snap(8.6), 1, True),           # the end counts too
    (snap(9.0), snap(1.0), 4, False),          # limit 4 + 0.5 * 12 = 10
    (snap(1.9, cpus=2), snap(1.9, cpus=2), 2, False),   # our 2 threads on 2 CPUs: limit 2
    (snap(2.1, cpus=2), snap(1.0, cpus=2), 2, True),
    (snap(0.1, other=1), snap(0.1), 1, True),  # another process on our GPU
])
def test_under_load_rule(start, end, threads, flagged):
    reason = load.judge(start, end, threads)
    assert (reason is not None) == flagged


def test_the_reason_names_the_figures():
    assert load.judge(snap(2.1, cpus=2), snap(1.0, cpus=2), 2) == (
        "1-min load average 2.10 at the start > 2 (2 decode threads + half of the other 0 of 2 CPUs)")


class FakeBackend:
    def __init__(self, pids):
        self.pids = pids

    def compute_pids(self, h):
        return self.pids[h]


class FakeMeter:
    def __init__(self, pids):
        self.backend, self.handles = FakeBackend(pids), list(range(len(pids)))


def test_other_gpu_processes_are_counted_without_this_one():
    me = os.getpid()
    assert load.snapshot(FakeMeter([[me, 4242]]))["gpu_processes_other"] == 1
    assert load.snapshot(FakeMeter([[me], []]))["gpu_processes_other"] == 0
    # NVML ids of another pid namespace: this process is listed under an id we cannot see
    assert load.snapshot(FakeMeter([[7, 8]]))["gpu_processes_other"] == 1
    assert load.snapshot(None)["gpu_processes_other"] is None


@pytest.mark.parametrize("busy", [True, False])
def test_run_records_load_and_flags_timings_taken_under_load(tmp_path, monkeypatch, capsys, busy):
    cpus = os.cpu_count()
    monkeypatch.setattr(os, "getloadavg", lambda: (10.0 * cpus, 1.0, 1.0) if busy else (0.0, 0.0, 0.0))
    assert run_bench.main(["--out-dir", str(tmp_path), "--run-id", "r", "--no-progress", "--limit", "4",
                           "--batch-size", "2", "--methods", "fixed:steps=6,threshold", "--warmup-batches", "0"]) == 0
    out = capsys.readouterr().out
    recs = [json.loads(l) for l in (tmp_path / "r" / "loads.jsonl").read_text().splitlines()]
    assert [r["method"] for r in recs] == ["fixed:steps=6", "threshold"]
    assert all(r["start"]["loadavg_1m"] == (10.0 * cpus if busy else 0.0) and r["end"]["cpu_count"] == cpus
               for r in recs)
    rows = json.loads((tmp_path / "r" / "summary.json").read_text())["rows"]
    for row in rows:
        assert row["timing_under_load"] is busy and row["speedup_under_load"] is busy
        assert row["decode_wall_s"] >= row["decode_time_s"] > 0   # the wall window holds every timed call
    assert ("timed under load" in out) is busy
    speed_cells = [line.split("|")[-2].strip() for line in out.splitlines() if line.startswith("| threshold")]
    assert speed_cells[0].endswith("*") is busy
