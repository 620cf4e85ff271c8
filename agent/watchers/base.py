"""The watcher loop shared by every source: poll, bound by a timeout, publish.

A watcher never raises out of its loop: an exception or a timeout becomes an
`unavailable` snapshot with the reason, so a missing Podman or D-Bus is a state the
agent reports, not a crash. Blocking clients (the libpod API, pystemd) run in a
thread so the event loop, and with it the API and the watchdog, stays responsive.
"""

from __future__ import annotations

import abc
import asyncio
from typing import Any, ClassVar

import structlog

from ..config import AgentConfig, WatchConfig, format_duration
from ..snapshot import SnapshotStore, SourceSnapshot, SourceState


class SourceUnavailable(Exception):
    """Raised by a poll to say, in words a person can act on, why the source is down."""


class Watcher(abc.ABC):
    source: ClassVar[str]

    def __init__(self, store: SnapshotStore, config: WatchConfig) -> None:
        self.store = store
        self.config = config
        self.log = structlog.get_logger(component=f"watch.{self.source}")
        self._wake = asyncio.Event()
        self._polling = asyncio.Lock()

    @abc.abstractmethod
    async def poll(self) -> tuple[SourceState, str | None, Any]:
        """Look at the external system once: (state, reason, data): a typed view
        (agent/views.py) or a JSON-like mapping."""

    def configure(self, config: AgentConfig) -> None:
        """Take the whole (re)loaded config; a watcher with a section of its own overrides
        this to read it too."""
        self.reconfigure(config.watch)

    def wake(self) -> None:
        """Look again now: an event says the external system changed."""
        self._wake.set()

    @property
    def wake_pending(self) -> bool:
        """A wake-up is waiting for the loop (an event asked for a poll)."""
        return self._wake.is_set()

    def clear_wake(self) -> None:
        """Forget a pending wake-up (the loop does this when it polls)."""
        self._wake.clear()

    def next_interval(self) -> float:
        """How long until the next poll unless woken: `watch.interval`; a watcher that
        must look again sooner (a probe miss to confirm) overrides this."""
        return self.config.interval

    def reconfigure(self, config: WatchConfig) -> None:
        """Take a reloaded config and poll again at once."""
        self.config = config
        self._wake.set()

    async def refresh(self) -> SourceSnapshot[Any]:
        """Poll now; return once the snapshot is published. An action's caller awaits this
        so that what it reports next (/status, the CLI) is what the action left."""
        return await self.poll_once()

    async def poll_once(self) -> SourceSnapshot[Any]:
        async with self._polling:  # one poll at a time: the loop's and a refresh()
            return await self._poll_once()

    async def _poll_once(self) -> SourceSnapshot[Any]:
        try:
            async with asyncio.timeout(self.config.timeout):
                state, reason, data = await self.poll()
        except TimeoutError:
            state, reason, data = (
                SourceState.UNAVAILABLE,
                f"no answer within {format_duration(self.config.timeout)}",
                {},
            )
        except SourceUnavailable as exc:
            state, reason, data = SourceState.UNAVAILABLE, str(exc), {}
        except Exception as exc:  # a bug or an unexpected client error: report, keep going
            self.log.exception("poll failed")
            state, reason, data = SourceState.UNAVAILABLE, f"{type(exc).__name__}: {exc}", {}
        snap = SourceSnapshot(source=self.source, state=state, reason=reason, data=data)
        previous = self.store.get(self.source)
        if previous is None or (previous.state, previous.reason) != (snap.state, snap.reason):
            self.log.info("source state", state=str(snap.state), reason=snap.reason)
        self.store.publish(snap)
        return snap

    async def run(self) -> None:
        while True:
            # Cleared before the poll, not after: a wake-up that arrives while polling
            # (a systemd job ending, a container dying) must cause another poll, or the
            # snapshot keeps the state from the middle of the change (seen in the testbed).
            self._wake.clear()
            await self.poll_once()
            try:
                async with asyncio.timeout(self.next_interval()):
                    await self._wake.wait()
            except TimeoutError:
                pass
