"""Fault injection around a real DumpSource (the tools still run for real): a stream that
loses its end while pg_dump exits 0, and a stream that trickles (to catch a run midway)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from agent.backup.sources import DumpSource, Running, ToolResult


def _is_dump(tool: str, args: Sequence[str], capture: bool) -> bool:
    return tool == "pg_dump" and capture and "--version" not in args


class _Truncating:
    def __init__(self, inner: Running, keep: int) -> None:
        self.inner = inner
        self.left = keep

    def read(self, n: int) -> bytes:
        while True:
            chunk = self.inner.read(n)
            if not chunk:
                return b""
            if self.left <= 0:
                continue  # swallow the rest: the archive's end is lost
            out = chunk[: self.left]
            self.left -= len(out)
            return out

    def wait(self) -> ToolResult:
        return self.inner.wait()

    def abort(self) -> None:
        self.inner.abort()


class TruncatingSource:
    """pg_dump's output is cut after `keep` bytes; its exit status stays 0."""

    def __init__(self, inner: DumpSource, keep: int) -> None:
        self.inner = inner
        self.keep = keep
        self.description = inner.description

    def start(
        self,
        tool: str,
        args: Sequence[str],
        *,
        stdin: Path | None = None,
        capture_stdout: bool = False,
        connect: bool = True,
    ) -> Running:
        running = self.inner.start(
            tool, args, stdin=stdin, capture_stdout=capture_stdout, connect=connect
        )
        if _is_dump(tool, args, capture_stdout):
            return _Truncating(running, self.keep)
        return running


class _Slow:
    def __init__(self, inner: Running, delay: float, started: threading.Event) -> None:
        self.inner = inner
        self.delay = delay
        self.started = started

    def read(self, n: int) -> bytes:
        chunk = self.inner.read(min(n, 4096))
        if chunk:
            self.started.set()
            time.sleep(self.delay)
        return chunk

    def wait(self) -> ToolResult:
        return self.inner.wait()

    def abort(self) -> None:
        self.inner.abort()


class SlowSource:
    """pg_dump's output trickles: 4 KiB per `delay` seconds. `started` is set once the
    first bytes went through (the run is then mid-dump)."""

    def __init__(self, inner: DumpSource, delay: float = 0.05) -> None:
        self.inner = inner
        self.delay = delay
        self.description = inner.description
        self.started = threading.Event()

    def start(
        self,
        tool: str,
        args: Sequence[str],
        *,
        stdin: Path | None = None,
        capture_stdout: bool = False,
        connect: bool = True,
    ) -> Running:
        running = self.inner.start(
            tool, args, stdin=stdin, capture_stdout=capture_stdout, connect=connect
        )
        if _is_dump(tool, args, capture_stdout):
            return _Slow(running, self.delay, self.started)
        return running
