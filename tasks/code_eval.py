"""A stand-in for Hugging Face `evaluate.load("code_eval")`, backed by tasks/sandbox.py.

lm-eval's mbpp and humaneval metrics call `evaluate.load("code_eval")` when their utils module is
imported, which downloads a script from the hub (impossible offline) and runs programs with
exec() in forked workers. We hand those modules this object instead, so their metric code runs
unchanged and only the executor differs: each (candidate, test) pair goes to the sandbox, which
runs the candidate there and the test in a judge outside it (tasks/sandbox_split.py); a test that
cannot be split runs as `candidate + "\\n" + test`, exactly as code_eval assembles it. Verdicts
are cached under that joined text.

Whether code may run is decided at call time (`allow_code_exec`), so tasks can be built and
prompts rendered without the flag; scoring then refuses with a clear error.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

from .sandbox import CodeExecutionNotAllowed, SandboxConfig, run_programs


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


@dataclass
class SandboxCodeEval:
    allow: bool = False
    config: SandboxConfig = field(default_factory=SandboxConfig)
    self_test: bool = False          # while lm-eval's utils module runs its import-time probe
    collect: list | None = None      # collecting mode: note programs, run nothing (see prefetch)
    cache: dict = field(default_factory=dict)   # program text -> ExecResult

    def compute(self, references, predictions, k=(1,), num_workers=None, timeout=None):
        if self.self_test:   # lm-eval probes code_eval at import; nothing is executed then
            return {f"pass@{kk}": 0.0 for kk in k}, {}
        pairs, owners = [], []
        for i, (cands, test) in enumerate(zip(predictions, references)):
            for cand in cands:
                pairs.append((cand, test))
                owners.append(i)
        if self.collect is not None:
            self.collect.extend(pairs)
            return {f"pass@{kk}": 0.0 for kk in k}, {}
        if not self.allow:
            raise CodeExecutionNotAllowed()
        self.run(pairs)
        results = [self.cache[program_text(*p)] for p in pairs]
        per_task: dict[int, list[bool]] = {}
        for i, r in zip(owners, results):
            per_task.setdefault(i, []).append(r.passed)
        scores = {}
        for kk in k:
            vals = [pass_at_k(len(v), sum(v), kk) for v in per_task.values() if len(v) >= kk]
            scores[f"pass@{kk}"] = sum(vals) / len(vals) if vals else 0.0
        details = {i: [(j, {"passed": r.passed, "result": r.status}) for j, r in enumerate(
            [res for o, res in zip(owners, results) if o == i])] for i in per_task}
        return scores, details

    def run(self, pairs: list[tuple[str, str]]) -> None:
        """Run the (candidate, test) pairs not cached yet, in parallel."""
        todo = list({program_text(*p): p for p in pairs if program_text(*p) not in self.cache}.items())
        results = run_programs([p for _, p in todo], self.config, allow=True)
        self.cache.update(zip([key for key, _ in todo], results))


def program_text(candidate: str, test: str) -> str:
    """What code_eval runs: the candidate, a newline, the test code."""
    return candidate + "\n" + test


CODE_EVAL = SandboxCodeEval()


@contextlib.contextmanager
def collecting():
    """lm-eval calls the metric once per document, one program at a time. To run programs in
    parallel, scoring makes a first pass in which compute() only notes the programs; they are
    then run all at once (prefetch) and the real pass finds every result in the cache."""
    CODE_EVAL.collect = []
    try:
        yield CODE_EVAL.collect
    finally:
        CODE_EVAL.collect = None


def prefetch(pairs: list[tuple[str, str]]) -> None:
    if not CODE_EVAL.allow:
        raise CodeExecutionNotAllowed()
    CODE_EVAL.run(pairs)


def configure(allow: bool, config: SandboxConfig | None = None) -> None:
    CODE_EVAL.allow = allow
    if config is not None and config != CODE_EVAL.config:
        CODE_EVAL.config = config
        CODE_EVAL.cache.clear()   # verdicts under other limits (a timeout may now pass)


@contextlib.contextmanager
def patched_evaluate_load():
    """While lm-eval imports a task's utils module, `evaluate.load("code_eval")` returns CODE_EVAL."""
    import evaluate
    real = evaluate.load

    def load(path, *args, **kwargs):
        if path == "code_eval":
            return CODE_EVAL
        return real(path, *args, **kwargs)

    evaluate.load = load
    CODE_EVAL.self_test = True
    try:
        yield
    finally:
        evaluate.load = real
        CODE_EVAL.self_test = False
