"""Hostile programs against the OS layer and the split verdicts: each checked for its verdict and
for its side effects (files outside, processes left, loopback contacted, harness time and memory,
the next program's verdict)."""
import os
import resource
import socket
import time
from pathlib import Path

import pytest

from tasks import sandbox_os as sos
from tasks.sandbox import SandboxConfig, isolation_mode, run_program, run_programs, sandbox_info

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT.parent / "shared" / "data").resolve()
CFG = SandboxConfig(timeout_s=1.0)
NOHOOK = SandboxConfig(timeout_s=1.0, audit_hook=False)   # as if the program had turned the hook off
TEST = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
GOOD = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return 0\n"

namespaces = pytest.mark.skipif(sos.isolation()[0] != "namespaces",
                                reason=f"OS isolation unavailable here: {sos.isolation()[1]}")


def _slot_processes():
    """Processes of any sandbox slot uid (leftovers)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                uid = os.stat(f"/proc/{d}").st_uid
            except OSError:
                continue
            if sos.SLOT_UID_BASE <= uid < sos.SLOT_UID_BASE + 1000:
                out.append(d)
    return out


# ---- forged passes: the verdict is the judge's, outside the program -------------------------

FORGERS = {
    # walk every frame (and other threads') for a sentinel to print
    "frames": ("import sys, threading\nfor f in list(sys._current_frames().values()) + [sys._getframe()]:\n"
               "    while f:\n        for v in list(f.f_locals.values()) + list(f.f_globals.values()):\n"
               "            if isinstance(v, str) and v.startswith('PASSED-'):\n                print(v)\n"
               "        f = f.f_back\n"),
    # scan its own memory for the sentinel
    "proc_self_mem": ("import re\nmaps = open('/proc/self/maps').read().splitlines()\nmem = open('/proc/self/mem', 'rb')\n"
                      "for line in maps:\n    a, b = (int(x, 16) for x in line.split()[0].split('-'))\n"
                      "    if 'r' not in line.split()[1] or b - a > 2**26: continue\n    try:\n        mem.seek(a); chunk = mem.read(b - a)\n"
                      "    except (OSError, ValueError, OverflowError): continue\n"
                      "    for m in re.finditer(rb'PASSED-[0-9a-f]{32}', chunk): print(m.group().decode())\n"),
    # an object equal to everything, truthy, hashing like anything
    "always_equal": ("class Any:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
                     "    def __bool__(self): return True\n    __hash__ = object.__hash__\n"
                     "def add(a, b):\n    return Any()\n"),
    "int_subclass": "class I(int):\n    def __eq__(self, o): return True\ndef add(a, b):\n    return I(0)\n",
    # read the asserts from the working directory (and anything else it can find)
    "read_asserts": ("import os, re\nfound = []\nfor d in ['.', '/tmp', '/sandbox', '..', '/']:\n"
                     "    for n in os.listdir(d):\n        p = os.path.join(d, n)\n        try:\n"
                     "            found += re.findall(r'add\\(2, 3\\) == (\\d+)', open(p).read())\n"
                     "        except Exception: pass\n"
                     "def add(a, b):\n    return int(found[0]) if found else 0\n"),
    # forge protocol replies on every fd it can write to
    "forged_frames": ("import os, json, struct\nmsg = json.dumps(['ok', ['b', True]]).encode()\n"
                      "for fd in range(3, 64):\n    try:\n        os.write(fd, struct.pack('>Q', len(msg)) + msg)\n"
                      "    except OSError: pass\ndef add(a, b):\n    return 0\n"),
    "exit_early": "import os\nos._exit(0)\n",
    "raise_systemexit_in_call": "def add(a, b):\n    raise SystemExit(0)\n",
    "huge_result": "def add(a, b):\n    return 'x' * (40 * 2**20)\n",
    "deep_result": "def add(a, b):\n    x = []\n    for _ in range(100000): x = [x]\n    return x\n",
}


def test_forged_passes_fail_and_the_next_program_passes():
    names = list(FORGERS)
    rs = run_programs([(FORGERS[n], TEST) for n in names] + [(GOOD, TEST)], CFG, allow=True)
    assert {n: r.status for n, r in zip(names, rs) if r.passed} == {}
    assert all(r.mode == "split" for r in rs)
    assert rs[-1].passed and rs[-1].status == "passed"
    by = dict(zip(names, rs))
    assert "cannot be compared" in by["always_equal"].stderr_tail
    assert by["huge_result"].status == "failed" and by["deep_result"].status == "failed"


@namespaces
def test_project_data_and_host_are_invisible():
    cand = ("import os\ndef seen(paths):\n    return [p for p in paths if os.path.exists(p)]\n"
            "def whoami():\n    return [os.getuid(), os.getgid(), os.getgroups(), sorted(os.listdir('/proc'))]\n")
    paths = [str(DATA), str(DATA / "mbpp" / "mbpp_test.jsonl"), str(ROOT), "/root", "/home", "/work", "/var/log"]
    test = f"assert seen({paths!r}) == []\nu = whoami()\nassert u[0] >= 600000 and u[2] == []\n"
    test += "assert [p for p in u[3] if p.isdigit()] == ['2']\n"   # only itself: PID 1 is hidden
    r = run_program((cand, test), CFG)
    assert r.passed, r.stderr_tail


# ---- the OS layer without the audit hook: processes, network, files ----------------------------

@namespaces
def test_escapes_without_the_audit_hook_leave_nothing_behind(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    tag = f"dllm-hostile-{os.getpid()}"
    cand = (
        "import os, socket, _posixsubprocess, time\n"
        f"for d in ('/tmp', '/var/tmp', '/dev/shm'):\n    open(d + '/{tag}', 'w').write('x')\n"
        f"os.mkfifo('/tmp/{tag}.fifo')\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=0.5)\nexcept OSError:\n    pass\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        time.sleep(1.5)\n        open('{tmp_path}/late.txt', 'w').write('x')\n"
        "    os._exit(0)\n"
        "r, w = os.pipe()\n"
        "_posixsubprocess.fork_exec([b'/bin/sleep', b'30'], [b'/bin/sleep'], True, (w,), None, None, -1, -1, -1, -1,"
        " -1, -1, r, w, True, True, -1, None, None, -1, -1, None, False)\n"
        "def add(a, b):\n    return a + b\n")
    r = run_program((cand, TEST), NOHOOK)
    assert r.passed, r.stderr_tail      # a correct candidate: its escapes do not change its verdict
    time.sleep(2.0)
    assert _slot_processes() == []
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not os.path.exists(f"{d}/{tag}") and not os.path.exists(f"{d}/{tag}.fifo")
    assert not (tmp_path / "late.txt").exists()
    with pytest.raises(socket.timeout):
        listener.accept()
    listener.close()


@namespaces
def test_a_leftover_cannot_touch_the_next_program():
    """A daemon left by one program tries to rewrite every later program's file into a passing one."""
    evil = ("import os, glob, time\n"
            "if os.fork() == 0:\n    os.setsid()\n    end = time.time() + 4\n    while time.time() < end:\n"
            "        for p in glob.glob('/tmp/*/prog.py') + glob.glob('/sandbox/prog.py') + glob.glob('/proc/*/cwd/prog.py'):\n"
            "            try:\n                open(p, 'w').write('def add(a, b):\\n    return a + b\\n')\n"
            "            except OSError: pass\n        time.sleep(0.01)\n    os._exit(0)\n"
            "def add(a, b):\n    return a + b\n")
    cfg = SandboxConfig(timeout_s=1.0, audit_hook=False, workers=1)
    rs = run_programs([(evil, TEST), (WRONG, TEST), (WRONG, TEST)], cfg, allow=True)
    assert [r.status for r in rs] == ["passed", "failed", "failed"]
    assert _slot_processes() == []


@namespaces
def test_a_program_cannot_kill_a_parallel_one():
    killer = ("import os, signal, time\nend = time.time() + 2\nwhile time.time() < end:\n"
              "    for pid in range(2, 4000):\n        try: os.kill(pid, signal.SIGKILL)\n        except OSError: pass\n"
              "    try: os.kill(-1, signal.SIGKILL)\n    except OSError: pass\n"
              "def add(a, b):\n    return 0\n")
    slow_good = "import time\ntime.sleep(1.0)\ndef add(a, b):\n    return a + b\n"
    cfg = SandboxConfig(timeout_s=3.0, audit_hook=False, workers=2)
    rs = run_programs([(killer, TEST), (slow_good, TEST)], cfg, allow=True)
    assert rs[0].status in ("failed", "timeout") and rs[1].status == "passed", [r.status for r in rs]


@namespaces
def test_leftovers_do_not_accumulate_past_the_process_limit():
    spawner = ("import os, time\nfor _ in range(20):\n    if os.fork() == 0:\n        time.sleep(60)\n        os._exit(0)\n"
               "def add(a, b):\n    return a + b\n")
    cfg = SandboxConfig(timeout_s=1.0, audit_hook=False, max_procs=32, workers=1)
    rs = run_programs([(spawner, TEST)] * 3, cfg, allow=True)
    assert [r.status for r in rs] == ["passed"] * 3     # the third could still fork 20 processes
    assert _slot_processes() == []


# ---- the harness cannot be hung or blown up ---------------------------------------------------------

@pytest.mark.parametrize("split", [True, False])
def test_files_named_like_outputs_are_never_opened(tmp_path, split):
    secret = tmp_path / "root-only"
    secret.write_text("TOPSECRET")
    os.chmod(secret, 0o600)
    prog = ("import os\nos.mkfifo('.stdout')\nos.symlink('/dev/zero', '.stderr')\n"
            f"os.symlink('{secret}', '.secret')\nos.symlink('{secret}', 'stderr')\n"
            "def add(a, b):\n    return 0\n")
    t0 = time.monotonic()
    r = run_program((prog, TEST) if split else prog + TEST, NOHOOK)
    assert not r.passed and time.monotonic() - t0 < 5
    assert "TOPSECRET" not in r.stderr_tail and len(r.stderr_tail) < 10_000


def test_output_floods_are_bounded_in_memory_and_time():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    progs = ["import sys\nwhile True:\n    sys.stdout.write('x' * 2**20)\n",
             "import sys\nwhile True:\n    sys.stderr.write('y' * 2**20)\n"]
    t0 = time.monotonic()
    rs = run_programs([(p + GOOD, TEST) for p in progs] + [p + GOOD + TEST for p in progs], CFG, allow=True)
    assert not any(r.passed for r in rs)
    assert time.monotonic() - t0 < 4 * CFG.wall_s
    assert all(len(r.stderr_tail) < 10_000 for r in rs)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024   # KiB


def test_hangs_end_at_the_wall_clock():
    hangs = {"sleep_in_call": "import time\ndef add(a, b):\n    time.sleep(60)\n",
             "sleep_at_load": "import time\ntime.sleep(60)\n" + GOOD,
             "close_stdout_and_sleep": "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(60)\n" + GOOD}
    cfg = SandboxConfig(timeout_s=1.0, wall_timeout_s=1.5, audit_hook=False)
    t0 = time.monotonic()
    rs = run_programs([(p, TEST) for p in hangs.values()], cfg, allow=True)
    assert [r.status for r in rs] == ["timeout"] * 3
    assert time.monotonic() - t0 < 2 * (cfg.wall_s + 1.5)


# ---- honest programs keep their verdicts under the split ------------------------------------------

HONEST = [
    # the program's own class, passed back to it (MBPP's Pair)
    ("class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
     "def longest(ps):\n    return max(p.b - p.a for p in ps)\n",
     "assert longest([Pair(1, 5), Pair(2, 3)]) == 4\n"),
    # a function named like a builtin, the only free name of the test
    ("def sum(a, b):\n    return a + b\n", "assert sum(10, 15) == 25\n"),
    # the test relies on the candidate's `import math`
    ("import math\ndef area(r):\n    return math.pi * r * r\n", "assert math.isclose(area(1), 3.14159, rel_tol=1e-3)\n"),
    # generators, sets, dicts, tuples, nan, bytes, None, expected exceptions
    ("def gen(n):\n    return (i * i for i in range(n))\ndef s():\n    return {1, 2}, {'a': (1, 2)}, float('nan'), b'x', None\n"
     "def neg(x):\n    if x < 0:\n        raise ValueError('neg')\n    return x\n",
     "assert list(gen(3)) == [0, 1, 4]\na, d, n, b, z = s()\nassert a == {1, 2} and d == {'a': (1, 2)} and n != n\n"
     "assert b == b'x' and z is None\ntry:\n    neg(-1)\n    assert False\nexcept ValueError:\n    pass\n"),
    # HumanEval style: check(candidate) with loops and a helper from the prompt
    ("def helper(x):\n    return x * 2\ndef double(x):\n    return helper(x)\n",
     "def check(candidate):\n    for i in range(50):\n        assert candidate(i) == helper(i) == 2 * i\n\ncheck(double)\n"),
]


def test_honest_programs_pass_split_and_joined():
    rs = run_programs([p for p in HONEST] + [c + "\n" + t for c, t in HONEST], CFG, allow=True)
    assert [r.status for r in rs] == ["passed"] * len(rs), [r.stderr_tail for r in rs if not r.passed]
    assert [r.mode for r in rs] == ["split"] * len(HONEST) + ["sentinel"] * len(HONEST)


def test_a_test_that_does_not_parse_alone_runs_joined():
    r = run_program(("def add(a, b):\n    return a + b\nif True:", "\n    assert add(1, 1) == 2\n"), CFG)
    assert r.passed and r.mode == "sentinel"


# ---- isolation is recorded; the fallback is never silent ------------------------------------------

def test_isolation_recorded_and_fallback_warned(monkeypatch, capsys):
    info = sandbox_info(CFG)
    assert info["isolation"] == sos.isolation()[0]
    forced = SandboxConfig(timeout_s=1.0, isolation="fallback")
    finfo = sandbox_info(forced)
    assert finfo["isolation"] == "fallback" and "no OS isolation" in finfo["isolation_warning"]
    assert run_program((GOOD, TEST), forced).passed and not run_program((WRONG, TEST), forced).passed
    monkeypatch.setattr(sos, "isolation", lambda: ("fallback", "a test says so"))
    assert isolation_mode(CFG) == ("fallback", "a test says so")
    assert "a test says so" in sandbox_info(CFG)["isolation_warning"]
    run_program(GOOD + TEST, CFG)
    assert "WARNING: code sandbox without OS isolation (a test says so)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cannot isolate"):
        isolation_mode(SandboxConfig(isolation="namespaces"))


# ---- the wire: the judge decodes plain data only ------------------------------------------------

def test_wire_decodes_plain_data_only():
    from tasks.sandbox_wire import WireError, decode, encode
    handles = []
    v = [1, -7, 10 ** 5000, 2.5, "s", b"b", None, True, (1, 2), {3}, frozenset([4]), {"k": [5]}, 10 ** 30, complex(1, 2), range(3)]
    assert decode(encode(v, handles), lambda i: ("H", i)) == v and handles == []
    assert decode(encode(iter([1, 2]), handles), None).__next__() == 1
    obj = object()
    assert decode(encode([obj], handles), lambda i: ("H", i)) == [("H", 0)] and handles == [obj]
    for bad in [["pickle", "..."], ["i", 5], ["S", [["l", []]]], ["d", [[["l", []], ["N"]]]], ["f"], "x", [],
                ["b", "yes"], ["i", "12"], ["i", "0xzz"], ["h", "0"]]:
        with pytest.raises(WireError):
            decode(bad, lambda i: i)


@namespaces
def test_a_launcher_that_fails_here_falls_back_with_a_warning(monkeypatch, capsys):
    import tasks.sandbox as sb
    monkeypatch.setattr(sos, "LAUNCHER", "import marshal, os, sys\ncfg = marshal.loads(sys.stdin.buffer.read())\n"
                                         "os.write(cfg['status_fd'], b'error mount: refused by a test\\n')\n")
    monkeypatch.setitem(sos._probe, "result", sos.isolation())
    monkeypatch.setattr(sb, "_CHECKED", set())
    cfg = SandboxConfig(timeout_s=1.5)
    assert [r.status for r in run_programs([(GOOD, TEST), (WRONG, TEST)], cfg, allow=True)] == ["passed", "failed"]
    info = sandbox_info(cfg)
    assert info["isolation"] == "fallback" and "refused by a test" in info["isolation_warning"]
    assert "refused by a test" in capsys.readouterr().err


@namespaces
def test_calls_the_audit_hook_never_sees_are_contained_with_the_hook_on():
    """mknod, a dir_fd write, a subinterpreter (which has no audit hook) writing, fork_exec."""
    tag = f"dllm-unaudited-{os.getpid()}"
    cand = (
        "import os, stat, _xxsubinterpreters as si\n"
        f"fd = os.open('/tmp', os.O_RDONLY)\nos.close(os.open('{tag}', os.O_WRONLY | os.O_CREAT, dir_fd=fd))\n"
        "try:\n    os.mknod('/sandbox/dev', stat.S_IFCHR | 0o600, os.makedev(1, 3))\n    mknod = True\n"
        "except OSError:\n    mknod = False\n"
        "sub = si.create()\n"
        f"si.run_string(sub, \"open('/dev/shm/{tag}', 'w').write('x')\")\n"
        "import _posixsubprocess\nr, w = os.pipe()\n"
        "_posixsubprocess.fork_exec([b'/bin/sleep', b'30'], [b'/bin/sleep'], True, (w,), None, None, -1, -1, -1, -1,"
        " -1, -1, r, w, True, True, -1, None, None, -1, -1, None, False)\n"
        "def probe():\n    return [mknod, os.path.exists('/tmp/' + " + repr(tag) + "), os.path.exists('/dev/shm/' + " + repr(tag) + ")]\n")
    r = run_program((cand, "assert probe() == [False, True, True]\n"), CFG)
    assert r.passed, r.stderr_tail       # it did write, in its private tmpfs, and could not mknod
    assert not os.path.exists(f"/tmp/{tag}") and not os.path.exists(f"/dev/shm/{tag}")
    assert _slot_processes() == []


def test_every_verdict_has_a_status():
    progs = {"passed": (GOOD, TEST), "failed": (WRONG, TEST),
             "killed": ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n" + GOOD, TEST),
             "timeout": ("def add(a, b):\n    while True: pass\n", TEST)}
    rs = run_programs(list(progs.values()), SandboxConfig(timeout_s=1.0, audit_hook=False), allow=True)
    assert [r.status for r in rs] == list(progs)
