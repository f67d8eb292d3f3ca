"""Measurement around the decode call, and nothing else.

- `timed`: perf_counter around the call, every GPU in use synchronized at both ends; the same
  window reads the energy meter and the peak GPU memory.
- `EnergyMeter`: GPU energy over those windows, for each GPU in use. GPUs are found by UUID, so
  CUDA_VISIBLE_DEVICES is respected (torch's cuda:0 may be NVML's device 3).
  * counter mode: NVML's total-energy counter (mJ since driver load); a window's energy is the
    difference of two reads.
  * power-sampling mode (fallback when the counter is missing, e.g. pre-Volta GPUs): a
    background thread polls power every `interval_s` and integrates it (trapezoid); the meter
    then exposes the integral as if it were a counter.
  * no GPU / no NVML: `available` is False and `reason` says why; energies are None, never 0.
- Idle power: `measure_idle` reads the meter over a few idle seconds before the run, polling the
  counter fast enough to also measure its *update period* (the counter advances in steps; H100
  firmware updates it every few tens of ms). A window shorter than `min_window_s` (10 update
  periods: <= ~10% quantization error) is flagged `short`; the summary then attributes energy
  over the longer span of consecutive windows instead of trusting (or zeroing) each window
  (see bench/metrics.py, `method_energy`).
- `ForwardTimer`: optional instrumentation that synchronizes and times every model forward, to
  split a decode call's wall time into forward time and everything else (selection, bookkeeping,
  Python). It perturbs timing (one sync per forward), so it is part of the run's spec.
"""
from __future__ import annotations

import os
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

MIN_WINDOW_PERIODS = 10   # a window is trusted when it spans this many counter updates


def sync(devices) -> None:
    for d in devices:
        if d.type == "cuda":
            torch.cuda.synchronize(d)


def devices_in_use(module: torch.nn.Module, fallback: torch.device) -> list[torch.device]:
    """Every device holding a parameter of the model (several with a device map)."""
    devs = {p.device for p in module.parameters()} or {fallback}
    return sorted(devs, key=lambda d: (d.type, d.index if d.index is not None else -1))


# ---------------------------------------------------------------- NVML backends

class NvmlBackend:
    """The few NVML calls the meter uses (a seam for tests: fakes implement the same methods).
    `energy_mj` raises when the GPU has no energy counter."""

    def __init__(self):
        import pynvml
        pynvml.nvmlInit()
        self.nvml = pynvml

    def handle(self, uuid: str):
        return self.nvml.nvmlDeviceGetHandleByUUID(uuid)

    def energy_mj(self, h) -> int:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(h)

    def power_mw(self, h) -> int:
        return self.nvml.nvmlDeviceGetPowerUsage(h)

    def name(self, h) -> str:
        n = self.nvml.nvmlDeviceGetName(h)
        return n.decode() if isinstance(n, bytes) else n

    def power_limit_w(self, h) -> float:
        return self.nvml.nvmlDeviceGetPowerManagementLimit(h) / 1000

    def temperature_c(self, h) -> float:
        return float(self.nvml.nvmlDeviceGetTemperature(h, self.nvml.NVML_TEMPERATURE_GPU))

    def compute_pids(self, h) -> list[int]:
        """Process ids with a compute context on the GPU (bench/load.py)."""
        return [p.pid for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(h)]


def torch_uuids(devices) -> list[str]:
    """NVML UUIDs ("GPU-...") of torch CUDA devices, as seen through CUDA_VISIBLE_DEVICES."""
    out = []
    for d in devices:
        u = str(torch.cuda.get_device_properties(d).uuid)
        out.append(u if u.startswith("GPU-") else "GPU-" + u)
    return out


class PowerSampler:
    """Integrates polled power (W) of several GPUs into cumulative energy (J), trapezoid rule.
    `poll(t)` takes one sample; `start()` runs it in a daemon thread every `interval_s`."""

    def __init__(self, backend, handles, clock=time.perf_counter, interval_s: float = 0.01):
        self.backend, self.handles, self.clock, self.interval_s = backend, handles, clock, interval_s
        self.cum_j = [0.0] * len(handles)
        self.last_t, self.last_w = None, [0.0] * len(handles)
        self.n_samples = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def poll(self, t: float | None = None) -> None:
        t = self.clock() if t is None else t
        w = [self.backend.power_mw(h) / 1000 for h in self.handles]
        with self._lock:
            if self.last_t is not None:
                dt = t - self.last_t
                self.cum_j = [c + (a + b) / 2 * dt for c, a, b in zip(self.cum_j, self.last_w, w)]
            self.last_t, self.last_w = t, w
            self.n_samples += 1

    def read_j(self, t: float | None = None) -> list[float]:
        """Cumulative energy up to t, extending the last sample's power to t."""
        t = self.clock() if t is None else t
        with self._lock:
            if self.last_t is None:
                return [0.0] * len(self.handles)
            return [c + w * max(0.0, t - self.last_t) for c, w in zip(self.cum_j, self.last_w)]

    def start(self) -> None:
        self.poll()
        self._thread = threading.Thread(target=self._run, daemon=True, name="power-sampler")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # a failing read must not kill the run; the gap is interpolated
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)


# ---------------------------------------------------------------- the meter

class EnergyMeter:
    """Energy of the GPUs in use, read as cumulative joules per GPU (`read_j`)."""

    def __init__(self, uuids: list[str] | None, backend=None, clock=time.perf_counter, sleep=time.sleep,
                 reason: str | None = None, sample_interval_s: float = 0.01):
        self.uuids, self.clock, self.sleep = list(uuids or []), clock, sleep
        self.backend, self.handles, self.mode, self.reason = None, [], None, reason
        self.sampler: PowerSampler | None = None
        self.idle_w: float | None = None             # all GPUs in use together
        self.idle_w_per_gpu: list[float] | None = None
        self.update_period_s: float | None = None    # counter update period, measured while idle
        self.idle_s: float | None = None
        if reason is not None:
            return
        if not self.uuids:
            self.reason = "no GPU: energy is measured only on NVIDIA GPUs"
            return
        try:
            self.backend = backend if backend is not None else NvmlBackend()
            self.handles = [self.backend.handle(u) for u in self.uuids]
        except Exception as e:  # NVML library missing, no driver, no permission
            self.backend, self.reason = None, f"NVML unavailable: {e}"
            return
        try:
            if os.environ.get("DLLM_BENCH_ENERGY") == "power":   # diagnostic: cross-check the fallback
                raise RuntimeError("DLLM_BENCH_ENERGY=power forces power sampling")
            for h in self.handles:
                self.backend.energy_mj(h)
            self.mode = "counter"
        except Exception as e_counter:
            try:
                self.sampler = PowerSampler(self.backend, self.handles, clock, sample_interval_s)
                self.sampler.poll()
                self.mode = "power_sampling"
                self.counter_error = str(e_counter)
            except Exception as e_power:
                self.sampler = None
                self.reason = f"NVML has neither an energy counter ({e_counter}) nor power readings ({e_power})"

    @classmethod
    def for_devices(cls, devices, **kw) -> "EnergyMeter":
        cuda = [d for d in devices if d.type == "cuda"]
        if not cuda:
            return cls([], **kw)
        try:
            uuids = torch_uuids(cuda)
        except Exception as e:
            return cls([], reason=f"cannot identify the GPU for NVML: {e}", **kw)
        return cls(uuids, **kw)

    @property
    def available(self) -> bool:
        return self.mode is not None

    def start(self) -> None:
        if self.sampler is not None and self.sampler._thread is None:
            self.sampler.start()

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()

    def read_j(self) -> list[float] | None:
        """Cumulative energy per GPU in joules (an arbitrary origin; only differences mean anything)."""
        if self.mode == "counter":
            return [self.backend.energy_mj(h) / 1000 for h in self.handles]
        if self.mode == "power_sampling":
            return self.sampler.read_j()
        return None

    @property
    def min_window_s(self) -> float | None:
        """Windows shorter than this are flagged: the counter's steps make them unreliable."""
        if self.mode == "power_sampling":
            return MIN_WINDOW_PERIODS * self.sampler.interval_s
        if self.update_period_s is None:
            return None
        return MIN_WINDOW_PERIODS * self.update_period_s

    def measure_idle(self, seconds: float = 3.0, poll_s: float = 0.001) -> float | None:
        """Idle power (W) over `seconds`, and (counter mode) the counter's update period: the
        counter is polled every `poll_s` and the median interval between its changes is the
        period. With power sampling, the sampler's own samples give the idle power."""
        if not self.available:
            return None
        self.start()
        t0, e0 = self.clock(), self.read_j()
        changes: list[float] = []
        last = e0
        while self.clock() - t0 < seconds:
            self.sleep(poll_s)
            if self.mode == "counter":
                cur = self.read_j()
                if cur != last:
                    changes.append(self.clock())
                    last = cur
        t1, e1 = self.clock(), self.read_j()
        self.idle_s = t1 - t0
        if self.mode == "counter" and len(changes) >= 2:
            # first and last change bracket whole periods: idle power from them is exact up to one read
            self.update_period_s = statistics.median(b - a for a, b in zip(changes, changes[1:]))
        self.idle_w_per_gpu = [(b - a) / self.idle_s for a, b in zip(e0, e1)]
        self.idle_w = sum(self.idle_w_per_gpu)
        return self.idle_w

    def gpu_state(self) -> list[dict] | None:
        """Name, temperature and power limit of each GPU in use (None without NVML)."""
        if self.backend is None or not self.handles:
            return None
        out = []
        for u, h in zip(self.uuids, self.handles):
            s = {"uuid": u}
            for key, fn in (("name", self.backend.name), ("temperature_c", self.backend.temperature_c),
                            ("power_limit_w", self.backend.power_limit_w)):
                try:
                    s[key] = fn(h)
                except Exception as e:
                    s[key] = None
                    s[key + "_error"] = str(e)
            out.append(s)
        return out

    def info(self) -> dict:
        if not self.available:
            return {"available": False, "reason": self.reason, "gpus": self.gpu_state()}
        return {"available": True, "mode": self.mode, "gpus": self.gpu_state(), "idle_w": self.idle_w,
                "idle_w_per_gpu": self.idle_w_per_gpu, "idle_measured_s": self.idle_s,
                "counter_update_period_s": self.update_period_s, "min_window_s": self.min_window_s,
                **({"counter_error": self.counter_error} if self.mode == "power_sampling" else {})}


# ---------------------------------------------------------------- windows

@dataclass
class Window:
    seconds: float = 0.0
    t_start: float = 0.0              # perf_counter at the (synchronized) start
    t_end: float = 0.0
    energy_j: float | None = None     # all GPUs in use; None without a meter
    energy_j_per_gpu: list[float] | None = None
    counter_start_j: float | None = None   # cumulative meter reading (all GPUs) at both ends
    counter_end_j: float | None = None
    short: bool | None = None         # shorter than the meter's resolution (see EnergyMeter)
    peak_mem_bytes: int | None = None  # peak allocated GPU memory during the window (GPUs in use)
    cpu_s: float = 0.0                # CPU time of this process (all threads) during the window
    forward_s: float | None = None    # set by ForwardTimer, when used
    forward_calls: int | None = None


@contextmanager
def timed(devices, meter: EnergyMeter | None = None, memory: bool = True):
    """Time (and meter) exactly the enclosed region, GPUs synchronized at both ends."""
    devices = list(devices) if isinstance(devices, (list, tuple)) else [devices]
    cuda = [d for d in devices if d.type == "cuda"]
    w = Window()
    sync(cuda)
    if memory:
        for d in cuda:
            torch.cuda.reset_peak_memory_stats(d)
    e0 = meter.read_j() if meter is not None and meter.available else None
    c0 = time.process_time()
    w.t_start = time.perf_counter()
    try:
        yield w
    finally:
        sync(cuda)
        w.t_end = time.perf_counter()
        w.cpu_s = time.process_time() - c0
        w.seconds = w.t_end - w.t_start
        if e0 is not None:
            e1 = meter.read_j()
            w.energy_j_per_gpu = [b - a for a, b in zip(e0, e1)]
            w.energy_j = sum(w.energy_j_per_gpu)
            w.counter_start_j, w.counter_end_j = sum(e0), sum(e1)
            mw = meter.min_window_s
            w.short = mw is None or w.seconds < mw
        if memory and cuda:
            w.peak_mem_bytes = sum(torch.cuda.max_memory_allocated(d) for d in cuda)


def forward_holding_steps() -> list:
    """The captured decodes whose step graphs hold the step's forward."""
    from acceleration.captured_block import CapturedBlockDecode
    from acceleration.captured_truncated import CapturedTruncatedDecode
    return [CapturedBlockDecode, CapturedTruncatedDecode]


class ForwardTimer:
    """Wraps `model.forward` (on the adapter instance) and CUDA-graph replays of forwards
    (acceleration/graphs.py) to time each call, synchronized at both ends. A captured block-causal
    step (acceleration/captured_block.py) and a captured truncated step (acceleration/
    captured_truncated.py) are one graph of the forward and the step's decision; each is timed as
    a forward. Forwards run while a graph is being built (its warm-up and capture) are neither
    timed nor counted. Steps are not queued
    ahead meanwhile (acceleration/captured.py: a queued step's forward is inside its graph, where no
    timer reaches; and a synchronized forward leaves nothing to overlap). Use as a context manager
    around decode calls; read and reset with `take()`."""

    queues_ahead = False   # whether captured decodes may queue steps ahead inside the context

    def __init__(self, model, devices):
        self.model, self.devices = model, [d for d in devices if d.type == "cuda"]
        self.seconds, self.calls = 0.0, 0

    def _timed(self, fn, *args, **kwargs):
        sync(self.devices)
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sync(self.devices)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out

    def __enter__(self):
        from kernels.compiled import building_graph
        from acceleration.captured import CapturedDecode
        from acceleration.graphs import GraphedCall
        self._queue_ahead = CapturedDecode.queue_ahead
        if not self.queues_ahead:
            CapturedDecode.queue_ahead = lambda d, kind: None
        inner = type(self.model).forward.__get__(self.model)
        self.model.forward = lambda *a, **k: inner(*a, **k) if building_graph() else self._timed(inner, *a, **k)
        module = self.model.module
        if hasattr(module, "block_forward"):   # block-causal models: the loop calls the module's block forward
            block = type(module).block_forward.__get__(module)
            module.block_forward = lambda *a, **k: block(*a, **k) if building_graph() else self._timed(block, *a, **k)
        self._replay = GraphedCall.__call__
        GraphedCall.__call__ = lambda g, *a: self._timed(self._replay, g, *a)
        # a captured block-causal step, and a captured truncated step, holds its forward (and the
        # step's decision) in one graph: the step is timed as the forward
        self._steps = []
        for cls in forward_holding_steps():
            replay, own = cls.replay_step, "replay_step" in vars(cls)   # own: a timer outside this one
            self._steps.append((cls, replay, own))
            cls.replay_step = lambda d, kind, replay=replay: self._timed(replay, d, kind)
        return self

    def __exit__(self, *exc):
        from acceleration.captured import CapturedDecode
        from acceleration.graphs import GraphedCall
        CapturedDecode.queue_ahead = self._queue_ahead
        del self.model.forward   # back to the class's method
        if "block_forward" in vars(self.model.module):
            del self.model.module.block_forward
        GraphedCall.__call__ = self._replay
        for cls, replay, own in self._steps:
            if own:
                cls.replay_step = replay
            else:
                del cls.replay_step   # back to the inherited method

    def take(self) -> tuple[float, int]:
        out = (self.seconds, self.calls)
        self.seconds, self.calls = 0.0, 0
        return out


class EventForwardTimer(ForwardTimer):
    """ForwardTimer that does not synchronize: CUDA events on the current stream around each
    forward, read in `take()`. It times the forwards inside an unperturbed decode loop, under the
    clocks and power state of that loop (bench/bench_speed.py's loop overhead). CUDA only. Steps
    queued ahead stay on: their forwards are not timed (bench_speed counts them apart)."""

    queues_ahead = True

    def __init__(self, model, devices):
        super().__init__(model, devices)
        self.events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def _timed(self, fn, *args, **kwargs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        out = fn(*args, **kwargs)
        b.record()
        self.events.append((a, b))
        return out

    def take(self) -> tuple[float, int]:
        torch.cuda.synchronize()
        out = (sum(a.elapsed_time(b) for a, b in self.events) / 1000, len(self.events))
        self.events = []
        return out


class UnqueuedEventForwardTimer(EventForwardTimer):
    """EventForwardTimer with no step queued ahead: every forward of the decode is timed by its
    events, the steps queued ahead included (each then runs after the host's sync, as its own
    forward graph and step graph). bench_speed times a decode that queued steps ahead against the
    forwards of this second decode of the same steps."""

    queues_ahead = False
