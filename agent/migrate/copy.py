"""A resumable copy of a data folder into a managed volume, ownership and modes kept.

Each file is written as `.name.aistack-part`, fsynced and renamed into place; a file
already there with the source's size and modification time is skipped, so a copy
killed at any point continues where it stopped. Directories get their owner, mode and
times after their content; symlinks are copied as links. The source is only read.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PART = ".aistack-part"
CHUNK = 8 << 20


@dataclass
class CopyStats:
    files: int = 0
    skipped: int = 0
    bytes: int = 0


def tree_size(root: Path) -> int:
    """Bytes of the regular files under root (what a copy writes)."""
    total = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(directory, name)):
                total += st.st_size
    return total


def size_text(n: int) -> str:
    """Bytes for a person: 512 B, 3.0 MiB, 1.2 GiB (the plan, progress and refusals)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _same(src: os.stat_result, dst: Path) -> bool:
    try:
        st = os.lstat(dst)
    except FileNotFoundError:
        return False
    return st.st_size == src.st_size and st.st_mtime_ns == src.st_mtime_ns


def _attrs(path: Path, st: os.stat_result, link: bool = False) -> None:
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=not link)
    if not link:
        os.chmod(path, st.st_mode & 0o7777)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=not link)


def _copy_file(src: Path, dst: Path, st: os.stat_result) -> None:
    part = dst.with_name(f".{dst.name}{PART}")
    with open(src, "rb") as fin, open(part, "wb") as fout:
        shutil.copyfileobj(fin, fout, CHUNK)
        fout.flush()
        os.fsync(fout.fileno())
    _attrs(part, st)
    os.replace(part, dst)


def copy_tree(src: Path, dst: Path, progress: Callable[[int], None] | None = None) -> CopyStats:
    """Copy src's content into dst (created if missing); returns what was done."""
    stats = CopyStats()
    dst.mkdir(parents=True, exist_ok=True)
    for directory, _dirs, files in os.walk(dst):  # half-written files of a killed copy
        for name in files:
            if name.startswith(".") and name.endswith(PART):
                os.unlink(os.path.join(directory, name))
    dirs: list[tuple[Path, os.stat_result]] = [(dst, os.lstat(src))]
    for directory, subdirs, files in os.walk(src):
        here = Path(directory)
        there = dst / here.relative_to(src)
        for name in sorted(subdirs):
            s, d = here / name, there / name
            st = os.lstat(s)
            if os.path.islink(s):
                continue  # handled with the files below
            d.mkdir(exist_ok=True)
            dirs.append((d, st))
        for name in sorted(files) + sorted(n for n in subdirs if os.path.islink(here / n)):
            s, d = here / name, there / name
            st = os.lstat(s)
            if os.path.islink(s):
                if not os.path.lexists(d):
                    os.symlink(os.readlink(s), d)
                    _attrs(d, st, link=True)
                continue
            if not os.path.isfile(s) or name.endswith(PART):
                continue  # sockets, fifos: nothing of the data
            if _same(st, d):
                stats.skipped += 1
                continue
            _copy_file(s, d, st)
            stats.files += 1
            stats.bytes += st.st_size
            if progress is not None:
                progress(st.st_size)
    for d, st in reversed(dirs):  # deepest first: setting a parent's times last
        _attrs(d, st)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return stats
