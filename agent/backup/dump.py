"""The streaming pipeline: a tool's stdout -> sha256 + a partial file, in constant memory.

One dedicated thread per stream reads 1 MiB chunks, hashes them and writes them out, so
the event loop (API, watchdog) never waits on the disk and memory stays at one chunk
whatever the database size. The tool's exit status is checked after its output ended; a
failed write (disk full) stops the tool; cancellation (agent stopping, run timeout) stops
the tool and waits for the thread before returning, so the caller can remove the partial
folder knowing nobody writes into it any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .model import BackupError
from .sources import CHUNK, DumpSource, Running, ToolResult

T = TypeVar("T")
ABORT_WAIT = 5.0  # seconds to wait for a stopped stream's thread


class HashingWriter:
    """A new file (O_EXCL, 0600): every write is hashed; `finish` fsyncs it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sha = hashlib.sha256()
        self.size = 0
        self._fd: int | None = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )

    def write(self, data: bytes) -> None:
        assert self._fd is not None
        self.sha.update(data)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.size += len(data)

    def finish(self) -> tuple[int, str]:
        assert self._fd is not None
        os.fsync(self._fd)
        self.close()
        return self.size, self.sha.hexdigest()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


async def in_thread(fn: Callable[..., T], *args: Any, name: str = "backup-io") -> T:
    """Run a blocking call in its own daemon thread (not the loop's small shared pool:
    a dump may take hours)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def target() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the awaiting coroutine
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(settle, False, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, True, result)

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future


@dataclass(frozen=True)
class Streamed:
    size: int
    sha256: str
    result: ToolResult


def _pump(running: Running, writer: HashingWriter, on_chunk: Callable[[int], None]) -> None:
    while chunk := running.read(CHUNK):
        writer.write(chunk)
        on_chunk(len(chunk))


async def supervise(running: Running, work: asyncio.Future[T]) -> T:
    """Await a thread working on `running`; on cancellation stop the tool and wait
    (bounded) for the thread to let go before re-raising."""
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        running.abort()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(work), ABORT_WAIT)
        raise


async def stream_to_file(
    source: DumpSource,
    tool: str,
    args: Sequence[str],
    dest: Path,
    stage: str,
    on_chunk: Callable[[int], None] = lambda n: None,
) -> Streamed:
    """Run `tool args` at the source and stream its stdout into dest (a new file).

    Raises BackupError (stage) when the tool cannot start, exits non-zero, or the
    write fails; dest is then incomplete and the caller removes it.
    """
    try:
        running: Running = await in_thread(
            lambda: source.start(tool, args, capture_stdout=True), name=f"backup-{stage}"
        )
    except Exception as exc:
        raise BackupError(stage, f"cannot start {tool} ({source.description}): {exc}") from None
    try:
        writer = HashingWriter(dest)
    except OSError as exc:
        running.abort()
        await in_thread(running.wait)
        raise BackupError(stage, f"cannot create {dest}: {exc.strerror}") from None
    name = f"backup-{stage}"
    pump = asyncio.ensure_future(in_thread(_pump, running, writer, on_chunk, name=name))
    try:
        try:
            await supervise(running, pump)
        except OSError as exc:  # our write failed: the disk is full, or I/O error
            running.abort()
            result = await in_thread(running.wait)
            raise BackupError(
                stage, f"writing {dest} failed: {exc.strerror or exc}", result.stderr
            ) from None
        except BackupError:
            raise
        except Exception as exc:  # reading the stream failed (exec connection broke)
            running.abort()
            result = await in_thread(running.wait)
            raise BackupError(stage, f"{tool} output broke off: {exc}", result.stderr) from None
        result = await supervise(running, asyncio.ensure_future(in_thread(running.wait)))
        if not result.ok:
            why = result.first_error()
            raise BackupError(
                stage, f"{result.describe()}" + (f": {why}" if why else ""), result.stderr
            )
        try:
            size, digest = await in_thread(writer.finish)
        except OSError as exc:
            raise BackupError(stage, f"fsync of {dest} failed: {exc.strerror}") from None
        return Streamed(size, digest, result)
    finally:
        writer.close()


async def run_tool(
    source: DumpSource,
    tool: str,
    args: Sequence[str],
    stage: str,
    *,
    stdin: Path | None = None,
    capture_stdout: bool = False,
    connect: bool = True,
    limit: int = 1 << 20,
) -> tuple[ToolResult, bytes]:
    """Run a tool to its end (stdout kept up to `limit` bytes, for small outputs)."""
    try:
        running: Running = await in_thread(
            lambda: source.start(
                tool, args, stdin=stdin, capture_stdout=capture_stdout, connect=connect
            ),
            name=f"backup-{stage}",
        )
    except Exception as exc:
        raise BackupError(stage, f"cannot start {tool} ({source.description}): {exc}") from None

    def collect() -> tuple[ToolResult, bytes]:
        out = bytearray()
        while chunk := running.read(CHUNK):
            if len(out) < limit:
                out += chunk[: limit - len(out)]
        return running.wait(), bytes(out)

    try:
        return await supervise(running, asyncio.ensure_future(in_thread(collect)))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise BackupError(stage, f"{tool} ({source.description}) failed: {exc}") from None
