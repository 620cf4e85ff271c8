"""The `backups` snapshot: the folder (verified backups, retention, free space), the state
file (last failure) and the service (next run, a run in progress, run counters).

/status and /metrics only read this snapshot; status.py beside this file renders it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import BackupConfig, WatchConfig
from ..snapshot import SnapshotStore, SourceState
from ..watchers.base import SourceUnavailable, Watcher
from . import disk
from .model import RESULTS, RunResult
from .runner import Progress
from .store import BackupStore

MAX_LISTED = 100  # backups listed in the snapshot (newest first); counts cover all
STALE_FACTOR = 1.5  # status degrades past 1.5 x the schedule interval


@dataclass
class ServiceView:
    """What the watcher publishes about the service (the folder it reads itself)."""

    enabled: bool
    disabled_reason: str | None = None
    interval_seconds: float | None = None
    next_run_at: float | None = None
    running: Progress | None = None
    runs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    last_result: RunResult | None = None


class BackupService(Protocol):
    """What the watcher reads of the service (agent/backup/scheduler.py): the service
    owns the watcher, so the watcher knows it by this shape, not by import."""

    @property
    def config(self) -> BackupConfig: ...

    def view(self) -> ServiceView: ...

    def refresh(self) -> None: ...


def collect(service: BackupService, view: ServiceView, now: float) -> dict[str, Any]:
    """Read the folder and the state file (blocking: run in a thread)."""
    from .runner import retention_plan

    config = service.config
    store = BackupStore(config.directory)
    try:
        manifests, problems = store.scan()
    except OSError as exc:
        raise SourceUnavailable(f"cannot read {config.directory}: {exc.strerror}") from None
    state = store.read_state()
    run = view.last_result
    if run is not None and not run.ok and (state.last_failure_at or 0) < run.finished_at:
        # The state file could not be written (folder missing, disk full): the
        # service's memory of the run still reports the failure.
        state.last_failure_at, state.last_error = run.finished_at, run.error
        state.last_error_stage, state.last_result = run.stage, run.result
        state.last_duration_seconds = round(run.duration, 3)
    plan = retention_plan(config, manifests, now)
    verified = [m for m in manifests if m.verified]
    last = verified[-1] if verified else None
    try:
        free = disk.free_bytes(config.directory)
    except OSError:
        free = None
    running = view.running
    stale_after = STALE_FACTOR * view.interval_seconds if view.interval_seconds else None
    last_run = view.last_result
    return {
        "enabled": config.enabled,
        "directory": str(config.directory),
        "schedule": config.schedule,
        "timezone": config.timezone,
        "interval_seconds": view.interval_seconds,
        "stale_after_seconds": stale_after,
        "next_run_at": view.next_run_at,
        "running": None
        if running is None
        else {
            "id": running.id or None,
            "trigger": running.trigger,
            "since": running.since,
            "stage": running.stage,
            "bytes": running.bytes,
        },
        "last_success_at": last.finished_at if last else None,
        "last_success_id": last.id if last else None,
        "last_size_bytes": last.size if last else None,
        "last_success_duration_seconds": round(last.finished_at - last.started_at, 3)
        if last
        else None,
        "last_failure_at": state.last_failure_at,
        "last_error": state.last_error,
        "last_error_stage": state.last_error_stage,
        "last_result": state.last_result,
        "last_duration_seconds": state.last_duration_seconds,
        "last_warnings": list(last.warnings) if last else [],
        "last_trial_restore": state.last_trial_restore,
        "last_run": last_run.to_dict() if last_run else None,
        "runs": dict(view.runs),
        "retained": plan.counts(),
        "count": len(manifests),
        "free_bytes": free,
        "required_free_bytes": disk.required_bytes(last.size if last else None, config.min_free),
        "problems": problems,
        "backups": [
            {
                "id": m.id,
                "started_at": m.started_at,
                "finished_at": m.finished_at,
                "size_bytes": m.size,
                "verified": m.verified,
                "compression": m.compression,
                "server_version": m.server_version,
                "keep": list(plan.keep.get(m.id, ())),
                "warnings": list(m.warnings),
            }
            for m in reversed(manifests[-MAX_LISTED:])
        ],
    }


class BackupWatcher(Watcher):
    source = "backups"

    def __init__(self, store: SnapshotStore, config: WatchConfig, service: BackupService) -> None:
        super().__init__(store, config)
        self.service = service

    async def poll(self) -> tuple[SourceState, str | None, dict[str, Any]]:
        self.service.refresh()
        view = self.service.view()
        if not view.enabled:
            data = {"enabled": False, "reason": view.disabled_reason, "runs": dict(view.runs)}
            return SourceState.OK, None, data
        data = await asyncio.to_thread(collect, self.service, view, time.time())
        # OK means "the folder can be read" (aistack_source_up); how healthy the backups
        # are is decided at read time by health(), from this data.
        return SourceState.OK, None, data
