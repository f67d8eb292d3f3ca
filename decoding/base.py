"""The method interface: a policy that picks which masked positions to commit at each step.

A method is a small class with a `Config` dataclass. The shared loop (decoding/loop.py) owns the
model calls, the blocks, the tokens and the counters; a method only scores and selects. Adding a
method means one file in decoding/methods/ and one line in decoding/registry.py.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch


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


@dataclass
class StepContext:
    """What a method sees at one step, for the b rows still decoding (all [b, N] over the
    generated region unless noted)."""
    rows: torch.Tensor            # [b] indices of these rows in the batch
    x0: torch.Tensor              # proposed tokens
    conf: torch.Tensor            # probability of x0 (fp32)
    logits: torch.Tensor | None   # [b, N, V] fp32 logits of the generated region (None on KV-cache
                                  # window steps of methods with uses_logits = False)
    candidates: torch.Tensor      # masked and inside the row's current block
    block: torch.Tensor           # [b] current block index
    step_in_block: torch.Tensor   # [b] steps already taken in the current block
    step: torch.Tensor            # [b] steps already taken in total
    hidden: torch.Tensor | None = None  # [b, N, d] last hidden states, if the method asked
    prompt_len: torch.Tensor | None = None  # [b] real (unpadded) prompt lengths
    fed: torch.Tensor | None = None  # [b] generated positions computed fresh this step (see Method.extent)


class Method:
    name: ClassVar[str]
    Config: ClassVar[type]
    needs_hidden: ClassVar[bool] = False
    uses_logits: ClassVar[bool] = True   # False: select() reads only x0/conf (KV-cache window steps
                                         # then skip building full-width logits; ctx.logits may be None)
    cache: str = "none"                  # KV cache mode, set by the registry (decoding/cache.py)
    # True: select() treats each row on its own, draws no random numbers and never syncs with the
    # host, so on GPU the loop may capture it in a CUDA graph run over every row (decoding/loop.py).
    graph_step: ClassVar[bool] = False

    def __init__(self, cfg, gen: GenConfig):
        self.cfg, self.gen = cfg, gen
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the bad setting and the fix."""

    # Sampling knobs read by the loop; methods with such settings override these.
    @property
    def temperature(self) -> float:
        return 0.0

    @property
    def cfg_scale(self) -> float:
        return 0.0

    def start(self, batch_size: int, device: torch.device, generator: torch.Generator | None) -> None:
        """Called before each batch: reset per-row state kept by the method. `generator` is the
        run's seeded RNG for methods that draw random numbers."""

    def extent(self, rows: torch.Tensor) -> torch.Tensor | None:
        """Truncated forwards (SlowFast): how many generated positions to feed at the next forward,
        [b] counts in 1..gen_length for these rows, or None to feed everything. Positions beyond a
        row's count are not computed: x0 and conf there repeat the row's last full forward, and
        logits/hidden there are zeros. A truncated forward still counts one NFE (also counted
        apart, as `nfe_truncated`)."""
        return None

    def select(self, ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError

    def settings(self) -> dict:
        return {**dataclasses.asdict(self.cfg), "cache": self.cache}
