"""Sandboxed execution of generated programs (MBPP / HumanEval pass@1).

Running model-written code is refused unless the caller says so (`--allow-code-exec`). Each
program runs in its own fresh Python process, one process group and session, with:

- a timeout of 3 s (default) of CPU time (RLIMIT_CPU: the soft limit sends SIGXCPU, the hard
  limit one second later SIGKILL), and a wall-clock limit of 3x that for programs that sleep or
  block. CPU time rather than wall time is the primary limit so that a verdict does not depend
  on how loaded the machine is (a reference MBPP solution needing 1.6 s alone took over 3 s of
  wall time with 2 parallel workers on a busy 2-core machine). At the end the whole process
  group, and every process left in the child's session, is killed with SIGKILL;
- resource limits set before exec: CPU seconds, address space (memory), file size (so printing
  gigabytes stops at the limit), number of processes, no core dumps;
- a fresh temporary working directory (removed afterwards) and a clean environment: only PATH,
  LANG, HOME=<tmp dir> and PYTHONHASHSEED; nothing of the parent's environment (tokens, keys)
  is inherited; `python -I` so PYTHON* variables and the user site are ignored;
- an audit hook (installed before the program runs; Python offers no way to remove one) that
  refuses process creation (fork, exec, system, subprocess, posix_spawn, kill), ctypes, sockets,
  writes, deletes, renames and mode changes outside the temp dir, reading other processes'
  /proc entries, and GC introspection;
- when the harness runs as root (containers, CI), the child drops to user `nobody` (uid/gid
  65534, no supplementary groups) before exec: root ignores RLIMIT_NPROC and may write anywhere,
  `nobody` does neither. As an ordinary user, RLIMIT_NPROC counts *all* of that user's processes,
  so the limit is set to (the user's current process count + max_procs).

A program passes only if its asserts ran to the end: the wrapper prints a random per-run sentinel
after the program's last statement, and the parent checks for it. Exit status 0 alone never
counts, so `sys.exit(0)` / `os._exit(0)` before the asserts, an `excepthook` that swallows the
AssertionError, or a crash all score as failing.

Limits of this design (documented, not hidden): the program runs in the same interpreter as the
wrapper, so code written to attack this harness (walking stack frames up to the wrapper to read
the sentinel, or a C extension that bypasses the audit hook) could fake a pass or do what the
hook forbids; frame access stays allowed because namedtuple, enum and warnings need it. The
sentinel defends against programs that stop early, not against ones that target the harness; under a non-root user the OS layer is only rlimits + process group,
so the audit hook is what keeps files outside the temp dir safe. Run untrusted code as root (it
drops to nobody) or in a container for stronger isolation.
"""
from __future__ import annotations

import math
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534


class CodeExecutionNotAllowed(ValueError):
    """Raised when generated code would run without --allow-code-exec."""

    def __init__(self, what: str = "scoring this task"):
        super().__init__(f"{what} executes model-generated code; pass --allow-code-exec to run it in the "
                         f"sandbox (tasks/sandbox.py: subprocess, timeout, memory/process/file limits)")


DEFAULT_TIMEOUT_S = 3.0   # lm-eval's code_eval default (there: wall seconds)


@dataclass(frozen=True)
class SandboxConfig:
    timeout_s: float = DEFAULT_TIMEOUT_S   # CPU seconds per program (RLIMIT_CPU, rounded up to whole seconds)
    wall_timeout_s: float | None = None   # wall clock; None = 3 x timeout_s
    memory_mb: int = 2048         # RLIMIT_AS
    file_size_mb: int = 16        # RLIMIT_FSIZE: any single file, stdout/stderr included
    max_procs: int = 32           # RLIMIT_NPROC (see module doc for how it is counted)
    workers: int = 0              # parallel programs; 0 = os.cpu_count()
    drop_to_nobody: bool = True   # when running as root
    audit_hook: bool = True       # the in-process guard (tests switch it off to test the OS layer)

    def __post_init__(self):
        if self.timeout_s <= 0:
            raise ValueError(f"sandbox timeout_s={self.timeout_s} must be positive")

    @property
    def wall_s(self) -> float:
        return self.wall_timeout_s if self.wall_timeout_s is not None else 3 * self.timeout_s


@dataclass(frozen=True)
class ExecResult:
    passed: bool
    status: str          # passed | failed (ran, no sentinel) | timeout (CPU or wall) | killed (by a signal)
    returncode: int | None
    seconds: float
    stderr_tail: str


# The wrapper runs in the child (python -I -c WRAPPER). Everything it needs is a local of _main,
# so the program cannot reach the sentinel through module globals.
WRAPPER = r'''
def _main():
    import os, sys
    write, fsdecode, realpath, sep = os.write, os.fsdecode, os.path.realpath, os.sep
    sentinel = sys.stdin.readline().strip()
    fd = os.open(os.devnull, os.O_RDONLY); os.dup2(fd, 0); os.close(fd)
    root = realpath(os.getcwd())
    with open("prog.py", encoding="utf-8") as f:
        src = f.read()
    if AUDIT:
        deny = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.kill",
                "os.killpg", "subprocess.Popen", "pty.spawn", "resource.setrlimit", "resource.prlimit",
                "gc.get_objects", "gc.get_referrers", "gc.get_referents", "os.setuid", "os.chroot",
                "os.startfile", "mmap.__new__", "os.setsid", "os.setpgid"}
        paths = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.rename": 2, "os.chmod": 1, "os.chown": 1,
                 "os.link": 2, "os.symlink": 2, "os.truncate": 1, "os.utime": 1, "shutil.rmtree": 1,
                 "os.chflags": 1, "os.lchflags": 1, "os.setxattr": 1, "os.removexattr": 1, "os.mkfifo": 1,
                 "os.mknod": 1}
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

        def inside(p):
            if isinstance(p, int):
                return True   # an fd already open
            p = realpath(fsdecode(p))
            return p == root or p.startswith(root + sep)

        def hook(event, args):
            if event in deny or event.startswith(("ctypes.", "socket.", "winreg.", "_winapi.")):
                raise PermissionError(f"sandbox: {event} is not allowed")
            if event == "open":
                path, mode, flags = args
                if isinstance(path, int):
                    return
                p = fsdecode(path)
                rp = realpath(p)
                if rp.startswith("/proc/") and not (rp.startswith(f"/proc/{os.getpid()}/") or rp == f"/proc/{os.getpid()}"):
                    if rp.split("/")[2].isdigit():
                        raise PermissionError(f"sandbox: reading {p} is not allowed")
                w = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & writes)
                if w and not inside(p):
                    raise PermissionError(f"sandbox: writing {p} outside the work dir is not allowed")
            elif event in paths:
                for p in args[:paths[event]]:
                    if p is not None and not inside(p):
                        raise PermissionError(f"sandbox: {event} on {p!r} outside the work dir is not allowed")

        sys.addaudithook(hook)
    code = compile(src, "prog.py", "exec")
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    write(1, ("\n" + sentinel + "\n").encode())

_main()
'''


def _preexec(cfg: SandboxConfig, run_as_nobody: bool, nproc: int):
    def fn():
        os.setsid()                                  # own session and process group
        mem = cfg.memory_mb * 2 ** 20
        cpu = max(1, math.ceil(cfg.timeout_s))
        fsize = cfg.file_size_mb * 2 ** 20
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_DATA, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        if run_as_nobody:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    return fn


def _world_executable(path: str) -> bool:
    p = Path(path)
    try:
        if not (p.is_file() and p.stat().st_mode & 0o001):
            return False
        return all(d.stat().st_mode & 0o001 for d in p.parents)
    except OSError:
        return False


def interpreter(run_as_nobody: bool) -> str:
    """The Python that runs programs: $DLLM_SANDBOX_PYTHON, else this one; as `nobody`, the first of
    this interpreter and the system python3 that `nobody` can execute."""
    if os.environ.get("DLLM_SANDBOX_PYTHON"):
        return os.environ["DLLM_SANDBOX_PYTHON"]
    if not run_as_nobody:
        return sys.executable
    base = getattr(sys, "_base_executable", sys.executable)
    for c in (sys.executable, os.path.realpath(sys.executable), base, os.path.realpath(base),
              shutil.which("python3") or "", "/usr/bin/python3", "/usr/local/bin/python3"):
        if c and _world_executable(os.path.realpath(c)):
            return c
    raise FileNotFoundError("the sandbox runs programs as user nobody (the harness runs as root) but no Python "
                            "interpreter is executable by nobody; install python3 under /usr/bin or set "
                            "DLLM_SANDBOX_PYTHON to one")


def _user_process_count(uid: int) -> int:
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


def _kill_session(sid: int) -> None:
    """SIGKILL the process group and every process still in the child's session (a process
    can leave its group with setpgid, but not the session without setsid, which the hook forbids)."""
    try:
        os.killpg(sid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for _ in range(3):
        found = False
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                if int(fields[3]) == sid:  # session id
                    found = True
                    os.kill(int(d), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
        if not found:
            return
        time.sleep(0.01)


def run_program(program: str, cfg: SandboxConfig = SandboxConfig()) -> ExecResult:
    """Run one program (candidate code followed by its tests) in the sandbox."""
    run_as_nobody = cfg.drop_to_nobody and os.geteuid() == 0
    if run_as_nobody:
        nproc = cfg.max_procs + _user_process_count(NOBODY)
    else:
        nproc = cfg.max_procs + _user_process_count(os.geteuid())
    work = Path(tempfile.mkdtemp(prefix="dllm-sandbox-"))
    sentinel = "PASSED-" + secrets.token_hex(16)
    t0 = time.perf_counter()
    try:
        (work / "prog.py").write_text(program, encoding="utf-8")
        if run_as_nobody:
            os.chown(work, NOBODY, NOBODY)
            os.chown(work / "prog.py", NOBODY, NOBODY)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(work), "PYTHONHASHSEED": "0",
               "PYTHONIOENCODING": "utf-8"}
        wrapper = WRAPPER.replace("AUDIT", "True" if cfg.audit_hook else "False")
        with open(work / ".stdout", "wb") as out, open(work / ".stderr", "wb") as err:
            proc = subprocess.Popen([interpreter(run_as_nobody), "-I", "-B", "-c", wrapper], cwd=work, env=env,
                                    stdin=subprocess.PIPE, stdout=out, stderr=err, close_fds=True,
                                    preexec_fn=_preexec(cfg, run_as_nobody, nproc))
            try:
                proc.stdin.write((sentinel + "\n").encode())
                proc.stdin.close()
            except OSError:
                pass
            status = None
            try:
                proc.wait(timeout=cfg.wall_s)
            except subprocess.TimeoutExpired:
                status = "timeout"
            finally:
                _kill_session(proc.pid)
                proc.wait()
        seconds = time.perf_counter() - t0
        stdout = _tail(work / ".stdout", 4096)
        stderr = _tail(work / ".stderr", 2000)
        ok = status is None and proc.returncode == 0 and stdout.rstrip("\n").endswith(sentinel)
        if status is None:
            if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
                status = "timeout"     # the CPU limit (or its hard stop) ended it
            else:
                status = "passed" if ok else ("killed" if proc.returncode < 0 else "failed")
        return ExecResult(passed=ok, status=status, returncode=proc.returncode, seconds=seconds,
                          stderr_tail=stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _tail(path: Path, n: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def sandbox_info(cfg: SandboxConfig = SandboxConfig()) -> dict:
    """What a result needs to say about how code was run (recorded in run.json at scoring)."""
    nobody = cfg.drop_to_nobody and os.geteuid() == 0
    py = interpreter(nobody)
    try:
        version = subprocess.run([py, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                                 text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        version = None
    return {"python": py, "python_version": version, "user": "nobody" if nobody else f"uid {os.geteuid()}",
            "timeout_cpu_s": cfg.timeout_s, "timeout_wall_s": cfg.wall_s, "memory_mb": cfg.memory_mb,
            "file_size_mb": cfg.file_size_mb, "max_procs": cfg.max_procs, "audit_hook": cfg.audit_hook,
            "workers": cfg.workers or os.cpu_count(), "pass_rule": "random sentinel printed after the tests"}


_CHECKED: set = set()


def self_check(cfg: SandboxConfig) -> None:
    """Run a correct and a wrong program once per configuration: a sandbox that cannot start
    programs (an interpreter or temp dir `nobody` cannot reach, a uid the container does not map)
    would otherwise score every program as failing, silently."""
    if cfg in _CHECKED:
        return
    try:
        good = run_program("def f(x):\n    return x + 1\nassert f(1) == 2\n", cfg)
        bad = run_program("assert 1 + 1 == 3\n", cfg)
    except (OSError, subprocess.SubprocessError) as e:
        raise ValueError(f"the code sandbox cannot start programs ({e}); as root it runs them as user nobody "
                         f"from {tempfile.gettempdir()}: check that nobody can reach that directory and the "
                         f"interpreter ($DLLM_SANDBOX_PYTHON)") from e
    if not good.passed or bad.passed:
        raise ValueError(f"code sandbox self-check failed (a correct program: {good.status}, a wrong one: "
                         f"{bad.status}); stderr: {good.stderr_tail[-500:] or bad.stderr_tail[-500:]}")
    _CHECKED.add(cfg)


def run_programs(programs: list[str], cfg: SandboxConfig = SandboxConfig(), allow: bool = False) -> list[ExecResult]:
    """Run many programs in parallel (up to the core count); order of results = order of programs."""
    if not allow:
        raise CodeExecutionNotAllowed()
    self_check(cfg)
    workers = cfg.workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: run_program(p, cfg), programs))
