"""PRR training for any model and task: the trainer's command line on a tiny random LLaDA checkpoint
directory and GSM8K-format train problems, the controller file format, and the train splits."""
import json
import shlex

import pytest
import torch

import run_bench
from decoding.methods.prr.controller import Controller, ControllerConfig, load_controller, save_controller
from tasks.train_splits import gsm8k_correct, load_train_split
from training import prr_train

from lmeval_helpers import data_dir

GSM8K_LIKE = [("Tom has 3 apples and buys 4 more. How many apples does Tom have?", "3 + 4 = 7\n#### 7"),
              ("Anna has 10 pens and gives away 2. How many pens are left?", "10 - 2 = 8\n#### 8"),
              ("Ben has 2 bags of 5 coins. How many coins?", "2 * 5 = 10\n#### 10"),
              ("Lena has 9 cards and gets 1. How many cards?", "9 + 1 = 10\n#### 10"),
              ("Sam has 6 books and reads 3. How many are unread?", "6 - 3 = 3\n#### 3"),
              ("Mia has 4 shells and finds 4. How many shells?", "4 + 4 = 8\n#### 8"),
              ("Max has 1,200 stamps and sells 200. How many?", "1200 - 200 = 1000\n#### 1,000"),
              ("Zoe has 5 eggs and eats 1. How many eggs?", "5 - 1 = 4\n#### 4"),
              ("Leo has 3 toys and gets 3. How many toys?", "3 + 3 = 6\n#### 6")]


@pytest.fixture(scope="module")
def gsm8k_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    (d / "gsm8k").mkdir()
    (d / "gsm8k" / "train.jsonl").write_text("".join(json.dumps({"question": q, "answer": a}) + "\n"
                                                     for q, a in GSM8K_LIKE))
    return d


@pytest.fixture(scope="module")
def llada_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    from test_real_checkpoint import write_checkpoint
    return write_checkpoint("llada", tmp_path_factory.mktemp("llada"))


SMALL = ["--shots", "0", "--train-problems", "3", "--heldout-problems", "2", "--gen-length", "16",
         "--block-length", "8", "--hidden", "8", "--epochs", "1", "--decode-batch", "4", "--device", "cpu"]


def test_trains_a_controller_for_a_llada_checkpoint_on_gsm8k_train_and_the_run_loads_it(
        llada_dir, gsm8k_dir, tmp_path, capsys):
    out = tmp_path / "ctl"
    args = ["--model", "llada", "--model-path", str(llada_dir), "--task", "gsm8k", "--data-dir", str(gsm8k_dir),
            "--rounds", "2", "--out", str(out), *SMALL]
    # a random checkpoint never answers correctly: round 0 has nothing to keep unless told
    assert prr_train.main(args) == 2
    assert "pass --all-rollouts" in capsys.readouterr().err
    assert prr_train.main([*args, "--all-rollouts"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctl.json", "ctl.safetensors"]
    rec = json.loads((tmp_path / "ctl.json").read_text())
    assert rec["task"] == "gsm8k" and "gsm8k/train.jsonl" in rec["train_split"]
    assert rec["config"]["d_model"] == 64 and rec["model_path"] == str(llada_dir)
    assert [r["labels"] for r in rec["rounds"]] == ["rollout", "branch continuations"]
    assert [r["rollouts"] for r in rec["rounds"]] == [3, 3] and rec["heldout_reference"]["quota"]["n"] == 2
    assert all(r["train"]["records_train"] > 0 for r in rec["rounds"])
    assert rec["command"].startswith("python -m training.prr_train --model llada")

    # the run loads it for that model
    runs = tmp_path / "runs"
    assert run_bench.main(["--model", "llada", "--model-path", str(llada_dir), "--methods",
                           f"prr:controller={out},prr:controller=off", "--limit", "2", "--gen-length", "16",
                           "--block-length", "8", "--out-dir", str(runs), "--run-id", "r", "--no-progress",
                           "--warmup-batches", "0"]) == 0
    reqs = [json.loads(l) for l in (runs / "r" / "requests.jsonl").read_text().splitlines()]
    assert len(reqs) == 4 and {r["method"] for r in reqs} == {f"prr:controller={out}", "prr:controller=off"}


def test_no_weights_smoke_run_of_a_named_architecture(tmp_path):
    assert prr_train.main(["--model", "llada-tiny", "--no-weights", "--rounds", "1", "--out", str(tmp_path / "c"),
                           *SMALL[2:]]) == 0
    rec = json.loads((tmp_path / "c.json").read_text())
    assert rec["no_weights"] and rec["round0_rollouts"] == "all" and rec["task"] == "arith"
    assert load_controller(str(tmp_path / "c")).cfg.d_model == 64


def test_help_names_the_files_it_writes(capsys):
    with pytest.raises(SystemExit):
        prr_train.main(["--help"])
    text = capsys.readouterr().out
    assert "<out>.safetensors" in text and ".pt" not in text.replace("round{r}.pt", "")


@pytest.mark.parametrize("args, message", [
    (["--task", "gsm8k"], "pass --data-dir DIR"),
    (["--task", "mbpp", "--data-dir", "x"], "--allow-code-exec"),
    (["--rounds", "0"], "--rounds 0 must be >= 1"),
    (["--gen-length", "20"], "multiple of --block-length"),
    (["--model", "gpt5"], "unknown model 'gpt5'"),
    (["--device", "tpu"], "choose auto, cpu, cuda"),
])
def test_bad_input_is_a_one_line_error(args, message, capsys, tmp_path):
    assert prr_train.main([*args, "--out", str(tmp_path / "c")]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_split_too_small_names_the_numbers(gsm8k_dir, capsys, tmp_path):
    assert prr_train.main(["--task", "gsm8k", "--data-dir", str(gsm8k_dir), "--shots", "0", "--rounds", "3",
                           "--train-problems", "3", "--heldout-problems", "2", "--out", str(tmp_path / "c")]) == 2
    assert "leaves 9 problems" in capsys.readouterr().err


def test_mismatched_controller_error_gives_a_command_the_trainer_accepts(tmp_path, capsys):
    assert run_bench.main(["--model", "llada-tiny", "--no-weights", "--methods", "prr", "--limit", "2",
                           "--out-dir", str(tmp_path), "--run-id", "m", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "hidden size 192" in err and "64" in err
    cmd = err.split("`")[1]
    assert cmd.startswith("python -m training.prr_train --model llada-tiny --no-weights")
    a = prr_train.build_parser().parse_args(shlex.split(cmd)[3:])   # parses: the command works as given
    assert a.model == "llada-tiny" and a.no_weights
    assert not (tmp_path / "m").exists()


def test_controller_files_are_safetensors_and_the_earlier_pt_format_still_loads(tmp_path):
    torch.manual_seed(0)
    ctrl = Controller(ControllerConfig(d_model=6, hidden=8)).eval()
    w, j = save_controller(ctrl, tmp_path / "c.safetensors", {"note": 1})
    assert (w.name, j.name) == ("c.safetensors", "c.json") and w.read_bytes()[8:9] == b"{"
    x = (torch.randn(3, 6), torch.randn(3, 11))
    for name in (str(tmp_path / "c"), str(w)):
        assert torch.equal(load_controller(name)(*x), ctrl(*x))
    torch.save({"config": {"d_model": 6, "hidden": 8, "dropout": 0.1, "n_features": 11},
                "state_dict": ctrl.state_dict()}, str(tmp_path / "old.pt"))
    assert torch.equal(load_controller(str(tmp_path / "old"))(*x), ctrl(*x))
    assert load_controller("tiny").cfg.d_model == 192      # the committed one, as safetensors


def test_gsm8k_strict_match_is_lm_eval_s():
    assert gsm8k_correct(" so 7 in all.\n#### 7", "7")
    assert gsm8k_correct("#### 1,000.", "1000")               # commas and a final "." ignored
    assert not gsm8k_correct("#### $1,000", "1000")          # "$" before the number: no strict match
    assert not gsm8k_correct("The answer is 7.", "7")        # strict: needs "#### N"
    assert not gsm8k_correct("#### 8", "7")


def test_real_train_splits_are_disjoint_from_shots_and_each_other():
    d = data_dir()
    s = load_train_split("gsm8k", d, shots=5)
    held, r0, r1 = s.heldout(10), s.round_docs(0, 20, 10), s.round_docs(1, 20, 10)
    ids = [x.doc_id for x in held + r0 + r1]
    assert len(set(ids)) == 50 and not set(ids) & set(range(5))
    assert r0[0].prompt.count("Question:") == 6 and r0[0].prompt.endswith("\nAnswer:")
    m = load_train_split("mbpp", d, allow_code_exec=True)
    assert len(m.pool) == 374 and all(601 <= x.doc_id <= 974 for x in m.pool)
    ref = {json.loads(l)["task_id"]: json.loads(l)["code"] for l in (d / "mbpp" / "mbpp_train.jsonl").open()}
    doc = m.pool[0]
    assert doc.prompt.endswith("[BEGIN]\n") and doc.prompt.count("[DONE]") == 3
    assert m.correct(doc, ref[doc.doc_id] + "\n[DONE]") and not m.correct(doc, "def nothing(): pass")
