"""Is a backup restorable? Header, checksums, and a full read of every entry.

`pg_restore --list` only reads the archive's table of contents, which pg_dump writes
first: an archive cut off anywhere after it still lists fine. Verification here runs
`pg_restore -f /dev/null`, which renders the whole archive as SQL and so reads and
decompresses every entry's data to the last byte; a truncated or corrupt archive fails
it. The archive goes to pg_restore's stdin, so the same code verifies through a local
pg_restore or the container's (which always understands the server's compression).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .dump import in_thread, run_tool
from .model import BackupError
from .sources import CHUNK, DumpSource

MAGIC = b"PGDMP"
FORMATS = {1: "custom", 3: "tar", 4: "null", 5: "directory"}
ALGORITHMS = {0: "none", 1: "gzip", 2: "lz4", 3: "zstd"}
GLOBALS_TRAILER = b"PostgreSQL database cluster dump complete"


class VerifyError(BackupError):
    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__("verify", message, detail)


@dataclass(frozen=True)
class ArchiveHeader:
    archive_version: str
    format: str
    compression: str
    database: str
    server_version: str
    pg_dump_version: str


def parse_header(data: bytes) -> ArchiveHeader:
    """Read a custom-format header (pg_backup_archiver.c, ReadHead).

    Layout: "PGDMP", version major/minor/revision bytes, int size, offset size, format;
    then the compression (an algorithm byte since 1.15, an int before), the creation
    time as 7 ints, and the database name, server and pg_dump versions as strings. An
    int is a sign byte plus `int size` bytes, least significant first; a string is an
    int length plus bytes.
    """
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise VerifyError("archive header is truncated")
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    if take(5) != MAGIC:
        raise VerifyError("not a pg_dump custom-format archive (no PGDMP magic)")
    vmaj, vmin = take(1)[0], take(1)[0]
    vrev = take(1)[0] if (vmaj, vmin) > (1, 0) else 0
    version = (vmaj, vmin, vrev)
    int_size = take(1)[0]
    take(1)  # offset size
    fmt = take(1)[0]
    if not 1 <= int_size <= 8:
        raise VerifyError(f"archive header is corrupt (int size {int_size})")

    def read_int() -> int:
        sign = take(1)[0]
        value = int.from_bytes(take(int_size), "little")
        return -value if sign else value

    def read_str() -> str:
        length = read_int()
        if length < 0:
            return ""
        if length > 1 << 16:
            raise VerifyError("archive header is corrupt (string length)")
        return take(length).decode(errors="replace")

    if version >= (1, 15, 0):
        algorithm = ALGORITHMS.get(take(1)[0], "unknown")
    elif version >= (1, 4, 0):
        level = read_int()
        algorithm = "none" if level == 0 else "gzip"
    else:
        algorithm = "unknown"
    if version >= (1, 4, 0):
        for _ in range(7):  # sec, min, hour, mday, mon, year, isdst
            read_int()
    database = read_str() if version >= (1, 4, 0) else ""
    server = dumper = ""
    if version >= (1, 10, 0):
        server, dumper = read_str(), read_str()
    return ArchiveHeader(
        archive_version=f"{vmaj}.{vmin}.{vrev}",
        format=FORMATS.get(fmt, f"unknown ({fmt})"),
        compression=algorithm,
        database=database,
        server_version=server,
        pg_dump_version=dumper,
    )


def read_header(path: Path) -> ArchiveHeader:
    with path.open("rb") as f:
        return parse_header(f.read(4096))


def sha256_file(path: Path) -> tuple[int, str]:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def check_globals(path: Path) -> None:
    """pg_dumpall ends its output with a trailer: without it the file is cut short."""
    with path.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 512))
        tail = f.read()
    if GLOBALS_TRAILER not in tail:
        raise VerifyError(f"{path.name} is incomplete (no end-of-dump trailer)")


async def check_sha256(path: Path, size: int, sha256: str) -> None:
    try:
        actual_size, actual = await in_thread(sha256_file, path, name="backup-sha256")
    except OSError as exc:
        raise VerifyError(f"cannot read {path}: {exc.strerror}") from None
    if actual_size != size:
        raise VerifyError(f"{path.name} is {actual_size} bytes, the manifest says {size}")
    if actual != sha256:
        raise VerifyError(f"{path.name} does not match its sha256 (manifest {sha256[:16]}...)")


async def full_read(source: DumpSource, path: Path) -> ArchiveHeader:
    """The header must be a custom-format archive, and pg_restore must read it all."""
    try:
        header = await in_thread(read_header, path, name="backup-header")
    except OSError as exc:
        raise VerifyError(f"cannot read {path}: {exc.strerror}") from None
    if header.format != "custom":
        raise VerifyError(f"{path.name} is a {header.format} archive, expected custom")
    result, _ = await run_tool(
        source, "pg_restore", ["--exit-on-error", "-f", "/dev/null"], "verify",
        stdin=path, connect=False,
    )  # fmt: skip
    if not result.ok:
        why = result.first_error()
        raise VerifyError(
            f"full read failed: {result.describe()}" + (f": {why}" if why else ""),
            result.stderr,
        )
    return header
