"""One backup run, start to end.

Under the folder's lock: remove stale partial folders; refuse to start without
max(1.5 x the last backup, min_free) free; dump the roles (pg_dumpall --globals-only)
and the database (pg_dump -Fc) into `.partial-<id>/`, streaming, sha256 on the way;
check every tool's exit status, the size floor, and read the whole archive back with
pg_restore; only then fsync, write the manifest and rename the folder into place. Then,
and only after a success, prune by GFS retention. Any failure, a timeout, a full disk or
the agent stopping removes the partial folder: nothing ever appears under a final name
that is not a complete, verified backup, and older backups are never touched by a
failed run.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog

from .. import __version__
from ..config import BackupConfig, format_duration
from . import disk, retention
from .dump import in_thread, run_tool, stream_to_file
from .manifest import FileInfo, Manifest
from .model import BackupError, DiskSpaceError, RunResult
from .restore import trial_restore
from .sources import DumpSource, make_source
from .store import DUMP_FILE, GLOBALS_FILE, BackupStore, newest_verified
from .verify import VerifyError, check_globals, full_read

log = structlog.get_logger(component="backup")
LOCK_POLL = 1.0
RECENT = 7  # backups the size ratio compares with
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def resolve_zone(name: str) -> ZoneInfo:
    if name != "local":
        return ZoneInfo(name)
    try:
        from tzlocal import get_localzone  # APScheduler's own dependency

        zone = get_localzone()
        return zone if isinstance(zone, ZoneInfo) else ZoneInfo(str(zone))
    except Exception:  # no zone configured on the host: UTC, as glibc does
        return ZoneInfo("UTC")


def policy(config: BackupConfig) -> retention.Policy:
    return retention.Policy(
        keep_last=config.keep_last,
        keep_daily=config.keep_daily,
        keep_weekly=config.keep_weekly,
        keep_monthly=config.keep_monthly,
        keep_yearly=config.keep_yearly,
        min_keep=config.min_keep,
    )


def retention_plan(config: BackupConfig, manifests: list[Manifest], now: float) -> retention.Plan:
    candidates = [retention.Candidate(m.id, m.started_at, m.verified) for m in manifests]
    return retention.plan(candidates, policy(config), resolve_zone(config.timezone), now)


@dataclass
class Progress:
    id: str
    trigger: str
    since: float
    stage: str = "starting"
    bytes: int = 0


class BackupRunner:
    def __init__(
        self,
        config: BackupConfig,
        podman_socket: Path,
        *,
        source: DumpSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = BackupStore(config.directory)
        self.source = source or make_source(config, podman_socket)
        self.clock = clock
        self.progress: Progress | None = None

    # --- the run -----------------------------------------------------------------------

    async def run(self, trigger: str) -> RunResult:
        started = self.clock()
        extra: dict[str, object] = {}
        try:
            try:
                lock = self.store.lock(f"backup run ({trigger})")
            except OSError as exc:
                where = self.config.directory
                raise BackupError("folder", f"cannot create {where}: {exc.strerror}") from None
            async with asyncio.timeout(self.config.timeout):
                while not await in_thread(lock.try_acquire, name="backup-lock"):
                    if self.progress is None:
                        log.info("waiting for the backup folder", holder=lock.holder())
                        self.progress = Progress("", trigger, started, "waiting for lock")
                    await asyncio.sleep(LOCK_POLL)
                try:
                    result = await self._locked_run(trigger, started, extra)
                finally:
                    lock.release()
        except TimeoutError:
            why = f"timed out after {format_duration(self.config.timeout)} (backups.timeout)"
            result = self._failed(trigger, started, BackupError("timeout", why), extra)
        except asyncio.CancelledError:
            result = self._failed(
                trigger, started, BackupError("interrupted", "the agent stopped mid-run"), extra
            )
            self._record(result)
            raise
        except DiskSpaceError as exc:
            result = self._failed(trigger, started, exc, extra, refused=True)
        except BackupError as exc:
            result = self._failed(trigger, started, exc, extra)
        except Exception as exc:  # a bug: report it like any failure, never crash the agent
            log.exception("backup run crashed")
            result = self._failed(
                trigger, started, BackupError("internal", f"{type(exc).__name__}: {exc}"), extra
            )
        finally:
            self.progress = None
        self._record(result)
        return result

    def _failed(
        self,
        trigger: str,
        started: float,
        exc: BackupError,
        extra: dict[str, object],
        refused: bool = False,
    ) -> RunResult:
        free = extra.get("free_bytes")
        required = extra.get("required_free_bytes")
        if isinstance(exc, DiskSpaceError):
            free, required = exc.free, exc.required
        return RunResult(
            result="refused" if refused else "failure",
            trigger=trigger,
            started_at=started,
            finished_at=self.clock(),
            id=extra.get("id") if isinstance(extra.get("id"), str) else None,  # type: ignore[arg-type]
            error=exc.message,
            stage=exc.stage,
            stderr=exc.detail or None,
            free_bytes=free if isinstance(free, int) else None,
            required_free_bytes=required if isinstance(required, int) else None,
        )

    async def _locked_run(
        self, trigger: str, started: float, extra: dict[str, object]
    ) -> RunResult:
        cfg, store = self.config, self.store
        stale = await in_thread(store.clean_stale)
        if stale:
            log.warning("removed stale partial backups", folders=stale)
        manifests = await in_thread(store.list)
        last = newest_verified(manifests)
        free, required = await in_thread(
            disk.check, cfg.directory, last.size if last else None, cfg.min_free
        )
        extra.update(free_bytes=free, required_free_bytes=required)
        backup_id = store.new_id(started)
        extra["id"] = backup_id
        self.progress = Progress(backup_id, trigger, started)
        log.info("backup started", id=backup_id, trigger=trigger, source=self.source.description)
        partial = await in_thread(store.new_partial, backup_id)
        try:
            manifest = await self._dump_and_verify(backup_id, started, partial, manifests)
            await in_thread(store.write_manifest, partial, manifest)
            await in_thread(store.commit, partial, backup_id)
        except BaseException:
            await asyncio.shield(in_thread(store.discard, partial))
            raise
        log.info(
            "backup verified and stored", id=backup_id, size=manifest.size,
            sha256=manifest.dump.sha256, warnings=list(manifest.warnings),
        )  # fmt: skip
        pruned, kept = await self._prune()
        result_extra: dict[str, object] = {}
        if cfg.trial_restore:
            result_extra["trial_restore"] = await self._trial(store.path(backup_id) / DUMP_FILE)
        return RunResult(
            result="success",
            trigger=trigger,
            started_at=started,
            finished_at=self.clock(),
            id=backup_id,
            size_bytes=manifest.size,
            sha256=manifest.dump.sha256,
            warnings=manifest.warnings,
            pruned=tuple(pruned),
            retained=kept,
            free_bytes=free,
            required_free_bytes=required,
            extra=result_extra,
        )

    async def _dump_and_verify(
        self, backup_id: str, started: float, partial: Path, manifests: list[Manifest]
    ) -> Manifest:
        cfg = self.config
        assert self.progress is not None
        progress = self.progress

        def count(n: int) -> None:
            progress.bytes += n

        progress.stage = "probing pg_dump"
        major, version_text = await self._pg_dump_version()
        compression, compress_args = await self._compression(major)
        warnings: list[str] = []
        globals_info = None
        if cfg.globals:
            progress.stage = "dumping roles"
            globals_info, note = await self._dump_globals(partial / GLOBALS_FILE)
            if note:
                warnings.append(note)
        progress.stage = "dumping database"
        streamed = await stream_to_file(
            self.source,
            "pg_dump",
            ["-Fc", *compress_args, "-d", cfg.database],
            partial / DUMP_FILE,
            "dump",
            count,
        )
        if streamed.size < cfg.min_size:
            note = await self._below_min_size(partial / DUMP_FILE, streamed.size, manifests)
            warnings.append(note)
        progress.stage = "verifying"
        header = await full_read(self.source, partial / DUMP_FILE)
        if header.database and header.database != cfg.database:
            raise VerifyError(f"archive is of database {header.database!r}, not {cfg.database!r}")
        recent = [m.dump.size for m in manifests if m.verified][-RECENT:]
        if recent and cfg.size_drop_percent:
            biggest = max(recent)
            if streamed.size * 100 < biggest * cfg.size_drop_percent:
                share = 100 * streamed.size / biggest
                note = (
                    f"size drop: this dump is {disk.human(streamed.size)}, {share:.0f}% of the "
                    f"largest of the last {len(recent)} ({disk.human(biggest)})"
                )
                log.warning("backup much smaller than recent ones", id=backup_id, detail=note)
                warnings.append(note)
        now = self.clock()
        return Manifest(
            id=backup_id,
            database=cfg.database,
            source=self.source.description,
            started_at=started,
            finished_at=now,
            dump=FileInfo(DUMP_FILE, streamed.size, streamed.sha256),
            globals=globals_info,
            format=header.format,
            compression=compression,
            server_version=header.server_version,
            pg_dump_version=header.pg_dump_version or version_text,
            verified=True,
            verified_at=now,
            warnings=tuple(warnings),
            agent_version=__version__,
        )

    # --- pieces ------------------------------------------------------------------------

    async def _below_min_size(self, dump: Path, size: int, manifests: list[Manifest]) -> str:
        """A dump under backups.min_size fails the run, except the first dumps of a
        database that has no table yet (a stack just deployed: LiteLLM has not created
        its schema): that is kept, with a warning. Once a backup reached min_size, a
        small one fails again: data that was there is gone."""
        cfg = self.config
        why = f"the dump is only {size} bytes, below backups.min_size ({cfg.min_size} bytes)"
        had_data = any(m.verified and m.dump.size >= cfg.min_size for m in manifests)
        tables = None if had_data else await self._tables_in(dump)
        if tables != 0:
            raise BackupError("size", f"{why}: an empty or wrong database?")
        return f"database {cfg.database!r} has no tables yet ({why}): kept as its first backups"

    async def _tables_in(self, dump: Path) -> int | None:
        """TABLE entries in the archive's table of contents (pg_restore -l); None when it
        cannot be listed (the run then fails on its size, as before)."""
        result, out = await run_tool(
            self.source, "pg_restore", ["-l"], "size", stdin=dump, capture_stdout=True,
            connect=False,
        )  # fmt: skip
        if not result.ok:
            return None
        lines = out.decode(errors="replace").splitlines()
        return sum(1 for line in lines if not line.startswith(";") and " TABLE " in line)

    async def _pg_dump_version(self) -> tuple[int, str]:
        result, out = await run_tool(
            self.source, "pg_dump", ["--version"], "probe", capture_stdout=True, connect=False
        )
        text = out.decode(errors="replace").strip()
        match = _VERSION.search(text)
        if not result.ok or not match:
            why = result.first_error() or text or result.describe()
            raise BackupError("probe", f"pg_dump --version failed: {why}", result.stderr)
        return int(match.group(1)), text

    async def _zstd_supported(self) -> bool:
        """pg_dump validates --compress before connecting: an unsupported method fails
        with a compression message, a supported one with the (bogus) connection."""
        result, _ = await run_tool(
            self.source,
            "pg_dump",
            ["--compress=zstd:1", "-h", "/nonexistent/aistack-probe", "-p", "1", "-w",
             "-f", "/dev/null", "probe"],
            "probe",
            connect=False,
        )  # fmt: skip
        return "compress" not in result.stderr.lower()

    async def _compression(self, major: int) -> tuple[str, list[str]]:
        method, level = self.config.compression, self.config.compression_level
        if method == "auto":
            method = "zstd" if major >= 16 and await self._zstd_supported() else "gzip"
            level = 0
        if method == "zstd" and major < 16:
            raise BackupError(
                "compression", f"backups.compression: zstd needs pg_dump >= 16 (this one: {major})"
            )
        if method == "none":
            return "none", ["-Z", "0"] if major < 16 else ["--compress=none"]
        level = level or (3 if method == "zstd" else 1)
        if major < 16:
            return f"gzip:{level}", ["-Z", str(level)]
        return f"{method}:{level}", [f"--compress={method}:{level}"]

    async def _dump_globals(self, dest: Path) -> tuple[FileInfo, str | None]:
        try:
            streamed = await stream_to_file(
                self.source, "pg_dumpall", ["--globals-only"], dest, "globals"
            )
            note = None
        except BackupError as exc:
            if "permission denied" not in (exc.detail or exc.message):
                raise
            # Not a superuser: roles without their passwords is still worth having.
            await in_thread(dest.unlink, True)
            streamed = await stream_to_file(
                self.source, "pg_dumpall", ["--globals-only", "--no-role-passwords"], dest,
                "globals",
            )  # fmt: skip
            note = "roles dumped without passwords (the backup user is not a superuser)"
        await in_thread(check_globals, dest)
        return FileInfo(GLOBALS_FILE, streamed.size, streamed.sha256), note

    async def _prune(self) -> tuple[list[str], int]:
        """GFS retention, after a success only; a failing delete is logged, not fatal."""
        manifests = await in_thread(self.store.list)
        plan = retention_plan(self.config, manifests, self.clock())
        pruned = []
        for backup_id in plan.delete:
            try:
                await in_thread(self.store.delete, backup_id)
                pruned.append(backup_id)
            except OSError as exc:
                log.error("could not prune a backup", id=backup_id, error=str(exc))
        if pruned:
            log.info("pruned backups", ids=pruned, kept=len(plan.keep))
        return pruned, len(plan.keep)

    async def _trial(self, dump: Path) -> dict[str, object]:
        try:
            info = await trial_restore(self.source, dump)
            log.info("trial restore succeeded", **info)
            return {"ok": True, **info}
        except BackupError as exc:
            log.error("trial restore failed", error=exc.message, stderr=exc.detail)
            return {"ok": False, "error": exc.message}

    # --- state -------------------------------------------------------------------------

    def _record(self, result: RunResult) -> None:
        try:
            state = self.store.read_state()
            state.last_result = result.result
            state.last_run_at = result.started_at
            state.last_duration_seconds = round(result.duration, 3)
            if result.ok:
                trial = result.extra.get("trial_restore")
                if isinstance(trial, dict):
                    state.last_trial_restore = {"at": result.finished_at, **trial}
            else:
                state.last_failure_at = result.finished_at
                state.last_error = result.error
                state.last_error_stage = result.stage
            self.store.write_state(state)
        except OSError as exc:
            log.error("could not record the run's state", error=str(exc))
        if result.ok:
            return
        log.error(
            "backup failed" if result.result == "failure" else "backup refused",
            id=result.id, stage=result.stage, error=result.error, stderr=result.stderr,
        )  # fmt: skip
