"""The `backups` snapshot: the folder (verified backups, retention, free space), the state
file (last failure) and the service (next run, a run in progress, run counters).

/status and /metrics only read this snapshot. How healthy backups are is decided from
it at read time (`health`), so an age crosses the 1.5 x interval line when it does, not
at the next poll.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import BackupConfig, WatchConfig
from ..snapshot import SnapshotStore, SourceSnapshot, SourceState, thaw
from ..watchers.base import SourceUnavailable, Watcher
from . import disk
from .model import RESULTS, RunResult, iso
from .runner import Progress
from .store import BackupStore

MAX_LISTED = 100  # backups listed in the snapshot (newest first); counts cover all
STALE_FACTOR = 1.5  # status degrades past 1.5 x the schedule interval


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


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


def health(data: Any, now: float | None = None) -> tuple[str, str | None]:
    """(state, reason) of the backups from snapshot data, at `now`.

    ok | running | pending (no run yet) | failing (last run failed, last success still
    recent) | stale (last success older than 1.5 x the interval) | never-succeeded |
    disabled. `stale` and `never-succeeded` degrade the agent's overall state.
    """
    now = time.time() if now is None else now
    if not data.get("enabled"):
        return "disabled", None
    last = data.get("last_success_at")
    stale_after = data.get("stale_after_seconds")
    failure = data.get("last_failure_at")
    error = data.get("last_error")
    if last is None:
        if failure is not None:
            return "never-succeeded", f"no backup has succeeded yet; last error: {error}"
        if data.get("running"):
            return "running", None
        return "pending", None
    age = now - last
    if stale_after and age > stale_after:
        reason = (
            f"last successful backup {_age(age)} ago, older than 1.5 x the schedule interval "
            f"({_age(stale_after / STALE_FACTOR)})"
        )
        if failure is not None and failure > last:
            reason += f"; last error: {error}"
        return "stale", reason
    if failure is not None and failure > last:
        return "failing", f"last backup run failed: {error}"
    if data.get("running"):
        return "running", None
    return "ok", None


DEGRADING = ("stale", "never-succeeded")


def status_section(snap: SourceSnapshot | None, now: float | None = None) -> dict[str, Any]:
    """The `backups` section of /status."""
    if snap is None:
        return {"state": "not-configured"}
    now = time.time() if now is None else now
    data = snap.data
    if snap.state is SourceState.UNAVAILABLE:
        return {"state": "unavailable", "reason": snap.reason}
    state, reason = health(data, now)
    if state == "disabled":
        return {"state": "disabled", "reason": data.get("reason")}
    last = data.get("last_success_at")
    retained = data.get("retained") or {}
    running = data.get("running")
    return {
        "state": state,
        "reason": reason,
        "last_success_at": iso(last),
        "last_success_age_seconds": round(now - last, 3) if last is not None else None,
        "last_success_id": data.get("last_success_id"),
        "last_size_bytes": data.get("last_size_bytes"),
        "last_failure_at": iso(data.get("last_failure_at")),
        "last_error": data.get("last_error"),
        "last_duration_seconds": data.get("last_duration_seconds"),
        "next_run_at": iso(data.get("next_run_at")),
        "running": None if not running else {**running, "since": iso(running.get("since"))},
        "retained": retained.get("all", 0),
        "free_bytes": data.get("free_bytes"),
        "schedule": data.get("schedule"),
        "timezone": data.get("timezone"),
        "stale_after_seconds": data.get("stale_after_seconds"),
        "directory": data.get("directory"),
        "warnings": list(data.get("last_warnings") or ()),
    }


def degraded_reason(snap: SourceSnapshot | None, now: float | None = None) -> str | None:
    """One line for the overall state when backups degrade it, else None."""
    if snap is None:
        return None
    if snap.state is SourceState.UNAVAILABLE and snap.data.get("enabled", True):
        return snap.reason
    state, reason = health(snap.data, now)
    return reason if state in DEGRADING else None


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


def backups_document(snap: SourceSnapshot | None, now: float | None = None) -> dict[str, Any]:
    """GET /v1/backups: the status section and the backups, newest first."""
    items = []
    if snap is not None and snap.state is not SourceState.UNAVAILABLE:
        for entry in snap.data.get("backups") or ():
            item = thaw(entry)
            item["started_at"] = iso(item.get("started_at"))
            item["finished_at"] = iso(item.get("finished_at"))
            items.append(item)
    return {"status": status_section(snap, now), "backups": items}
