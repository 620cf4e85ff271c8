"""GPU source: which GPUs the host has and whether the agent can read them.

NVML comes from nvidia-ml-py, an optional dependency (`aistack[gpu]`): the agent runs
without it. The GPU health issue turns this into the full collector (XID events, ECC,
throttling, AMD through sysfs); this establishes discovery and the "why not" reasons.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType
from typing import Any

from ..snapshot import SourceState
from .base import SourceUnavailable, Watcher

NVIDIA_PROC = Path("/proc/driver/nvidia")
DRM_ROOT = Path("/sys/class/drm")
AMD_VENDOR = "0x1002"


def _load_nvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    module: ModuleType = pynvml
    return module


def _amd_cards(drm_root: Path) -> list[str]:
    cards = []
    for vendor in sorted(drm_root.glob("card[0-9]*/device/vendor")):
        try:
            if vendor.read_text().strip() == AMD_VENDOR:
                cards.append(vendor.parent.parent.name)
        except OSError:
            continue
    return cards


def _nvml_gpus(nvml: Any) -> dict[str, Any]:
    nvml.nvmlInit()
    try:
        driver = nvml.nvmlSystemGetDriverVersion()
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                {
                    "index": index,
                    "uuid": _text(nvml.nvmlDeviceGetUUID(handle)),
                    "name": _text(nvml.nvmlDeviceGetName(handle)),
                    "temperature_celsius": nvml.nvmlDeviceGetTemperature(
                        handle, nvml.NVML_TEMPERATURE_GPU
                    ),
                    "memory_used_bytes": int(memory.used),
                    "memory_total_bytes": int(memory.total),
                }
            )
        return {"vendor": "nvidia", "driver": _text(driver), "gpus": gpus}
    finally:
        nvml.nvmlShutdown()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GpuWatcher(Watcher):
    source = "gpu"
    nvidia_proc = NVIDIA_PROC
    drm_root = DRM_ROOT

    async def poll(self) -> tuple[SourceState, str | None, dict[str, Any]]:
        nvml = _load_nvml()
        has_nvidia = self.nvidia_proc.exists()
        if nvml is not None and has_nvidia:
            try:
                data = await asyncio.to_thread(_nvml_gpus, nvml)
            except Exception as exc:  # NVMLError: driver not loaded, GPU lost, ...
                raise SourceUnavailable(f"NVML error: {exc}") from None
            return SourceState.OK, None, data
        if has_nvidia:
            raise SourceUnavailable(
                "NVIDIA driver present but nvidia-ml-py is not installed "
                "(install it to let the agent read the GPUs: pip install nvidia-ml-py)"
            )
        amd = _amd_cards(self.drm_root)
        if amd:
            # sysfs reading arrives with the GPU health issue; say so rather than guess.
            return (
                SourceState.DEGRADED,
                f"AMD GPU found ({', '.join(amd)}); AMD health is not read yet",
                {"vendor": "amd", "gpus": []},
            )
        raise SourceUnavailable(
            f"no GPU found (no NVIDIA driver at {self.nvidia_proc}, "
            f"no AMD card under {self.drm_root})"
        )
