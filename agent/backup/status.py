"""The backups' part of /status and GET /v1/backups, rendered from the `backups` snapshot.

How healthy backups are is decided here at read time (`health`), so an age crosses the
1.5 x interval line when it does, not at the next poll of the watcher.
"""

from __future__ import annotations

import time
from typing import Any

from ..snapshot import SourceSnapshot, SourceState, thaw
from .model import iso
from .watcher import STALE_FACTOR


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


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


def status_section(snap: SourceSnapshot[Any] | None, now: float | None = None) -> dict[str, Any]:
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


def degraded_reason(snap: SourceSnapshot[Any] | None, now: float | None = None) -> str | None:
    """One line for the overall state when backups degrade it, else None."""
    if snap is None:
        return None
    if snap.state is SourceState.UNAVAILABLE and snap.data.get("enabled", True):
        return snap.reason
    state, reason = health(snap.data, now)
    return reason if state in DEGRADING else None


def backups_document(snap: SourceSnapshot[Any] | None, now: float | None = None) -> dict[str, Any]:
    """GET /v1/backups: the status section and the backups, newest first."""
    items = []
    if snap is not None and snap.state is not SourceState.UNAVAILABLE:
        for entry in snap.data.get("backups") or ():
            item = thaw(entry)
            item["started_at"] = iso(item.get("started_at"))
            item["finished_at"] = iso(item.get("finished_at"))
            items.append(item)
    return {"status": status_section(snap, now), "backups": items}
