"""The backup service the daemon runs: APScheduler 3 for the calendar, one run at a time.

- The schedule is `backups.schedule` (cron, 5 fields) in `backups.timezone`, parsed and
  computed by APScheduler's own CronTrigger; the job coalesces missed runs into one and
  still starts up to `backups.misfire_grace` late (a host that slept through 03:00).
- At start, when the last success is older than the schedule interval (or there is
  none), a catch-up run starts after `backups.catch_up_delay`.
- `trigger()` (POST /v1/backups) starts a run now. Whatever starts a run, only one runs
  at a time in the agent; the folder's lock also keeps out the CLI's runs and restores.
- The interval is the longest gap between consecutive fire times over the next year's
  worth of fires (so `0 3 * * 1-5` counts its weekend gap); status turns degraded when
  the last success is older than 1.5 x that.

Whether backups are on at all is `activation.decide` (`backups.enabled: auto` waits for
the stack's PostgreSQL to be applied); the watcher asks again on every poll, so an
`aistack up` turns them on, with a catch-up run, without a restart of the agent.

APScheduler is imported only when the service starts with backups on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from ..config import BackupConfig, StackConfig, WatchConfig
from ..snapshot import SnapshotStore
from .activation import Activation, decide
from .model import RESULTS, AlreadyRunning, BackupsDisabled, RunResult
from .runner import BackupRunner, resolve_zone
from .store import BackupStore, newest_verified
from .watcher import BackupWatcher, ServiceView

log = structlog.get_logger(component="backup")
LOOKAHEAD_FIRES = 64
STOP_WAIT = 1.5  # seconds a cancelled run gets to clean up on agent stop


def cron_trigger(config: BackupConfig) -> Any:
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

    return CronTrigger.from_crontab(config.schedule, timezone=resolve_zone(config.timezone))


def schedule_interval(trigger: Any, now: datetime) -> float:
    """The longest gap between consecutive fire times over the next fires (seconds)."""
    fires: list[datetime] = []
    previous = None
    current = now
    horizon = now + timedelta(days=400)
    while len(fires) < LOOKAHEAD_FIRES:
        fire = trigger.get_next_fire_time(previous, current)
        if fire is None or fire > horizon:
            break
        fires.append(fire)
        previous, current = fire, fire + timedelta(seconds=1)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(fires)]
    return max(gaps) if gaps else 86400.0


class BackupService:
    def __init__(
        self,
        store: SnapshotStore,
        config: BackupConfig,
        watch: WatchConfig,
        clock: Callable[[], float] = time.time,
        stack: StackConfig | None = None,
    ) -> None:
        self.snapshots = store
        self.config = config
        self.watch = watch
        self.stack = stack or StackConfig()
        self.activation: Activation = decide(config, self.stack)
        self.clock = clock
        self.runs: dict[str, int] = dict.fromkeys(RESULTS, 0)
        self.last_result: RunResult | None = None
        self._scheduler: Any = None
        self._interval: float | None = None
        self._runner: BackupRunner | None = None
        self._current: asyncio.Task[RunResult] | None = None
        self._watcher: BackupWatcher | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """The daemon's task: scheduler and watcher until cancelled (agent stopping)."""
        self._watcher = BackupWatcher(self.snapshots, self.watch, self)
        try:
            self.start_schedule(catch_up=True)  # before the first snapshot: it shows the plan
        except Exception:  # never take the agent down; status shows no next run
            log.exception("cannot start the backup schedule")
        watching = asyncio.create_task(self._watcher.run(), name="watch.backups")
        try:
            if self.activation.on:
                await asyncio.to_thread(self.clean_stale)
            await watching
        finally:
            watching.cancel()
            await self.stop()

    async def stop(self) -> None:
        self.stop_schedule()
        task = self._current
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(task), STOP_WAIT)

    def clean_stale(self) -> None:
        """Partial folders a crash left behind go at start (and before each run); a
        folder locked by a CLI run or a restore is left to its holder."""
        store = BackupStore(self.config.directory)
        if not store.directory.is_dir():
            return
        lock = store.lock("stale cleanup at agent start")
        try:
            if not lock.try_acquire():
                return  # a CLI run or restore holds it: it cleans up itself
        except OSError as exc:
            log.warning("cannot lock the backup folder", error=str(exc))
            return
        try:
            if removed := store.clean_stale():
                log.warning("removed stale partial backups", folders=removed)
        finally:
            lock.release()

    def reconfigure(
        self, config: BackupConfig, watch: WatchConfig, stack: StackConfig | None = None
    ) -> None:
        old, self.config, self.watch = self.config, config, watch
        self.stack = stack or self.stack
        was_on, self.activation = self.activation.on, decide(config, self.stack)
        if self._watcher is not None:
            self._watcher.reconfigure(watch)
        if self._watcher is None:
            return
        keys = ("schedule", "timezone", "misfire_grace")
        if was_on != self.activation.on or any(getattr(old, k) != getattr(config, k) for k in keys):
            self.stop_schedule()
            self.start_schedule(catch_up=not was_on)
            log.info("backup schedule changed", enabled=self.activation.on,
                     reason=self.activation.reason, schedule=config.schedule,
                     timezone=config.timezone)  # fmt: skip

    def wake(self) -> None:
        """Poll now (after an apply): the snapshot and the on/off decision follow it."""
        if self._watcher is not None:
            self._watcher.wake()

    def refresh(self) -> None:
        """Decide again (the watcher's poll): `auto` turns on once the stack is applied,
        and off when its PostgreSQL is removed; a run in progress is left to finish."""
        now = decide(self.config, self.stack)
        if now == self.activation:
            return
        was_on, self.activation = self.activation.on, now
        if was_on == now.on:
            return
        self.stop_schedule()
        try:
            self.start_schedule(catch_up=True)
        except Exception:  # never take the agent down; status shows no next run
            log.exception("cannot start the backup schedule")
        log.info("backups turned " + ("on" if now.on else "off"), reason=now.reason)

    def start_schedule(self, catch_up: bool) -> None:
        if not self.activation.on:
            self._interval = None
            return
        from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

        # Its per-job INFO lines (added, running, executed) would fill the journal.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)

        trigger = cron_trigger(self.config)
        zone = resolve_zone(self.config.timezone)
        self._interval = schedule_interval(trigger, datetime.now(zone))
        scheduler = AsyncIOScheduler(timezone=zone)
        scheduler.add_job(
            self._scheduled,
            trigger,
            id="backup",
            name="scheduled backup",
            misfire_grace_time=int(self.config.misfire_grace),
            coalesce=True,
            max_instances=1,
            kwargs={"trigger": "schedule"},
        )
        if catch_up:
            last = newest_verified(BackupStore(self.config.directory).list())
            age = None if last is None else self.clock() - last.finished_at
            if age is None or age > self._interval:
                when = datetime.now(zone) + timedelta(seconds=self.config.catch_up_delay)
                scheduler.add_job(
                    self._scheduled,
                    "date",
                    run_date=when,
                    id="catch-up",
                    name="catch-up backup",
                    misfire_grace_time=int(self.config.misfire_grace),
                    kwargs={"trigger": "catch-up"},
                )
                log.info(
                    "catch-up backup scheduled",
                    last_success_age=None if age is None else round(age),
                    at=when.isoformat(timespec="seconds"),
                )
        scheduler.start()
        self._scheduler = scheduler

    @property
    def scheduled(self) -> frozenset[str]:
        """The scheduler's jobs by id: "backup" (the schedule), "catch-up" (soon)."""
        if self._scheduler is None:
            return frozenset()
        return frozenset(job.id for job in self._scheduler.get_jobs())

    def stop_schedule(self) -> None:
        if self._scheduler is not None:
            with contextlib.suppress(Exception):
                self._scheduler.shutdown(wait=False)
            self._scheduler = None

    # --- runs --------------------------------------------------------------------------

    async def _scheduled(self, trigger: str) -> None:
        try:
            await self.trigger(wait=True, trigger=trigger)
        except AlreadyRunning as exc:
            log.info("scheduled backup skipped", reason=str(exc))
        except BackupsDisabled:
            pass

    async def trigger(self, wait: bool, trigger: str = "api") -> RunResult | None:
        if not self.activation.on:
            raise BackupsDisabled(f"backups are disabled: {self.activation.reason}")
        if self._current is not None and not self._current.done():
            progress = self._runner.progress if self._runner else None
            raise AlreadyRunning(progress.since if progress else self.clock(),
                                 progress.trigger if progress else "run")  # fmt: skip
        podman_socket = self.watch.podman_socket
        self._runner = BackupRunner(self.config, podman_socket, clock=self.clock)
        self._current = asyncio.create_task(self._run(self._runner, trigger), name="backup-run")
        if not wait:
            return None
        return await asyncio.shield(self._current)

    async def _run(self, runner: BackupRunner, trigger: str) -> RunResult:
        if self._watcher is not None:
            self._watcher.wake()
        try:
            result = await runner.run(trigger)
        finally:
            if self._watcher is not None:
                self._watcher.wake()
        self.runs[result.result] += 1
        self.last_result = result
        return result

    # --- for the watcher ----------------------------------------------------------------

    def view(self) -> ServiceView:
        next_run = None
        if self._scheduler is not None:
            times = [j.next_run_time for j in self._scheduler.get_jobs() if j.next_run_time]
            next_run = min(times).timestamp() if times else None
        running = None
        if self._current is not None and not self._current.done() and self._runner:
            running = self._runner.progress
        return ServiceView(
            enabled=self.activation.on,
            disabled_reason=self.activation.reason,
            interval_seconds=self._interval,
            next_run_at=next_run,
            running=running,
            runs=dict(self.runs),
            last_result=self.last_result,
        )

    @property
    def directory(self) -> Path:
        return self.config.directory
