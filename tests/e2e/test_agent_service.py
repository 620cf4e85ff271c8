"""The agent, installed from this checkout's deb, as a real systemd service in the guest
under the shipped, hardened unit: READY, reload, stop, the journal, and the sources it
must reach from inside its sandbox (Podman's API socket, systemd over D-Bus)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import testbed
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

UNIT = "aistack-agent.service"


@pytest.fixture
def agent(guest: Guest, agent_deb: Path) -> Iterator[Guest]:
    testbed.install_agent_from_deb(guest, agent_deb)
    guest.run(["systemctl", "start", "podman.socket"], timeout=60)
    guest.units_of_interest.add(UNIT)
    yield guest
    guest.run(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", "-q", "aistack"],
              check=False, timeout=120)  # fmt: skip
    guest.run(["rm", "-rf", "/var/lib/aistack"])
    guest.run(["systemctl", "stop", "podman.socket"], check=False)
    guest.daemon_reload()


def _status(guest: Guest) -> dict:  # type: ignore[type-arg]
    code, body = guest.http("GET", "http://127.0.0.1:9200/status")
    assert code == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


def test_agent_starts_as_notify_service_and_serves_status_and_metrics(agent: Guest) -> None:
    guest = agent
    guest.start(UNIT, timeout=90)  # Type=notify(-reload): returns only after READY=1
    props = guest.unit_properties(UNIT, "ActiveState", "Type", "StatusText", "WatchdogUSec")
    assert props["ActiveState"] == "active", props
    assert props["Type"] == "notify-reload", props
    assert props["StatusText"].startswith(("ok: ", "degraded: ")), props  # STATUS= arrived
    assert props["WatchdogUSec"] == "30s", props

    status, metrics = guest.http("GET", "http://127.0.0.1:9200/metrics")
    assert status == 200 and "aistack_agent_info" in metrics
    assert 'aistack_source_up{source="podman"} 1.0' in metrics


def test_hardened_unit_still_reaches_podman_and_systemd(agent: Guest) -> None:
    """ProtectSystem=strict, no capabilities, the syscall filter: the sockets still work."""
    guest = agent
    guest.start(UNIT, timeout=90)
    doc = _status(guest)
    assert doc["sources"]["podman"]["state"] == "ok", doc["sources"]["podman"]
    assert doc["sources"]["podman"]["data"]["version"].startswith("5.")
    assert doc["sources"]["systemd"]["state"] == "ok", doc["sources"]["systemd"]
    assert doc["sources"]["systemd"]["data"]["version"].startswith("257")
    # The token was generated inside the sandbox, 0600, and never reaches /status.
    mode = guest.run(["stat", "-c", "%a %U", "/etc/aistack/api-token"]).stdout.split()
    assert mode == ["600", "root"]
    token = guest.run(["cat", "/etc/aistack/api-token"]).stdout.strip()
    assert token and token not in json.dumps(doc)


def test_journal_gets_structured_fields_with_priority(agent: Guest) -> None:
    guest = agent
    guest.start(UNIT, timeout=90)
    out = guest.run(
        ["journalctl", "-u", UNIT, "-o", "json", "--no-pager", "MESSAGE=agent ready"]
    ).stdout
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert entries, "no 'agent ready' entry in the journal"
    ready = entries[-1]
    assert ready["COMPONENT"] == "agent"
    assert ready["PRIORITY"] == "6"
    assert ready["SYSLOG_IDENTIFIER"] == "aistack-agent"
    assert ready["LISTEN"] == "127.0.0.1:9200"


def test_systemctl_reload_and_invalid_config_keeps_running(agent: Guest) -> None:
    guest = agent
    guest.start(UNIT, timeout=90)
    pid = guest.unit_properties(UNIT, "MainPID")["MainPID"]
    guest.run(["systemctl", "reload", UNIT], timeout=60)  # notify-reload: waits for READY
    guest.write_file("/etc/aistack/agent.yaml", "api: {prot: 1}\n")
    guest.run(["systemctl", "reload", UNIT], timeout=60)
    props = guest.unit_properties(UNIT, "ActiveState", "MainPID")
    assert props == {"ActiveState": "active", "MainPID": pid}
    # journald stores a datagram when it gets to it: on a busy machine a line written
    # before systemctl returned can come into the journal a moment later
    wanted = ("configuration reloaded", "reload refused; the running config is unchanged")
    guest.wait_for(
        "both reloads in the journal",
        lambda: all(w in guest.journal(UNIT, lines=50) for w in wanted),
        timeout=60,
    )
    assert _status(guest)["version"]


def test_stop_is_clean_and_bad_config_is_not_restarted(agent: Guest) -> None:
    guest = agent
    guest.start(UNIT, timeout=90)
    guest.run(["systemctl", "stop", UNIT], timeout=30)
    props = guest.unit_properties(UNIT, "ActiveState", "Result", "ExecMainStatus")
    assert props == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    guest.write_file("/etc/aistack/agent.yaml", "api: {port: nine}\n")
    guest.run(["systemctl", "start", UNIT], check=False, timeout=60)
    props = guest.wait_unit(UNIT, "failed", timeout=30)
    status = guest.unit_properties(UNIT, "ExecMainStatus", "NRestarts")
    assert status == {"ExecMainStatus": "78", "NRestarts": "0"}  # RestartPreventExitStatus=78
    assert "api.port: must be a whole number" in guest.journal(UNIT, lines=20)


def test_unit_exposure_in_the_guest_systemd(agent: Guest) -> None:
    """systemd 257 scores the shipped unit too (2.0); README records both figures."""
    out = agent.run(
        ["systemd-analyze", "security", "--no-pager", UNIT], check=False, timeout=60
    ).stdout
    match = re.search(r"Overall exposure level for aistack-agent.service: ([0-9.]+)", out)
    assert match, out
    assert float(match.group(1)) <= 2.0, out
