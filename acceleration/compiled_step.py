"""The rest of a captured step (the method's decide and the loop's bookkeeping) compiled into a
few fused kernels before its CUDA graph is captured.

A captured step graph replays every kernel the eager step launches: per-position features,
comparisons, `where`s and counter updates, hundreds of kernels of a few microseconds each
(0.5-1.3 ms per step for prr, eb, klass and dico, results/speed/methods-step/REPORT.md). Compiled
as one graph (torch.compile, fullgraph), elementwise chains fuse into single kernels; the graph
then holds those.

`compile_step(fn, fresh_state)` returns the compiled fn where it traces as one graph and a second
call on another state object of the same shapes reuses the compiled code (so the capture that
follows compiles nothing); the plain fn otherwise, with the reason kept (`CompiledStep.why_not`).
The compiled code computes what the plain function computes; fused float kernels may round the
last bit differently, so a decision at an exact tie may differ from the reference loop's
(experiments/gpu_checks/fast_vs_reference.py measures it). DLLM_COMPILE=0 (or DLLM_COMPILE_STEP=0
alone) keeps the plain function.
"""
from __future__ import annotations

import os
import warnings

import torch

RECOMPILE_LIMIT = 1 << 12
BACKEND = "inductor"
# CPU steps are never captured outside tests, which stand in eager graphs; a test sets "aot_eager"
# (the same tracing and functionalization as inductor, no code generation) to check the compile.
CPU_BACKEND = None


class CompiledStep:
    def __init__(self, fn, compiled=None, why_not: str | None = None):
        self.fn, self.compiled, self.why_not = fn, compiled, why_not

    def __call__(self, *args):
        return (self.compiled or self.fn)(*args)


def step_compile_enabled() -> bool:
    return os.environ.get("DLLM_COMPILE", "1") != "0" and os.environ.get("DLLM_COMPILE_STEP", "1") != "0"


def compile_step(fn, fresh_args, device: torch.device) -> CompiledStep:
    """fn compiled (or not: see the module's docstring). `fresh_args()` gives arguments for a
    warm-up call (copies: the warm-up's writes land there); called three times."""
    backend = BACKEND if device.type == "cuda" else CPU_BACKEND
    if backend is None or not step_compile_enabled():
        return CompiledStep(fn, why_not="switched off")
    compiled = torch.compile(fn, fullgraph=True, dynamic=False, backend=backend)
    fn(*fresh_args())   # plain first: a method that allocates buffers at its first decide (klass) has them
    try:
        # Every captured decode compiles the same function (its code object) for its own method and
        # shapes: dynamo's per-code-object limit would end compiling after a few of them.
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
            compiled(*fresh_args())
            with torch.compiler.set_stance("fail_on_recompile"):
                compiled(*fresh_args())   # another state object: must hit the same compiled code
    except Exception as e:   # a step dynamo cannot trace as one graph: the plain step, captured as it is
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        warnings.warn(f"the decode step was not compiled ({why}); its CUDA graph holds the plain step")
        return CompiledStep(fn, why_not=why)
    return CompiledStep(fn, compiled)
