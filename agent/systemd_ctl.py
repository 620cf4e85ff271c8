"""Blocking control of the stack's systemd units over the system D-Bus (pystemd).

Callers run these in a thread. start/stop/restart queue a job in mode "replace" and follow
it the way `systemctl` does: the match on the Manager's JobRemoved signal is added *before*
the job is queued (a fast job cannot be missed; systemd sends the signal to the client
that queued the job, no Subscribe needed), then the bus is processed until the signal for
that job path arrives or the timeout passes. A timed-out job stays queued: the unit's own
TimeoutStartSec/TimeoutStopSec ends it.

pystemd speaks bytes: unit names are encoded on the way in, every string decoded on the
way out. A unit that does not exist is not an error for unit_state(s) (load_state
"not-found" says so); acting on one raises SystemdError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import select
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

_SYSTEMD = b"org.freedesktop.systemd1"
_MANAGER_PATH = b"/org/freedesktop/systemd1"
_MANAGER_IFACE = b"org.freedesktop.systemd1.Manager"
_UNIT_IFACE = b"org.freedesktop.systemd1.Unit"
_PROPERTIES_IFACE = b"org.freedesktop.DBus.Properties"
UNIT_PATH_PREFIX = "/org/freedesktop/systemd1/unit"
_WAIT_SLICE_S = 0.25  # the most one sd_bus_wait blocks, so the deadline is checked often


class SystemdError(Exception):
    """systemd is unreachable or refused a request; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class JobOutcome:
    unit: str
    action: str  # "start" | "stop" | "restart"
    result: str  # JobRemoved's: done failed canceled timeout dependency skipped ...
    active_state: str  # the unit's, read right after the job ended (or timed out)
    sub_state: str

    @property
    def ok(self) -> bool:
        return self.result == "done"


# The sub-states in which systemd itself is about to start a service again (Restart=):
# systemd >= 254 passes through dead/failed-before-auto-restart (ActiveState inactive or
# failed, for a moment) on its way to auto-restart, and auto-restart-queued after it.
# Whoever sees one of them must wait: acting then fights systemd's own restart.
RESTARTING_SUB_STATES = frozenset(
    {"auto-restart", "auto-restart-queued", "dead-before-auto-restart",
     "failed-before-auto-restart"}
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class UnitState:
    name: str
    load_state: str  # loaded | not-found | bad-setting | error | masked
    active_state: str
    sub_state: str
    result: str  # the type interface's Result (success, exit-code, timeout, ...); "" if none
    n_restarts: int
    main_pid: int
    active_enter_timestamp: float | None  # seconds since the epoch; None: never active
    unit_file_state: str
    job_id: int = 0  # a queued or running job (start, stop, restart...); 0: none
    invocation_id: str = ""  # this (or the last) run's id, hex; the journal tags its lines

    @classmethod
    def from_properties(
        cls, name: str, unit: Mapping[bytes, Any], typed: Mapping[bytes, Any]
    ) -> UnitState:
        """From GetAll of the Unit interface and of the type's (Service, Socket, ...)."""
        entered = int(unit.get(b"ActiveEnterTimestamp") or 0)  # microseconds, 0: never
        return cls(
            name=name,
            load_state=_text(unit.get(b"LoadState")),
            active_state=_text(unit.get(b"ActiveState")),
            sub_state=_text(unit.get(b"SubState")),
            result=_text(typed.get(b"Result")),
            n_restarts=int(typed.get(b"NRestarts") or 0),
            main_pid=int(typed.get(b"MainPID") or 0),
            active_enter_timestamp=entered / 1e6 if entered else None,
            unit_file_state=_text(unit.get(b"UnitFileState")),
            job_id=_job_id(unit.get(b"Job")),
            invocation_id=bytes(unit.get(b"InvocationID") or b"").hex(),
        )


def _job_id(value: Any) -> int:
    """The Unit's Job property is (id, object path); (0, "/") when there is none."""
    if isinstance(value, list | tuple) and value and isinstance(value[0], int):
        return value[0]
    return 0


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def systemd_error(exc: Exception, doing: str, unit: str | None = None) -> SystemdError:
    """An actionable message from a pystemd DBus error (err_message is systemd's text)."""
    kind = type(exc).__name__
    detail = _text(getattr(exc, "err_message", "")) or str(exc)
    if kind in ("DBusNoSuchUnitError", "DBusUnknownObjectError") and unit:
        return SystemdError(
            f"{doing}: systemd has no unit {unit!r} ({detail}); is its unit or quadlet file "
            "installed, and systemd reloaded since (systemctl daemon-reload)?"
        )
    if kind in ("DBusAccessDeniedError", "DBusInteractiveAuthorizationRequiredError"):
        return SystemdError(
            f"{doing}: systemd refused access ({detail}); the agent must run as root"
        )
    return SystemdError(f"{doing}: {detail} ({kind})")


@contextlib.contextmanager
def _connected(doing: str, unit: str | None = None) -> Iterator[Any]:
    """One connection to the system bus, closed at the end; DBus errors of the body become
    SystemdError saying what was being done."""
    try:
        from pystemd.dbusexc import DBusBaseError
        from pystemd.dbuslib import DBus
    except ImportError as exc:
        raise SystemdError(
            f"pystemd is not installed ({exc}): apt install python3-pystemd"
        ) from None
    bus = DBus()
    try:
        bus.open()
    except DBusBaseError as exc:
        raise SystemdError(
            f"{doing}: cannot reach systemd over the system D-Bus "
            f"(/run/dbus/system_bus_socket: {_text(exc.err_message) or exc}, errno "
            f"{-exc.errno}); is dbus running (systemctl status dbus.socket), and does the "
            "agent run on the host itself, not in a container?"
        ) from None
    try:
        with _dbus_errors(doing, unit):
            yield bus
    finally:
        bus.close()


@contextlib.contextmanager
def _dbus_errors(doing: str, unit: str | None) -> Iterator[None]:
    from pystemd.dbusexc import DBusBaseError

    try:
        yield
    except DBusBaseError as exc:
        raise systemd_error(exc, doing, unit) from None


def unit_object_path(unit: str) -> str:
    """systemd's object path of a unit, escaped as sd_bus_path_encode does: every byte
    but a-z A-Z (and 0-9 after the first) becomes _xx, e.g. ollama.service ->
    /org/freedesktop/systemd1/unit/ollama_2eservice."""
    raw = unit.encode()
    if not raw:
        return f"{UNIT_PATH_PREFIX}/_"
    out = []
    for i, byte in enumerate(raw):
        ch = chr(byte)
        if ("a" <= ch <= "z") or ("A" <= ch <= "Z") or (i > 0 and "0" <= ch <= "9"):
            out.append(ch)
        else:
            out.append(f"_{byte:02x}")
    return f"{UNIT_PATH_PREFIX}/{''.join(out)}"


# Plain method calls, no introspection: pystemd's introspected objects (systemd1.Unit,
# .Manager) parse the object's XML and build a class per interface on every use, which on
# a poll every few seconds was the agent's largest churn of objects (docs/performance.md).


def _call(bus: Any, path: bytes, iface: bytes, method: bytes, *args: bytes) -> Any:
    """One method call to systemd with string arguments; the reply's value (a single one
    unwrapped)."""
    from pystemd.dbuslib import apply_signature

    typed = apply_signature(b"s" * len(args), list(args))
    body = bus.call_method(_SYSTEMD, path, iface, method, typed).body
    return body[0] if isinstance(body, list | tuple) and len(body) == 1 else body


def _manager_call(bus: Any, method: bytes, *args: bytes) -> Any:
    return _call(bus, _MANAGER_PATH, _MANAGER_IFACE, method, *args)


def _manager_property(bus: Any, name: bytes) -> Any:
    return _call(bus, _MANAGER_PATH, _PROPERTIES_IFACE, b"Get", _MANAGER_IFACE, name)


def _get_all(bus: Any, path: bytes, iface: bytes) -> Mapping[bytes, Any]:
    props = _call(bus, path, _PROPERTIES_IFACE, b"GetAll", iface)
    return props if isinstance(props, Mapping) else {}


def _read_state(bus: Any, unit: str) -> UnitState:
    from pystemd.dbusexc import DBusBaseError

    path = unit_object_path(unit).encode()
    props = _get_all(bus, path, _UNIT_IFACE)  # a unit not loaded is loaded: not-found
    kind = unit.rpartition(".")[2].capitalize()  # ollama.service -> Service
    try:
        typed = _get_all(bus, path, _SYSTEMD + b"." + kind.encode())
    except DBusBaseError:  # a unit type without Result/NRestarts/MainPID
        typed = {}
    return UnitState.from_properties(unit, props, typed)


@dataclasses.dataclass(frozen=True)
class ManagerState:
    version: str  # "257"
    system_state: str  # running | degraded | starting | stopping ...


def manager_state() -> ManagerState:
    """systemd's version and SystemState: is the manager there, and how is the host."""
    with _connected("read systemd's state") as bus:
        version, state = (_manager_property(bus, name) for name in (b"Version", b"SystemState"))
        return ManagerState(_text(version), _text(state))


def daemon_reload() -> None:
    """systemctl daemon-reload: returns once systemd has reloaded (its reply comes after)."""
    with _connected("daemon-reload") as bus:
        _manager_call(bus, b"Reload")


def reset_failed(unit: str) -> None:
    with _connected(f"reset-failed {unit}", unit) as bus:
        _manager_call(bus, b"ResetFailedUnit", unit.encode())


def unit_state(unit: str) -> UnitState:
    return unit_states([unit])[unit]


def unit_states(units: Iterable[str]) -> dict[str, UnitState]:
    """The state of each unit, over one bus connection."""
    states = {}
    with _connected("read unit states") as bus:
        for unit in units:
            with _dbus_errors(f"read the state of {unit}", unit):
                states[unit] = _read_state(bus, unit)
    return states


def start(unit: str, timeout: float) -> JobOutcome:
    return _job("start", b"StartUnit", unit, timeout)


def stop(unit: str, timeout: float) -> JobOutcome:
    """A stop is on purpose: a main process that ignores SIGTERM is killed at the stop
    timeout (exit 137, or Result=timeout) and leaves the unit `failed`; it is stopped all
    the same, so that is reset here, for every caller. Left failed, the healer would start
    it against the stop, and a unit dropped from the stack would linger as failed."""
    outcome = _job("stop", b"StopUnit", unit, timeout)
    if outcome.active_state != "failed":
        return outcome
    reset_failed(unit)
    return dataclasses.replace(outcome, active_state="inactive", sub_state="dead")


def restart(unit: str, timeout: float) -> JobOutcome:
    return _job("restart", b"RestartUnit", unit, timeout)


def _job(action: str, method: bytes, unit: str, timeout: float) -> JobOutcome:
    from pystemd.dbusexc import DBusInterruptedError

    removed: dict[bytes, str] = {}

    # A plain function: pystemd sets an attribute on the callback (a bound method would
    # refuse it) and keeps only a borrowed pointer to it, so it must outlive the bus.
    def on_job_removed(msg: Any, error: Any = None, userdata: Any = None) -> None:
        with contextlib.suppress(Exception):  # an exception here cannot reach us anyway
            msg.process_reply(False)
            _id, path, _unit, result = msg.body
            removed[bytes(path)] = _text(result)

    with _connected(f"{action} {unit}", unit) as bus:
        bus.match_signal(_SYSTEMD, _MANAGER_PATH, _MANAGER_IFACE, b"JobRemoved", on_job_removed)
        job = bytes(_manager_call(bus, method, unit.encode(), b"replace"))
        deadline = time.monotonic() + timeout
        while job not in removed and (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(DBusInterruptedError):
                # process() dispatches one message (ours runs on_job_removed); when none
                # was queued, block until the next one arrives or the slice ends
                if bus.process().is_empty() and job not in removed:
                    # select(), not bus.wait(): pystemd's wait keeps the GIL, which
                    # would freeze the agent's event loop for each slice of a long job
                    select.select([bus.get_fd()], [], [], min(left, _WAIT_SLICE_S))
        state = _read_state(bus, unit)
    return JobOutcome(
        unit, action, removed.get(job, "timeout"), state.active_state, state.sub_state
    )
