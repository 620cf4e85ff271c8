"""`backups.enabled: auto`: off with a reason until the stack's PostgreSQL is applied, on
once its unit file is there (with a catch-up run), off again when it goes; true and false
keep their meaning. The unit folder is a real temporary folder; the service and its
watcher run as the daemon runs them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.backup.activation import POSTGRES_UNIT_FILE, decide
from agent.backup.model import BackupsDisabled
from agent.backup.scheduler import BackupService
from agent.backup.status import status_section
from agent.config import BackupConfig, PostgresConfig, StackConfig, WatchConfig
from agent.snapshot import SnapshotStore, SourceSnapshot


def _stack(tmp_path: Path, postgres: bool = True) -> StackConfig:
    return StackConfig(unit_dir=tmp_path / "units", postgres=PostgresConfig(enabled=postgres))


def _apply(stack: StackConfig) -> None:
    """What `aistack up` leaves behind that matters here: the postgres quadlet file."""
    stack.unit_dir.mkdir(parents=True, exist_ok=True)
    (stack.unit_dir / POSTGRES_UNIT_FILE).write_text("[Container]\nImage=postgres\n")


def test_auto_waits_for_the_applied_postgres(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    off = decide(BackupConfig(), stack)
    assert not off.on
    assert off.reason is not None and "not applied yet" in off.reason
    assert str(stack.unit_dir / POSTGRES_UNIT_FILE) in off.reason and "aistack up" in off.reason
    _apply(stack)
    assert decide(BackupConfig(), stack).on


def test_auto_is_off_when_the_stack_has_no_postgres(tmp_path: Path) -> None:
    stack = _stack(tmp_path, postgres=False)
    _apply(stack)  # a file left from before does not count: the config says no
    decision = decide(BackupConfig(), stack)
    assert not decision.on and "stack.postgres is not enabled" in str(decision.reason)


def test_true_false_and_a_local_source(tmp_path: Path) -> None:
    stack = _stack(tmp_path)  # nothing applied
    assert decide(BackupConfig(enabled=True), stack).on
    assert decide(BackupConfig(source="local"), stack).on  # the person's own server
    off = decide(BackupConfig(enabled=False), stack)
    assert not off.on and off.reason == "backups.enabled is false"
    _apply(stack)
    assert not decide(BackupConfig(enabled=False), stack).on


async def _wait(what: str, pred: Callable[[], bool]) -> None:
    for _ in range(3000):  # a hang guard only: each check returns as soon as it holds
        if pred():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


async def test_the_service_turns_on_after_apply_and_off_when_postgres_goes(
    tmp_path: Path,
) -> None:
    stack = _stack(tmp_path)
    config = BackupConfig(directory=tmp_path / "b", schedule="0 3 * * *", timezone="UTC")
    snapshots = SnapshotStore()
    service = BackupService(snapshots, config, WatchConfig(), stack=stack)
    task = asyncio.create_task(service.run())  # as the daemon runs it

    def published() -> SourceSnapshot | None:
        return snapshots.latest().get("backups")

    try:
        await _wait("the first snapshot", lambda: published() is not None)
        section = status_section(published())
        assert section["state"] == "disabled" and "not applied yet" in section["reason"]
        with pytest.raises(BackupsDisabled, match="not applied yet"):
            await service.trigger(wait=True)
        assert service.view().next_run_at is None

        _apply(stack)
        service.wake()  # the daemon does this after an apply
        await _wait("backups on", lambda: bool(published().data.get("enabled")))  # type: ignore[union-attr]
        view = service.view()
        assert view.enabled and view.interval_seconds == 86400
        jobs = set(service.scheduled)
        assert jobs == {"backup", "catch-up"}  # no backup yet: the first one comes soon
        assert status_section(published())["state"] == "pending"

        (stack.unit_dir / POSTGRES_UNIT_FILE).unlink()  # the stack's PostgreSQL removed
        service.wake()
        await _wait("backups off", lambda: not published().data.get("enabled"))  # type: ignore[union-attr]
        assert service.view().next_run_at is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_reload_to_false_and_back_to_auto(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    _apply(stack)
    config = BackupConfig(directory=tmp_path / "b", timezone="UTC")
    service = BackupService(SnapshotStore(), config, WatchConfig(), stack=stack)
    task = asyncio.create_task(service.run())
    try:
        await _wait("the schedule", lambda: service.view().next_run_at is not None)
        service.reconfigure(BackupConfig(directory=tmp_path / "b", enabled=False), WatchConfig())
        assert not service.view().enabled and service.view().next_run_at is None
        assert service.view().disabled_reason == "backups.enabled is false"
        service.reconfigure(config, WatchConfig(), stack)
        assert service.view().enabled and service.view().next_run_at is not None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
