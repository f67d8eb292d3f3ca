"""Checks of a run's settings before any work, and the cleanup of a start that failed.

- `check_spec`: every value of a RunSpec that can be wrong on its own (counts, lengths, device,
  threads), as one-line errors naming the fix; `check_resume`: --resume names an existing run.
- `check_fits`: what needs the loaded model: a chat template when --chat asks for one, a PRR
  controller of the model's hidden size (the error gives the training command for this model and
  task); a warning, recorded in run.json and printed under the table, when prompts plus the
  generation exceed the model's configured positions.
- `removed_on_failure`: a run directory created by this start and holding no decoded sample is
  removed when the start fails, so the same --run-id can be used again; a directory that existed
  before, or one with decoded samples, is never touched.
"""
from __future__ import annotations

import contextlib
import re
import shlex
import shutil
from pathlib import Path

import torch

DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device(name: str) -> None:
    if not DEVICE_RE.match(name):
        raise ValueError(f"--device {name!r}: choose auto, cpu, cuda or cuda:N")


def check_spec(spec) -> None:
    def positive(flag: str, value, allow_none: bool = True) -> None:
        if value is None and allow_none:
            return
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{flag} must be positive (got {value}): give a whole number >= 1" +
                             (", or leave it out for the default" if allow_none else ""))
    positive("--batch-size", spec.batch_size, allow_none=False)
    positive("--gen-length", spec.gen_length)
    positive("--block-length", spec.block_length)
    positive("--max-steps", spec.max_steps)
    positive("--threads", getattr(spec, "threads", None))
    if spec.limit is not None and (not isinstance(spec.limit, int) or spec.limit < 1):
        raise ValueError(f"--limit {spec.limit}: give a positive number of problems, or `all`")
    if not isinstance(spec.warmup_batches, int) or spec.warmup_batches < 0:
        raise ValueError(f"--warmup-batches {spec.warmup_batches}: give 0 (no warm-up) or more")
    check_device(spec.device)


def check_resume(spec, sweep: bool = False) -> None:
    """--resume names a run (or sweep) that exists. Checked where the user's command is read, not
    per run: the points of a resumed sweep that never started are started then."""
    if not spec.resume:
        return
    if not spec.run_id:
        raise ValueError("--resume continues an existing run: give its --run-id")
    marker = Path(spec.out_dir) / spec.run_id / ("sweep.json" if sweep else "run.json")
    if not marker.exists():
        raise ValueError(f"--resume: there is no {'sweep' if sweep else 'run'} {spec.run_id!r} in {spec.out_dir} "
                         f"({marker} not found); drop --resume to start it, or give the --run-id of an existing one")


def train_command(spec, task: str, gen) -> str:
    """The training command for a PRR controller that fits the run's model (tasks without a train
    split train on arith's)."""
    from tasks.train_splits import TRAIN_TASKS
    parts = ["python -m training.prr_train", "--model", spec.model]
    if spec.model_path:
        parts += ["--model-path", spec.model_path]
    if spec.no_weights:
        parts.append("--no-weights")
    if task in TRAIN_TASKS and task != "arith":
        parts += ["--task", task, "--data-dir", spec.data_dir or "DATA_DIR"]
        if task == "mbpp":
            parts.append("--allow-code-exec")
    parts += ["--gen-length", str(gen.gen_length), "--block-length", str(gen.block_length),
              "--out", f"controllers/{spec.model}"]
    return " ".join(shlex.quote(p) if i else p for i, p in enumerate(parts))


def check_fits(spec, model, methods: dict, gens: dict, prompts: list[dict], encode) -> list[str]:
    """Raises for what cannot run (a PRR controller of another hidden size, a chat mode without a
    template); returns warnings for what runs but means little: prompts that with the generation
    exceed the model's configured positions (RoPE models run past them, outside what they were
    trained for). methods: task -> [(label, method)]; encode(model, prompts) -> token ids."""
    from models.limits import hidden_size, max_positions
    for task, pairs in methods.items():
        for label, m in pairs:
            ctrl = getattr(m, "ctrl", None)
            if not (isinstance(ctrl, torch.nn.Module) and getattr(ctrl, "cfg", None) is not None):
                continue
            d = hidden_size(model)
            if ctrl.cfg.d_model != d:
                raise ValueError(f"{label}: the controller was trained for hidden size {ctrl.cfg.d_model}, model "
                                 f"{spec.model} has {d}; train one for this model with "
                                 f"`{train_command(spec, task, gens[task])}` and run prr:controller="
                                 f"controllers/{spec.model}, or use prr:controller=off")
    limit = max_positions(model)
    warnings = []
    for task in methods:
        mine = [p for p in prompts if p["task"] == task]
        if not mine:
            continue
        lengths = [len(ids) for ids in encode(model, mine)]   # also renders every chat prompt
        g = gens[task].gen_length
        over = sum(n + g > limit for n in lengths) if limit is not None else 0
        if over:
            warnings.append(f"model {spec.model} takes {limit} positions, but {over} of {len(lengths)} {task} prompts "
                            f"plus gen_length {g} exceed them (longest {max(lengths)} + {g}): those outputs are "
                            f"outside what the model was built for, so {task} accuracy says nothing about the method")
    return warnings


def _has_samples(path: Path) -> bool:
    f = path / "requests.jsonl"
    return f.exists() and f.stat().st_size > 0


@contextlib.contextmanager
def removed_on_failure(path: Path):
    """Remove `path` if it did not exist before and the block fails before any sample is decoded."""
    fresh = not path.exists()
    try:
        yield
    except BaseException:
        if fresh and path.exists() and not _has_samples(path):
            shutil.rmtree(path, ignore_errors=True)
        raise
