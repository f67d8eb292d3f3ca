"""Verdicts decided outside the program's interpreter: the candidate serves, a judge tests.

For a (candidate, test) pair, the sandbox runs only the candidate code (the test never enters
the sandbox: its asserts cannot be read there) and then serves calls on two pipes. A separate
judge process, which the program cannot reach (another uid, outside the program's PID
namespace, nothing shared but the pipes), runs the benchmark's test code with every name the
test takes from the candidate (`remove_Occ`, HumanEval's entry point, helpers like `poly`) bound
to a proxy: a call sends its arguments as plain data, the sandbox calls the real function and
sends back the result as plain data (tasks/sandbox_wire.py), and the asserts, comparisons,
`math.isclose`, loops of `check(candidate)` all run in the judge on those values. A pass is the
judge reaching the end of the test; nothing the program prints or does can produce it.

What the program returns that is not plain data (an instance of its own class, a function)
stays in the sandbox as a handle: it can be passed back to the program or called, and its
attributes read, but comparing it or testing its truth raises, so an object whose `__eq__` is
always true fails. Builtin names (`abs`, `sorted`) stay the judge's own, unless they are the
only free names of the test (the function under test is called `sum`). Names the test uses only as `module.attr` and that are standard-library
modules (`math.isclose` in a test that relies on the candidate's `import math`) are imported by
the judge itself.

A test that does not parse as Python on its own cannot be split; it runs joined to the
candidate with the sentinel rule (see tasks/sandbox.py), and the ExecResult says `mode`.
"""
from __future__ import annotations

import ast
import builtins
import sys
from pathlib import Path

WIRE = (Path(__file__).with_name("sandbox_wire.py")).read_text()


def split_plan(test: str) -> dict | None:
    """The names the judge binds for this test, or None if the test cannot be split."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError):
        return None
    loaded, bound, attr_base = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            attr_base.add(id(node.value))
    free = loaded - bound
    builtin_names = free & set(dir(builtins))
    free -= builtin_names
    plain_use = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                 and id(n) not in attr_base}
    modules = sorted(n for n in free if n in sys.stdlib_module_names and n not in plain_use)
    names = sorted(free - set(modules))
    # A test whose only free names are builtins tests a candidate function named like one
    # (MBPP: `assert sum(10,15) == 6`): those names come from the candidate if it defines them.
    # Otherwise the judge's builtins stay: `abs(f(x) - 1) < 1e-6` uses the real abs.
    shadow = sorted(builtin_names) if not names else []
    return {"names": names, "modules": modules, "shadowable": shadow}


# Runs in the sandbox after the candidate code: answers the judge's requests until EOF.
SERVE = r'''
def _serve(g, load_error, req, rep, max_bytes):
    import builtins
    handles = []
    def value(x):
        return decode(x, lambda i: handles[i])
    while True:
        try:
            msg = recv(req, max_bytes)
        except EOFError:
            return
        try:
            if load_error is not None:
                out = ["exc"] + load_error
            elif msg[0] == "ready":
                out = ["ok", ["N"]]
            elif msg[0] == "get":
                out = ["ok", encode(g[msg[1]], handles)] if msg[1] in g else ["missing"]
            elif msg[0] == "call":
                out = ["ok", encode(handles[msg[1]](*value(msg[2]), **value(msg[3])), handles)]
            elif msg[0] == "attr":
                out = ["ok", encode(getattr(handles[msg[1]], msg[2]), handles)]
            else:
                out = ["exc", "RuntimeError", "unknown request"]
        except BaseException as e:
            out = ["exc", type(e).__name__, str(e)[:2000]]
        send(rep, out)
'''

# The judge: `python -I -c JUDGE REQ_FD REP_FD`, config (JSON) on stdin, verdict on stdout.
JUDGE = WIRE + r'''

def _judge():
    import builtins, json, os, sys, traceback
    verdict_fd = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    cfg = json.loads(sys.stdin.read())
    os.dup2(null, 0)
    req, rep, max_bytes = int(sys.argv[1]), int(sys.argv[2]), cfg["max_bytes"]

    class Handle:
        """A value that stays in the sandbox: it may be called, passed back or have attributes
        read; comparing it or testing its truth is an error."""
        __slots__ = ("_id",)

        def __init__(self, i):
            object.__setattr__(self, "_id", i)

        def __call__(self, *args, **kwargs):
            return rpc(["call", self._id, enc(list(args)), enc(kwargs)])

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return rpc(["attr", self._id, name])

        def _refuse(self, *a):
            raise TypeError("a value of the program's own type cannot be compared or tested here")
        __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = __len__ = __iter__ = _refuse
        __hash__ = object.__hash__

    def special(v):
        return ["h", v._id] if type(v) is Handle else None

    def enc(v):
        extra = []
        out = encode(v, extra, 0, special)
        if extra:
            raise TypeError(f"cannot pass {type(extra[0]).__name__} to the program")
        return out

    def rpc(msg):
        send(req, msg)
        r = recv(rep, max_bytes)
        if not (type(r) is list and r and r[0] in ("ok", "exc", "missing")):
            raise WireError("malformed reply")
        if r[0] == "ok" and len(r) == 2:
            return decode(r[1], Handle)
        if r[0] == "exc" and len(r) == 3 and type(r[1]) is str and type(r[2]) is str:
            cls = getattr(builtins, r[1], None)
            if not (isinstance(cls, type) and issubclass(cls, Exception)):
                cls = RuntimeError
            raise cls(f"{r[1]} in the program: {r[2][:500]}" if cls is RuntimeError else r[2][:500])
        if r[0] == "missing":
            raise NameError(msg[1] if len(msg) > 1 else "?")
        raise WireError("malformed reply")

    verdict, detail = "failed", ""
    try:
        g = {"__name__": "__main__", "__builtins__": builtins}
        rpc(["ready"])
        for m in cfg["modules"]:
            g[m] = __import__(m)
        for n in cfg["names"] + cfg["shadowable"]:
            try:
                g[n] = rpc(["get", n])
            except NameError:
                pass
        exec(compile(cfg["test"], "test.py", "exec"), g)
        verdict = "passed"
    except BaseException as e:
        tb = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == "test.py"]
        lines = cfg["test"].splitlines()
        line = lines[tb[-1].lineno - 1].strip()[:200] if tb and 0 < tb[-1].lineno <= len(lines) else ""
        where = f" (test.py line {tb[-1].lineno}: {line})" if tb else ""
        detail = f"{type(e).__name__}: {str(e)[:500]}{where}"
    os.write(verdict_fd, (json.dumps({"verdict": verdict, "detail": detail}) + "\n").encode())

_judge()
'''
