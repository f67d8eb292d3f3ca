"""Reading a sandboxed program's output through the pipe ends the harness holds.

The harness never opens anything by path in a directory the program controls. It reads every
pipe (program stdout/stderr, the launcher's status, the judge's verdict) with one selector,
keeps at most `tail` bytes of each, stops reading a pipe after `cap` bytes (closing it: a program
that goes on writing gets EPIPE), and stops waiting at a wall-clock deadline.
"""
from __future__ import annotations

import os
import selectors
import time


class Pipes:
    def __init__(self, fds: dict[str, int], cap: int, tails: dict[str, int]):
        self.sel = selectors.DefaultSelector()
        self.data, self.total, self.open = {}, {}, {}
        self.overflow: set[str] = set()
        self.cap, self.tails = cap, dict(tails)
        for name, fd in fds.items():
            self.add(name, fd)

    def add(self, name: str, fd: int, tail: int | None = None) -> None:
        self.data[name], self.total[name], self.open[name] = bytearray(), 0, fd
        if tail is not None:
            self.tails[name] = tail
        os.set_blocking(fd, False)
        self.sel.register(fd, selectors.EVENT_READ, name)

    def closed(self, name: str) -> bool:
        return name not in self.open

    def _close(self, name: str) -> None:
        fd = self.open.pop(name, None)
        if fd is not None:
            self.sel.unregister(fd)
            os.close(fd)

    def pump(self, until: float, stop=lambda: False) -> bool:
        """Read until stop() is true, every pipe is closed, or the deadline; True if stop() or all closed."""
        while True:
            if stop() or not self.open:
                return True
            left = until - time.monotonic()
            if left <= 0:
                return False
            for key, _ in self.sel.select(min(left, 0.05)):
                name = key.data
                try:
                    b = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    b = b""
                if not b:
                    self._close(name)
                    continue
                self.total[name] += len(b)
                buf = self.data[name]
                buf += b
                keep = self.tails.get(name, 4096)
                if len(buf) > keep:
                    del buf[:len(buf) - keep]
                if self.total[name] > self.cap:
                    self.overflow.add(name)
                    self._close(name)

    def text(self, name: str) -> str:
        return self.data[name].decode("utf-8", "replace")

    def close(self) -> None:
        for name in list(self.open):
            self._close(name)
        self.sel.close()
