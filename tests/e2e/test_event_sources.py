"""The two event sources against the real things: Podman 5.4's libpod event stream and
systemd 257's D-Bus signals, in the testbed guest.

The agent package is copied into the guest and a small driver (`DRIVER`) runs one source
as a transient service (so it gets what services get: seccomp filter, cgroup), writing
every callback as a JSON line to `RECORD`; the test acts on Podman and systemd from
outside and reads the lines back. The D-Bus test restarts dbus, which leaves the guest's
logind deaf (it does not reconnect), so it boots a guest of its own instead of the
session's.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import testbed
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
HOME = "/opt/e2e-evsrc"
RECORD = "/run/e2e-evsrc.jsonl"
DRIVER_UNIT = "e2e-evsrc.service"
CONTAINER = "e2e-ev"
WATCHED, OTHER = "e2e-unit.service", "e2e-other.service"

DRIVER = f"""
import asyncio, dataclasses, json, sys, time
from pathlib import Path
sys.path.insert(0, {HOME!r})
from agent.watchers.events import PodmanEventStream
from agent.watchers.unit_signals import UnitSignals

out = open({RECORD!r}, "a", buffering=1)

def record(**fields):
    out.write(json.dumps({{"t": time.time_ns(), **fields}}) + "\\n")

def on_state(connected, reason):
    record(kind="state", connected=connected, reason=reason)

async def main(source, units):
    if source == "podman":
        stream = PodmanEventStream(
            Path("/run/podman/podman.sock"),
            lambda e: record(kind="event", **dataclasses.asdict(e)), on_state, 0.2, 1.0)
        await stream.run()
    else:
        signals = UnitSignals(
            lambda: units, lambda u, p: record(kind="change", unit=u, **p), on_state, 0.2, 1.0)
        await signals.run()

asyncio.run(main(sys.argv[1], set(sys.argv[2:])))
"""


def _start_driver(guest: Guest, *args: str) -> None:
    guest.copy_in(REPO / "agent", f"{HOME}/agent")
    guest.write_file(f"{HOME}/driver.py", DRIVER)
    guest.run(["rm", "-f", RECORD])
    guest.units_of_interest.add(DRIVER_UNIT)
    guest.run(
        ["systemd-run", f"--unit={DRIVER_UNIT}", "-p", "Environment=PYTHONDONTWRITEBYTECODE=1",
         "python3", f"{HOME}/driver.py", *args],
    )  # fmt: skip


def _stop_driver(guest: Guest) -> None:
    guest.run(["systemctl", "stop", DRIVER_UNIT], check=False)
    guest.run(["systemctl", "reset-failed", DRIVER_UNIT], check=False)


def _records(guest: Guest) -> list[dict[str, Any]]:
    raw = guest.run(["cat", RECORD], check=False).stdout
    return [json.loads(line) for line in str(raw).splitlines() if line.strip()]


def _wait(guest: Guest, what: str, probe: Any, timeout: float = 30) -> Any:
    """Poll the record until probe(records) returns something; why: events are async."""
    try:
        return guest.wait_for(what, lambda: probe(_records(guest)), timeout=timeout, interval=0.3)
    except TimeoutError as exc:
        lines = "\n".join(json.dumps(r) for r in _records(guest)[-30:])
        journal = guest.journal(DRIVER_UNIT, lines=40)
        raise AssertionError(f"{exc}\nrecord:\n{lines}\n{journal}") from None


def _states(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == "state"]


def _events(records: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [
        r
        for r in records
        if r["kind"] == "event" and r["name"] == CONTAINER and r["action"] == action
    ]


# --------------------------------------------------------------------------- Podman


@pytest.fixture
def podman_driver(guest: Guest) -> Iterator[Guest]:
    guest.run(["systemctl", "start", "podman.socket"])
    _start_driver(guest, "podman")
    try:
        yield guest
    finally:
        _stop_driver(guest)
        guest.run(["systemctl", "stop", "podman.socket", "podman.service"], check=False)


def _kill_main_process(guest: Guest) -> None:
    pid = guest.podman("inspect", "--format", "{{.State.Pid}}", CONTAINER).strip()
    assert pid.isdigit() and pid != "0", pid
    guest.run(["kill", "-9", pid])
    guest.podman("wait", CONTAINER, timeout=30)


def test_podman_events_arrive_and_are_replayed_after_a_disconnect(
    podman_driver: Guest, standin_images: dict[str, str]
) -> None:
    guest = podman_driver
    _wait(
        guest,
        "the stream to open",
        lambda rs: _states(rs) and _states(rs)[0]["connected"],
    )

    guest.podman(
        "run", "-d", "--name", CONTAINER, "--health-cmd", "ollama list",
        "--health-interval", "1s", standin_images["ollama"],
    )  # fmt: skip
    _wait(guest, "start", lambda rs: _events(rs, "start"))
    healthy = _wait(
        guest, "health_status", lambda rs: [e for e in _events(rs, "health_status") if e["health"]]
    )
    assert healthy[0]["health"] == "healthy" and healthy[0]["exit_code"] is None
    cid = healthy[0]["id"]
    assert re.fullmatch(r"[0-9a-f]{64}", cid)

    _kill_main_process(guest)
    died = _wait(guest, "died after kill -9", lambda rs: _events(rs, "died"))
    assert died[0]["exit_code"] == 137 and died[0]["id"] == cid

    # Disconnected: podman.socket (and with it podman.service) stopped while it dies again.
    guest.run(["systemctl", "stop", "podman.socket", "podman.service"])
    down = _wait(guest, "the drop", lambda rs: [s for s in _states(rs) if not s["connected"]])
    assert "Podman events:" in down[0]["reason"]
    stopped_at = time.time_ns()
    guest.podman("start", CONTAINER)
    # Podman 5.4 logs no "died" (only "cleanup") for a container killed within ~0.1 s
    # of its start; let it settle first
    guest.wait_for(
        "the restarted container's first health check",
        lambda: (
            guest.podman("inspect", "--format", "{{.State.Health.Status}}", CONTAINER).strip()
            == "healthy"
        ),
        timeout=20,
    )
    _kill_main_process(guest)
    time.sleep(1.5)  # a few refused reconnects
    guest.run(["systemctl", "start", "podman.socket"])
    _wait(guest, "the reconnect", lambda rs: _states(rs)[-1]["connected"] and len(_states(rs)) >= 3)

    def two_deaths(records: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        deaths = _events(records, "died")
        return deaths if len(deaths) >= 2 else None

    replayed = _wait(guest, "the replayed died", two_deaths)[1]
    records = _records(guest)
    assert replayed["exit_code"] == 137 and replayed["time_nano"] > stopped_at
    reconnected = [s for s in _states(records) if s["connected"]][-1]
    assert replayed["t"] > reconnected["t"]  # it happened while down, arrived after
    assert [e for e in _events(records, "start") if e["time_nano"] > stopped_at]

    refused = [s["reason"] for s in _states(records) if not s["connected"]]
    assert any("nothing listens on /run/podman/podman.sock" in r for r in refused), refused
    keys = [(r["id"], r["action"], r["time_nano"]) for r in _records(guest) if r["kind"] == "event"]
    assert len(keys) == len(set(keys)), "a replayed event was delivered twice"
    log = guest.journal(DRIVER_UNIT, lines=200)
    assert re.search(r"since=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", log), log


# --------------------------------------------------------------------------- systemd


@pytest.fixture
def own_guest(testbed_host: None) -> Iterator[Guest]:
    """A guest of this test's own: restarting dbus would leave the session's guest without
    a working logind for the tests after it."""
    guest = testbed.boot_guest()
    try:
        yield guest
    finally:
        # logind does not come back on a restarted bus; poweroff asks it first
        guest.run(["systemctl", "restart", "systemd-logind"], check=False, timeout=30)
        guest.teardown()


def _changes(records: list[dict[str, Any]], unit: str) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == "change" and r["unit"] == unit]


def test_unit_signals_follow_a_unit_and_survive_a_dbus_restart(own_guest: Guest) -> None:
    guest = own_guest
    _start_driver(guest, "units", WATCHED)
    _wait(guest, "the subscription", lambda rs: _states(rs) and _states(rs)[0]["connected"])

    guest.run(["systemd-run", f"--unit={OTHER}", "sleep", "300"])
    guest.run(["systemd-run", f"--unit={WATCHED}", "sleep", "300"])
    _wait(guest, "a change on start", lambda rs: _changes(rs, WATCHED))
    # A crash runs no job: only PropertiesChanged can tell
    before = len(_changes(_records(guest), WATCHED))
    guest.run(["systemctl", "kill", "--signal=KILL", WATCHED])
    guest.wait_unit(WATCHED, "failed", timeout=15)
    _wait(guest, "a change on the kill", lambda rs: len(_changes(rs, WATCHED)) > before)

    guest.run(["systemctl", "restart", "dbus"])
    _wait(
        guest,
        "the loss and the new subscription",
        lambda rs: len(_states(rs)) >= 3 and _states(rs)[-1]["connected"],
    )
    states = _states(_records(guest))
    assert [s["connected"] for s in states] == [True, False, True], states
    assert "D-Bus" in states[1]["reason"]

    guest.run(["systemctl", "reset-failed", WATCHED])
    guest.run(["systemd-run", f"--unit={WATCHED}", "sleep", "300"])
    _wait(
        guest,
        "a change after the reconnect",
        lambda rs: [c for c in _changes(rs, WATCHED) if c["t"] > states[-1]["t"]],
    )
    records = _records(guest)
    assert not _changes(records, OTHER)
    assert {r["kind"] for r in records} == {"state", "change"}
    _stop_driver(guest)
