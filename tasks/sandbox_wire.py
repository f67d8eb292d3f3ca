"""Plain data across the sandbox boundary (tasks/sandbox_split.py).

The sandboxed program sends the values its functions return as tagged JSON frames; the judge
decodes them into plain Python values only: None, bool, int, float, complex, str, bytes and
lists, tuples, sets, frozensets and dicts of those. Anything else the program returns stays in the
sandbox and reaches the judge as an opaque handle (`["h", n]`), which can be passed back as an
argument or called, never compared or tested for truth. Nothing is unpickled, nothing of the
program's types reaches the judge, so no `__eq__` of the program's ever runs there.

This file is also the source of the functions embedded in the sandbox and judge scripts (they
run as `python -I -c`, without access to this project), so it imports only the standard library.
"""
import json
import os
import struct

MAX_DEPTH = 200
MAX_ITEMS = 1_000_000     # an iterator is materialized up to this many items


class WireError(ValueError):
    """A malformed frame or value (from the program's side): the verdict is `failed`."""


def send(fd, obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    data = struct.pack(">Q", len(data)) + data
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _read_exact(fd, n):
    chunks, got = [], 0
    while got < n:
        b = os.read(fd, min(n - got, 1 << 20))
        if not b:
            raise EOFError("the other side closed the channel")
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def recv(fd, max_bytes):
    (n,) = struct.unpack(">Q", _read_exact(fd, 8))
    if n > max_bytes:
        raise WireError(f"a frame of {n} bytes exceeds the limit of {max_bytes}")
    try:
        return json.loads(_read_exact(fd, n))
    except (ValueError, RecursionError) as e:
        raise WireError(f"malformed frame: {e}") from None


def encode(v, handles, depth=0, special=None):
    """A value as tagged JSON; what is not plain data becomes a handle (appended to `handles`).
    special(v) may return a tag for a value first (the judge's own handles)."""
    import collections.abc
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    d = depth + 1
    if special is not None:
        t = special(v)
        if t is not None:
            return t
    if v is None:
        return ["N"]
    if isinstance(v, bool):
        return ["b", bool(v)]
    if type(v) is int or (isinstance(v, int) and type(v).__module__ == "builtins"):
        return ["i", hex(int(v))]       # hex: linear time, no int_max_str_digits limit
    if isinstance(v, float) and type(v) is float:
        return ["f", repr(v)]
    if type(v) is complex:
        return ["c", repr(v.real), repr(v.imag)]
    if isinstance(v, str) and type(v) is str:
        return ["s", v]
    if type(v) in (bytes, bytearray):
        return ["y", bytes(v).hex()]
    if isinstance(v, (list, tuple, set, frozenset, dict)) and type(v).__module__ in ("builtins", "collections"):
        if isinstance(v, dict):
            return ["d", [[encode(k, handles, d, special), encode(x, handles, d, special)] for k, x in dict.items(v)]]
        tag = "l" if isinstance(v, list) else "t" if isinstance(v, tuple) else "F" if isinstance(v, frozenset) else "S"
        return [tag, [encode(x, handles, d, special) for x in v]]
    if type(v) is range:
        return ["r", v.start, v.stop, v.step]
    if isinstance(v, collections.abc.Iterator) and type(v).__module__ in ("builtins", "itertools"):
        items = []
        for x in v:
            if len(items) >= MAX_ITEMS:
                raise ValueError("iterator too long")
            items.append(encode(x, handles, d, special))
        return ["it", items]
    handles.append(v)
    return ["h", len(handles) - 1]


_SCALARS = {"N": 0, "b": 1, "i": 1, "f": 1, "c": 2, "s": 1, "y": 1}


def decode(x, make_handle, depth=0):
    """Judge side: tagged JSON -> plain values; anything malformed raises WireError."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if not (isinstance(x, list) and x and isinstance(x[0], str)):
        raise WireError(f"not a tagged value: {str(x)[:80]}")
    tag, args, d = x[0], x[1:], depth + 1
    try:
        if tag in _SCALARS:
            if len(args) != _SCALARS[tag]:
                raise WireError(f"bad arity for {tag}")
            if tag == "N":
                return None
            a = args[0]
            if tag == "b" and type(a) is bool:
                return a
            if tag == "i" and type(a) is str and a.lstrip("-")[:2] == "0x":
                return int(a, 16)
            if tag == "f" and type(a) is str:
                return float(a)
            if tag == "c" and type(a) is str and type(args[1]) is str:
                return complex(float(a), float(args[1]))
            if tag == "s" and type(a) is str:
                return a
            if tag == "y" and type(a) is str:
                return bytes.fromhex(a)
            raise WireError(f"bad payload for {tag}")
        if tag in ("l", "t", "S", "F", "it") and len(args) == 1 and type(args[0]) is list:
            items = [decode(i, make_handle, d) for i in args[0]]
            return {"l": list, "t": tuple, "S": set, "F": frozenset, "it": iter}[tag](items)
        if tag == "d" and len(args) == 1 and type(args[0]) is list:
            out = {}
            for kv in args[0]:
                if not (type(kv) is list and len(kv) == 2):
                    raise WireError("bad dict item")
                out[decode(kv[0], make_handle, d)] = decode(kv[1], make_handle, d)
            return out
        if tag == "r" and len(args) == 3 and all(type(a) is int for a in args):
            return range(*args)
        if tag == "h" and len(args) == 1 and type(args[0]) is int:
            return make_handle(args[0])
    except WireError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError) as e:   # unhashable set item, bad float...
        raise WireError(f"bad value for {tag}: {e}") from None
    raise WireError(f"unknown tag {tag!r}")
