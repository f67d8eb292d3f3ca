"""Data parallel (bench/distributed.py): torchrun on CPU with gloo equals one process sample for
sample; per-shard resume; bad input refused before any work; a merge of foreign shards refused."""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import run_bench
from bench import distributed
from bench.distributed import Ranks, batch_owner, merge_shards, shard_dir
from bench.results import RunDir
from bench.runner import RunSpec, plan_run

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--limit", "7", "--batch-size", "2", "--methods", "fixed:steps=6,threshold:tau=0.5", "--warmup-batches", "0",
        "--no-progress"]
SAME = ("task", "method", "doc_id", "output", "tokens_sha", "nfe", "gen_tokens", "committed_tokens", "correct",
        "batch_index", "batch_size", "prompt_tokens")
TIME_KEYS = ("latency", "time", "tokens_per_s", "speedup", "forward_frac", "load", "wall")


def lines(d):
    return [{k: r[k] for k in SAME} for r in map(json.loads, (Path(d) / "requests.jsonl").read_text().splitlines())]


def summary(d):
    rows = json.loads((Path(d) / "summary.json").read_text())["rows"]
    return [{k: v for k, v in r.items() if not any(t in k for t in TIME_KEYS)} for r in rows]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    assert run_bench.main(["--out-dir", str(out), "--run-id", "one", *ARGS]) == 0
    return out / "one"


@pytest.fixture(scope="module")
def torchrun_two(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "run_bench.py", "--out-dir", str(out), "--run-id", "two", *ARGS],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return out / "two", p.stdout


def test_two_ranks_equal_one_process_sample_for_sample(single, torchrun_two):
    d, stdout = torchrun_two
    assert stdout.count("| method") == 1 and "threshold:tau=0.5" in stdout   # only rank 0 prints
    assert lines(d) == lines(single)                 # same order, tokens, NFE, accuracy, batches
    assert summary(d) == summary(single)
    info = json.loads((d / "run.json").read_text())
    assert info["distributed"]["world_size"] == 2 and [r["rank"] for r in info["distributed"]["ranks"]] == [0, 1]
    # 7 requests in batches of 2: batches 0..3 per method, dealt round-robin (0, 2 -> rank 0; 1, 3 -> rank 1)
    for r in (0, 1):
        mine = {x["batch_index"] for x in map(json.loads, (d / "shards" / f"rank{r}" / "requests.jsonl")
                                              .read_text().splitlines())}
        assert mine == {i for i in range(4) if i % 2 == r}


def test_batches_are_dealt_round_robin_over_tasks():
    prompts = [{"task": "a"}] * 5 + [{"task": "b"}] * 3
    owner = batch_owner(prompts, ["a", "b"], 2, 2)
    assert owner == {("a", 0): 0, ("a", 1): 1, ("a", 2): 0, ("b", 0): 1, ("b", 1): 0}


@pytest.fixture
def one_rank(monkeypatch):
    """The environment torchrun --nproc-per-node 1 gives its one process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(k, v)


def test_one_rank_run_and_per_shard_resume(tmp_path, single, one_rank):
    args = ["--out-dir", str(tmp_path), "--run-id", "r", *ARGS]
    assert run_bench.main(args) == 0
    d = tmp_path / "r"
    assert lines(d) == lines(single) and summary(d) == summary(single)
    # a crash mid-way: the shard lost its last two batches and holds half a line; nothing merged yet
    shard = d / "shards" / "rank0" / "requests.jsonl"
    kept = shard.read_text().splitlines(keepends=True)
    shard.write_text("".join(kept[:-3]) + kept[-3][:25])
    (d / "requests.jsonl").unlink()
    (d / "summary.json").unlink()
    assert run_bench.main(args) == 2                         # no --resume: refused, nothing lost
    assert run_bench.main([*args, "--resume"]) == 0
    assert lines(d) == lines(single) and summary(d) == summary(single)
    assert len(json.loads((d / "shards" / "rank0" / "run.json").read_text())["sessions"]) == 2


def test_a_sharded_run_is_not_continued_by_one_process(tmp_path, one_rank, monkeypatch, capsys):
    args = ["--out-dir", str(tmp_path), "--run-id", "r", *ARGS]
    assert run_bench.main([*args, "--stop-after", "build"]) == 0
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k)
    assert run_bench.main([*args, "--resume"]) == 2
    assert "torchrun --nproc-per-node 1" in capsys.readouterr().err


def test_more_ranks_than_batches_stops_before_writing(tmp_path):
    spec = RunSpec(limit=3, batch_size=2, methods="fixed", out_dir=str(tmp_path), run_id="r")
    with pytest.raises(ValueError, match=r"3 ranks for 3 requests in 2 batch\(es\).*--nproc-per-node 2 or fewer"):
        distributed._prepare(plan_run(spec), Ranks(rank=0, world_size=3, local_rank=0, local_world_size=3))
    assert not (tmp_path / "r").exists()


def test_fewer_gpus_than_ranks_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    assert run_bench.main(["--out-dir", str(tmp_path), "--device", "cuda", *ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: torchrun started 2 processes on this machine but torch sees 1 GPU(s); "
                   "use --nproc-per-node 1 or fewer (or --device cpu)"]
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv("RANK", "1")                            # the other rank exits quietly
    assert run_bench.main(["--out-dir", str(tmp_path), "--device", "cuda", *ARGS]) == 2
    assert capsys.readouterr().err == ""


def test_merge_refuses_a_shard_of_another_run(tmp_path, torchrun_two):
    d = tmp_path / "two"
    shutil.copytree(torchrun_two[0], d)
    prompts = RunDir(d).load_prompts()
    merge_shards(RunDir(d), 2, prompts)                       # the run's own shards merge
    info_path = shard_dir(RunDir(d), 1).run_json
    info = json.loads(info_path.read_text())
    info["spec"]["seed"] = 1
    info_path.write_text(json.dumps(info))
    with pytest.raises(ValueError, match="rank1 holds a shard of a run with a different spec"):
        merge_shards(RunDir(d), 2, prompts)
