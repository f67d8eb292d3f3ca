import itertools
import re

import pytest

from tasks import load_task
from tasks import arith
from tasks.arith import TEST_POOL, extract_answer


def test_deterministic_and_held_out():
    assert arith.test_problems(50) == arith.test_problems(50)
    test_q = {p.question for p in arith.test_problems(TEST_POOL)}
    train_q = {p.question for p in itertools.islice(arith.train_problems(), 3000)}
    assert not test_q & train_q


def test_every_solution_is_correct_arithmetic_and_there_is_choice():
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}
    problems = arith.test_problems(300)
    assert sum(len(set(p.solutions)) >= 2 for p in problems) >= 0.95 * len(problems)
    for p in problems:
        for s in p.solutions:
            for a, op, b, c in re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)\.", s):
                assert ops[op](int(a), int(b)) == int(c)
            assert extract_answer(s) == p.answer >= 0


def test_scoring_exact_match():
    task = load_task("arith")
    doc = task.docs(1)[0]
    assert task.score(doc, f" 1 + 1 = 2. #### {doc.target}")["correct"]
    assert not task.score(doc, f" #### {int(doc.target) + 1}")["correct"]
    assert task.score(doc, "no answer") == {"extracted": None, "correct": False}


def test_limit_beyond_pool_is_a_clear_error():
    with pytest.raises(ValueError, match="--limit"):
        arith.test_problems(TEST_POOL + 1)
