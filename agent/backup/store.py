"""The backup folder: one sub-folder per verified backup, committed by one atomic rename.

    /var/lib/aistack/backups/
      20261126T030000Z/          a complete, verified backup (its name: UTC start time)
        database.dump            pg_dump -Fc
        globals.sql              pg_dumpall --globals-only (roles)
        manifest.json            sizes, sha256, versions, times (written last)
      .partial-20261127T030000Z/ a run in progress, or left by a crash: never a backup
      .deleting-20261101T030000Z/ a pruned backup being removed
      .lock                      flock: one run, prune or restore at a time
      .state.json                last failure and last run, for status and metrics

A run writes everything into `.partial-<id>/`, fsyncs the files and the folder, and
renames it to `<id>/` (then fsyncs the parent): a backup appears whole or not at all,
and no crash, kill or full disk ever leaves a file under a final name. Stale `.partial-`
and `.deleting-` folders are removed at start and before each run, under the lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from .manifest import Manifest, ManifestError
from .model import BusyError, NotFoundError

ID_FORMAT = "%Y%m%dT%H%M%SZ"
DUMP_FILE = "database.dump"
GLOBALS_FILE = "globals.sql"
MANIFEST_FILE = "manifest.json"
PARTIAL_PREFIX = ".partial-"
DELETING_PREFIX = ".deleting-"
LOCK_FILE = ".lock"
STATE_FILE = ".state.json"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_backup_id(name: str) -> bool:
    base = name.split("-", 1)[0]
    try:
        datetime.strptime(base, ID_FORMAT)
    except ValueError:
        return False
    return name == base or name[len(base) + 1 :].isdigit()


@dataclass
class State:
    """What the folder alone cannot tell: the last failure and the last run."""

    last_failure_at: float | None = None
    last_error: str | None = None
    last_error_stage: str | None = None
    last_result: str | None = None
    last_run_at: float | None = None
    last_duration_seconds: float | None = None
    last_trial_restore: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        data = {k: v for k, v in self.__dict__.items() if k != "extra"}
        return (json.dumps({**self.extra, **data}, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> State:
        data = json.loads(raw)
        if not isinstance(data, dict):
            return cls()
        names = [k for k in cls.__dataclass_fields__ if k != "extra"]
        return cls(
            **{k: data.get(k) for k in names},
            extra={k: v for k, v in data.items() if k not in names},
        )


class DirLock:
    """flock(2) on the folder's .lock file; released on close or process death."""

    def __init__(self, path: Path, exclusive: bool, what: str) -> None:
        self.path = path
        self.exclusive = exclusive
        self.what = what
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if self.exclusive:
            # Who holds it, for another process's "busy" message: best effort. On a full
            # disk this write fails, and must not turn a held lock into a leaked one (the
            # run would crash and every later one wait for the agent itself).
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {self.what}\n".encode(), 0)
        return True

    def holder(self) -> str:
        try:
            text = self.path.read_text().strip()
        except OSError:
            return "another process"
        pid, _, what = text.partition(" ")
        return f"{what or 'an operation'} (pid {pid})" if pid.isdigit() else "another process"

    def acquire(self) -> DirLock:
        if not self.try_acquire():
            raise BusyError(f"the backup folder is busy: {self.holder()} holds {self.path}")
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                if self.exclusive:
                    os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self) -> DirLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()


class BackupStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    # --- layout ----------------------------------------------------------------------

    def ensure(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, backup_id: str) -> Path:
        return self.directory / backup_id

    def lock(self, what: str, exclusive: bool = True) -> DirLock:
        self.ensure()
        return DirLock(self.directory / LOCK_FILE, exclusive, what)

    def new_id(self, now: float) -> str:
        base = datetime.fromtimestamp(now, UTC).strftime(ID_FORMAT)
        candidate, n = base, 1
        while (self.directory / candidate).exists() or (
            self.directory / f"{PARTIAL_PREFIX}{candidate}"
        ).exists():
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    # --- partial folders and commit -----------------------------------------------

    def new_partial(self, backup_id: str) -> Path:
        self.ensure()
        partial = self.directory / f"{PARTIAL_PREFIX}{backup_id}"
        partial.mkdir(mode=0o700)
        return partial

    def commit(self, partial: Path, backup_id: str) -> Path:
        """fsync every file and the folder, rename it into place, fsync the parent."""
        for child in partial.iterdir():
            fsync_file(child)
        fsync_dir(partial)
        final = self.directory / backup_id
        if final.exists():  # never replace a backup
            raise FileExistsError(errno.EEXIST, "a backup with this id exists", str(final))
        os.rename(partial, final)
        fsync_dir(self.directory)
        return final

    def discard(self, partial: Path) -> None:
        shutil.rmtree(partial, ignore_errors=True)
        with contextlib.suppress(OSError):
            fsync_dir(self.directory)

    def clean_stale(self) -> list[str]:
        """Remove what crashed or killed runs and prunes left. Call with the lock held."""
        removed: list[str] = []
        if not self.directory.is_dir():
            return removed
        for child in self.directory.iterdir():
            if child.name.startswith((PARTIAL_PREFIX, DELETING_PREFIX)) and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child.name)
        if removed:
            fsync_dir(self.directory)
        return removed

    def delete(self, backup_id: str) -> None:
        """Rename out of the way first, so a half-deleted backup never looks whole."""
        final = self.directory / backup_id
        doomed = self.directory / f"{DELETING_PREFIX}{backup_id}"
        os.rename(final, doomed)
        fsync_dir(self.directory)
        shutil.rmtree(doomed)

    # --- reading -------------------------------------------------------------------

    def scan(self) -> tuple[list[Manifest], list[str]]:
        """Every complete backup, oldest first, and one line per folder that is not."""
        manifests: list[Manifest] = []
        problems: list[str] = []
        try:
            children = sorted(self.directory.iterdir())
        except FileNotFoundError:
            return manifests, problems
        for child in children:
            if child.name.startswith(".") or not is_backup_id(child.name):
                continue
            try:
                manifest = Manifest.from_json((child / MANIFEST_FILE).read_bytes())
            except FileNotFoundError:
                problems.append(f"{child.name}: no {MANIFEST_FILE}")
                continue
            except (OSError, ManifestError) as exc:
                problems.append(f"{child.name}: unreadable manifest: {exc}")
                continue
            if manifest.id != child.name:
                problems.append(f"{child.name}: manifest says id {manifest.id!r}")
                continue
            manifests.append(manifest)
        manifests.sort(key=lambda m: (m.started_at, m.id))
        return manifests, problems

    def list(self) -> list[Manifest]:
        return self.scan()[0]

    def get(self, backup_id: str) -> Manifest:
        manifests = self.list()
        if backup_id == "latest":
            verified = [m for m in manifests if m.verified]
            if not verified:
                raise NotFoundError(f"no verified backup in {self.directory}")
            return verified[-1]
        for manifest in manifests:
            if manifest.id == backup_id:
                return manifest
        known = ", ".join(m.id for m in manifests[-5:]) or "none"
        raise NotFoundError(
            f"no backup {backup_id!r} in {self.directory} (newest: {known}; "
            "see `aistack backup list`)"
        )

    def write_manifest(self, folder: Path, manifest: Manifest) -> None:
        write_atomic(folder / MANIFEST_FILE, manifest.to_json(), mode=0o600)

    # --- state -----------------------------------------------------------------------

    def read_state(self) -> State:
        try:
            return State.from_json((self.directory / STATE_FILE).read_bytes())
        except (OSError, ValueError, TypeError):
            return State()

    def write_state(self, state: State) -> None:
        self.ensure()
        write_atomic(self.directory / STATE_FILE, state.to_json(), mode=0o600)


def newest_verified(manifests: list[Manifest]) -> Manifest | None:
    verified = [m for m in manifests if m.verified]
    return verified[-1] if verified else None
