"""The generation protocol and the method base class.

A method is a small class with a `Config` dataclass. The shared loop (decoding/loop.py) owns the
model calls, the blocks, the tokens and the counters; a method plans forwards and decides what to
commit, remask or edit (decoding/contract.py). Adding a method means one file in
decoding/methods/ and one line in decoding/registry.py.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

from .contract import Decision, Plan, Reads, StepOutput, StepView


@dataclass(frozen=True)
class GenConfig:
    """The generation protocol, shared by every method in a run (it is part of the result)."""
    gen_length: int = 48
    block_length: int = 16
    early_stop: bool = True        # a row stops once a completed block holds EOS
    max_steps: int | None = None   # per-row step cap; None = gen_length

    def __post_init__(self):
        if self.gen_length <= 0 or self.block_length <= 0:
            raise ValueError("gen_length and block_length must be positive")
        if self.gen_length % self.block_length:
            raise ValueError(f"gen_length ({self.gen_length}) must be a multiple of block_length "
                             f"({self.block_length}); e.g. --block-length {self.gen_length}")
        if self.max_steps is not None and self.max_steps < self.num_blocks:
            raise ValueError(f"max_steps ({self.max_steps}) must be at least the number of blocks "
                             f"({self.num_blocks})")

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def step_cap(self) -> int:
        return self.max_steps if self.max_steps is not None else self.gen_length


class Method:
    """A decoding policy on the shared loop: `start` before a batch, `plan` the next forward,
    `decide` what to commit, remask and edit (decoding/contract.py, docs/decode-loop.md).
    `reads()` declares what plan/decide read: the loop builds only that, and acceleration/
    decides from it whether the step may be captured in a CUDA graph.

    Every method treats each row on its own: its decision for a row never depends on the other
    rows of the batch (a captured step runs every row, finished ones without candidates)."""
    name: ClassVar[str]
    Config: ClassVar[type]
    READS: ClassVar[Reads] = Reads()
    cache: str = "none"                  # KV cache mode, set by the registry (decoding/cache.py)
    block_append: str = "fold"           # block-causal models: how finished blocks reach the cache
                                         # (decoding/block_causal.py), set by the registry

    def __init__(self, cfg, gen: GenConfig):
        self.cfg, self.gen = cfg, gen
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the bad setting and the fix."""

    def reads(self) -> Reads:
        """What this method (with its settings) reads; the class's READS unless settings change it."""
        return self.READS

    # Sampling knobs read by the forward; methods with such settings override these.
    @property
    def temperature(self) -> float:
        return 0.0

    @property
    def cfg_scale(self) -> float:
        return 0.0

    def start(self, batch_size: int, device: torch.device, generator: torch.Generator | None = None) -> None:
        """Called before each batch: reset per-row state kept by the method. `generator` is the
        run's seeded RNG for methods that draw random numbers (Reads.rng)."""

    def default_step_cap(self, gen_length: int, num_blocks: int) -> int:
        """The per-row step cap when none is given (--max-steps): gen_length, as every step commits
        at least one token. A method whose forwards may commit nothing (a block held open with
        Decision.hold) allows those forwards too, so that the cap never ends a row the authors'
        loop would have finished."""
        return gen_length

    def plan(self, view: StepView) -> Plan:
        """What the next forward feeds for these rows (Plan.extent: truncated forwards, which need
        Reads.truncated). A truncated forward still counts one NFE (also counted apart, as
        `nfe_truncated`); positions beyond a row's extent are not fresh."""
        return Plan()

    def decide(self, view: StepView, out: StepOutput) -> Decision:
        """The step's Decision. A tensor attribute that decide makes or remakes (a buffer sized by
        what only the first step shows: the vocabulary, a block-causal layout's width) starts at
        zeros: a captured decode runs its first decide as a warm-up and then zeroes what it made
        (acceleration/captured.py)."""
        raise NotImplementedError

    def settings(self) -> dict:
        extra = {"append": self.block_append} if self.block_append != "fold" else {}
        return {**dataclasses.asdict(self.cfg), "cache": self.cache, **extra}


def step_cap(method: Method, gen: GenConfig, gen_length: int, num_blocks: int) -> int:
    """The per-row step cap: --max-steps if given, else the method's default (Method.default_step_cap)."""
    return gen.max_steps if gen.max_steps is not None else method.default_step_cap(gen_length, num_blocks)
