"""The free-space floor: a run starts only with room for a backup as big as the last one
and then some, so a full disk is refused up front instead of half-way through."""

from __future__ import annotations

import math
import os
from pathlib import Path

from .model import DiskSpaceError

GROWTH = 1.5  # the next backup may be this much bigger than the last


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on path's filesystem (the nearest
    existing parent when path does not exist yet)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize


def required_bytes(last_size: int | None, floor: int) -> int:
    return max(math.ceil(GROWTH * last_size) if last_size else 0, floor)


def check(path: Path, last_size: int | None, floor: int) -> tuple[int, int]:
    """(free, required); raises DiskSpaceError when free < required."""
    free, required = free_bytes(path), required_bytes(last_size, floor)
    if free < required:
        why = (
            f"1.5 x the last backup, {human(last_size)}"
            if last_size and required > floor
            else "backups.min_free"
        )
        raise DiskSpaceError(
            f"not starting: {human(free)} free in {path}, need {human(required)} ({why}); "
            "free some space or move backups.directory",
            free,
            required,
        )
    return free, required


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
