"""Our requests are lm-eval's: the stock lm-eval task, built by lm-eval's TaskManager from a copy
of its own YAML pointed at the local data (dataset_path: json + data_files), renders the same
prompts and stop strings as our build stage."""
import json
import shutil

import pytest
import yaml

pytest.importorskip("lm_eval")

from lmeval_helpers import data_dir  # noqa: E402
from tasks.code_eval import patched_evaluate_load  # noqa: E402
from tasks.lmeval_stages import FEWSHOT_SEED, build_requests  # noqa: E402
from tasks.lmeval_tasks import LMEVAL_TASKS, lm_eval_tasks_dir  # noqa: E402

N = 3


def _stock_requests(tmp_path, name: str, chat: bool = False) -> list:
    """lm-eval's own pipeline (TaskManager + simple_evaluate) on a copy of its YAML with local data."""
    from lm_eval import simple_evaluate
    from lm_eval.api.model import LM
    from lm_eval.tasks import TaskManager
    d = LMEVAL_TASKS[name]
    src = lm_eval_tasks_dir() / d.yaml
    inc = tmp_path / name
    inc.mkdir()
    for f in src.parent.glob("*.py"):
        shutil.copy(f, inc / f.name)          # the !function helpers next to the YAML
    text = src.read_text()
    files = {split: str(data_dir() / rel) for split, rel in d.data_files.items()}
    text += "\n" + yaml.safe_dump({"dataset_path": "json", "dataset_name": None,
                                   "dataset_kwargs": {"data_files": files}})
    # the YAML's own keys come first; the appended ones override them (last key wins in YAML)
    (inc / src.name).write_text(text)
    seen = []

    class Capture(LM):
        def generate_until(self, requests, disable_tqdm=False):
            seen.extend(requests)
            return [""] * len(requests)

        def loglikelihood(self, r):
            raise NotImplementedError

        def loglikelihood_rolling(self, r):
            raise NotImplementedError

        def apply_chat_template(self, chat_history, add_generation_prompt=True):
            return json.dumps(chat_history)

        @property
        def tokenizer_name(self):
            return "capture"

    with patched_evaluate_load():
        tm = TaskManager(include_path=str(inc), include_defaults=False)
        simple_evaluate(model=Capture(), tasks=[name], task_manager=tm, limit=N, predict_only=True,
                        confirm_run_unsafe_code=True, fewshot_random_seed=FEWSHOT_SEED, bootstrap_iters=0,
                        apply_chat_template=chat, fewshot_as_multiturn=False)
    return sorted(seen, key=lambda i: i.doc_id)


@pytest.mark.parametrize("name", ["gsm8k", "gsm8k_cot", "gsm8k_cot_zeroshot", "mbpp", "humaneval"])
def test_prompts_and_stop_strings_are_lm_evals(tmp_path, name):
    ours = build_requests([name], str(data_dir()), N, "none")
    stock = _stock_requests(tmp_path, name)
    assert len(ours) == len(stock) == N
    for o, s in zip(ours, stock):
        ctx, kwargs = s.args
        assert o["doc_id"] == s.doc_id
        assert o["prompt"] == ctx                      # byte-identical, few-shot examples included
        assert o["until"] == list(kwargs["until"])
        assert o["messages"] is None


def test_expected_shapes_of_the_prompts():
    reqs = build_requests(["gsm8k", "mbpp", "humaneval"], str(data_dir()), 1, "none")
    by = {r["task"]: r for r in reqs}
    g = by["gsm8k"]["prompt"]
    assert g.count("Question:") == 6 and g.endswith("\nAnswer:")      # 5 shots + the question
    assert by["gsm8k"]["until"] == ["Question:", "</s>", "<|im_end|>"]
    m = by["mbpp"]["prompt"]
    assert m.count("[BEGIN]") == 4 and m.count("[DONE]") == 3 and m.endswith("[BEGIN]\n")
    assert "similar_elements" in m and by["mbpp"]["until"] == ["[DONE]"]
    assert by["humaneval"]["prompt"].startswith("from typing import List") and "\ndef" in by["humaneval"]["until"]


def test_single_turn_chat_is_one_user_message_like_lm_eval(tmp_path):
    ours = build_requests(["gsm8k"], str(data_dir()), N, "single-turn")
    stock = _stock_requests(tmp_path, "gsm8k", chat=True)
    for o, s in zip(ours, stock):
        assert o["prompt"] == "" and o["messages"] == json.loads(s.args[0])
        assert [m["role"] for m in o["messages"]] == ["user"]
        assert o["messages"][0]["content"].count("Question:") == 6


def test_multiturn_chat_makes_each_shot_a_turn():
    (r,) = build_requests(["gsm8k"], str(data_dir()), 1, "multiturn")
    assert [m["role"] for m in r["messages"]] == ["user", "assistant"] * 5 + ["user"]
