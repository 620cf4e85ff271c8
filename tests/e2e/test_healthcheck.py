"""Quadlet health checks with HealthOnFailure=kill and Restart=always: a stand-in whose
fault switch is flipped gets killed and restarted by the guest's systemd."""

from __future__ import annotations

import time

import pytest

from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

UNIT = "e2e-hc.service"
CONTAINER = """[Unit]
Description=e2e health-checked ollama stand-in
StartLimitIntervalSec={limit_interval}
StartLimitBurst=3

[Container]
Image={image}
ContainerName=e2e-hc
HealthCmd=ollama list
HealthInterval=2s
HealthTimeout=2s
HealthRetries=1
HealthOnFailure=kill
Notify=healthy
{extra}

[Service]
Restart=always
RestartSec=1
"""


def _restarts(guest: Guest) -> int:
    return int(guest.unit_properties(UNIT, "NRestarts")["NRestarts"])


def _container_id(guest: Guest) -> str:
    """The running container's id. By id, not name: right after a restart, podman can
    still resolve the name to the removed container ("no container with ID ... found")."""
    out = guest.podman(
        "ps", "--no-trunc", "--filter", "name=^e2e-hc$", "--filter", "status=running",
        "--format", "{{.ID}}", check=False,
    )  # fmt: skip
    return out.strip().splitlines()[0] if out.strip() else ""


@pytest.mark.parametrize("fault", ["500", "hang", "exit"])
def test_fault_gets_container_killed_and_restarted(
    guest: Guest, standin_images: dict[str, str], fault: str
) -> None:
    text = CONTAINER.format(image=standin_images["ollama"], limit_interval=0, extra="")
    guest.write_quadlet("e2e-hc.container", text)
    guest.daemon_reload()
    guest.start(UNIT)  # Notify=healthy: returns once the first check passed
    guest.wait_unit(UNIT, "active")
    before, first_id = _restarts(guest), _container_id(guest)
    assert first_id
    assert guest.run(["podman", "healthcheck", "run", first_id], check=False).returncode == 0

    guest.podman("exec", first_id, "touch", f"/run/fault/{fault}")

    def restarted_and_healthy() -> bool:
        if _restarts(guest) <= before:
            return False
        if guest.unit_properties(UNIT, "ActiveState")["ActiveState"] != "active":
            return False
        cid = _container_id(guest)
        if not cid:
            return False
        status = guest.podman(
            "inspect", cid, "--format", "{{.State.Health.Status}}", check=False
        ).strip()
        return bool(cid) and cid != first_id and status == "healthy"

    guest.wait_for(f"{UNIT} restarted after fault {fault}", restarted_and_healthy, timeout=90)
    # A new container from the image: the fault switch is gone with the old one.
    ls = guest.run(["podman", "exec", _container_id(guest), "ls", "/run/fault"]).stdout
    assert fault not in ls.split()


def test_crash_at_start_hits_the_start_limit(guest: Guest, standin_images: dict[str, str]) -> None:
    text = CONTAINER.format(
        image=standin_images["ollama"],
        limit_interval=120,
        extra="Environment=AISTACK_FAULT_CRASH_AT_START=1",
    )
    guest.write_quadlet("e2e-hc.container", text)
    guest.daemon_reload()
    assert guest.start(UNIT, check=False) != 0
    guest.wait_for(
        "the start limit",
        lambda: "Start request repeated too quickly" in guest.journal(UNIT, lines=50),
        timeout=60,
    )
    props = guest.wait_unit(UNIT, "failed", timeout=10)
    assert int(props["NRestarts"]) >= 2
    time.sleep(3)  # and it stays down: no more restarts
    assert guest.unit_properties(UNIT, "ActiveState", "NRestarts") == {
        "ActiveState": "failed",
        "NRestarts": props["NRestarts"],
    }
    assert "fault crash-at-start" in guest.journal(UNIT, lines=400)
