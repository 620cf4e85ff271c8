"""One GPU sample, from whichever source the host has; runs in a worker thread.

Order: NVML (nvidia-ml-py installed) > nvidia-smi (no nvidia-ml-py, but the tool is on
PATH) > AMD sysfs > nothing (`gpus: []`, not an error). AMD cards are read only when no
NVIDIA GPU answered, so the integrated Radeon next to a GeForce does not show up as the
inference GPU. The kernel log is read at each sample for XIDs NVML does not deliver.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from . import amd
from .model import Collection, GpuSample
from .nvml import NvmlBackend
from .smi import Runner, SmiBackend, run_command
from .xid import (
    KernelLog,
    XidEvent,
    XidEventThread,
    XidTracker,
    parse_kernel_record,
    pci_key,
)


class SamplerBusy(Exception):
    """The previous sample is still running (an NVML call hung): do not pile up threads."""


def import_pynvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    module: ModuleType = pynvml
    return module


@dataclass(frozen=True)
class GpuPaths:
    nvidia_proc: Path = Path("/proc/driver/nvidia")
    drm_root: Path = Path("/sys/class/drm")
    proc_root: Path = Path("/proc")
    kmsg: Path = Path("/dev/kmsg")


class GpuSampler:
    def __init__(
        self,
        paths: GpuPaths = GpuPaths(),
        *,
        kernel_log: bool = True,
        load_nvml: Callable[[], Any] = import_pynvml,
        smi_command: Callable[[], str | None] = lambda: shutil.which("nvidia-smi"),
        smi_run: Runner = run_command,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        wait_ms: int = 500,
    ) -> None:
        self.paths = paths
        self.clock = clock
        self.wall = wall
        self.tracker = XidTracker(clock)
        self._load_nvml = load_nvml
        self._smi_command = smi_command
        self._smi_run = smi_run
        self._wait_ms = wait_ms
        self._nvml: NvmlBackend | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.kernel_log: KernelLog | None = None
        self.kernel_log_wanted = kernel_log  # applied at the next sample (config reload)
        self._apply_kernel_log()

    @property
    def event_status(self) -> str:
        return self._nvml.event_status if self._nvml is not None else "no NVML"

    @property
    def kernel_log_status(self) -> str:
        return self.kernel_log.status if self.kernel_log is not None else "disabled"

    @property
    def busy(self) -> bool:
        """A sample is running (in a worker thread; a hung NVML call keeps it so)."""
        return self._lock.locked()

    @property
    def xid_events(self) -> XidEventThread | None:
        """NVML's XID event thread, when NVML is loaded and events are on."""
        return self._nvml.events if self._nvml is not None else None

    def sample(self) -> Collection:
        if not self._lock.acquire(blocking=False):
            raise SamplerBusy("the previous GPU sample is still running (a hung NVML call?)")
        try:
            if self._closed:
                return Collection(None, problem="GPU sampler stopped")
            self._apply_kernel_log()
            collection = self._collect()
            self._read_kernel_log(collection.gpus)
            return collection
        finally:
            self._lock.release()

    def close(self) -> None:
        """Stop the XID thread and release NVML and the kernel log (at agent stop)."""
        with self._lock:
            self._closed = True
            if self._nvml is not None:
                self._nvml.close()
            if self.kernel_log is not None:
                self.kernel_log.close()

    def _apply_kernel_log(self) -> None:
        if self.kernel_log_wanted and self.kernel_log is None:
            self.kernel_log = KernelLog(self.paths.kmsg)
            self.kernel_log.open()
        elif not self.kernel_log_wanted and self.kernel_log is not None:
            self.kernel_log.close()
            self.kernel_log = None

    def _collect(self) -> Collection:
        paths = self.paths
        nvml_problem = None
        if self._nvml is None:
            module = self._load_nvml()
            if module is not None:
                self._nvml = NvmlBackend(
                    module, self.tracker, proc_root=paths.proc_root, wall=self.wall,
                    wait_ms=self._wait_ms,
                )  # fmt: skip
        if self._nvml is not None:
            collection = self._nvml.collect()
            if collection.gpus or not collection.absent:
                return collection
            nvml_problem = collection.problem
        else:
            command = self._smi_command()
            if command is not None:
                collection = SmiBackend(command, self._smi_run, proc_root=paths.proc_root).collect()
                if collection.gpus or paths.nvidia_proc.exists():
                    return collection
            elif paths.nvidia_proc.exists():
                return Collection(
                    None,
                    problem="NVIDIA driver present but nvidia-ml-py is not installed and "
                    "nvidia-smi is not on PATH (install it to let the agent read the GPUs: "
                    "pip install nvidia-ml-py)",
                )
        cards = amd.read_amd(paths.drm_root)
        if cards:
            return Collection("sysfs", cards)
        why = nvml_problem or f"no NVIDIA driver at {paths.nvidia_proc}"
        return Collection(
            None, problem=f"no GPU found ({why}, no AMD card under {paths.drm_root})", absent=True
        )

    def _read_kernel_log(self, gpus: list[GpuSample]) -> None:
        if self.kernel_log is None:
            return
        by_pci = {pci_key(g.pci_bus_id): g.uuid for g in gpus if g.vendor == "nvidia"}
        by_pci.pop(None, None)
        for record in self.kernel_log.read():
            found = parse_kernel_record(record)
            if found is None:
                continue
            uuid = by_pci.get(found.pci)
            if uuid is None and len(gpus) == 1 and not by_pci:  # no address to compare
                uuid = gpus[0].uuid
            at = found.at if found.at is not None else self.clock()
            wall = self.wall() - max(0.0, self.clock() - at)
            self.tracker.record(XidEvent(found.xid, at, wall, "kernel", uuid, found.detail))
