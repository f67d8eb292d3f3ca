"""A CUDA graph whose body runs only where a flag computed on the device holds: a conditional (IF)
node (CUDA >= 12.4), so the host can queue a step before it knows whether it is needed
(acceleration/captured.py).

    g = GuardedStep(guard, body)   # guard() -> one-element bool CUDA tensor; body() issues kernels
    g.replay()                     # runs guard's kernels, then body's where the flag holds

How it is built, through NVIDIA's cuda-python bindings (`cuda.bindings`: runtime, driver, NVRTC):
- `body()` is captured as a graph of its own (torch.cuda.graph, its private memory pool), never
  replayed itself and kept alive with its pool;
- the replayed graph is captured around it: `guard()`'s kernels, then a one-thread kernel
  (compiled once by NVRTC) that sets the conditional node's handle from the flag, then the IF node,
  whose body graph holds a copy of the captured body (a child graph node, same memory).
Capturing the body on its own keeps every allocation of it in a pool that torch owns and keeps;
capturing into the conditional body directly would allocate from the caching allocator outside
any graph pool. Raises where cuda-python, NVRTC or conditional nodes are missing; the caller then
keeps its synchronized steps.
"""
from __future__ import annotations

import ctypes

import torch

from kernels.compiled import compiling_for_graph

_SOURCE = r"""
typedef __device_builtin__ unsigned long long cudaGraphConditionalHandle;
extern "C" __device__ __cudart_builtin__ void cudaGraphSetConditional(cudaGraphConditionalHandle handle,
                                                                      unsigned int value);
extern "C" __global__ void dllm_set_guard(cudaGraphConditionalHandle handle, const bool *flag) {
    cudaGraphSetConditional(handle, *flag ? 1u : 0u);
}
"""
_kernels: dict = {}   # device index -> CUfunction


def _ok(result, what: str):
    """The values of a cuda-python call, or an error naming the call."""
    err, *rest = result
    if int(getattr(err, "value", err)) != 0:
        raise RuntimeError(f"{what}: {err}")
    return rest[0] if len(rest) == 1 else tuple(rest)


def _set_guard_kernel(device: torch.device):
    from cuda.bindings import driver, nvrtc
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index in _kernels:
        return _kernels[index]
    major, minor = torch.cuda.get_device_capability(index)
    prog = _ok(nvrtc.nvrtcCreateProgram(_SOURCE.encode(), b"dllm_guard.cu", 0, [], []), "nvrtcCreateProgram")
    opts = [f"--gpu-architecture=sm_{major}{minor}".encode()]
    (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    if int(getattr(err, "value", err)) != 0:
        size = _ok(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        raise RuntimeError(f"NVRTC could not compile the guard kernel: {log.decode(errors='replace').strip()}")
    size = _ok(nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
    cubin = b" " * size
    _ok(nvrtc.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
    module = _ok(driver.cuModuleLoadData(cubin), "cuModuleLoadData")
    _kernels[index] = (module, _ok(driver.cuModuleGetFunction(module, b"dllm_set_guard"), "cuModuleGetFunction"))
    return _kernels[index]


class GuardedStep:
    def __init__(self, guard, body):
        from cuda.bindings import driver, runtime
        device = torch.device("cuda", torch.cuda.current_device())
        _, kernel = _set_guard_kernel(device)
        with compiling_for_graph():
            self.body = torch.cuda.CUDAGraph(keep_graph=True)
            with torch.cuda.graph(self.body):
                body()
            body_raw = runtime.cudaGraph_t(init_value=self.body.raw_cuda_graph())
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.flag = guard()
                stream = torch.cuda.current_stream().cuda_stream
                info = _ok(runtime.cudaStreamGetCaptureInfo(stream), "cudaStreamGetCaptureInfo")
                handle = _ok(runtime.cudaGraphConditionalHandleCreate(info[2], 0, 0),
                             "cudaGraphConditionalHandleCreate")
                values = (ctypes.c_ulonglong(int(handle)), ctypes.c_void_p(self.flag.data_ptr()))
                args = (ctypes.c_void_p * 2)(*(ctypes.addressof(v) for v in values))
                _ok(driver.cuLaunchKernel(kernel, 1, 1, 1, 1, 1, 1, 0, stream, ctypes.addressof(args), 0),
                    "cuLaunchKernel")
                status, _, graph, deps, edges, n = _ok(runtime.cudaStreamGetCaptureInfo(stream),
                                                       "cudaStreamGetCaptureInfo")
                params = runtime.cudaGraphNodeParams()
                params.type = runtime.cudaGraphNodeType.cudaGraphNodeTypeConditional
                params.conditional.handle = handle
                params.conditional.type = runtime.cudaGraphConditionalNodeType.cudaGraphCondTypeIf
                params.conditional.size = 1
                node = _ok(runtime.cudaGraphAddNode(graph, deps, edges, n, params), "cudaGraphAddNode")
                inside = params.conditional.phGraph_out[0]
                _ok(runtime.cudaGraphAddChildGraphNode(inside, None, 0, body_raw), "cudaGraphAddChildGraphNode")
                _ok(runtime.cudaStreamUpdateCaptureDependencies(
                    stream, [node], None, 1,
                    runtime.cudaStreamUpdateCaptureDependenciesFlags.cudaStreamSetCaptureDependencies),
                    "cudaStreamUpdateCaptureDependencies")

    def replay(self) -> None:
        self.graph.replay()
