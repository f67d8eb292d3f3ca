"""The script the program's interpreter runs (`python -I -B -c PRELUDE MODE ...`).

It reads prog.py from the work dir, optionally installs the audit hook, and then either
- `sentinel FD`: reads a random sentinel from FD, runs the program and prints the sentinel after
  its last statement (the joined candidate + test; see tasks/sandbox.py), or
- `serve REQ REP MAX`: runs the candidate code, then answers the judge's requests
  (tasks/sandbox_split.py) until the judge closes REQ.

The audit hook refuses process creation, ctypes, sockets, writes outside the work dir, other
processes' /proc entries and GC introspection. It is defence in depth only: code in the same
interpreter can get around it, and nothing the verdict rests on depends on it.
"""
from .sandbox_split import SERVE, WIRE

PRELUDE = WIRE + SERVE + r'''

def _main():
    import os, sys
    write, fsdecode, realpath, sep = os.write, os.fsdecode, os.path.realpath, os.sep
    mode = sys.argv[1]
    root = realpath(os.getcwd())
    with open("prog.py", encoding="utf-8") as f:
        src = f.read()
    sentinel = None
    if mode == "sentinel":
        fd = int(sys.argv[2])
        sentinel = os.read(fd, 200).decode().strip()
        os.close(fd)
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
    g = {"__name__": "__main__", "__builtins__": __builtins__}
    if mode == "sentinel":
        exec(code, g)
        write(1, ("\n" + sentinel + "\n").encode())
        return
    req, rep, max_bytes = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    load_error = None
    try:
        exec(code, g)
    except BaseException as e:
        load_error = [type(e).__name__, str(e)[:2000]]
    _serve(g, load_error, req, rep, max_bytes)

_main()
'''
