"""Immutable per-source snapshots and the store that publishes them.

The coordinator pattern: one watcher per external system (Podman, systemd, GPU, ...)
polls or subscribes and publishes a frozen SourceSnapshot. The API, the metrics and the
sd_notify status only ever read the latest snapshots, so a request can never block on,
or be broken by, Podman or D-Bus.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")
V = TypeVar("V")


class SourceState(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    UNAVAILABLE = "unavailable"


def freeze(value: Any) -> Any:
    """Deep-freeze JSON-like data: dicts become read-only mappings, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Inverse of freeze, for JSON encoding."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def _no_data() -> Any:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SourceSnapshot(Generic[T]):
    """What one watcher last saw. `reason` says, for a person, why it is not ok.

    `data` is a typed view (agent/views.py) for the agent's own sources, a frozen
    JSON-like mapping for external systems'; an unavailable source has an empty mapping.
    """

    source: str
    state: SourceState
    reason: str | None = None
    data: T = field(default_factory=_no_data)
    taken_at: float = field(default_factory=time.time)
    taken_monotonic: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", cast(T, freeze(self.data)))

    def view(self, kind: type[V], empty: V) -> V:
        """The data as `kind`, or `empty` when the source had none to give (unavailable)."""
        return self.data if isinstance(self.data, kind) else empty

    def age(self, now_monotonic: float | None = None) -> float:
        now = time.monotonic() if now_monotonic is None else now_monotonic
        return max(0.0, now - self.taken_monotonic)


class SnapshotStore:
    """Latest snapshot per source; copy-on-write so every read is a consistent view.

    Only the event loop publishes (watchers run their blocking calls in threads and
    publish from the loop), so no lock is needed.
    """

    def __init__(self) -> None:
        self._view: Mapping[str, SourceSnapshot[Any]] = MappingProxyType({})
        self._listeners: list[asyncio.Event] = []

    def publish(self, snap: SourceSnapshot[Any]) -> None:
        latest = dict(self._view)
        latest[snap.source] = snap
        self._view = MappingProxyType(latest)
        for event in self._listeners:
            event.set()

    def latest(self) -> Mapping[str, SourceSnapshot[Any]]:
        return self._view

    def get(self, source: str) -> SourceSnapshot[Any] | None:
        return self._view.get(source)

    def subscribe(self) -> asyncio.Event:
        """An event set on every publish; the subscriber clears it after reading."""
        event = asyncio.Event()
        self._listeners.append(event)
        return event

    async def wait_for(self, sources: Iterable[str], within: float) -> bool:
        """Wait until each source has published once; False on timeout."""
        wanted = set(sources)
        event = self.subscribe()
        try:
            async with asyncio.timeout(within):
                while not wanted <= self._view.keys():
                    await event.wait()
                    event.clear()
            return True
        except TimeoutError:
            return False
        finally:
            self._listeners.remove(event)
