"""systemd's D-Bus signals about the stack's units: wakes the stack watcher on a change.

Why signals besides the poll: a unit that fails, restarts or finishes a job is seen at once
instead of up to `watch.interval` later. systemd only emits unit signals to clients that
called the Manager's `Subscribe()`; the bus then forwards what our match rules ask for:

* `PropertiesChanged` on each watched unit's object path (exact paths, so the bus does the
  filtering: the Podman health checks' transient units every few seconds do not wake us),
* the Manager's `JobRemoved` (a start/stop/restart of any unit finished; filtered here).

No thread waits on the bus: the connection's fd is watched with `loop.add_reader`, and
`process()` (non-blocking `sd_bus_process`) runs in the event loop until it has nothing
left. Only opening the connection (`AddMatch`, `Subscribe`: blocking calls that a hung
dbus-daemon could stall for 25 s) runs in a worker thread.

When D-Bus goes away (`systemctl restart dbus`), sd-bus hands out the local `Disconnected`
signal, or `process()` fails: the connection is closed and opened again with backoff, and
`Subscribe()` is called again (a subscription dies with its client). systemd may need a
moment to get back on a restarted bus; until then Subscribe fails and the backoff retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any

import structlog

from ..systemd_ctl import unit_object_path
from .reconnect import Backoff, StateReport

log = structlog.get_logger(component="watch.unit_signals")

SYSTEMD = b"org.freedesktop.systemd1"
MANAGER_PATH = b"/org/freedesktop/systemd1"
MANAGER_IFACE = b"org.freedesktop.systemd1.Manager"
PROPERTIES_IFACE = b"org.freedesktop.DBus.Properties"
_LOCAL_IFACE, _DISCONNECTED = b"org.freedesktop.DBus.Local", b"Disconnected"
STATE_PROPERTIES = frozenset({"ActiveState", "SubState", "Result"})
DRAIN_BATCH = 256  # messages per turn of the loop; more go on in the next turn


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _detail(exc: BaseException) -> str:
    """systemd's or the bus's own words for a pystemd error, with its kind."""
    message = _text(getattr(exc, "err_message", "") or "") or str(exc)
    return f"{message} ({type(exc).__name__})"


def _bus_address() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or "/run/dbus/system_bus_socket"


class _Unavailable(Exception):
    """The connection could not be opened; the message says why, for a person."""


class _Connection:
    """One system bus connection with our matches and subscription. Closed exactly once:
    pystemd's DBus has no finalizer, and a second close would free it twice."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self.fd: int = bus.get_fd()
        self.matched: frozenset[str] = frozenset()
        self.closed = False
        # pystemd keeps only borrowed pointers to the callbacks: they live as long as we do
        self._callbacks: list[Callable[..., None]] = []

    def match(
        self, path: bytes, iface: bytes, member: bytes, callback: Callable[..., None]
    ) -> None:
        self._callbacks.append(callback)
        self.bus.match_signal(SYSTEMD, path, iface, member, callback)

    def drain(self) -> tuple[bool, bool]:
        """Dispatch what sd-bus has read or can read without blocking: (more, lost).

        sd_bus_process's return code is not exposed by pystemd, so "nothing left" is read
        from two empty results in a row (one message sd-bus handles itself also reads as
        empty). `more`: the batch ran out with messages possibly left; `lost`: the local
        Disconnected signal came, the connection is gone.
        """
        empty = 0
        for _ in range(DRAIN_BATCH):
            msg = self.bus.process()
            if msg.is_signal(_LOCAL_IFACE, _DISCONNECTED):
                return False, True
            if msg.is_empty():
                empty += 1
                if empty >= 2:
                    return False, False
            else:
                empty = 0
        return True, False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.bus.close()


class UnitSignals:
    """Call `on_change(unit, props)` when a unit in `units()` changes or one of its jobs
    ends; `props` has the unit's new ActiveState/SubState/Result when the signal said.

    `units()` is read again on every wake-up (it may change on reload); a unit that was not
    matched yet makes the connection subscribe again (call `refresh()` after a reload to
    do it at once). `on_state` gets (True, None) when subscribed and (False, reason) when
    D-Bus cannot be reached or went away, each time that changes. Callbacks run in the
    event loop and must not block; their exceptions are logged and ignored.
    """

    def __init__(
        self,
        units: Callable[[], Collection[str]],
        on_change: Callable[[str, Mapping[str, str]], None],
        on_state: Callable[[bool, str | None], None],
        reconnect_initial: float = 0.5,
        reconnect_max: float = 10.0,
    ) -> None:
        self.units = units
        self.on_change = on_change
        self.on_state = on_state
        self.backoff = Backoff(reconnect_initial, reconnect_max)
        self._current: frozenset[str] = frozenset()
        self._connected = False
        self._report = StateReport(on_state, "systemd signals", log)
        self._conn: _Connection | None = None
        self._ended: asyncio.Future[str | None] | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    def refresh(self) -> None:
        """Read units() again now; subscribe again if a new unit appeared."""
        self._read_units()
        conn = self._conn
        if conn is not None and not conn.closed and not self._current <= conn.matched:
            self._end(None)

    async def run(self) -> None:
        """Subscribe, dispatch, resubscribe with backoff; returns only by cancellation."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._read_units()
                wanted = self._current
                try:
                    conn = await self._open(wanted)
                except _Unavailable as exc:
                    self._connected = False
                    self._report(False, str(exc))
                    await asyncio.sleep(self.backoff.next())
                    continue
                resubscribed = self._connected
                self._connected = True
                opened = loop.time()
                log.info("systemd signals subscribed", units=sorted(wanted))
                self._report(True, None)
                if resubscribed:  # the units may have changed while no match was in place
                    for unit in sorted(wanted):
                        self._deliver(unit)
                reason = await self._serve(loop, conn)
                if reason is None:
                    continue  # new units: subscribe again at once, still connected
                if loop.time() - opened >= self.backoff.maximum:
                    self.backoff.reset()  # it had been up a while: retry quickly
                self._connected = False
                self._report(False, reason)
                await asyncio.sleep(self.backoff.next())
        finally:
            self._connected = False

    # ------------------------------------------------------------------ the connection

    async def _open(self, wanted: frozenset[str]) -> _Connection:
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, self._open_blocking, wanted)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.add_done_callback(_close_opened)  # the thread goes on: close what it opens
            raise

    def _open_blocking(self, wanted: frozenset[str]) -> _Connection:
        try:
            from pystemd.dbusexc import DBusBaseError
            from pystemd.dbuslib import DBus
        except ImportError as exc:
            raise _Unavailable(
                f"systemd signals: pystemd is not installed ({exc}): apt install python3-pystemd"
            ) from None
        bus = DBus()
        try:
            bus.open()
        except DBusBaseError as exc:
            errno = getattr(exc, "errno", 0)
            why = os.strerror(-errno) if isinstance(errno, int) and errno < 0 else _detail(exc)
            raise _Unavailable(
                f"systemd signals: cannot reach the system D-Bus at {_bus_address()} ({why}); "
                "is dbus running (systemctl status dbus.socket)?"
            ) from None
        conn = _Connection(bus)
        try:
            for unit in sorted(wanted):
                conn.match(
                    unit_object_path(unit).encode(),
                    PROPERTIES_IFACE,
                    b"PropertiesChanged",
                    self._properties_callback(unit),
                )
            conn.match(MANAGER_PATH, MANAGER_IFACE, b"JobRemoved", self._job_callback())
            bus.call_method(SYSTEMD, MANAGER_PATH, MANAGER_IFACE, b"Subscribe", [])
        except DBusBaseError as exc:
            conn.close()
            raise _Unavailable(
                f"systemd signals: cannot subscribe to systemd over D-Bus ({_detail(exc)}); "
                "is systemd on the bus (busctl status org.freedesktop.systemd1)?"
            ) from None
        except BaseException:
            conn.close()
            raise
        conn.matched = wanted
        return conn

    async def _serve(self, loop: asyncio.AbstractEventLoop, conn: _Connection) -> str | None:
        """Dispatch until the connection is lost (the reason) or must resubscribe (None)."""
        self._ended = loop.create_future()
        self._conn = conn
        loop.add_reader(conn.fd, self._on_readable, conn)
        loop.call_soon(self._on_readable, conn)  # what arrived during Subscribe is queued
        try:
            return await self._ended
        finally:
            loop.remove_reader(conn.fd)  # before close: the fd number may be reused
            self._conn = None
            self._ended = None
            conn.close()

    def _on_readable(self, conn: _Connection) -> None:
        if conn.closed or conn is not self._conn:
            return
        self._read_units()
        try:
            more, lost = conn.drain()
        except Exception as exc:  # DBusError: the connection broke under us
            self._end(
                f"systemd signals: reading the system D-Bus failed ({_detail(exc)}); reconnecting"
            )
            return
        if lost:
            self._end(
                "systemd signals: the system D-Bus connection was lost (dbus restarted or "
                "stopped?); reconnecting"
            )
        elif not self._current <= conn.matched:
            self._end(None)
        elif more:
            asyncio.get_running_loop().call_soon(self._on_readable, conn)

    def _end(self, reason: str | None) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(reason)

    # ------------------------------------------------------------------ signals

    def _properties_callback(self, unit: str) -> Callable[..., None]:
        # One plain function per unit: pystemd stores its userdata on the function object.
        def on_properties(msg: Any, error: Any = None, userdata: Any = None) -> None:
            self._deliver(unit, unit_properties(msg))

        return on_properties

    def _job_callback(self) -> Callable[..., None]:
        def on_job_removed(msg: Any, error: Any = None, userdata: Any = None) -> None:
            try:  # an exception cannot leave a pystemd callback usefully
                msg.process_reply(False)
                unit = _text(msg.body[2])
            except Exception:
                log.debug("unreadable JobRemoved signal", exc_info=True)
                return
            self._deliver(unit)

        return on_job_removed

    def _deliver(self, unit: str, props: Mapping[str, str] | None = None) -> None:
        if unit not in self._current:
            return
        log.debug("unit changed", unit=unit, **(props or {}))
        try:
            self.on_change(unit, props or {})
        except Exception:
            log.exception("unit signal consumer failed", unit=unit)

    def _read_units(self) -> None:
        try:
            self._current = frozenset(self.units())
        except Exception:  # keep the last known set: a consumer bug must not stop signals
            log.exception("reading the watched units failed")


def unit_properties(msg: Any) -> dict[str, str]:
    """The unit's new state from a PropertiesChanged signal (`sa{sv}as`: interface,
    changed values, invalidated names): ActiveState, SubState and Result when systemd sent
    them (it does for org.freedesktop.systemd1.Unit), else nothing. Never raises: an
    unreadable signal still wakes the poll."""
    try:
        msg.process_reply(False)
        changed = msg.body[1]
    except Exception:
        log.debug("unreadable PropertiesChanged signal", exc_info=True)
        return {}
    if not isinstance(changed, dict):
        return {}
    out = {}
    for key, value in changed.items():
        name = _text(key)
        if name in STATE_PROPERTIES and isinstance(value, bytes | str):
            out[name] = _text(value)
    return out


def _close_opened(fut: asyncio.Future[_Connection]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        with contextlib.suppress(Exception):
            fut.result().close()
