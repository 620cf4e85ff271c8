"""What every event source that reconnects needs: a backoff between tries, and a report
of connected/disconnected that says each change once.

The libpod event stream (events.py) and systemd's D-Bus signals (unit_signals.py) both
use these; a third source should too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger(component="watch.reconnect")


class Backoff:
    """Delays between reconnects: initial, doubled each time, never above maximum."""

    def __init__(self, initial: float, maximum: float) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"backoff needs 0 < initial <= maximum, got {initial}, {maximum}")
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class StateReport:
    """Tells a consumer whether an event source is connected, once per change: a source
    retrying with backoff must not repeat the same warning every few seconds."""

    def __init__(
        self, consumer: Callable[[bool, str | None], None], what: str, logger: Any = log
    ) -> None:
        self.consumer = consumer
        self.what = what
        self.log = logger
        self.last: tuple[bool, str | None] | None = None

    def __call__(self, connected: bool, reason: str | None) -> None:
        if self.last == (connected, reason):
            return
        if not connected:
            self.log.warning(f"{self.what} unavailable", reason=reason)
        self.last = (connected, reason)
        try:
            self.consumer(connected, reason)
        except Exception:
            self.log.exception(f"{self.what} state consumer failed")
