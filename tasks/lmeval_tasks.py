"""GSM8K, GSM8K-CoT (8-shot and zero-shot), MBPP and HumanEval as lm-eval defines them.

The task objects are lm-eval's own: its YAML files (shipped inside the installed `lm_eval`
package) are loaded by lm-eval's loader and built into `ConfigurableTask`s, so prompts, few-shot
examples, stop strings, filters and metrics are lm-eval's, byte for byte. Only two things differ:

- the data source, when `data_dir` is given (the `../shared/data/` layout: gsm8k/train.jsonl and
  test.jsonl, mbpp/mbpp_test.jsonl, humaneval/HumanEval.jsonl.gz): `dataset_path: json` with
  `data_files`, the documented offline route of lm-eval; without it, the hub datasets of the YAML;
- the code executor (tasks/code_eval.py): lm-eval's metric code calls our sandbox where it would
  call Hugging Face's `code_eval`.

MBPP task 367 (test index 356) needs its `test_setup_code`, which lm-eval's mbpp never runs: its
reference solution fails there, so the oracle scores 499/500, the ceiling on lm-eval too.

lm-eval is imported lazily (only to build or score); the decode stage never imports it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .base import TaskProtocol


def _gsm8k_final(doc: dict) -> str:
    return doc["answer"].split("####")[-1].strip()


def _cot_oracle(doc: dict) -> str:
    """The gold worked answer rewritten in the CoT exemplars' style ("... The answer is N.")."""
    work = doc["answer"].split("####")[0].strip().replace("\n", " ")
    return f" {work} The answer is {_gsm8k_final(doc)}."


@dataclass(frozen=True)
class LMEvalTaskDef:
    name: str
    yaml: str                          # path inside lm_eval/tasks/
    data_files: dict[str, str]         # split -> file under data_dir
    primary: str                       # "metric,filter" key of lm-eval's results: our `accuracy`
    protocol: TaskProtocol
    oracle: Callable[[dict], str]      # the gold completion (the `oracle` pseudo-model's output)
    executes_code: bool = False


# Generation lengths follow the Fast-dLLM / LLaDA evaluation (gen 256, block 32); lm-eval's own
# max_gen_toks is not used by a diffusion decoder, whose canvas length is the protocol's gen_length.
LMEVAL_TASKS: dict[str, LMEvalTaskDef] = {
    "gsm8k": LMEvalTaskDef(
        "gsm8k", "gsm8k/gsm8k.yaml", {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
        "exact_match,strict-match", TaskProtocol(gen_length=256, block_length=32, shots=5),
        oracle=lambda doc: " " + doc["answer"]),
    "gsm8k_cot": LMEvalTaskDef(
        "gsm8k_cot", "gsm8k/gsm8k-cot.yaml", {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
        "exact_match,strict-match", TaskProtocol(gen_length=256, block_length=32, shots=8),
        oracle=_cot_oracle),
    "gsm8k_cot_zeroshot": LMEvalTaskDef(
        "gsm8k_cot_zeroshot", "gsm8k/gsm8k-cot-zeroshot.yaml", {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
        "exact_match,strict-match", TaskProtocol(gen_length=256, block_length=32, shots=0),
        oracle=_cot_oracle),
    "mbpp": LMEvalTaskDef(
        "mbpp", "mbpp/mbpp.yaml", {"test": "mbpp/mbpp_test.jsonl"},
        "pass_at_1,none", TaskProtocol(gen_length=256, block_length=32, shots=3),
        oracle=lambda doc: doc["code"], executes_code=True),
    "humaneval": LMEvalTaskDef(
        "humaneval", "humaneval/humaneval.yaml", {"test": "humaneval/HumanEval.jsonl.gz"},
        "pass@1,create_test", TaskProtocol(gen_length=256, block_length=32, shots=0),
        oracle=lambda doc: doc["canonical_solution"], executes_code=True),
}


def lm_eval_tasks_dir() -> Path:
    try:
        import lm_eval.tasks
    except ImportError as e:
        raise ValueError("GSM8K/MBPP/HumanEval need lm-eval for building requests and scoring: "
                         "pip install lm-eval (the decode stage alone does not)") from e
    return Path(lm_eval.tasks.__file__).parent


def task_config(name: str, data_dir: str | Path | None = None) -> dict:
    """lm-eval's YAML config of the task, with the data source pointed at `data_dir` if given."""
    from lm_eval.tasks._yaml_loader import load_yaml
    from .code_eval import patched_evaluate_load
    d = LMEVAL_TASKS[name]
    with patched_evaluate_load():
        cfg = load_yaml(lm_eval_tasks_dir() / d.yaml, resolve_func=True)
    for k in ("tag", "group"):
        cfg.pop(k, None)
    if data_dir is not None:
        files = {}
        for split, rel in d.data_files.items():
            f = Path(data_dir) / rel
            if not f.exists():
                raise FileNotFoundError(f"--data-dir {data_dir}: {name} needs {f} (the ../shared/data layout: "
                                        f"{', '.join(d.data_files.values())})")
            files[split] = str(f.resolve())
        cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": files})
    return cfg


def build_task(name: str, data_dir: str | Path | None = None):
    """lm-eval's ConfigurableTask for `name`."""
    if name not in LMEVAL_TASKS:
        raise ValueError(f"unknown lm-eval task {name!r}; available: {', '.join(sorted(LMEVAL_TASKS))}")
    if data_dir is not None:
        set_offline()
    from lm_eval.api.task import ConfigurableTask
    cfg = task_config(name, data_dir)
    try:
        return ConfigurableTask(config=cfg)
    except ConnectionError as e:   # the hub is unreachable (or HF_HUB_OFFLINE=1 without a cache)
        raise ValueError(f"{name}: could not load {cfg.get('dataset_path')} from the Hugging Face hub ({e}); "
                         f"pass --data-dir DIR with local data (the ../shared/data layout) to run offline") from e


def write_local_task_dir(data_dir: str | Path, dest: str | Path) -> Path:
    """Copies of lm-eval's YAMLs (and their helper modules) with the data source pointed at
    `data_dir`, for lm-eval's own CLI: `--include_path dest` makes them replace the stock tasks."""
    import yaml
    dest = Path(dest)
    for name, d in LMEVAL_TASKS.items():
        src = lm_eval_tasks_dir() / d.yaml
        sub = dest / name
        sub.mkdir(parents=True, exist_ok=True)
        for f in src.parent.glob("*.py"):
            (sub / f.name).write_bytes(f.read_bytes())
        files = {}
        for split, rel in d.data_files.items():
            f = Path(data_dir) / rel
            if not f.exists():
                raise FileNotFoundError(f"--data-dir {data_dir}: {name} needs {f}")
            files[split] = str(f.resolve())
        # appended keys override the YAML's own (the last of duplicate keys wins when loaded)
        override = yaml.safe_dump({"dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": files}})
        (sub / src.name).write_text(src.read_text() + "\n" + override)
    return dest


def set_offline() -> None:
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_EVALUATE_OFFLINE"):
        os.environ[k] = "1"
    try:  # datasets reads the variable at import; make an already-imported copy agree
        import datasets.config
        datasets.config.HF_HUB_OFFLINE = True
        datasets.config.HF_DATASETS_OFFLINE = True
    except (ImportError, AttributeError):
        pass
