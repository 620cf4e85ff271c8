"""What one sample of one GPU holds, whichever backend (NVML, nvidia-smi, sysfs) read it.

A field is None when the GPU or backend cannot report it (no fan on a datacenter card,
no ECC on a consumer card): "not reported" must never read as zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class GpuProcess:
    pid: int
    name: str | None = None
    memory_bytes: int | None = None
    container_id: str | None = None  # the 64-hex Podman/Docker id, when the cgroup says so

    def as_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "name": self.name,
            "memory_bytes": self.memory_bytes,
            "container_id": self.container_id,
            "container": self.container_id[:12] if self.container_id else None,
        }


@dataclass
class GpuSample:
    index: int
    uuid: str
    name: str
    vendor: str  # nvidia | amd
    pci_bus_id: str | None = None
    temperature_celsius: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    utilization_ratio: float | None = None
    power_watts: float | None = None
    power_limit_watts: float | None = None
    fan_ratio: float | None = None
    ecc_corrected: int | None = None
    ecc_uncorrected: int | None = None
    throttle_thermal: bool | None = None
    throttle_power: bool | None = None
    processes: list[GpuProcess] = field(default_factory=list)
    error: str | None = None  # the GPU could not be read (lost, reset required, ...)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "uuid": self.uuid,
            "name": self.name,
            "vendor": self.vendor,
            "pci_bus_id": self.pci_bus_id,
            "temperature_celsius": self.temperature_celsius,
            "memory_used_bytes": self.memory_used_bytes,
            "memory_total_bytes": self.memory_total_bytes,
            "utilization_ratio": self.utilization_ratio,
            "power_watts": self.power_watts,
            "power_limit_watts": self.power_limit_watts,
            "fan_ratio": self.fan_ratio,
            "ecc_errors": {"corrected": self.ecc_corrected, "uncorrected": self.ecc_uncorrected},
            "throttled": {"thermal": self.throttle_thermal, "power": self.throttle_power},
            "processes": [p.as_dict() for p in self.processes],
            "error": self.error,
        }


@dataclass
class Collection:
    """One backend's answer: the GPUs, or why there are none."""

    backend: str | None  # nvml | nvidia-smi | sysfs | None
    gpus: list[GpuSample] = field(default_factory=list)
    driver: str | None = None
    # Set when the backend itself failed (driver not loaded): the reason, for a person.
    problem: str | None = None
    absent: bool = False  # the problem means "no such hardware here", not "sick hardware"
