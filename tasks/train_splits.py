"""Training splits for learned decoders (PRR's controller): problems that are never scored.

- `arith`: the built-in task's endless train stream (disjoint from its test pool); round r reads
  shard r, the held-out problems shard 1000.
- `gsm8k`: `gsm8k/train.jsonl` of a data directory (the ../shared/data layout, 7473 problems).
- `mbpp`: `mbpp/mbpp_train.jsonl` (task ids 601-974, 374 problems); the few-shot examples are
  lm-eval's (tasks 2, 3, 4 of `mbpp/mbpp_prompt.jsonl`).

Prompts are lm-eval's text for the task (`Question: ...\\nAnswer:` for GSM8K, the `[BEGIN]` prompt
for MBPP), after `shots` solved examples written as lm-eval writes few-shot examples. GSM8K's
shots are the first `shots` problems of the train file and are never trained on. The remaining
problems are shuffled with `data_seed`; the held-out problems are the first `heldout` of them and
round r takes the next slice of `per_round`, so no problem is used twice. Correctness is lm-eval's
rule: GSM8K's strict match (`#### N`, commas, `$` and a final `.` ignored), MBPP's three asserts
run in the sandbox (tasks/sandbox.py; only with allow_code_exec).
"""
from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import arith

HELDOUT_SHARD = 1000
TRAIN_TASKS = ("arith", "gsm8k", "mbpp")
GSM8K_STOPS = ("Question:", "</s>", "<|im_end|>")
MBPP_FEWSHOT_IDS = (2, 3, 4)
_GSM8K_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")


@dataclass(frozen=True)
class TrainDoc:
    doc_id: int | str
    prompt: str
    target: str                       # GSM8K/arith: the final answer; MBPP: the test asserts
    until: tuple[str, ...] = ()


def cut_at_stops(text: str, until) -> str:
    for s in until:
        i = text.find(s)
        if i >= 0:
            text = text[:i]
    return text


def gsm8k_normalize(text: str) -> str:
    """lm-eval gsm8k's exact_match: ignore case, commas, `$`, everything up to `#### `, a final `.`."""
    for pattern in (",", r"\$", r"(?s).*#### ", r"\.$"):
        text = re.sub(pattern, "", text)
    return text.strip().lower()


def gsm8k_correct(output: str, answer: str) -> bool:
    m = _GSM8K_STRICT.search(output)
    return m is not None and gsm8k_normalize(m.group(1)) == gsm8k_normalize(answer)


@dataclass
class TrainSplit:
    task: str
    pool: list[TrainDoc]              # shuffled; empty for arith (an endless stream)
    source: str                       # recorded with the controller
    executes_code: bool = False
    code_timeout: float = 3.0
    shot_ids: list = field(default_factory=list)
    data_seed: int = 0

    def heldout(self, n: int) -> list[TrainDoc]:
        if self.task == "arith":
            return [_arith_doc(p) for p in itertools.islice(arith.train_problems(self.data_seed, shard=HELDOUT_SHARD), n)]
        return self.pool[:n]

    def round_docs(self, r: int, per_round: int, heldout: int) -> list[TrainDoc]:
        if self.task == "arith":
            return [_arith_doc(p) for p in itertools.islice(arith.train_problems(self.data_seed, shard=r), per_round)]
        lo = heldout + r * per_round
        return self.pool[lo:lo + per_round]

    def check_size(self, rounds: int, per_round: int, heldout: int) -> None:
        if self.task == "arith":
            return
        need = heldout + rounds * per_round
        if need > len(self.pool):
            raise ValueError(f"{self.task}: {self.source} leaves {len(self.pool)} problems to train and hold out; "
                             f"--heldout-problems {heldout} + --rounds {rounds} x --train-problems {per_round} = "
                             f"{need}: lower them so that they fit")

    def describe(self, rounds: int, per_round: int, heldout: int) -> tuple[str, str]:
        """(train split, held-out) as recorded with the controller."""
        if self.task == "arith":
            return (f"arith train stream, data_seed {self.data_seed}, shard r for round r",
                    f"arith train stream shard {HELDOUT_SHARD}, first {heldout}")
        shots = f"; few-shot examples: doc ids {self.shot_ids}" if self.shot_ids else ""
        return (f"{self.source}, shuffled with data_seed {self.data_seed}: round r = problems "
                f"{heldout} + r*{per_round} ... of the shuffled order{shots}",
                f"{self.source}, the first {heldout} of the shuffled order")

    def correct(self, doc: TrainDoc, output: str) -> bool:
        text = cut_at_stops(output, doc.until)
        if self.task == "arith":
            return arith.extract_answer(text) == int(doc.target)
        if self.task == "gsm8k":
            return gsm8k_correct(text, doc.target)
        from .sandbox import SandboxConfig, run_program
        return run_program(text + "\n" + doc.target, SandboxConfig(timeout_s=self.code_timeout)).passed



def _arith_doc(p) -> TrainDoc:
    return TrainDoc(p.doc_id, p.prompt, str(p.answer))


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _need(data_dir, rel: str, task: str) -> Path:
    if data_dir is None:
        raise ValueError(f"--task {task} reads its train split from local data: pass --data-dir DIR "
                         f"(the ../shared/data layout, with {rel})")
    f = Path(data_dir) / rel
    if not f.is_file():
        raise FileNotFoundError(f"--data-dir {data_dir}: {task}'s train split needs {f}")
    return f


def _gsm8k(data_dir, shots: int, seed: int) -> TrainSplit:
    f = _need(data_dir, "gsm8k/train.jsonl", "gsm8k")
    rows = _read_jsonl(f)
    prefix = "".join(f"Question: {d['question']}\nAnswer: {d['answer']}\n\n" for d in rows[:shots])
    docs = [TrainDoc(i, prefix + f"Question: {d['question']}\nAnswer:", d["answer"].split("####")[-1].strip(),
                     GSM8K_STOPS) for i, d in enumerate(rows) if i >= shots]
    return _split("gsm8k", docs, f"{f} ({len(rows)} problems)", seed, shot_ids=list(range(shots)))


def _mbpp_text(d: dict) -> str:
    return (f"You are an expert Python programmer, and here is your task: {d['text']} Your code should pass "
            f"these tests:\n\n{d['test_list'][0]}\n{d['test_list'][1]}\n{d['test_list'][2]}\n[BEGIN]\n")


def _mbpp(data_dir, shots: int, seed: int, allow_code_exec: bool, code_timeout: float) -> TrainSplit:
    if not allow_code_exec:
        from .sandbox import CodeExecutionNotAllowed
        raise CodeExecutionNotAllowed("scoring mbpp rollouts")
    f = _need(data_dir, "mbpp/mbpp_train.jsonl", "mbpp")
    if shots > len(MBPP_FEWSHOT_IDS):
        raise ValueError(f"--shots {shots}: mbpp has {len(MBPP_FEWSHOT_IDS)} few-shot examples (lm-eval's)")
    prefix = ""
    if shots:
        by_id = {d["task_id"]: d for d in _read_jsonl(_need(data_dir, "mbpp/mbpp_prompt.jsonl", "mbpp"))}
        prefix = "".join(_mbpp_text(by_id[i]) + by_id[i]["code"] + "\n[DONE]\n\n" for i in MBPP_FEWSHOT_IDS[:shots])
    rows = _read_jsonl(f)
    docs = [TrainDoc(d["task_id"], prefix + _mbpp_text(d), "\n".join(d["test_list"]), ("[DONE]",)) for d in rows]
    return _split("mbpp", docs, f"{f} ({len(rows)} problems)", seed, executes_code=True,
                  code_timeout=code_timeout, shot_ids=list(MBPP_FEWSHOT_IDS[:shots]))


def _split(task, docs, source, seed, **kw) -> TrainSplit:
    random.Random(seed).shuffle(docs)
    return TrainSplit(task, docs, source, data_seed=seed, **kw)


DEFAULT_SHOTS = {"arith": 0, "gsm8k": 5, "mbpp": 3}   # lm-eval's num_fewshot for the scored task


def load_train_split(task: str, data_dir=None, shots: int | None = None, data_seed: int = 0,
                     allow_code_exec: bool = False, code_timeout: float = 3.0) -> TrainSplit:
    if task not in TRAIN_TASKS:
        raise ValueError(f"--task {task!r} has no train split here; choose one of {', '.join(TRAIN_TASKS)}")
    shots = DEFAULT_SHOTS[task] if shots is None else shots
    if shots < 0:
        raise ValueError(f"--shots {shots} must be >= 0")
    if task == "arith":
        if shots:
            raise ValueError("--shots: the arith task is zero-shot (its prompts are what the built-in model was trained on)")
        return TrainSplit("arith", [], "arith train stream", data_seed=data_seed)
    if task == "gsm8k":
        return _gsm8k(data_dir, shots, data_seed)
    return _mbpp(data_dir, shots, data_seed, allow_code_exec, code_timeout)
