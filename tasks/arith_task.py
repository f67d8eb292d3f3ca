"""The `arith` task object: test problems from tasks/arith.py, exact match of the `#### N` answer."""
from __future__ import annotations

from .arith import TEST_POOL, extract_answer, test_problems
from .base import Doc, TaskProtocol


class ArithTask:
    name = "arith"
    protocol = TaskProtocol(gen_length=48, block_length=16, shots=0, chat="none")

    def __init__(self, data_seed: int = 0):
        self.data_seed = data_seed

    def docs(self, limit: int | None) -> list[Doc]:
        n = TEST_POOL if limit is None else limit
        return [Doc(p.doc_id, p.prompt, str(p.answer)) for p in test_problems(n, self.data_seed)]

    def score(self, doc: Doc, output: str) -> dict:
        got = extract_answer(output)
        return {"extracted": None if got is None else str(got), "correct": got is not None and str(got) == doc.target}
