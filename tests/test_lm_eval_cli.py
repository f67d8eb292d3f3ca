"""`dllm-lm-eval` (bench/lm_eval_model.py main) as a user meets it: offline without --data-dir a
one-line error at once, and the code-execution advice it gives is a flag it accepts."""
import pytest

pytest.importorskip("lm_eval")

from bench import lm_eval_model  # noqa: E402
from lmeval_helpers import data_dir  # noqa: E402

ORACLE = ["run", "--model", "dllm_bench", "--model_args", "model=oracle", "--limit", "2"]


@pytest.fixture
def env(monkeypatch, tmp_path):
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_EVALUATE_OFFLINE"):
        monkeypatch.delenv(k, raising=False)     # restored afterwards, whatever main() sets
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("sys.argv", ["dllm-lm-eval"])
    return monkeypatch


def test_unreachable_hub_without_data_dir_is_a_one_line_error(env, capsys):
    env.setenv("HF_ENDPOINT", "http://127.0.0.1:9")        # nothing listens there: refused at once
    assert not lm_eval_model.hub_reachable()
    assert lm_eval_model.main([*ORACLE, "--tasks", "gsm8k"]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and "pass --data-dir DIR" in err[0] and "openai/gsm8k" in err[0]


def test_code_execution_advice_names_a_flag_it_accepts(env, capsys):
    d = str(data_dir())
    assert lm_eval_model.main(["--data-dir", d, *ORACLE, "--tasks", "mbpp"]) == 2
    err = capsys.readouterr().err
    assert "pass --allow-code-exec" in err
    assert lm_eval_model.main(["--data-dir", d, *ORACLE, "--tasks", "mbpp", "--allow-code-exec"]) == 0
    assert "pass_at_1" in capsys.readouterr().out


def test_warm_up_decodes_about_the_first_block_only(monkeypatch):
    from types import SimpleNamespace
    from tasks.arith import test_problems
    lm = lm_eval_model.DllmBenchLM(model="tiny", method="fixed", gen_length=48, block_length=16, batch_size=2,
                                   warmup_batches=1, device="cpu")
    real, caps = lm._decode, []

    def counting(method, ids, gen):
        res = real(method, ids, gen)
        caps.append((gen.max_steps, int(res.nfe.sum())))
        return res
    monkeypatch.setattr(lm, "_decode", counting)
    reqs = [SimpleNamespace(task_name="arith", doc_id=i, args=(p.prompt, {"until": []}))
            for i, p in enumerate(test_problems(2))]
    lm.generate_until(reqs)
    (warm_cap, warm_nfe), (timed_cap, timed_nfe) = caps
    assert warm_cap == 16 and timed_cap is None and warm_nfe <= 2 * 16 < timed_nfe
