"""Sandboxed execution of generated programs (MBPP / HumanEval pass@1).

Running model-written code is refused unless the caller says so (`--allow-code-exec`). Layers,
outermost first (docs/sandbox.md has the details and the attacks each one stops):

- the OS layer (tasks/sandbox_os.py), when the harness runs as root on Linux: each program in
  its own PID, mount, network, IPC and UTS namespaces, in a minimal read-only root (only /usr,
  /etc and the interpreter's prefix; fresh tmpfs on /tmp, /var/tmp, /dev/shm and the work dir; no
  project, no data), under a uid of its own per concurrently running program, every process of
  the namespace killed when it ends. Where that is impossible (not root, no `unshare`, no
  namespaces) the fallback is the older layer: `nobody` when root, session kill, the audit hook;
  `sandbox_info()` (recorded in run.json) then says `isolation: fallback` and why, and a warning
  is printed once;
- verdicts outside the program (tasks/sandbox_split.py): for a (candidate, test) pair only the
  candidate runs in the sandbox; a judge process runs the test and gets the candidate's results
  as plain data. A bare program string (or a test that does not parse alone) runs joined with the
  sentinel rule: a random sentinel printed after the last statement must reach the parent, so
  exiting early, swallowing the AssertionError or crashing fails - but a program written to
  attack the harness can find the sentinel in its own interpreter;
- limits: CPU seconds (RLIMIT_CPU, `--code-timeout`; CPU rather than wall time so verdicts do not
  depend on machine load), a wall clock of 3x that for the whole program, judge included; memory
  (RLIMIT_AS), file size, open files, processes, no core dumps; a clean environment;
- an audit hook in the program's interpreter (defence in depth: it can be defeated from inside,
  the layers above do not rely on it).

The parent reads output only through pipe ends it holds, bounded in bytes and time
(tasks/sandbox_pipes.py). Every ExecResult has a status: passed, failed, timeout, killed (a
signal other than the CPU limit) or error (the sandbox itself failed).
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import sandbox_os as sos
from .sandbox_process import Program as _Program, rlimits as _rlimits
from .sandbox_split import JUDGE, split_plan

NOBODY = sos.NOBODY
interpreter = sos.interpreter


class CodeExecutionNotAllowed(ValueError):
    """Raised when generated code would run without --allow-code-exec."""

    def __init__(self, what: str = "scoring this task"):
        super().__init__(f"{what} executes model-generated code; pass --allow-code-exec to run it in the "
                         f"sandbox (tasks/sandbox.py: namespaces, own uid, timeout, memory/process/file limits)")


DEFAULT_TIMEOUT_S = 3.0   # lm-eval's code_eval default (there: wall seconds)


@dataclass(frozen=True)
class SandboxConfig:
    timeout_s: float = DEFAULT_TIMEOUT_S   # CPU seconds per program (RLIMIT_CPU, rounded up to whole seconds)
    wall_timeout_s: float | None = None   # wall clock; None = 3 x timeout_s
    memory_mb: int = 2048         # RLIMIT_AS
    file_size_mb: int = 16        # RLIMIT_FSIZE, size of each tmpfs, and the bytes read from each pipe
    max_procs: int = 32           # RLIMIT_NPROC
    workers: int = 0              # parallel programs; 0 = os.cpu_count()
    drop_to_nobody: bool = True   # as root: run programs under another uid (a slot uid, or nobody in fallback)
    audit_hook: bool = True       # the in-process guard (tests switch it off to test the OS layer)
    isolation: str = "auto"       # auto | namespaces (required) | fallback (forced)

    def __post_init__(self):
        if self.timeout_s <= 0:
            raise ValueError(f"sandbox timeout_s={self.timeout_s} must be positive")
        if self.isolation not in ("auto", "namespaces", "fallback"):
            raise ValueError(f"sandbox isolation={self.isolation!r}: auto, namespaces or fallback")

    @property
    def wall_s(self) -> float:
        return self.wall_timeout_s if self.wall_timeout_s is not None else 3 * self.timeout_s


@dataclass(frozen=True)
class ExecResult:
    passed: bool
    status: str          # passed | failed | timeout (CPU or wall) | killed (by a signal) | error (sandbox failure)
    returncode: int | None
    seconds: float
    stderr_tail: str
    mode: str = "sentinel"    # split (judge outside the program) | sentinel (joined program)


def isolation_mode(cfg: SandboxConfig) -> tuple[str, str | None]:
    if cfg.isolation == "fallback":
        return "fallback", "forced by SandboxConfig(isolation='fallback')"
    mode, why = sos.isolation() if cfg.drop_to_nobody else ("fallback", "drop_to_nobody=False")
    if cfg.isolation == "namespaces" and mode != "namespaces":
        raise ValueError(f"the code sandbox cannot isolate programs with namespaces here: {why}")
    return mode, why


_WARNED: set = set()


def _warn_fallback(why: str) -> None:
    if why not in _WARNED:
        _WARNED.add(why)
        print(f"WARNING: code sandbox without OS isolation ({why}); programs run with rlimits, another uid "
              f"when root, and an in-process audit hook only", file=sys.stderr)


def _status(passed: bool, rc: int | None, timed_out: bool) -> str:
    if passed:
        return "passed"
    if timed_out or rc in (-signal.SIGXCPU, -signal.SIGKILL):
        return "timeout"
    return "killed" if rc is not None and rc < 0 else "failed"


def _run_sentinel(text: str, cfg: SandboxConfig, mode: str, slot: int, t0: float) -> ExecResult:
    sentinel = "PASSED-" + secrets.token_hex(16)
    s_r, s_w = os.pipe()
    try:
        prog = _Program(text, ["sentinel", str(s_r)], (s_r,), cfg, mode, slot)
    finally:
        os.close(s_r)
    try:
        os.write(s_w, (sentinel + "\n").encode())
    except OSError:
        pass
    os.close(s_w)
    finished = prog.pipes.pump(t0 + cfg.wall_s, stop=lambda: prog.proc.poll() is not None)
    rc = prog.finish()
    if mode == "namespaces" and prog.status_line.startswith("error"):
        return ExecResult(False, "error", None, time.monotonic() - t0, prog.status_line, "sentinel")
    ok = (finished and rc == 0 and "stdout" not in prog.pipes.overflow
          and prog.pipes.text("stdout").rstrip("\n").endswith(sentinel))
    return ExecResult(ok, _status(ok, rc, not finished), rc, time.monotonic() - t0, prog.pipes.text("stderr"),
                      "sentinel")


def _run_split(candidate: str, test: str, plan: dict, cfg: SandboxConfig, mode: str, slot: int,
               t0: float) -> ExecResult:
    max_bytes = cfg.file_size_mb * 2 ** 20
    req_r, req_w = os.pipe()     # judge -> program
    rep_r, rep_w = os.pipe()     # program -> judge
    try:
        prog = _Program(candidate, ["serve", str(req_r), str(rep_w), str(max_bytes)], (req_r, rep_w), cfg, mode, slot)
    except BaseException:
        for fd in (req_w, rep_r):
            os.close(fd)
        raise
    finally:
        os.close(req_r)
        os.close(rep_w)
    drop = cfg.drop_to_nobody and os.geteuid() == 0
    v_r, v_w = os.pipe()
    je_r, je_w = os.pipe()
    try:
        judge = subprocess.Popen([sos.interpreter(drop), "-I", "-B", "-c", JUDGE, str(req_w), str(rep_r)],
                                 cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"},
                                 stdin=subprocess.PIPE, stdout=v_w, stderr=je_w, pass_fds=(req_w, rep_r),
                                 preexec_fn=sos.preexec(_rlimits(cfg), sos.JUDGE_UID if drop else None, None))
    except BaseException:
        prog.finish(0)
        for fd in (v_r, je_r):
            os.close(fd)
        raise
    finally:
        for fd in (req_w, rep_r, v_w, je_w):
            os.close(fd)
    try:
        judge.stdin.write(json.dumps({"test": test, "max_bytes": max_bytes, **plan}).encode())
        judge.stdin.close()
    except OSError:
        pass
    pipes = prog.pipes
    pipes.add("verdict", v_r, 1 << 16)
    pipes.add("judge_stderr", je_r, 2000)
    done = pipes.pump(t0 + cfg.wall_s, stop=lambda: pipes.closed("verdict"))   # until the judge has spoken
    try:
        verdict = json.loads(pipes.text("verdict").strip().splitlines()[-1]) if done else {}
        passed = verdict.get("verdict") == "passed"
    except (ValueError, IndexError, AttributeError):
        verdict, passed = {}, False
    judge.kill()
    judge.wait()
    # the judge's end closed the request pipe: a serving program exits; one that died on its CPU
    # limit has its status arrive
    pipes.pump(min(t0 + cfg.wall_s, time.monotonic() + 0.5), stop=lambda: prog.proc.poll() is not None)
    rc = prog.finish()
    detail = verdict.get("detail", "") if isinstance(verdict, dict) else ""
    stderr = prog.pipes.text("stderr") + (f"\n[judge] {detail}" if detail else "")
    if mode == "namespaces" and prog.status_line.startswith("error"):
        return ExecResult(False, "error", None, time.monotonic() - t0, prog.status_line, "split")
    if done and not verdict:
        status = "timeout" if judge.returncode in (-signal.SIGXCPU, -signal.SIGKILL) else "error"
        return ExecResult(False, status, rc, time.monotonic() - t0,
                          stderr + "\n[judge] no verdict: " + pipes.text("judge_stderr"), "split")
    return ExecResult(passed, _status(passed, rc, not done), rc, time.monotonic() - t0, stderr, "split")


def run_program(program: str | tuple[str, str], cfg: SandboxConfig = SandboxConfig()) -> ExecResult:
    """Run one program: a string (run whole, sentinel rule) or a (candidate, test) pair (the test
    runs in a judge outside the sandbox when it can be split, else joined as code_eval does)."""
    mode, why = isolation_mode(cfg)
    if why and mode == "fallback" and cfg.isolation == "auto":
        _warn_fallback(why)
    t0 = time.monotonic()
    slot = sos.acquire_slot()
    try:
        if isinstance(program, tuple):
            candidate, test = program
            plan = split_plan(test)
            if plan is not None:
                return _run_split(candidate, test, plan, cfg, mode, slot, t0)
            program = candidate + "\n" + test
        return _run_sentinel(program, cfg, mode, slot, t0)
    finally:
        sos.release_slot(slot)


def sandbox_info(cfg: SandboxConfig = SandboxConfig()) -> dict:
    """What a result needs to say about how code was run (recorded in run.json at scoring)."""
    drop = cfg.drop_to_nobody and os.geteuid() == 0
    mode, why = isolation_mode(cfg)
    py = sos.interpreter(drop)
    try:
        version = subprocess.run([py, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                                 text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        version = None
    user = (f"uid {sos.SLOT_UID_BASE}+slot" if mode == "namespaces" else "nobody") if drop else f"uid {os.geteuid()}"
    info = {"python": py, "python_version": version, "user": user, "isolation": mode,
            "timeout_cpu_s": cfg.timeout_s, "timeout_wall_s": cfg.wall_s, "memory_mb": cfg.memory_mb,
            "file_size_mb": cfg.file_size_mb, "max_procs": cfg.max_procs, "audit_hook": cfg.audit_hook,
            "workers": cfg.workers or os.cpu_count(),
            "pass_rule": "judge process outside the sandbox runs the test on the candidate's plain-data results "
                         "(sentinel printed after the tests where a test cannot be split)"}
    if mode == "namespaces":
        info["namespaces"] = "pid,mount,net,ipc,uts (unshare); read-only /usr,/etc; private tmpfs /tmp,/dev/shm"
    else:
        info["isolation_warning"] = f"no OS isolation: {why}; rlimits, another uid when root and an audit hook only"
    return info


_CHECKED: set = set()


def self_check(cfg: SandboxConfig) -> None:
    """Run a correct and a wrong program once per configuration, both joined and split: a sandbox
    that cannot start programs would otherwise score every program as failing, silently."""
    if cfg in _CHECKED:
        return
    cand, test = "def f(x):\n    return x + 1\n", "assert f(1) == 2\n"
    try:
        results = [run_program(cand + test, cfg), run_program("assert 1 + 1 == 3\n", cfg),
                   run_program((cand, test), cfg), run_program((cand, "assert f(1) == 3\n"), cfg)]
        launcher_error = next((r.stderr_tail for r in results if r.status == "error"), None)
        if launcher_error and cfg.isolation == "auto" and isolation_mode(cfg)[0] == "namespaces":
            sos.disable(f"the namespace launcher failed here: {launcher_error.strip()[:300]}")
            return self_check(cfg)
    except (OSError, subprocess.SubprocessError) as e:
        raise ValueError(f"the code sandbox cannot start programs ({e}); check the interpreter "
                         f"($DLLM_SANDBOX_PYTHON) is executable by other users") from e
    if [r.passed for r in results] != [True, False, True, False]:
        raise ValueError("code sandbox self-check failed (correct, wrong, correct split, wrong split: "
                         f"{[r.status for r in results]}); stderr: "
                         f"{next((r.stderr_tail[-500:] for r in results if r.stderr_tail), '')}")
    _CHECKED.add(cfg)


def run_programs(programs: list, cfg: SandboxConfig = SandboxConfig(), allow: bool = False) -> list[ExecResult]:
    """Run many programs in parallel (up to the core count); order of results = order of programs.
    Each item is a program string or a (candidate, test) pair (see run_program)."""
    if not allow:
        raise CodeExecutionNotAllowed()
    self_check(cfg)
    workers = cfg.workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: run_program(p, cfg), programs))
