"""The task interface: documents with prompts, and a scorer. A task never knows about methods."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Doc:
    doc_id: int | str
    prompt: str
    target: str                      # the gold answer, as text


@dataclass(frozen=True)
class TaskProtocol:
    """How a task is run; recorded with every result (a speedup is comparable only within one)."""
    gen_length: int
    block_length: int
    shots: int = 0
    chat: str = "none"
    stop: tuple[str, ...] = field(default_factory=tuple)


class Task(Protocol):
    name: str
    protocol: TaskProtocol

    def docs(self, limit: int | None) -> list[Doc]: ...

    def score(self, doc: Doc, output: str) -> dict:
        """{'extracted': str | None, 'correct': bool}"""
        ...
