"""Measurement around the decode call, and nothing else.

- Timer: perf_counter around the call, with torch.cuda.synchronize() at both ends on GPU.
- EnergyMeter: NVML total-energy counter (mJ) differences over the same windows, for the GPU in
  use (found by UUID, so CUDA_VISIBLE_DEVICES is respected); idle power sampled before the run so
  net energy = gross - idle W x time. Without a GPU or NVML it reports None with the reason.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Window:
    seconds: float = 0.0
    energy_j: float | None = None


class EnergyMeter:
    def __init__(self, device: torch.device):
        self.handle, self.reason, self.idle_w = None, None, None
        if device.type != "cuda":
            self.reason = "no GPU: energy is measured only on NVIDIA GPUs"
            return
        try:
            import pynvml
            pynvml.nvmlInit()
            uuid = str(torch.cuda.get_device_properties(device).uuid)
            self.handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else "GPU-" + uuid)
            self._nvml = pynvml
            self.read_mj()
        except Exception as e:  # NVML missing, no permission, counter unsupported
            self.handle, self.reason = None, f"NVML energy counter unavailable: {e}"

    @property
    def available(self) -> bool:
        return self.handle is not None

    def read_mj(self) -> int:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)

    def measure_idle(self, seconds: float = 2.0) -> float | None:
        """Mean power (W) from the energy counter over an idle interval."""
        if not self.available:
            return None
        e0, t0 = self.read_mj(), time.perf_counter()
        time.sleep(seconds)
        self.idle_w = (self.read_mj() - e0) / 1000 / (time.perf_counter() - t0)
        return self.idle_w

    def info(self) -> dict:
        if not self.available:
            return {"available": False, "reason": self.reason}
        n = self._nvml
        return {"available": True, "idle_w": self.idle_w, "name": n.nvmlDeviceGetName(self.handle),
                "power_limit_w": n.nvmlDeviceGetPowerManagementLimit(self.handle) / 1000,
                "temperature_c": n.nvmlDeviceGetTemperature(self.handle, n.NVML_TEMPERATURE_GPU)}


@contextmanager
def timed(device: torch.device, meter: EnergyMeter | None = None):
    """Time (and meter) exactly the enclosed region, GPU synchronized at both ends."""
    w = Window()
    _sync(device)
    e0 = meter.read_mj() if meter and meter.available else None
    t0 = time.perf_counter()
    try:
        yield w
    finally:
        _sync(device)
        w.seconds = time.perf_counter() - t0
        if e0 is not None:
            w.energy_j = (meter.read_mj() - e0) / 1000
