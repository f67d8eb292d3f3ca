"""The OS layer of the code sandbox: Linux namespaces, a minimal read-only root, a uid per slot.

Each program runs under `unshare --pid --fork --mount --net --ipc --uts --kill-child` (util-linux,
present on every Debian/Ubuntu system; bubblewrap would need an extra package and offers nothing
needed here that a root harness cannot do itself). Inside, LAUNCHER runs as the namespace's PID 1
(root, before any program code):

- builds a new root on a tmpfs: /usr and /etc (and the interpreter's own prefix when it lives
  elsewhere) bind-mounted read-only, nosuid, nodev; /bin, /lib... recreated as the symlinks they
  are; a fresh /proc of the new PID namespace (hidepid=2: the program sees only its own
  processes); /dev with null, zero, full, random, urandom only; fresh size-limited tmpfs on /tmp,
  /var/tmp, /dev/shm and the work dir /sandbox (the program's only writable places besides
  those). Nothing else of the host exists there: not the project, not its data, not /root, /home;
- no network interface but a down loopback (own network namespace), own IPC and UTS namespaces;
- forks the program, which drops to the slot's own uid/gid (setgroups([]), setresgid, setresuid:
  all capabilities are gone), sets no_new_privs and its rlimits, and execs the interpreter;
- waits for it, reports its exit status on a pipe only the harness holds, and exits: the kernel
  then kills every process left in the PID namespace. If the harness kills `unshare`
  (timeout), --kill-child kills PID 1 and so the whole namespace.

Each concurrently running program gets its own uid (SLOT_UID_BASE + slot), so RLIMIT_NPROC
counts only its own processes and no program can signal, ptrace or write to another's.

Where this cannot work (not root, no `unshare`, namespaces refused by the container), `isolation()`
says why and the caller falls back to the in-process layer (tasks/sandbox.py), with a warning
recorded in run.json.
"""
from __future__ import annotations

import atexit
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SLOT_UID_BASE = 600_000       # uid/gid of slot k = SLOT_UID_BASE + k (no passwd entry needed)
JUDGE_UID = SLOT_UID_BASE - 1  # the judge processes (tasks/sandbox_split.py)
NOBODY = 65534
UNSHARE_FLAGS = ["--pid", "--fork", "--mount", "--net", "--ipc", "--uts", "--kill-child", "--propagation", "private"]

_lock = threading.Lock()
_busy: set[int] = set()
_probe: dict = {}


def acquire_slot() -> int:
    with _lock:
        k = 0
        while k in _busy:
            k += 1
        _busy.add(k)
        return k


def release_slot(k: int) -> None:
    with _lock:
        _busy.discard(k)


def isolation() -> tuple[str, str | None]:
    """("namespaces", None) when the OS layer works here, else ("fallback", why)."""
    if "result" in _probe:
        return _probe["result"]
    why = None
    unshare = shutil.which("unshare") or ("/usr/bin/unshare" if os.path.exists("/usr/bin/unshare") else None)
    if os.geteuid() != 0:
        why = "the harness does not run as root (namespaces, mounts and per-program uids need root)"
    elif not sys.platform.startswith("linux"):
        why = f"not Linux ({sys.platform})"
    elif unshare is None:
        why = "`unshare` (util-linux) is not installed"
    else:
        try:
            r = subprocess.run([unshare, *UNSHARE_FLAGS, "--mount-proc", "true"], capture_output=True, timeout=20)
            if r.returncode != 0:
                why = f"`unshare` failed here: {r.stderr.decode(errors='replace').strip()[:300]}"
        except (OSError, subprocess.SubprocessError) as e:
            why = f"`unshare` could not run: {e}"
    _probe["result"] = ("fallback", why) if why else ("namespaces", None)
    _probe["unshare"] = unshare
    return _probe["result"]


def disable(why: str) -> None:
    """The namespaces started but the launcher failed (a container refusing some mount): fall back."""
    _probe["result"] = ("fallback", why)


def unshare_cmd() -> list[str]:
    isolation()
    return [_probe["unshare"], *UNSHARE_FLAGS]


def root_mountpoint() -> str:
    """An empty root-only directory on which each namespace mounts its own tmpfs root."""
    if "root" not in _probe:
        _probe["root"] = tempfile.mkdtemp(prefix="dllm-sandbox-root-")
        os.chmod(_probe["root"], 0o700)
        atexit.register(shutil.rmtree, _probe["root"], True)
    return _probe["root"]


def system_binds(python: str) -> list[str]:
    """Host directories shown read-only in the sandbox: /usr, /etc, and the interpreter's prefix
    (and a venv's base prefix) when it lives outside /usr."""
    binds = ["/usr", "/etc"]
    for p in (python, os.path.realpath(python)):
        prefix = str(Path(p).parent.parent)
        cfg = Path(prefix) / "pyvenv.cfg"
        if cfg.exists():
            for line in cfg.read_text().splitlines():
                if line.partition("=")[0].strip() == "home":
                    binds.append(str(Path(line.partition("=")[2].strip()).parent))
        binds.append(prefix)
    out = []
    for b in binds:
        b = os.path.realpath(b) if not os.path.islink(b) else b
        if b != "/" and not any(b == o or b.startswith(o + "/") for o in out) and os.path.isdir(b):
            out = [o for o in out if not o.startswith(b + "/")] + [b]
    return out


# PID 1 of the namespace (root): config on stdin (marshal: the harness's own data, and no import
# cost), the child's exit status on STATUS_FD.
LAUNCHER = r'''
import ctypes, marshal, os, resource, sys
cfg = marshal.loads(sys.stdin.buffer.read())
status_fd = cfg["status_fd"]
os.set_inheritable(status_fd, False)
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096

def mount(src, dst, fstype, flags, data=None):
    if libc.mount(src.encode() if src else None, dst.encode(), fstype.encode() if fstype else None,
                  flags, data.encode() if data else None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {src} on {dst}: {os.strerror(e)}")

def fail(msg):
    os.write(status_fd, f"error {msg}\n".encode())
    os._exit(125)

try:
    root, uid, mb = cfg["root"], cfg["uid"], cfg["tmpfs_mb"]
    mount("none", "/", None, 1 << 18 | 1 << 14)     # MS_PRIVATE | MS_REC: nothing propagates out
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            os.symlink(os.readlink(top), root + top)
    for src in cfg["binds"]:
        os.makedirs(root + src, exist_ok=True)
        mount(src, root + src, None, MS_BIND)
        mount(None, root + src, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for d, mode in (("/tmp", "1777"), ("/var/tmp", "1777"), ("/sandbox", "700"), ("/proc", None), ("/dev", None)):
        os.makedirs(root + d, exist_ok=True)
        if mode:
            mount("tmpfs", root + d, "tmpfs", MS_NOSUID | MS_NODEV, f"size={mb}m,mode={mode}")
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    for dev in ("null", "zero", "full", "random", "urandom"):
        open(root + "/dev/" + dev, "w").close()
        mount("/dev/" + dev, root + "/dev/" + dev, None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, root + "/dev/" + name)
    os.makedirs(root + "/dev/shm")
    mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"size={mb}m,mode=1777")
    with open(root + "/sandbox/prog.py", "w", encoding="utf-8") as f:
        f.write(cfg["program"])
    os.chown(root + "/sandbox", uid, uid)
    os.chown(root + "/sandbox/prog.py", uid, uid)
    mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chroot(root)
    os.chdir("/sandbox")
except OSError as e:
    fail(e)

pid = os.fork()
if pid == 0:
    try:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        libc.prctl(38, 1, 0, 0, 0)                   # PR_SET_NO_NEW_PRIVS
        for name, v in cfg["rlimits"].items():
            resource.setrlimit(getattr(resource, name), (v[0], v[1]))
        os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])
    except BaseException as e:
        os.write(2, f"sandbox launcher: {e}\n".encode())
    os._exit(126)
while True:                                          # reap orphans until the program itself ends
    try:
        p, st = os.waitpid(-1, 0)
    except ChildProcessError:
        break
    if p == pid:
        break
code = f"signal {os.WTERMSIG(st)}" if os.WIFSIGNALED(st) else f"exit {os.waitstatus_to_exitcode(st)}"
os.write(status_fd, (code + "\n").encode())
os._exit(0)
'''


# ---- shared with the fallback layer --------------------------------------------------------

def _world_executable(path: str) -> bool:
    p = Path(path)
    try:
        if not (p.is_file() and p.stat().st_mode & 0o001):
            return False
        return all(d.stat().st_mode & 0o001 for d in p.parents)
    except OSError:
        return False


def interpreter(drop: bool) -> str:
    """The Python that runs programs (and judges): $DLLM_SANDBOX_PYTHON, else this one; when the
    harness is root, the first of this interpreter and the system python3 that any uid can execute."""
    if os.environ.get("DLLM_SANDBOX_PYTHON"):
        return os.environ["DLLM_SANDBOX_PYTHON"]
    if not drop:
        return sys.executable
    base = getattr(sys, "_base_executable", sys.executable)
    for c in (sys.executable, os.path.realpath(sys.executable), base, os.path.realpath(base),
              shutil.which("python3") or "", "/usr/bin/python3", "/usr/local/bin/python3"):
        if c and _world_executable(os.path.realpath(c)):
            return c
    raise FileNotFoundError("the sandbox runs programs under their own uid (the harness runs as root) but no "
                            "Python interpreter is executable by other users; install python3 under /usr/bin or "
                            "set DLLM_SANDBOX_PYTHON to one")


def user_process_count(uid: int) -> int:
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


def wait_uid_gone(uid: int, seconds: float) -> bool:
    """Wait until no process of `uid` is left (a killed namespace is torn down asynchronously)."""
    end = time.monotonic() + seconds
    while user_process_count(uid):
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def kill_session(sid: int) -> None:
    """Fallback layer: SIGKILL the process group and every process still in the child's session."""
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
                if int(stat[stat.rindex(")") + 2:].split()[3]) == sid:
                    found = True
                    os.kill(int(d), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
        if not found:
            return
        time.sleep(0.01)


def preexec(rlimits: dict, uid: int | None, nproc: int | None):
    """Fallback layer (and the judge): own session, rlimits, and the uid to run as (None: keep)."""
    def fn():
        os.setsid()
        for name, v in rlimits.items():
            resource.setrlimit(getattr(resource, name), tuple(v))
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        if nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    return fn
