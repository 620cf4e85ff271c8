"""Podman's libpod event stream: wakes the stack watcher as soon as a container changes.

Why a stream besides the poll: a container that dies between two polls would otherwise be
noticed up to `watch.interval` late. The stream is one long-lived HTTP request
(`GET /libpod/events?stream=true`), chunked, one JSON object per line; podman.service stays
up while it is open, so it costs nothing while nothing happens.

Why aiohttp: the agent already loads it (its API server), it speaks HTTP/1.1 over a unix
socket and decodes chunked bodies; the lines are split here (`LineSplitter`), so an
oversized or broken line is skipped without losing the rest.

Replay: when the stream drops (podman.service stopped or restarted), events still go to
Podman's event log (journald by default). The next connection asks for them with
`since=` (RFC 3339 with nanoseconds in UTC, exact; Podman also takes unix seconds with a
fraction, as a float that loses the last digits) set to the newest event already seen, less
`REPLAY_MARGIN_NS` because the log is not strictly ordered by event time. What comes back
twice is dropped by its (id, action, timeNano).
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from .. import podman_api
from .reconnect import Backoff, StateReport

log = structlog.get_logger(component="watch.events")

FILTERS = json.dumps({"type": ["container"]}, separators=(",", ":"))
CONNECT_TIMEOUT = 10.0  # connect and answer with headers; Podman flushes them at once
REPLAY_MARGIN_NS = 1_000_000_000  # ask again for the last second: the log is not ordered
MAX_LINE = 1 << 20  # an event is < 2 KiB; a longer line is garbage, skipped
SEEN_KEEP = 4096  # de-duplication memory, far more than a margin's worth of events
_LOUD_ACTIONS = frozenset({"died", "oom", "kill"})  # logged at info; the rest at debug


@dataclass(frozen=True)
class ContainerEvent:
    id: str  # container id
    name: str  # container name (Actor.Attributes.name)
    action: str  # died, health_status, start, stop, remove, restart, oom, ...
    time_nano: int  # timeNano
    exit_code: int | None = None  # Actor.Attributes.containerExitCode, on died
    health: str | None = None  # healthy / unhealthy / starting, on health_status

    @property
    def key(self) -> tuple[str, str, int]:
        """What makes an event the same one when a replay delivers it again."""
        return (self.id, self.action, self.time_nano)


def parse_event(line: bytes | str) -> ContainerEvent | None:
    """One line of the stream as an event. None for a blank line or an event that is not
    about a container; ValueError for a line that is not an event at all.

    Podman 5.4 sends, e.g. (died; on health_status there is "HealthStatus":"healthy")::

        {"status":"died","id":"ce1f…","from":"localhost/…","Type":"container",
         "Action":"died","Actor":{"ID":"ce1f…","Attributes":{"containerExitCode":"137",
         "image":"…","name":"c1","podId":""}},"scope":"local","time":1795714742,
         "timeNano":1795714742124979023}
    """
    if not line.strip():
        return None
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object: {str(line)[:80]}")
    if str(obj.get("Type") or obj.get("type") or "") != "container":
        return None
    actor = _mapping(obj.get("Actor"))
    attrs = _mapping(actor.get("Attributes"))
    cid = str(actor.get("ID") or obj.get("id") or "")
    action = str(obj.get("Action") or obj.get("status") or "")
    if not cid or not action:
        raise ValueError(f"event without id or action: {str(line)[:80]}")
    nano = obj.get("timeNano")
    if not isinstance(nano, int):
        seconds = obj.get("time")
        if not isinstance(seconds, int | float):
            raise ValueError(f"event without time: {str(line)[:80]}")
        nano = int(seconds * 1_000_000_000)
    exit_code = None
    raw_code = attrs.get("containerExitCode")
    if raw_code not in (None, ""):
        try:
            exit_code = int(raw_code)
        except (TypeError, ValueError):
            exit_code = None
    health = obj.get("HealthStatus") or attrs.get("health_status")
    return ContainerEvent(
        id=cid,
        name=str(attrs.get("name") or ""),
        action=action,
        time_nano=nano,
        exit_code=exit_code,
        health=str(health) if health else None,
    )


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class LineSplitter:
    """Bytes in, complete lines out: a line may arrive split over chunks, or several in one.

    A line longer than `limit` is dropped up to its newline (counted in `oversized`)
    instead of growing the buffer without end.
    """

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self.oversized = 0
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes]:
        lines = []
        start = 0
        while (nl := data.find(b"\n", start)) >= 0:
            piece = data[start:nl]
            start = nl + 1
            if self._skipping:
                self._skipping = False
                continue
            if len(self._buf) + len(piece) > self.limit:
                self.oversized += 1
                self._buf.clear()
                continue
            self._buf += piece
            lines.append(bytes(self._buf))
            self._buf.clear()
        rest = data[start:]
        if not self._skipping:
            if len(self._buf) + len(rest) > self.limit:
                self.oversized += 1
                self._buf.clear()
                self._skipping = True
            else:
                self._buf += rest
        return lines

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held back."""
        return len(self._buf)


class SeenEvents:
    """The keys of the most recent events, to drop the ones a replay sends again."""

    def __init__(self, keep: int = SEEN_KEEP) -> None:
        self._order: collections.deque[tuple[str, str, int]] = collections.deque()
        self._keys: set[tuple[str, str, int]] = set()
        self._keep = keep

    def add(self, event: ContainerEvent) -> bool:
        """Remember the event; False when it was already seen."""
        key = event.key
        if key in self._keys:
            return False
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self._keep:
            self._keys.discard(self._order.popleft())
        return True

    def __len__(self) -> int:
        return len(self._order)


def since_param(newest_ns: int, margin_ns: int = REPLAY_MARGIN_NS) -> str:
    """The `since=` for a reconnect: RFC 3339 in UTC with nanoseconds, e.g.
    `2026-11-26T17:39:02.124979023Z`, `margin_ns` before the newest time seen."""
    ns = max(0, newest_ns - margin_ns)
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


class _Dropped(Exception):
    """The stream could not be opened or ended; the message says why, for a person."""


class PodmanEventStream:
    """Follow Podman's container events for as long as the agent runs.

    `on_event` gets every container event once (replays are de-duplicated); `on_state`
    gets (True, None) when the stream is open and (False, reason) when it cannot be opened
    or ended, each time that changes. Both are called from the event loop and must not
    block; an exception from them is logged and ignored.
    """

    def __init__(
        self,
        socket: Path,
        on_event: Callable[[ContainerEvent], None],
        on_state: Callable[[bool, str | None], None],
        reconnect_initial: float = 0.5,
        reconnect_max: float = 10.0,
        wanted: Callable[[str], bool] | None = None,
    ) -> None:
        self.socket = Path(socket)
        self.on_event = on_event
        # Which containers' events matter (by name; None: all). The others are dropped
        # right after parsing: not remembered for de-duplication, not logged, not
        # delivered, so 200 other containers on the host cost a JSON parse each.
        self.wanted = wanted
        self.on_state = on_state
        self.backoff = Backoff(reconnect_initial, reconnect_max)
        self.seen = SeenEvents()
        self.newest_ns: int | None = None  # newest event delivered, or when it went live
        self._connected = False
        self._report = StateReport(on_state, "podman events", log)

    @property
    def connected(self) -> bool:
        return self._connected

    def since(self) -> str | None:
        """`since=` for the next connection; None before the first one opened (no replay:
        the consumer polls once when the stream comes up)."""
        if self.newest_ns is None:
            return None
        # never after now: a clock set back must not hide the events still to come
        return since_param(min(self.newest_ns, time.time_ns()))

    async def run(self) -> None:
        """Connect, deliver, reconnect with backoff; returns only by cancellation."""
        connector = aiohttp.UnixConnector(path=str(self.socket), force_close=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        try:
            while True:
                opened = time.monotonic()
                try:
                    reason = await self._follow(session)
                except _Dropped as exc:
                    reason = str(exc)
                except Exception as exc:  # a bug here must not end the agent's watching
                    log.exception("podman event stream failed")
                    reason = f"Podman events: unexpected {type(exc).__name__}: {exc}"
                if self._connected and time.monotonic() - opened >= self.backoff.maximum:
                    self.backoff.reset()  # it had been up a while: retry quickly
                self._connected = False
                self._report(False, reason)
                await asyncio.sleep(self.backoff.next())
        finally:
            self._connected = False
            await session.close()

    async def _follow(self, session: aiohttp.ClientSession) -> str:
        """One connection: open, deliver lines until it ends; returns why it ended."""
        params = {"stream": "true", "filters": FILTERS}
        since = self.since()
        if since is not None:
            params["since"] = since
        url = f"http://podman{podman_api.API}/events"
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                resp = await session.get(url, params=params)
        except TimeoutError:
            raise _Dropped(
                f"Podman events: {self.socket} did not answer within {CONNECT_TIMEOUT:.0f}s "
                "(is podman.service hung? systemctl status podman.service)"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise _Dropped(self._connect_reason(exc.os_error)) from None
        except aiohttp.ClientError as exc:
            raise _Dropped(
                f"Podman events: {self.socket} did not answer as Podman's API "
                f"({type(exc).__name__}: {exc})"
            ) from None
        try:
            if resp.status != 200:
                body = (await resp.content.read(4096)).decode(errors="replace").strip()
                if resp.status == 400 and since is not None:
                    self.newest_ns = None  # refused the replay: next time without since=
                raise _Dropped(
                    f"Podman events: {self.socket} answered {resp.status} to GET /events: "
                    f"{body[:200]} (is it Podman's API socket?)"
                )
            self._connected = True
            if since is None:  # live from now on: a later replay starts here at the latest
                self.newest_ns = max(self.newest_ns or 0, time.time_ns())
            # (not after a since=: should this connection drop during its replay, the next
            # one must ask again from the newest event delivered, not from now)
            log.info("podman events connected", socket=str(self.socket), since=since)
            self._report(True, None)
            return await self._deliver(resp)
        finally:
            resp.close()

    async def _deliver(self, resp: aiohttp.ClientResponse) -> str:
        lines = LineSplitter()
        complained = False
        try:
            async for chunk in resp.content.iter_any():
                for line in lines.feed(chunk):
                    try:
                        event = parse_event(line)
                    except ValueError as exc:
                        if not complained:  # once per connection: garbage tends to repeat
                            log.warning("podman events: skipped a line", error=str(exc)[:200])
                            complained = True
                        continue
                    if event is not None:
                        self._accept(event)
        except aiohttp.ClientPayloadError as exc:  # cut mid-body: podman went away
            log.debug("podman event stream cut", error=str(exc))
        except aiohttp.ClientError as exc:
            return (
                f"Podman events: the stream from {self.socket} failed "
                f"({type(exc).__name__}: {exc}); reconnecting"
            )
        return (
            f"Podman events: the stream from {self.socket} ended (podman.service stopped or "
            "restarted?); reconnecting"
        )

    def _accept(self, event: ContainerEvent) -> None:
        self.newest_ns = max(self.newest_ns or 0, event.time_nano)
        if self.wanted is not None and not self.wanted(event.name):
            return
        if not self.seen.add(event):
            return
        if event.action in _LOUD_ACTIONS:
            log.info(
                "container event",
                action=event.action,
                container=event.name,
                exit_code=event.exit_code,
            )
        else:
            log.debug("container event", action=event.action, container=event.name)
        try:
            self.on_event(event)
        except Exception:
            log.exception("podman event consumer failed", action=event.action)

    def _connect_reason(self, exc: OSError) -> str:
        sock = self.socket
        if isinstance(exc, FileNotFoundError):
            return f"Podman events: no socket at {sock} (systemctl start podman.socket)"
        if isinstance(exc, ConnectionRefusedError):
            return f"Podman events: nothing listens on {sock} (systemctl start podman.socket)"
        if isinstance(exc, PermissionError):
            return f"Podman events: no permission to connect to {sock} (run the agent as root)"
        return f"Podman events: cannot connect to {sock}: {exc.strerror or exc}"
