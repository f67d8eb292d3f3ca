"""The code sandbox: hostile programs are contained, scored as failing, and the harness goes on."""
import os
import time
from pathlib import Path

import pytest

from tasks.sandbox import CodeExecutionNotAllowed, SandboxConfig, run_program, run_programs

GOOD = "def add(a, b):\n    return a + b\nassert add(2, 3) == 5\n"
FAST = SandboxConfig(timeout_s=1.0)


def test_refuses_without_permission():
    with pytest.raises(CodeExecutionNotAllowed, match="--allow-code-exec"):
        run_programs([GOOD])


def test_correct_program_passes_and_wrong_one_fails():
    good, bad = run_programs([GOOD, GOOD.replace("a + b", "a * b")], FAST, allow=True)
    assert good.passed and good.status == "passed"
    assert not bad.passed and "AssertionError" in bad.stderr_tail


@pytest.fixture
def canary(tmp_path_factory):
    """A directory outside the sandbox whose contents must not change."""
    d = tmp_path_factory.mktemp("canary")
    os.chmod(d, 0o777)
    (d / "keep.txt").write_text("precious")
    os.chmod(d / "keep.txt", 0o666)
    return d


def _snapshot(d: Path):
    return sorted((p.name, p.read_bytes()) for p in d.iterdir())


HOSTILE = {
    "infinite_loop": "while True:\n    pass\n",
    "sleep": "import time\ntime.sleep(60)\n",
    "fork_bomb": "import os\nwhile True:\n    os.fork()\n",
    "alloc_50gb": "x = bytearray(50 * 2**30)\n",
    "alloc_list": "x = [0] * (50 * 2**30 // 8)\n",
    "write_outside": "open('{canary}/evil.txt', 'w').write('x')\n",
    "overwrite_outside": "open('{canary}/keep.txt', 'w').write('gone')\n",
    "delete_file": "import os\nos.remove('{canary}/keep.txt')\n",
    "rmtree": "import shutil\nshutil.rmtree('{canary}')\n",
    "rename_out": "import os\nos.rename('{canary}/keep.txt', 'stolen.txt')\n",
    "sys_exit_before_asserts": "import sys\nsys.exit(0)\n",
    "os_exit_before_asserts": "import os\nos._exit(0)\n",
    "raise_systemexit": "raise SystemExit(0)\n",
    "excepthook_swallows": "import sys, os\nsys.excepthook = lambda *a: os._exit(0)\n",
    "redefine_builtins": ("import builtins\nclass Fake(Exception): pass\nbuiltins.AssertionError = Fake\n"
                          "builtins.print = lambda *a, **k: None\nbuiltins.__import__ = None\n"),
    "print_gigabytes": "import sys\nwhile True:\n    sys.stdout.write('x' * 2**20)\n",
    "print_fake_pass": "print('PASSED-' + '0' * 32)\nimport os\nos._exit(0)\n",
    "segfault_ctypes": "import ctypes\nctypes.string_at(0)\n",
    "segfault_signal": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
    "read_env_secret": "import os\nassert os.environ.get('DLLM_TEST_SECRET') == 'hunter2'\n",
    "read_parent_environ": ("import os\nassert b'hunter2' in open(f'/proc/{os.getppid()}/environ', 'rb').read()\n"),
    "subprocess": "import subprocess\nsubprocess.run(['sh', '-c', 'touch {canary}/sub.txt'])\n",
    "os_system": "import os\nos.system('touch {canary}/sys.txt')\n",
    "socket": "import socket\nsocket.socket().connect(('127.0.0.1', 1))\n",
}


WRONG = "def add(a, b):\n    return a - b\nassert add(2, 3) == 5\n"
FAKERS = {"excepthook_swallows", "redefine_builtins"}


def test_hostile_programs_are_contained_and_fail(canary, monkeypatch):
    monkeypatch.setenv("DLLM_TEST_SECRET", "hunter2")
    before = _snapshot(canary)
    names = list(HOSTILE)
    # each hostile program is followed by an assert that would pass, as in MBPP (code, then tests)
    # Programs that try to fake a pass are followed by a failing assert; the others by passing ones
    # (so only containment, not the tests, can make them fail).
    progs = [HOSTILE[n].replace("{canary}", str(canary)) + "\n" + (WRONG if n in FAKERS else GOOD) for n in names]
    results = run_programs(progs + [GOOD], SandboxConfig(timeout_s=1.0), allow=True)
    failed = {n: r for n, r in zip(names, results) if r.passed}
    assert not failed, f"hostile programs counted as passing: {failed}"
    assert results[-1].passed, "the harness keeps going after hostile programs"
    assert _snapshot(canary) == before, "nothing outside the temp dir changes"
    by = dict(zip(names, results))
    assert by["infinite_loop"].status == "timeout" and by["sleep"].status == "timeout"
    assert by["sys_exit_before_asserts"].returncode == 0 and by["os_exit_before_asserts"].returncode == 0


def test_fork_bomb_contained_by_os_limits_without_the_audit_hook(canary):
    """The OS layer alone (RLIMIT_NPROC as nobody/user, process-group + session kill) contains a fork bomb."""
    prog = "import os, time\nfor _ in range(10000):\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.05)\n"
    r = run_program(prog + GOOD, SandboxConfig(timeout_s=1.0, wall_timeout_s=1.5, audit_hook=False))
    assert not r.passed
    time.sleep(0.2)
    leftovers = [d for d in os.listdir("/proc") if d.isdigit() and (_cmdline(d).startswith("dllm-sandbox")
                                                                   or _uid(d) >= 600_000)]
    assert not leftovers


def _uid(pid):
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return -1


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cwd").resolve().name
    except OSError:
        return ""


def test_files_in_the_temp_dir_are_fine_and_removed():
    prog = ("import os\nopen('out.txt', 'w').write('hi')\nos.mkdir('d')\nos.rename('out.txt', 'd/o.txt')\n"
            "assert open('d/o.txt').read() == 'hi'\n")
    r = run_program(prog, FAST)
    assert r.passed, r.stderr_tail


def test_runs_programs_in_parallel_up_to_the_worker_count(monkeypatch):
    import threading
    import tasks.sandbox as sb
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def fake_run(prog, cfg):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        return prog

    monkeypatch.setattr(sb, "run_program", fake_run)
    monkeypatch.setattr(sb, "self_check", lambda cfg: None)
    assert sb.run_programs([str(i) for i in range(9)], SandboxConfig(workers=3), allow=True) == [str(i) for i in range(9)]
    assert state["max"] == 3
    assert SandboxConfig().workers == 0     # 0 = os.cpu_count()


def test_a_sandbox_that_cannot_run_programs_is_an_error_not_silent_zeros(monkeypatch):
    monkeypatch.setenv("DLLM_SANDBOX_PYTHON", "/nonexistent/python3")
    with pytest.raises(ValueError, match="cannot start programs"):
        run_programs([GOOD], SandboxConfig(timeout_s=1.5), allow=True)
