"""Bad values are refused before any work, a failed start leaves no debris (and never removes what
an earlier start wrote), the warm-up does not decode a one-batch run twice, --limit says what it
cut, and the CPU threads of a decode are chosen and recorded."""
import json

import pytest
import torch

import run_bench

BASE = ["--limit", "2", "--batch-size", "2", "--methods", "threshold", "--no-progress"]


def run(tmp_path, *args):
    return run_bench.main(["--out-dir", str(tmp_path), *BASE, *args])


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("args, message", [
    (["--gen-length", "0"], "--gen-length must be positive (got 0)"),
    (["--block-length", "0"], "--block-length must be positive (got 0)"),
    (["--max-steps", "0"], "--max-steps must be positive (got 0)"),
    (["--warmup-batches", "-1"], "--warmup-batches -1: give 0 (no warm-up) or more"),
    (["--limit", "0"], "--limit 0: give a positive number of problems, or `all`"),
    (["--threads", "0"], "--threads must be positive (got 0)"),
    (["--device", "tpu"], "--device 'tpu': choose auto, cpu, cuda or cuda:N"),
    (["--resume"], "--resume continues an existing run: give its --run-id"),
    (["--resume", "--run-id", "never-made"], "there is no run 'never-made'"),
])
def test_bad_values_are_one_line_errors_before_any_work(tmp_path, capsys, args, message):
    assert run(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_limit_all_is_accepted(tmp_path):
    assert run_bench.main(["--out-dir", str(tmp_path), "--limit", "all", "--stop-after", "build", "--run-id", "a",
                           "--no-progress"]) == 0
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert info["spec"]["limit"] is None
    assert len((tmp_path / "a" / "prompts.jsonl").read_text().splitlines()) == 5000   # arith's whole test set


def test_limit_is_named_under_the_table(tmp_path, capsys):
    assert run(tmp_path, "--run-id", "l", "--warmup-batches", "0") == 0
    assert "limit: the first 2 problems of arith (--limit 2); --limit all runs the full sets" in capsys.readouterr().out


def test_a_failed_start_leaves_no_directory_and_the_run_id_stays_usable(tmp_path, capsys):
    assert run(tmp_path, "--model", "llada", "--model-path", str(tmp_path / "missing"), "--run-id", "x") == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert run(tmp_path, "--run-id", "x", "--warmup-batches", "0") == 0


def test_a_failure_never_removes_an_earlier_start_or_decoded_samples(tmp_path, capsys, monkeypatch):
    assert run(tmp_path, "--run-id", "b", "--stop-after", "build") == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}

    def broken(*a, **k):
        raise ValueError("model files unreadable")
    monkeypatch.setattr("bench.runner.load_model", broken)
    assert run_bench.main(["decode", str(tmp_path / "b"), "--no-progress"]) == 2
    after = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    assert set(after) == set(before) and after["prompts.jsonl"] == before["prompts.jsonl"]
    monkeypatch.undo()

    # a fresh run that fails after decoding keeps its samples (resumable)
    monkeypatch.setattr("bench.runner.score_run", broken)
    assert run(tmp_path, "--run-id", "s", "--warmup-batches", "0") == 2
    assert len((tmp_path / "s" / "requests.jsonl").read_text().splitlines()) == 2


def test_prompts_longer_than_the_model_are_named_in_the_table_and_run_json(tmp_path, capsys):
    from lmeval_helpers import data_dir
    d = data_dir()
    pytest.importorskip("lm_eval")
    assert run(tmp_path, "--model", "tiny", "--tasks", "gsm8k", "--data-dir", str(d), "--run-id", "g", "--limit", "1",
               "--gen-length", "8", "--block-length", "8", "--warmup-batches", "0") == 0
    want = "model tiny takes 256 positions, but 1 of 1 gsm8k prompts plus gen_length 8 exceed them"
    assert f"warning: {want}" in capsys.readouterr().out
    assert want in json.loads((tmp_path / "g" / "run.json").read_text())["warnings"][0]


def test_warmup_of_a_single_batch_run_decodes_one_block_only(tmp_path):
    assert run_bench.main(["--out-dir", str(tmp_path), "--limit", "4", "--batch-size", "4", "--methods", "fixed",
                           "--run-id", "w", "--no-progress"]) == 0
    warm = [json.loads(l) for l in (tmp_path / "w" / "warmup.jsonl").read_text().splitlines()]
    reqs = [json.loads(l) for l in (tmp_path / "w" / "requests.jsonl").read_text().splitlines()]
    assert len(warm) == 1 and warm[0]["max_steps"] == 16          # arith: gen 48, block 16
    assert warm[0]["nfe"] <= 4 * 16 < sum(r["nfe"] for r in reqs)


def test_cpu_threads_are_chosen_and_recorded(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert run(tmp_path, "--run-id", "t1", "--device", "cpu", "--warmup-batches", "0") == 0
    t = json.loads((tmp_path / "t1" / "run.json").read_text())["threads"]
    assert t["intra_op"] == 1 and t["source"].startswith("default for CPU")
    assert run(tmp_path, "--run-id", "t2", "--device", "cpu", "--threads", "2", "--warmup-batches", "0") == 0
    info = json.loads((tmp_path / "t2" / "run.json").read_text())
    assert info["threads"]["intra_op"] == 2 and info["threads"]["source"] == "--threads"
    assert info["sessions"][-1]["threads"]["intra_op"] == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert run(tmp_path, "--run-id", "t3", "--device", "cpu", "--warmup-batches", "0") == 0
    t = json.loads((tmp_path / "t3" / "run.json").read_text())["threads"]
    assert t["intra_op"] == 3 and t["source"] == "OMP_NUM_THREADS"


def test_a_missing_chat_template_leaves_no_directory(tmp_path, capsys):
    from lmeval_helpers import data_dir
    d = data_dir()
    pytest.importorskip("lm_eval")
    assert run(tmp_path, "--model", "tiny", "--tasks", "gsm8k", "--data-dir", str(d), "--limit", "1",
               "--chat", "multiturn", "--run-id", "c") == 2
    assert "has no chat template; use --chat none" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
