"""Restore a backup, and the trial restore that proves backups restore.

`aistack backup restore ID`:

1. checks the dump's (and the roles file's) sha256 against the manifest;
2. stops the dependents (LiteLLM) through systemd when restoring over the live
   database, in the configured order, only those that were running;
3. applies the roles file (roles that already exist are reported, not fatal), creates
   the database if it is gone, and runs `pg_restore --clean --if-exists
   --single-transaction --exit-on-error`: all or nothing;
4. starts the stopped dependents again (reverse order), whatever happened, and reports.

`--to-db NAME` restores into another database (created if missing) and leaves the
dependents alone.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from .. import systemd_ctl
from ..config import BackupConfig
from .dump import in_thread, run_tool
from .model import BackupError
from .sources import DumpSource
from .store import DUMP_FILE, BackupStore
from .verify import check_sha256, read_header

log = structlog.get_logger(component="backup")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
UNIT_TIMEOUT = 120.0


def ident(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise BackupError("restore", f"not a plain database name: {name!r} (letters, digits, _)")
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --- dependents --------------------------------------------------------------------------


class UnitControl(Protocol):
    def is_active(self, unit: str) -> bool: ...
    def stop(self, unit: str) -> None: ...
    def start(self, unit: str) -> None: ...


def stop_order(units: Sequence[str], is_active: Callable[[str], bool]) -> list[str]:
    """Units to stop, in the configured order (most dependent first): only running ones,
    so a restore never starts something that was deliberately stopped."""
    seen: set[str] = set()
    out = []
    for unit in units:
        if unit not in seen and is_active(unit):
            out.append(unit)
        seen.add(unit)
    return out


def start_order(stopped: Iterable[str]) -> list[str]:
    """Start again in reverse: what was stopped last (the least dependent) first."""
    return list(reversed(list(stopped)))


class SystemdUnits:
    """Stop and start units through the systemd gateway, each job followed to its end."""

    def __init__(self, timeout: float = UNIT_TIMEOUT) -> None:
        self.timeout = timeout

    def is_active(self, unit: str) -> bool:
        return systemd_ctl.unit_state(unit).active_state in ("active", "activating", "reloading")

    def _job(self, outcome: systemd_ctl.JobOutcome) -> systemd_ctl.JobOutcome:
        if outcome.result == "timeout":
            raise BackupError(
                "dependents",
                f"{outcome.unit} still {outcome.active_state} after {self.timeout:.0f}s",
            )
        return outcome

    def stop(self, unit: str) -> None:
        self._wrap(lambda: self._job(systemd_ctl.stop(unit, self.timeout)))

    def start(self, unit: str) -> None:
        outcome = self._wrap(lambda: self._job(systemd_ctl.start(unit, self.timeout)))
        if not outcome.ok or outcome.active_state == "failed":
            raise BackupError("dependents", f"{unit} failed to start again ({outcome.result})")

    @staticmethod
    def _wrap(call: Callable[[], systemd_ctl.JobOutcome]) -> systemd_ctl.JobOutcome:
        try:
            return call()
        except systemd_ctl.SystemdError as exc:
            raise BackupError("dependents", str(exc)) from None


# --- database steps ------------------------------------------------------------------------


async def psql(
    source: DumpSource, sql: str, database: str = "postgres", stage: str = "restore"
) -> str:
    """One SQL statement through psql: its rows unaligned, columns tab-separated, the
    output stripped; BackupError(stage) when psql fails."""
    result, out = await run_tool(
        source, "psql", ["-X", "-A", "-t", "-q", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                         "-d", database, "-c", sql],
        stage, capture_stdout=True,
    )  # fmt: skip
    if not result.ok:
        raise BackupError(stage, f"psql: {result.first_error() or result.describe()}",
                          result.stderr)  # fmt: skip
    return out.decode(errors="replace").strip()


async def database_exists(source: DumpSource, name: str) -> bool:
    ident(name)
    return await psql(source, f"SELECT 1 FROM pg_database WHERE datname = {literal(name)}") == "1"


async def create_database(source: DumpSource, name: str) -> None:
    await psql(source, f"CREATE DATABASE {ident(name)}")


async def drop_database(source: DumpSource, name: str) -> None:
    await psql(source, f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)")


async def apply_globals(source: DumpSource, path: Path) -> list[str]:
    """Run the roles file; errors for roles that exist already are expected. Returns
    the other error lines (a role that could not be created or altered)."""
    result, _ = await run_tool(
        source, "psql", ["-X", "-q", "-d", "postgres", "-f", "-"], "globals", stdin=path
    )
    errors = [ln for ln in result.stderr.splitlines() if "ERROR" in ln]
    unexpected = [ln for ln in errors if "already exists" not in ln]
    if not result.ok and not errors:
        raise BackupError("globals", f"psql: {result.first_error() or result.describe()}",
                          result.stderr)  # fmt: skip
    return unexpected


async def restore_archive(
    source: DumpSource, path: Path, database: str, extra: Sequence[str] = ()
) -> None:
    ident(database)
    args = ["--clean", "--if-exists", "--single-transaction", "--exit-on-error", "-d", database]
    result, _ = await run_tool(source, "pg_restore", [*args, *extra], "restore", stdin=path)
    if not result.ok:
        why = result.first_error()
        raise BackupError(
            "restore", f"{result.describe()}" + (f": {why}" if why else ""), result.stderr
        )


async def trial_restore(source: DumpSource, path: Path) -> dict[str, Any]:
    """Restore into a scratch database and drop it: proof beyond a full read."""
    scratch = f"aistack_trial_{secrets.token_hex(4)}"
    started = time.monotonic()
    await create_database(source, scratch)
    try:
        await restore_archive(source, path, scratch, ["--no-owner", "--no-privileges"])
    finally:
        await drop_database(source, scratch)
    return {"database": scratch, "seconds": round(time.monotonic() - started, 3)}


# --- the whole restore ------------------------------------------------------------------


@dataclass
class RestoreReport:
    backup_id: str
    database: str
    in_place: bool
    stopped: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    globals_problems: list[str] = field(default_factory=list)
    created_database: bool = False
    seconds: float = 0.0
    ok: bool = False
    error: str | None = None
    stage: str | None = None
    detail: str | None = None
    restart_errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def restore_backup(
    config: BackupConfig,
    source: DumpSource,
    store: BackupStore,
    backup_id: str,
    *,
    to_db: str | None = None,
    with_globals: bool = True,
    units: UnitControl | None = None,
) -> RestoreReport:
    started = time.monotonic()
    target = to_db or config.database
    ident(target)
    in_place = target == config.database
    with store.lock(f"restore of {backup_id} into {target}"):
        manifest = store.get(backup_id)
        report = RestoreReport(manifest.id, target, in_place)
        folder = store.path(manifest.id)
        try:
            await check_sha256(folder / DUMP_FILE, manifest.dump.size, manifest.dump.sha256)
            if manifest.globals is not None and with_globals:
                g = manifest.globals
                await check_sha256(folder / g.name, g.size, g.sha256)
            await in_thread(read_header, folder / DUMP_FILE)
            dependents = config.dependent_units if in_place and units is not None else ()
            try:
                if dependents:
                    assert units is not None
                    for unit in await in_thread(stop_order, dependents, units.is_active):
                        log.info("stopping dependent for restore", unit=unit)
                        await in_thread(units.stop, unit)
                        report.stopped.append(unit)
                if manifest.globals is not None and with_globals:
                    path = folder / manifest.globals.name
                    report.globals_problems = await apply_globals(source, path)
                if not await database_exists(source, target):
                    await create_database(source, target)
                    report.created_database = True
                log.info("restoring", backup=manifest.id, database=target,
                         source=source.description)  # fmt: skip
                await restore_archive(source, folder / DUMP_FILE, target)
                report.ok = True
            finally:
                for unit in start_order(report.stopped):
                    try:
                        await asyncio.shield(in_thread(units.start, unit))  # type: ignore[union-attr]
                        report.started.append(unit)
                    except Exception as exc:
                        report.restart_errors.append(f"{unit}: {exc}")
        except BackupError as exc:
            report.error, report.stage, report.detail = exc.message, exc.stage, exc.detail
        report.seconds = round(time.monotonic() - started, 3)
    if report.ok:
        log.info("restore finished", **report.to_dict())
    else:
        log.error("restore failed", **report.to_dict())
    return report
