"""GPU source: every GPU's vitals and health, XID errors, and Ollama's models on the GPUs.

The reading is done by agent.gpu (NVML / nvidia-smi / AMD sysfs, the XID event thread,
the kernel log) in a worker thread; this watcher judges each sample (agent.gpu.health),
asks Ollama which models are loaded, and publishes one snapshot. No GPU at all is
`unavailable` with the reason and `gpus: []`: a state, not an error, and it does not
degrade the stack (CPU inference works).
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..config import AgentConfig, GpuConfig, WatchConfig
from ..gpu.health import Health, evaluate, ollama_view, summary
from ..gpu.model import GpuSample
from ..gpu.sampler import GpuPaths, GpuSampler, SamplerBusy, import_pynvml
from ..gpu.smi import Runner, run_command
from ..gpu.xid import XidEvent, xid_name
from ..ollama_api import Fetch, fetch_ps
from ..snapshot import SnapshotStore, SourceState
from .base import SourceUnavailable, Watcher

NVIDIA_PROC = Path("/proc/driver/nvidia")
DRM_ROOT = Path("/sys/class/drm")

XID_LOG = 64  # drained XID events kept in the snapshot, for the GPU rule (heal/xid.py)
# The GPU rule's last restart of Ollama, as /status shows it (last_at, reason, result);
# read from the actuator's record: this watcher only observes.
LastRestart = Callable[[], Mapping[str, Any] | None]


class GpuWatcher(Watcher):
    source = "gpu"
    nvidia_proc = NVIDIA_PROC
    drm_root = DRM_ROOT
    proc_root = Path("/proc")
    kmsg_path = Path("/dev/kmsg")

    def __init__(
        self,
        store: SnapshotStore,
        config: WatchConfig,
        gpu: GpuConfig | None = None,
        *,
        load_nvml: Callable[[], Any] = import_pynvml,
        smi_command: Callable[[], str | None] = lambda: shutil.which("nvidia-smi"),
        smi_run: Runner = run_command,
        ollama_fetch: Fetch = fetch_ps,
        last_restart: LastRestart = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        wait_ms: int = 500,
    ) -> None:
        super().__init__(store, config)
        self.gpu = gpu or GpuConfig()
        self.sampler: GpuSampler | None = None
        self._load_nvml = load_nvml
        self._smi_command = smi_command
        self._smi_run = smi_run
        self._ollama_fetch = ollama_fetch
        self._last_restart = last_restart
        self.clock = clock
        self.wall = wall
        self._wait_ms = wait_ms
        self._levels: dict[str, str] = {}
        self._partial: set[str] = set()
        self._xid_seq = 0
        self._xid_log: collections.deque[dict[str, Any]] = collections.deque(maxlen=XID_LOG)

    def configure(self, config: AgentConfig) -> None:
        self.configure_gpu(config.gpu)
        super().configure(config)

    def configure_gpu(self, gpu: GpuConfig) -> None:
        """Take a reloaded `gpu:` section and poll again at once."""
        self.gpu = gpu
        if self.sampler is not None:
            self.sampler.kernel_log_wanted = gpu.kernel_log
        self._wake.set()

    def _ensure_sampler(self) -> GpuSampler:
        if self.sampler is None:
            paths = GpuPaths(self.nvidia_proc, self.drm_root, self.proc_root, self.kmsg_path)
            self.sampler = GpuSampler(
                paths, kernel_log=self.gpu.kernel_log, load_nvml=self._load_nvml,
                smi_command=self._smi_command, smi_run=self._smi_run, clock=self.clock,
                wall=self.wall, wait_ms=self._wait_ms,
            )  # fmt: skip
        return self.sampler

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the XID thread and release NVML; bounded, so a wedged driver cannot hold
        the agent past systemd's stop timeout."""
        sampler, self.sampler = self.sampler, None
        if sampler is None:
            return
        closer = threading.Thread(target=sampler.close, name="aistack-gpu-close", daemon=True)
        closer.start()
        closer.join(1.5)

    async def poll(self) -> tuple[SourceState, str | None, dict[str, Any]]:
        sampler = self._ensure_sampler()
        cfg = self.gpu
        ollama_timeout = max(0.1, self.config.timeout / 2)
        try:
            collection, ps = await asyncio.gather(
                asyncio.to_thread(sampler.sample),
                self._ollama_fetch(cfg.ollama_url, ollama_timeout),
            )
        except SamplerBusy as exc:
            raise SourceUnavailable(str(exc)) from None
        now = self.clock()
        tracker = sampler.tracker
        judged: list[tuple[GpuSample, Health]] = []
        entries = []
        for gpu in collection.gpus:
            health = evaluate(gpu, tracker.recent(gpu.uuid, now - cfg.xid_window), cfg, now)
            judged.append((gpu, health))
            last = tracker.last(gpu.uuid)
            entries.append(
                {
                    **gpu.as_dict(),
                    "healthy": health.healthy,
                    "health": health.level,
                    "reasons": list(health.reasons),
                    "warnings": list(health.warnings),
                    "xid_errors": {str(k): v for k, v in sorted(tracker.counts(gpu.uuid).items())},
                    "last_xid": last.as_dict() if last is not None else None,
                }
            )
        new = tracker.drain_new()
        self._log_changes(judged, new, ps.models)
        for event in new:
            self._xid_seq += 1
            self._xid_log.append({"seq": self._xid_seq, "uuid": event.uuid, **event.as_dict()})
        ollama = ollama_view(judged, ps.models)
        restarted = self._last_restart() or {}
        restart = {key: restarted.get(key) for key in ("last_at", "reason", "result")}
        ollama.update(
            url=cfg.ollama_url, reachable=ps.reachable, error=ps.error, models=ps.models,
            restart={"enabled": cfg.restart_ollama_on_xid, "unit": cfg.ollama_unit, **restart},
        )  # fmt: skip
        vendors = sorted({g.vendor for g in collection.gpus})
        data: dict[str, Any] = {
            "vendor": vendors[0] if len(vendors) == 1 else None,
            "backend": collection.backend,
            "driver": collection.driver,
            "problem": collection.problem,
            "gpus": entries,
            "xid": {
                "events": sampler.event_status,
                "kernel_log": sampler.kernel_log_status,
                "unattributed": {str(k): v for k, v in sorted(tracker.counts(None).items())},
                "log": list(self._xid_log),  # seq-numbered: the GPU rule takes the new ones
            },
            "ollama": ollama,
        }
        if not collection.gpus:
            return SourceState.UNAVAILABLE, collection.problem or "no GPU found", data
        unhealthy = [summary(g, h) for g, h in judged if not h.healthy]
        if unhealthy:
            return SourceState.DEGRADED, "; ".join(unhealthy), data
        return SourceState.OK, None, data

    def _log_changes(
        self,
        judged: list[tuple[GpuSample, Health]],
        new: list[XidEvent],
        models: list[dict[str, Any]],
    ) -> None:
        """Log what changed, once: a storm of XIDs is one line per GPU and XID per poll."""
        index = {g.uuid: g.index for g, _ in judged}
        for (uuid, xid), count in sorted(
            collections.Counter((e.uuid or "", e.xid) for e in new).items()
        ):
            self.log.warning("gpu xid", gpu=index.get(uuid), uuid=uuid or None, xid=xid,
                             count=count, meaning=xid_name(xid))  # fmt: skip
        for gpu, health in judged:
            if self._levels.get(gpu.uuid, "ok") != health.level:
                log = self.log.info if health.level == "ok" else self.log.warning
                log("gpu health", gpu=gpu.index, uuid=gpu.uuid, health=health.level,
                    reasons=list(health.reasons), warnings=list(health.warnings))  # fmt: skip
            self._levels[gpu.uuid] = health.level
        partial = {m["name"] for m in models if m["vram_bytes"] < m["size_bytes"]}
        partial = partial if judged else set()  # no GPU: the CPU is the plan
        for model in models:
            if model["name"] in partial - self._partial:
                self.log.warning("ollama model partly on the CPU", model=model["name"],
                                 size=model["size_bytes"], vram=model["vram_bytes"])  # fmt: skip
        self._partial = partial
