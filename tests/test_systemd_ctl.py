"""agent.systemd_ctl without systemd: conversions, error messages, an unreachable bus.
(The real thing runs in tests/e2e/test_systemd_ctl.py.)"""

from __future__ import annotations

import dataclasses

import pytest
from pystemd.dbusexc import DBusAccessDeniedError, DBusFailedError, DBusNoSuchUnitError

from agent import systemd_ctl as sc


@pytest.fixture
def no_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point sd-bus at a socket that does not exist, whatever this host has."""
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/aistack-test-bus")


@pytest.mark.parametrize(
    "call",
    [
        lambda: sc.start("ollama.service", 1),
        lambda: sc.stop("ollama.service", 1),
        lambda: sc.restart("ollama.service", 1),
        lambda: sc.reset_failed("ollama.service"),
        lambda: sc.unit_state("ollama.service"),
        lambda: sc.unit_states(["ollama.service", "litellm.service"]),
        sc.daemon_reload,
    ],
)
def test_unreachable_bus_says_what_to_check(no_bus: None, call: object) -> None:
    with pytest.raises(sc.SystemdError) as info:
        call()  # type: ignore[operator]
    message = str(info.value)
    assert "cannot reach systemd over the system D-Bus" in message
    assert "systemctl status dbus.socket" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_unit_state_from_properties_decodes_bytes_and_converts() -> None:
    unit = {
        b"LoadState": b"loaded",
        b"ActiveState": b"active",
        b"SubState": b"running",
        b"ActiveEnterTimestamp": 1_700_000_000_250_000,  # microseconds
        b"UnitFileState": b"generated",
        b"Id": b"ollama.service",
    }
    service = {b"Result": b"success", b"NRestarts": 3, b"MainPID": 4242}
    state = sc.UnitState.from_properties("ollama.service", unit, service)
    assert state == sc.UnitState(
        name="ollama.service",
        load_state="loaded",
        active_state="active",
        sub_state="running",
        result="success",
        n_restarts=3,
        main_pid=4242,
        active_enter_timestamp=1_700_000_000.25,
        unit_file_state="generated",
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.main_pid = 1  # type: ignore[misc]


def test_unit_state_of_a_never_started_or_non_service_unit() -> None:
    unit = {b"LoadState": b"not-found", b"ActiveState": b"inactive", b"SubState": b"dead",
            b"ActiveEnterTimestamp": 0, b"UnitFileState": b""}  # fmt: skip
    state = sc.UnitState.from_properties("missing.service", unit, {})
    assert state.active_enter_timestamp is None
    assert (state.n_restarts, state.main_pid, state.result) == (0, 0, "")
    assert state.load_state == "not-found"


def test_job_outcome() -> None:
    done = sc.JobOutcome("a.service", "start", "done", "active", "running")
    assert done.ok and not dataclasses.replace(done, result="timeout").ok
    assert dataclasses.asdict(done) == {
        "unit": "a.service", "action": "start", "result": "done",
        "active_state": "active", "sub_state": "running",
    }  # fmt: skip


def test_errors_name_the_unit_and_the_fix() -> None:
    missing = DBusNoSuchUnitError(
        -2, b"org.freedesktop.systemd1.NoSuchUnit", b"Unit ollama.service not found."
    )
    text = str(sc.systemd_error(missing, "start ollama.service", "ollama.service"))
    assert text.startswith("start ollama.service: systemd has no unit 'ollama.service'")
    assert "Unit ollama.service not found." in text and "daemon-reload" in text

    denied = DBusAccessDeniedError(-13, b"org.freedesktop.DBus.Error.AccessDenied", b"nope")
    assert "must run as root" in str(sc.systemd_error(denied, "stop x.service", "x.service"))

    other = DBusFailedError(
        -5, b"org.freedesktop.DBus.Error.Failed", b"Transaction is destructive."
    )
    text = str(sc.systemd_error(other, "start x.service", "x.service"))
    assert text == "start x.service: Transaction is destructive. (DBusFailedError)"
