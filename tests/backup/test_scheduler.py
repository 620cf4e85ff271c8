"""The backup service's scheduling: catch-up at start, next run, reconfigure, disabled."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from agent.backup.manifest import FileInfo, Manifest
from agent.backup.model import BackupsDisabled
from agent.backup.scheduler import BackupService
from agent.backup.store import DUMP_FILE, BackupStore
from agent.config import BackupConfig, WatchConfig
from agent.snapshot import SnapshotStore


def _backup(directory: Path, finished: float) -> None:
    store = BackupStore(directory)
    backup_id = store.new_id(finished - 10)
    partial = store.new_partial(backup_id)
    (partial / DUMP_FILE).write_bytes(b"PGDMP")
    store.write_manifest(
        partial,
        Manifest(
            id=backup_id,
            database="litellm",
            source="test",
            started_at=finished - 10,
            finished_at=finished,
            dump=FileInfo(DUMP_FILE, 5, "0" * 64),
            globals=None,
        ),
    )
    store.commit(partial, backup_id)


def _service(tmp_path: Path, **kw: object) -> BackupService:
    config = BackupConfig(
        enabled=True,
        directory=tmp_path / "b",
        schedule="0 * * * *",
        timezone="UTC",
        catch_up_delay=3600.0,
        **kw,
    )  # type: ignore[arg-type]
    return BackupService(SnapshotStore(), config, WatchConfig())


def _jobs(service: BackupService) -> set[str]:
    return set(service.scheduled)


@pytest.mark.parametrize(
    ("age", "catch_up"),
    [(None, True), (30 * 60, False), (2 * 3600, True)],
    ids=["no-backup-yet", "recent", "older-than-the-interval"],
)
async def test_catch_up_only_when_the_last_success_is_older_than_the_interval(
    tmp_path: Path, age: float | None, catch_up: bool
) -> None:
    if age is not None:
        _backup(tmp_path / "b", time.time() - age)
    service = _service(tmp_path)
    service.start_schedule(catch_up=True)
    try:
        assert _jobs(service) == ({"backup", "catch-up"} if catch_up else {"backup"})
        view = service.view()
        assert view.interval_seconds == 3600
        assert view.next_run_at is not None and view.next_run_at - time.time() <= 3600
    finally:
        service.stop_schedule()


async def test_reconfigure_reschedules_and_disabling_stops(tmp_path: Path) -> None:
    _backup(tmp_path / "b", time.time())
    service = _service(tmp_path)
    task = asyncio.create_task(service.run())  # as the daemon runs it
    try:
        for _ in range(500):  # the scheduler starts once the task runs
            if service.view().interval_seconds is not None:
                break
            await asyncio.sleep(0.01)
        assert service.view().interval_seconds == 3600
        daily = BackupConfig(
            enabled=True, directory=tmp_path / "b", schedule="0 3 * * *", timezone="UTC"
        )
        service.reconfigure(daily, WatchConfig())
        assert service.view().interval_seconds == 86400
        service.reconfigure(BackupConfig(directory=tmp_path / "b", enabled=False), WatchConfig())
        view = service.view()
        assert not view.enabled and view.next_run_at is None
        with pytest.raises(BackupsDisabled):
            await service.trigger(wait=True)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_stale_partials_are_removed_at_start(tmp_path: Path) -> None:
    _backup(tmp_path / "b", time.time())
    (tmp_path / "b" / ".partial-20260101T030000Z").mkdir()
    service = _service(tmp_path)
    service.clean_stale()
    assert sorted(p.name for p in (tmp_path / "b").iterdir() if p.is_dir()) == [
        p.name for p in (tmp_path / "b").iterdir() if p.is_dir() and p.name[0] != "."
    ]
    with BackupStore(tmp_path / "b").lock("a CLI run"):
        (tmp_path / "b" / ".partial-x").mkdir()
        service.clean_stale()  # busy: left to the lock holder
        assert (tmp_path / "b" / ".partial-x").exists()
