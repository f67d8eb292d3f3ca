"""The built-in task: synthetic multi-step arithmetic word problems.

Problems are generated deterministically from a seed. Every worked answer ends with ``#### N``
and is scored by exact match of N. The worked answers contain genuine choice: commutative steps
can be done in several orders and operands written either way round, and the training data uses
all of them uniformly. The model's confidence is therefore well below 1 at the start of a step,
which is what separates decoding methods on this task.

Splits: ``test`` is a fixed stream (``test:<data_seed>``); ``train`` is a separate stream
(``train:<data_seed>``) from which every question that also occurs in the first
``TEST_POOL`` test problems is dropped, so the built-in model never trains on a test question.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Iterator

NAMES = [("Tom", "he"), ("Anna", "she"), ("Ben", "he"), ("Lena", "she"), ("Sam", "he"),
         ("Mia", "she"), ("Max", "he"), ("Zoe", "she"), ("Leo", "he"), ("Ava", "she"),
         ("Jack", "he"), ("Emma", "she"), ("Noah", "he"), ("Lily", "she"), ("Finn", "he"),
         ("Ruby", "she")]
ITEMS = ["apples", "pens", "cards", "coins", "books", "shells", "stamps", "eggs", "marbles",
         "stickers", "cookies", "beads", "rocks", "toys", "flowers", "candies"]
TEST_POOL = 5000  # test problems reserved against training overlap (limit is capped by this)
ANSWER_RE = re.compile(r"####\s*(-?\d+)")


@dataclass(frozen=True)
class Problem:
    doc_id: int
    question: str
    solutions: tuple[str, ...]  # every valid worked answer; the first is the reference
    answer: int

    @property
    def prompt(self) -> str:
        return format_prompt(self.question)


def format_prompt(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def _step(x: int, op: str, y: int, z: int) -> str:
    return f"{x} {op} {y} = {z}."


def _finish(steps: list[str], answer: int) -> str:
    return " " + " ".join(steps) + f" #### {answer}"


def _gather(rng: random.Random) -> tuple[str, list[str], int]:
    (name, he), item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randint(2, 60), rng.randint(2, 40), rng.randint(2, 40)
    d = rng.randint(1, a + b + c - 1)
    q = (f"{name} has {a} {item}. {he.capitalize()} buys {b} more and finds {c} more. "
         f"Then {he} gives {d} to a friend. How many {item} does {name} have now?")
    sols = []
    for x, y, z in ((a, b, c), (a, c, b), (b, a, c), (b, c, a), (c, a, b), (c, b, a)):
        s1, s2 = x + y, x + y + z
        sols.append(_finish([_step(x, "+", y, s1), _step(s1, "+", z, s2), _step(s2, "-", d, s2 - d)],
                            s2 - d))
    return q, sols, a + b + c - d


def _groups(rng: random.Random) -> tuple[str, list[str], int]:
    (name, he), item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randint(2, 9), rng.randint(2, 12), rng.randint(1, 50)
    q = (f"{name} buys {a} bags of {item}. Each bag has {b} {item}. {he.capitalize()} also has "
         f"{c} {item}. How many {item} does {name} have in total?")
    p = a * b
    sols = [_finish([_step(x, "*", y, p), _step(u, "+", v, p + c)], p + c)
            for x, y in ((a, b), (b, a)) for u, v in ((p, c), (c, p))]
    return q, sols, p + c


def _pair(rng: random.Random) -> tuple[str, list[str], int]:
    (n1, _), (n2, _) = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    a, b, c = rng.randint(2, 50), rng.randint(10, 60), rng.randint(2, 30)
    d = rng.randint(1, b - 1)
    q = (f"{n1} has {a} {item} and {n2} has {b} {item}. {n1} gets {c} more and {n2} loses {d}. "
         f"How many {item} do they have together?")
    x, y = a + c, b - d
    first = [_step(a, "+", c, x), _step(c, "+", a, x)]
    second = [_step(b, "-", d, y)]
    sols = []
    for f in first:
        for order in ((f, second[0]), (second[0], f)):
            for u, v in ((x, y), (y, x)):
                sols.append(_finish([*order, _step(u, "+", v, x + y)], x + y))
    return q, sols, x + y


def _share(rng: random.Random) -> tuple[str, list[str], int]:
    (name, he), item = rng.choice(NAMES), rng.choice(ITEMS)
    k, r = rng.randint(2, 9), rng.randint(2, 15)
    total = k * r
    a = rng.randint(1, total - 1)
    b = total - a
    q = (f"{name} has {a} {item} and buys {b} more. {he.capitalize()} shares them equally among "
         f"{k} friends. How many {item} does each friend get?")
    sols = [_finish([_step(x, "+", y, total), _step(total, "/", k, r)], r) for x, y in ((a, b), (b, a))]
    return q, sols, r


TEMPLATES = (_gather, _groups, _pair, _share)


def _problem(rng: random.Random, doc_id: int) -> Problem:
    q, sols, ans = rng.choice(TEMPLATES)(rng)
    return Problem(doc_id, q, tuple(sols), ans)


def test_problems(n: int, data_seed: int = 0) -> list[Problem]:
    if n > TEST_POOL:
        raise ValueError(f"arith has {TEST_POOL} test problems; asked for {n}. Use --limit <= {TEST_POOL}.")
    rng = random.Random(f"test:{data_seed}")
    return [_problem(rng, i) for i in range(n)]


def train_problems(data_seed: int = 0, shard: int = 0) -> Iterator[Problem]:
    """Endless training stream (one of many independent shards), disjoint from the test pool."""
    held_out = {p.question for p in test_problems(TEST_POOL, data_seed)}
    rng = random.Random(f"train:{data_seed}:{shard}")
    i = 0
    while True:
        p = _problem(rng, i)
        if p.question not in held_out:
            yield p
            i += 1


def extract_answer(text: str) -> int | None:
    m = ANSWER_RE.search(text)
    return int(m.group(1)) if m else None
