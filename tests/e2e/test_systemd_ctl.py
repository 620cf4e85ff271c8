"""agent.systemd_ctl and the secret/inspect calls of agent.podman_api against the guest's
real systemd 257 and Podman 5.4, run from the installed deb by the guest's python3 (as the
agent would run them: pystemd over the system D-Bus, the libpod socket)."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import testbed
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

SLEEP, FAIL, NEVER_READY = "e2e-sleep.service", "e2e-fail.service", "e2e-never-ready.service"
DEAF = "e2e-deaf.service"  # ignores SIGTERM: killed at its stop timeout
UNITS = {
    # ready only once SIGTERM is ignored: a stop right after the start must find it so
    DEAF: (
        "[Service]\nType=notify\nNotifyAccess=all\nTimeoutStopSec=1\nExecStart=/bin/sh -c "
        "'trap \"\" TERM; systemd-notify --ready; while :; do sleep 0.2; done'\n"
    ),
    SLEEP: "[Unit]\nDescription=e2e sleeper one\n[Service]\nExecStart=/bin/sleep infinity\n",
    FAIL: "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'exit 1'\n",
    NEVER_READY: (
        "[Service]\nType=notify\nExecStart=/bin/sleep infinity\nTimeoutStartSec=2\n"
        "NotifyAccess=main\n"
    ),
}
SOCKET = "/run/podman/podman.sock"

PRELUDE = """\
import dataclasses, json, sys, time
sys.path.insert(0, "/usr/lib/aistack")
from pathlib import Path
from agent import podman_api as pa, systemd_ctl as sc
SOCK = Path("/run/podman/podman.sock")
def plain(o):
    return dataclasses.asdict(o) if dataclasses.is_dataclass(o) else repr(o)
"""


def ctl(guest: Guest, code: str, timeout: float = 60) -> Any:
    """Run code in the guest's python3 with the installed agent; it sets `result`."""
    script = PRELUDE + textwrap.dedent(code) + "\nprint(json.dumps(result, default=plain))\n"
    out = guest.run(["python3", "-c", script], timeout=timeout).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def units(guest: Guest, agent_deb: Path) -> Iterator[Guest]:
    testbed.install_agent_from_deb(guest, agent_deb)
    for name, text in UNITS.items():
        guest.write_file(f"/etc/systemd/system/{name}", text)
        guest.units_of_interest.add(name)
    guest.daemon_reload()
    yield guest
    guest.run(["systemctl", "stop", *UNITS], check=False, timeout=60)
    guest.run(["rm", "-f", *(f"/etc/systemd/system/{n}" for n in UNITS)])
    guest.run(["systemctl", "reset-failed"], check=False)
    guest.daemon_reload()


def test_start_stop_restart_follow_the_job(units: Guest) -> None:
    r = ctl(
        units,
        f"""
        u = {SLEEP!r}
        before = sc.unit_state(u)
        started = sc.start(u, 30)
        running = sc.unit_state(u)
        again = sc.start(u, 30)  # already active: a job that completes at once
        restarted = sc.restart(u, 30)
        after_restart = sc.unit_state(u)
        stopped = sc.stop(u, 30)
        gone = sc.unit_state(u)
        result = dict(before=before, started=started, running=running,
                      again=again, restarted=restarted, after_restart=after_restart,
                      stopped=stopped, gone=gone, now=time.time())
        """,
    )
    assert r["before"]["load_state"] == "loaded" and r["before"]["active_state"] == "inactive"
    assert r["before"]["main_pid"] == 0
    assert r["started"] == {
        "unit": SLEEP, "action": "start", "result": "done",
        "active_state": "active", "sub_state": "running",
    }  # fmt: skip
    running = r["running"]
    assert running["name"] == SLEEP and running["sub_state"] == "running"
    assert running["main_pid"] > 1 and running["n_restarts"] == 0
    assert running["result"] == "success" and running["unit_file_state"] == "static"
    assert 0 < r["now"] - running["active_enter_timestamp"] < 60
    assert r["again"]["result"] == "done" and r["again"]["active_state"] == "active"
    assert r["restarted"]["result"] == "done" and r["restarted"]["active_state"] == "active"
    assert r["after_restart"]["main_pid"] not in (0, running["main_pid"])
    assert r["stopped"]["result"] == "done"
    assert (r["stopped"]["active_state"], r["stopped"]["sub_state"]) == ("inactive", "dead")
    assert r["gone"]["main_pid"] == 0
    # what systemctl sees agrees
    assert units.unit_properties(SLEEP, "ActiveState")["ActiveState"] == "inactive"


def test_failing_unit_and_reset_failed(units: Guest) -> None:
    r = ctl(
        units,
        f"""
        u = {FAIL!r}
        failed = sc.start(u, 30)
        state = sc.unit_state(u)
        sc.reset_failed(u)
        result = dict(failed=failed, state=state, reset=sc.unit_state(u))
        """,
    )
    assert r["failed"]["result"] == "failed", r
    assert r["failed"]["active_state"] == "failed"
    assert (r["state"]["active_state"], r["state"]["result"]) == ("failed", "exit-code")
    assert r["reset"]["active_state"] == "inactive" and r["reset"]["result"] == "success"


def test_a_stop_that_kills_leaves_the_unit_stopped_not_failed(units: Guest) -> None:
    """A person's stop of a service whose main process ignores SIGTERM (busybox httpd as
    PID 1 does): systemd kills it at the stop timeout and marks the unit failed, which the
    healer would then start against the stop. systemd_ctl.stop resets it: stopped."""
    r = ctl(
        units,
        f"""
        u = {DEAF!r}
        started = sc.start(u, 30)
        stopped = sc.stop(u, 30)
        result = dict(started=started, stopped=stopped, state=sc.unit_state(u))
        """,
    )
    assert r["started"]["active_state"] == "active", r
    assert (r["stopped"]["active_state"], r["stopped"]["sub_state"]) == ("inactive", "dead"), r
    assert r["state"]["active_state"] == "inactive", r
    assert units.unit_properties(DEAF, "ActiveState")["ActiveState"] == "inactive"


def test_never_ready_unit_times_out_without_hanging(units: Guest) -> None:
    r = ctl(
        units,
        f"""
        u = {NEVER_READY!r}
        short = sc.start(u, 0.5)
        long = sc.start(u, 30)
        result = dict(short=short, long=long, state=sc.unit_state(u))
        """,
    )
    # our deadline first: the job is still running, the unit still activating
    assert r["short"]["result"] == "timeout", r
    assert r["short"]["active_state"] == "activating"
    # the same job (merged) then ends by systemd's TimeoutStartSec=2, before our 30 s
    assert r["long"]["result"] in ("timeout", "failed"), r
    assert r["state"]["active_state"] == "failed" and r["state"]["result"] == "timeout"


def test_daemon_reload_unit_states_and_errors(units: Guest) -> None:
    units.run(["systemctl", "start", SLEEP])
    units.write_file(f"/etc/systemd/system/{SLEEP}", UNITS[SLEEP].replace("one", "two"))
    assert units.unit_properties(SLEEP, "NeedDaemonReload")["NeedDaemonReload"] == "yes"
    r = ctl(
        units,
        f"""
        sc.daemon_reload()
        states = sc.unit_states([{SLEEP!r}, "e2e-missing.service", "dbus.socket"])
        errors = {{}}
        for name, call in [("start", lambda: sc.start("e2e-missing.service", 5)),
                           ("reset_failed", lambda: sc.reset_failed("e2e-missing.service"))]:
            try:
                call()
            except sc.SystemdError as exc:
                errors[name] = str(exc)
        result = dict(states=states, errors=errors)
        """,
    )
    props = units.unit_properties(SLEEP, "NeedDaemonReload", "Description")
    assert props == {"NeedDaemonReload": "no", "Description": "e2e sleeper two"}
    states = r["states"]
    assert states[SLEEP]["active_state"] == "active"  # a reload does not restart it
    assert states["e2e-missing.service"]["load_state"] == "not-found"
    assert states["e2e-missing.service"]["active_state"] == "inactive"
    sock = states["dbus.socket"]  # not a service: no NRestarts/MainPID, the Socket's Result
    assert sock["active_state"] == "active" and sock["n_restarts"] == 0
    assert sock["main_pid"] == 0 and sock["result"] == "success"
    assert set(r["errors"]) == {"start", "reset_failed"}, r
    for message in r["errors"].values():
        assert "e2e-missing.service" in message and "daemon-reload" in message, message


@pytest.fixture
def podman(guest: Guest, agent_deb: Path) -> Iterator[Guest]:
    testbed.install_agent_from_deb(guest, agent_deb)
    guest.run(["systemctl", "start", "podman.socket"], timeout=60)
    yield guest
    guest.run(["podman", "secret", "rm", "-a"], check=False)
    guest.run(["systemctl", "stop", "podman.socket"], check=False)


def test_secret_round_trip_never_shows_the_value(podman: Guest) -> None:
    first, second = f"first-{time.time_ns()}-Sekr1t", f"second-{time.time_ns()}-Sekr2t"
    r = ctl(
        podman,
        f"""
        name = "e2e-db-password"
        texts = []
        out = dict(absent=pa.secret_exists(SOCK, name))
        out["id1"] = pa.secret_create(SOCK, name, {first!r}.encode())
        out["exists"] = pa.secret_exists(SOCK, name)
        try:
            pa.secret_create(SOCK, name, {second!r}.encode(), replace=False)
        except pa.PodmanApiError as exc:
            texts.append(out.setdefault("no_replace_error", str(exc)))
        out["id2"] = pa.secret_create(SOCK, name, {second!r}.encode())  # replace
        for bad in (lambda: pa.secret_create(SOCK, "bad/name", {second!r}.encode()),
                    lambda: pa.secret_create(SOCK, name, b"x" * 600_000)):
            try:
                bad()
            except pa.PodmanApiError as exc:
                texts.append(str(exc))
        out["still"] = pa.secret_exists(SOCK, name)  # a failed replace kept it
        out["raw"] = pa.request_json(SOCK, "GET", pa.API + "/secrets/" + name + "/json")
        out["deleted"] = pa.secret_delete(SOCK, name)
        out["deleted_again"] = pa.secret_delete(SOCK, name)
        out["gone"] = not pa.secret_exists(SOCK, name)
        out["no_container"] = pa.container_inspect(SOCK, "e2e-no-such-container")
        out["no_image"] = pa.image_exists(SOCK, "localhost/e2e/no-such-image:1")
        out["texts"] = texts
        result = out
        """,
    )
    assert r["absent"] is False and r["exists"] is True and r["still"] is True
    assert r["id1"] and r["id2"] and r["id1"] != r["id2"]
    assert "e2e-db-password" in r["no_replace_error"], r
    assert "in use" in r["no_replace_error"] and "replace=True" in r["no_replace_error"]
    assert len(r["texts"]) == 3, r["texts"]  # no replace, a bad name, too large
    status, doc = r["raw"]
    assert status == 200 and doc["Spec"]["Name"] == "e2e-db-password"
    assert r["deleted"] is True and r["deleted_again"] is False and r["gone"] is True
    assert r["no_container"] is None and r["no_image"] is False
    # the value is nowhere: not in our errors, not in what podman shows of the secret
    podman.run(["sh", "-c", f"printf %s {first} | podman secret create e2e-shown -"])
    shown = podman.podman("secret", "inspect", "e2e-shown") + podman.podman("secret", "ls")
    for value in (first, second):
        assert value not in json.dumps(r), value
        assert value not in shown


def test_image_exists_and_container_inspect(podman: Guest) -> None:
    ref = testbed.ensure_image(podman, "ollama")
    podman.podman("create", "--name", "e2e-inspected", ref)
    r = ctl(
        podman,
        f"""
        doc = pa.container_inspect(SOCK, "e2e-inspected")
        result = dict(image=pa.image_exists(SOCK, {ref!r}), name=doc["Name"],
                      state=doc["State"]["Status"], image_name=doc["ImageName"])
        """,
    )
    assert r == {"image": True, "name": "e2e-inspected", "state": "created", "image_name": ref}
