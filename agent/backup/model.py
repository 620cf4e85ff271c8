"""Errors, run results and the narrow interface the API uses to start a run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

Result = Literal["success", "failure", "refused"]
RESULTS: tuple[Result, ...] = ("success", "failure", "refused")


class BackupError(Exception):
    """A backup operation failed. `stage` says where (dump, verify, disk...), `detail`
    carries what the tool said (stderr), for the report."""

    def __init__(self, stage: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message
        self.detail = detail


class DiskSpaceError(BackupError):
    """Not enough free space to start a run: the run is refused, not failed midway."""

    def __init__(self, message: str, free: int, required: int) -> None:
        super().__init__("disk", message)
        self.free = free
        self.required = required


class BusyError(BackupError):
    """Another run, prune or restore holds the backup folder's lock."""

    def __init__(self, message: str) -> None:
        super().__init__("lock", message)


class NotFoundError(BackupError):
    def __init__(self, message: str) -> None:
        super().__init__("lookup", message)


class AlreadyRunning(Exception):
    def __init__(self, since: float, trigger: str) -> None:
        super().__init__(f"a backup ({trigger}) is already running since {iso(since)}")
        self.since = since
        self.trigger = trigger


class BackupsDisabled(Exception):
    pass


def iso(ts: float | None) -> str | None:
    """Unix time -> `2026-11-26T03:00:00Z` (None stays None)."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run, as the API, the CLI and the state file report it."""

    result: Result
    trigger: str
    started_at: float
    finished_at: float
    id: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    error: str | None = None
    stage: str | None = None
    stderr: str | None = None
    warnings: tuple[str, ...] = ()
    pruned: tuple[str, ...] = ()
    retained: int | None = None
    free_bytes: int | None = None
    required_free_bytes: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result == "success"

    @property
    def duration(self) -> float:
        return max(0.0, self.finished_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "trigger": self.trigger,
            "id": self.id,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_seconds": round(self.duration, 3),
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "error": self.error,
            "stage": self.stage,
            "stderr": self.stderr,
            "warnings": list(self.warnings),
            "pruned": list(self.pruned),
            "retained": self.retained,
            "free_bytes": self.free_bytes,
            "required_free_bytes": self.required_free_bytes,
            **dict(self.extra),
        }


class BackupControl(Protocol):
    """What the API may ask of the backup service."""

    async def trigger(self, wait: bool, trigger: str = "api") -> RunResult | None:
        """Start a run now; with wait, return its result. Raises AlreadyRunning or
        BackupsDisabled."""
        ...
