"""One sandboxed program process and the pipe ends the harness holds (see tasks/sandbox.py).

With namespaces, the process is `unshare ... python LAUNCHER` (tasks/sandbox_os.py), which gets
the program text, argv, environment and rlimits as JSON on stdin and reports the program's exit
status on its own pipe. In the fallback, the interpreter runs directly from a temp dir, as
`nobody` when the harness is root, in its own session. Either way the program's stdout and stderr
are pipes read through tasks/sandbox_pipes.py.
"""
from __future__ import annotations

import marshal
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

from . import sandbox_os as sos
from .sandbox_pipes import Pipes
from .sandbox_wrapper import PRELUDE

NOBODY = sos.NOBODY


def rlimits(cfg) -> dict:
    mem, fsize, cpu = cfg.memory_mb * 2 ** 20, cfg.file_size_mb * 2 ** 20, max(1, math.ceil(cfg.timeout_s))
    return {"RLIMIT_AS": (mem, mem), "RLIMIT_DATA": (mem, mem), "RLIMIT_CPU": (cpu, cpu + 1),
            "RLIMIT_FSIZE": (fsize, fsize), "RLIMIT_CORE": (0, 0), "RLIMIT_NOFILE": (64, 64)}


class Program:
    """One program process (namespaced launcher or fallback child) and the pipes the parent holds."""

    def __init__(self, text: str, wrapper_args: list[str], fds: tuple, cfg, mode: str, slot: int):
        self.mode, self.work, self.status_line = mode, None, ""
        drop = cfg.drop_to_nobody and os.geteuid() == 0
        py = sos.interpreter(drop)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8"}
        wrapper = PRELUDE.replace("AUDIT", "True" if cfg.audit_hook else "False")
        argv = [py, "-I", "-B", "-c", wrapper, *wrapper_args]
        rl = rlimits(cfg)
        read = {"stdout": out_r, "stderr": err_r}
        try:
            if mode == "namespaces":
                st_r, st_w = os.pipe()
                read["status"] = st_r
                self.uid = sos.SLOT_UID_BASE + slot
                launch = {"root": sos.root_mountpoint(), "uid": self.uid, "tmpfs_mb": cfg.file_size_mb * 4,
                          "binds": sos.system_binds(py), "program": text, "argv": argv,
                          "env": {**env, "HOME": "/sandbox"}, "status_fd": st_w,
                          "rlimits": {**rl, "RLIMIT_NPROC": (cfg.max_procs, cfg.max_procs)}}
                try:
                    self.proc = subprocess.Popen([*sos.unshare_cmd(), sys.executable, "-I", "-S", "-c", sos.LAUNCHER],
                                                 stdin=subprocess.PIPE, stdout=out_w, stderr=err_w,
                                                 pass_fds=(st_w, *fds), start_new_session=True)
                finally:
                    os.close(st_w)
                try:
                    self.proc.stdin.write(marshal.dumps(launch))
                    self.proc.stdin.close()
                except OSError:
                    pass
            else:
                self.uid = NOBODY if drop else os.geteuid()
                nproc = cfg.max_procs + sos.user_process_count(self.uid)
                self.work = tempfile.mkdtemp(prefix="dllm-sandbox-")
                with open(os.path.join(self.work, "prog.py"), "w", encoding="utf-8") as f:
                    f.write(text)
                if drop:
                    os.chown(self.work, NOBODY, NOBODY)
                    os.chown(os.path.join(self.work, "prog.py"), NOBODY, NOBODY)
                self.proc = subprocess.Popen(argv, cwd=self.work, env={**env, "HOME": self.work},
                                             stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, pass_fds=fds,
                                             preexec_fn=sos.preexec(rl, NOBODY if drop else None, nproc))
        except BaseException:
            for fd in read.values():
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        self.pipes = Pipes(read, cfg.file_size_mb * 2 ** 20, {"stdout": 4096, "stderr": 2000})

    def kill(self) -> None:
        if self.mode == "namespaces":
            if self.proc.poll() is None:
                self.proc.kill()            # unshare dies; --kill-child kills PID 1, the kernel the rest
        else:
            sos.kill_session(self.proc.pid)
        self.proc.wait()

    def finish(self, grace: float = 0.5) -> int | None:
        """Kill what is left, drain the pipes a little longer, and return the program's exit code
        (negative: the signal) as reported by the launcher, or the process's own in the fallback."""
        self.kill()
        self.pipes.pump(time.monotonic() + grace)
        self.pipes.close()
        if self.work:
            shutil.rmtree(self.work, ignore_errors=True)
        if self.mode == "namespaces":
            sos.wait_uid_gone(self.uid, 1.0)
            line = self.pipes.text("status").strip().splitlines()
            self.status_line = line[0] if line else ""
            kind, _, val = self.status_line.partition(" ")
            if kind == "exit" and val.lstrip("-").isdigit():
                return int(val)
            if kind == "signal" and val.isdigit():
                return -int(val)
            return None
        return self.proc.returncode
