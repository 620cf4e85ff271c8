"""NVIDIA GPUs through NVML (nvidia-ml-py), initialised once and kept across polls.

nvmlInit costs milliseconds and sets up driver state, so the session lives as long as the
agent; it is dropped and re-initialised only after a driver-level error (driver unloaded,
version mismatch), which is how the agent recovers when the driver comes back. Every
error is GPU state: a lost GPU is a sample with `error` set, never an exception out.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import errors, procs
from .model import Collection, GpuProcess, GpuSample
from .xid import XidEventThread, XidTracker

# Clock event ("throttle") reason bits, the same in every NVML version.
_THERMAL = 0x20 | 0x40  # SwThermalSlowdown | HwThermalSlowdown
_POWER = 0x04 | 0x80  # SwPowerCap | HwPowerBrakeSlowdown


class _GpuLost(Exception):
    """A GPU-level NVML error (lost, reset required): this GPU only."""


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlBackend:
    def __init__(
        self,
        nvml: Any,
        tracker: XidTracker,
        *,
        proc_root: Path = Path("/proc"),
        wall: Callable[[], float] = time.time,
        events: bool = True,
        wait_ms: int = 500,
    ) -> None:
        self.nvml = nvml
        self.tracker = tracker
        self.proc_root = proc_root
        self.wall = wall
        self.events_enabled = events
        self.wait_ms = wait_ms
        self.ready = False
        self.driver: str | None = None
        self.events: XidEventThread | None = None
        self.last_problem: str | None = None
        # index -> (uuid, name, pci bus id) from the last good read: a lost GPU keeps its name.
        self.known: dict[int, tuple[str, str, str | None]] = {}

    @property
    def event_status(self) -> str:
        if self.events is not None:
            return self.events.status
        return "disabled" if not self.events_enabled else "not started"

    def collect(self) -> Collection:
        if not self.ready:
            try:
                self._start()
            except Exception as exc:
                return self._failed(exc)
        try:
            count = int(self.nvml.nvmlDeviceGetCount())
            gpus = [self._sample(index) for index in range(count)]
        except Exception as exc:  # driver-level: drop the session, report, retry next poll
            self.close()
            return self._failed(exc)
        self.last_problem = None
        return Collection("nvml", gpus, driver=self.driver)

    def close(self) -> None:
        """Stop the event thread and release NVML (idempotent, never raises)."""
        if self.events is not None:
            self.events.stop()
            self.events = None
        if self.ready:
            self.ready = False
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()

    def _start(self) -> None:
        nvml = self.nvml
        nvml.nvmlInit()
        self.ready = True
        try:
            self.driver = _text(nvml.nvmlSystemGetDriverVersion())
            devices = []
            for index in range(int(nvml.nvmlDeviceGetCount())):
                try:
                    handle = nvml.nvmlDeviceGetHandleByIndex(index)
                    devices.append((handle, _text(nvml.nvmlDeviceGetUUID(handle))))
                except Exception as exc:
                    if errors.is_session_error(exc):
                        raise
                    continue  # a lost GPU: sampled (as lost) below, no events for it
        except Exception:
            self.close()
            raise
        if self.events_enabled and devices:
            self.events = XidEventThread(nvml, devices, self.tracker, self.wall, self.wait_ms)
            self.events.start()

    def _failed(self, exc: BaseException) -> Collection:
        reason = errors.describe(exc)
        self.last_problem = reason
        # GPUs seen before are reported as sick, not forgotten: "GPU lost" is GPU state.
        lost = [
            GpuSample(index, uuid, name, "nvidia", pci_bus_id=pci, error=reason)
            for index, (uuid, name, pci) in sorted(self.known.items())
        ]
        return Collection(
            "nvml", lost, driver=self.driver, problem=reason, absent=errors.is_absent(exc)
        )

    def _call(self, name: str, *args: Any) -> Any:
        """One NVML query: None when the GPU or driver does not offer it."""
        fn = getattr(self.nvml, name, None)
        if fn is None:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            if errors.is_not_available(exc) or errors.code(exc) is None:
                return None
            if errors.is_session_error(exc):
                raise
            raise _GpuLost(errors.describe(exc)) from exc

    def _sample(self, index: int) -> GpuSample:
        nvml = self.nvml
        uuid, name, pci = self.known.get(index, (f"nvidia-{index}", "NVIDIA GPU", None))
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            name = _text(nvml.nvmlDeviceGetName(handle))
        except Exception as exc:
            if errors.is_session_error(exc):
                raise
            return GpuSample(index, uuid, name, "nvidia", pci_bus_id=pci,
                             error=errors.describe(exc))  # fmt: skip
        try:
            info = self._call("nvmlDeviceGetPciInfo", handle)
            if info is not None:
                pci = _text(getattr(info, "busId", "")) or pci
            self.known[index] = (uuid, name, pci)
            sample = GpuSample(index, uuid, name, "nvidia", pci_bus_id=pci)
            self._fill(sample, handle)
        except _GpuLost as exc:
            return GpuSample(index, uuid, name, "nvidia", pci_bus_id=pci, error=str(exc))
        return sample

    def _fill(self, s: GpuSample, handle: Any) -> None:
        nvml = self.nvml
        temp = self._call("nvmlDeviceGetTemperature", handle,
                          getattr(nvml, "NVML_TEMPERATURE_GPU", 0))  # fmt: skip
        s.temperature_celsius = float(temp) if temp is not None else None
        memory = self._memory(handle)
        if memory is not None:
            s.memory_used_bytes, s.memory_total_bytes = int(memory.used), int(memory.total)
        util = self._call("nvmlDeviceGetUtilizationRates", handle)
        s.utilization_ratio = int(util.gpu) / 100 if util is not None else None
        power = self._call("nvmlDeviceGetPowerUsage", handle)  # milliwatts
        s.power_watts = int(power) / 1000 if power is not None else None
        limit = self._call("nvmlDeviceGetPowerManagementLimit", handle)
        if limit is None:
            limit = self._call("nvmlDeviceGetEnforcedPowerLimit", handle)
        s.power_limit_watts = int(limit) / 1000 if limit is not None else None
        fan = self._call("nvmlDeviceGetFanSpeed", handle)  # percent
        s.fan_ratio = int(fan) / 100 if fan is not None else None
        volatile = getattr(nvml, "NVML_VOLATILE_ECC", 0)
        for attr, kind in (("ecc_corrected", "CORRECTED"), ("ecc_uncorrected", "UNCORRECTED")):
            kind_code = getattr(nvml, f"NVML_MEMORY_ERROR_TYPE_{kind}", kind == "UNCORRECTED")
            count = self._call("nvmlDeviceGetTotalEccErrors", handle, kind_code, volatile)
            setattr(s, attr, int(count) if count is not None else None)
        reasons = self._call("nvmlDeviceGetCurrentClocksEventReasons", handle)
        if reasons is None:
            reasons = self._call("nvmlDeviceGetCurrentClocksThrottleReasons", handle)
        if reasons is not None:
            s.throttle_thermal = bool(int(reasons) & _THERMAL)
            s.throttle_power = bool(int(reasons) & _POWER)
        running = self._call("nvmlDeviceGetComputeRunningProcesses", handle) or []
        for proc in running:
            pid = int(proc.pid)
            used = getattr(proc, "usedGpuMemory", None)
            s.processes.append(
                GpuProcess(
                    pid,
                    name=procs.process_name(pid, self.proc_root),
                    memory_bytes=int(used) if used is not None else None,
                    container_id=procs.container_of(pid, self.proc_root),
                )
            )

    def _memory(self, handle: Any) -> Any:
        """v2 first: its `used` leaves out driver-reserved memory, as nvidia-smi does."""
        version = getattr(self.nvml, "nvmlMemory_v2", None)
        # None from v2: an older driver or nvidia-ml-py without it; v1 then.
        memory = self._call("nvmlDeviceGetMemoryInfo", handle, version) if version else None
        return memory if memory is not None else self._call("nvmlDeviceGetMemoryInfo", handle)
