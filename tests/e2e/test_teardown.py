"""Teardown leaves nothing of a guest on the host: no process (nspawn, the guest's systemd,
conmon, containers), no mount under its dir, no network link, no dir. Each test boots its
own short-lived guest, so the session guest is not involved."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e import testbed
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

CONTAINER = """[Container]
Image={image}
ContainerName=e2e-td
HealthCmd=ollama list
HealthInterval=2s
Notify=healthy
"""


@pytest.fixture
def own_guest(testbed_host: None) -> Iterator[Guest]:
    """A second guest; if a test fails half-way, it is still torn down (not checked)."""
    guest = testbed.boot_guest(f"aistack-e2e-td-{os.getpid()}")
    yield guest
    if guest.root.exists():
        guest.teardown(timeout=20, check=False)


def _assert_nothing_left(guest: Guest, report: testbed.TeardownReport, pids: list[int]) -> None:
    assert report.clean, report
    assert not any(testbed._alive(pid) for pid in pids), [testbed._cmdline(p) for p in pids]
    assert not testbed._alive(guest.nspawn_pid, guest.nspawn_start)
    assert guest.guest_processes() == []
    assert testbed._mounts_under(guest.root) == []
    assert testbed._host_links() == guest.host_links
    assert not guest.root.exists()
    assert not guest.state_path.exists()


def test_poweroff_with_running_containers_leaves_nothing(own_guest: Guest) -> None:
    guest = own_guest
    image = testbed.ensure_image(guest, "ollama")
    guest.write_quadlet("e2e-td.container", CONTAINER.format(image=image))
    guest.daemon_reload()
    guest.start("e2e-td.service")
    pids = guest.guest_processes()
    cmdlines = " ".join(testbed._cmdline(p) for p in pids)
    assert "conmon" in cmdlines and "nc -ll" in cmdlines, cmdlines  # container + its monitor
    assert guest.pid in pids and guest.nspawn_pid not in pids

    report = guest.teardown()

    assert not report.escalated  # a clean poweroff stopped the container by itself
    _assert_nothing_left(guest, report, [*pids, guest.nspawn_pid])


def test_stuck_shutdown_is_escalated_and_still_leaves_nothing(own_guest: Guest) -> None:
    guest = own_guest
    # A service that ignores its stop signal and has no stop timeout blocks poweroff forever.
    guest.run(
        [
            "systemd-run",
            "--unit=e2e-stuck",
            "-p",
            "KillSignal=SIGCONT",
            "-p",
            "SendSIGKILL=no",
            "-p",
            "TimeoutStopSec=infinity",
            "sleep",
            "infinity",
        ]
    )
    guest.wait_unit("e2e-stuck.service")
    pids = guest.guest_processes()

    report = guest.teardown(timeout=6)

    assert report.escalated
    _assert_nothing_left(guest, report, [*pids, guest.nspawn_pid])
