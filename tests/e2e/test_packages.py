"""The deb's whole life on a real Debian 13 with systemd: install, start, upgrade, remove,
purge. What users run, in the order they run it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e import testbed
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

UNIT = "aistack-agent.service"
APT = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-q"]


@pytest.fixture(scope="module")
def debs() -> tuple[Path, Path]:
    """An older build and the current one, for the upgrade."""
    from agent import __version__

    return testbed.build_deb(f"{__version__}~e2e0"), testbed.build_deb()


def _is(guest: Guest, verb: str) -> str:
    return str(guest.run(["systemctl", verb, UNIT], check=False).stdout).strip()


def _exists(guest: Guest, path: str) -> bool:
    return guest.run(["test", "-e", path], check=False).returncode == 0


def test_install_upgrade_remove_purge(guest: Guest, debs: tuple[Path, Path]) -> None:
    old, new = debs
    guest.units_of_interest.add(UNIT)
    try:
        # install: dependencies resolve from Debian; enabled, not started; token 0600
        out = testbed.install_agent_from_deb(guest, old)
        assert "aistack: installed and enabled" in out
        assert _is(guest, "is-enabled") == "enabled"
        assert _is(guest, "is-active") == "inactive"
        mode = guest.run(["stat", "-c", "%a %U", "/etc/aistack/api-token"]).stdout.split()
        assert mode == ["600", "root"]
        conffiles = guest.run(["dpkg-query", "-W", "-f=${Conffiles}", "aistack"]).stdout
        assert "/etc/aistack/agent.yaml" in conffiles
        # byte-code compiled at install (the agent's /usr is read-only)
        assert _exists(guest, "/usr/lib/aistack/agent/__pycache__")
        assert _exists(guest, "/usr/lib/aistack/agent/stack/__pycache__")

        # start: READY, /status answers, Podman reachable from the sandbox
        guest.run(["systemctl", "enable", "--now", "podman.socket"], timeout=60)
        guest.run(["systemctl", "start", UNIT], timeout=90)
        assert _is(guest, "is-active") == "active"
        status = json.loads(guest.run(["curl", "-sf", "localhost:9200/status"]).stdout)
        assert status["sources"]["podman"]["state"] == "ok"

        # the admin edits the config; a backup exists
        guest.write_file("/etc/aistack/agent.yaml", "logging:\n  level: debug\n")
        guest.run(["mkdir", "-p", "/var/lib/aistack/backups/20261126T030000Z"])
        guest.write_file("/var/lib/aistack/backups/20261126T030000Z/manifest.json", "{}")
        token = guest.run(["cat", "/etc/aistack/api-token"]).stdout
        pid = guest.unit_properties(UNIT, "MainPID")["MainPID"]

        # upgrade: config, token and backups kept; the running agent restarted
        testbed.install_agent_from_deb(guest, new)
        version = guest.run(["dpkg-query", "-W", "-f=${Version}", "aistack"]).stdout
        assert "~e2e0" not in version
        assert guest.read_file("/etc/aistack/agent.yaml") == b"logging:\n  level: debug\n"
        assert guest.run(["cat", "/etc/aistack/api-token"]).stdout == token
        assert _exists(guest, "/var/lib/aistack/backups/20261126T030000Z/manifest.json")
        assert _is(guest, "is-active") == "active"
        assert guest.unit_properties(UNIT, "MainPID")["MainPID"] != pid

        # remove: stopped and disabled; config and state stay
        guest.run([*APT, "remove", "aistack"], timeout=120)
        assert _is(guest, "is-active") in ("inactive", "unknown")
        assert not _exists(guest, "/usr/lib/systemd/system/aistack-agent.service")
        assert not _exists(guest, "/etc/systemd/system/multi-user.target.wants/" + UNIT)
        assert _exists(guest, "/etc/aistack/agent.yaml")
        assert _exists(guest, "/etc/aistack/api-token")
        assert _exists(guest, "/var/lib/aistack/backups/20261126T030000Z/manifest.json")
        assert not _exists(guest, "/usr/lib/aistack")  # its byte-code too

        # purge: config gone, backups never deleted, and it says where they are
        res = guest.run([*APT, "purge", "aistack"], timeout=120)
        assert not _exists(guest, "/etc/aistack")
        assert _exists(guest, "/var/lib/aistack/backups/20261126T030000Z/manifest.json")
        assert "/var/lib/aistack" in str(res.stdout) + str(res.stderr)
    finally:
        guest.run([*APT, "purge", "aistack"], check=False, timeout=120)
        guest.run(["rm", "-rf", "/var/lib/aistack", "/etc/aistack"])
        guest.run(["systemctl", "stop", "podman.socket"], check=False)
