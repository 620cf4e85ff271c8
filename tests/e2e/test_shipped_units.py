"""The stack's quadlet templates in units/ as shipped: Podman 5.4's generator accepts every
one of them and turns them into the services the stack needs, with their order."""

from __future__ import annotations

import re

import pytest

from tests.e2e import testbed
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

GENERATOR = "/usr/lib/systemd/system-generators/podman-system-generator"
TEMPLATES = sorted(
    p
    for p in (testbed.REPO_ROOT / "units").iterdir()
    if p.suffix in (".container", ".network", ".volume")
)


def test_generator_accepts_every_template(guest: Guest) -> None:
    assert {p.name for p in TEMPLATES} >= {
        "aistack.network", "ollama.container", "open-webui.container", "litellm.container",
        "postgres.container", "ollama-models.volume", "open-webui-data.volume",
        "postgres-data.volume",
    }  # fmt: skip
    guest.run(["mkdir", "-p", "/tmp/units"])
    for path in TEMPLATES:
        guest.copy_in(path, f"/tmp/units/{path.name}")
    res = guest.run(
        ["env", "QUADLET_UNIT_DIRS=/tmp/units", GENERATOR, "--dryrun"], check=False, timeout=60
    )
    out, err = str(res.stdout), str(res.stderr)
    assert res.returncode == 0, err
    assert "converting" in err or out, err
    units = dict(re.findall(r"---(\S+)---\n(.*?)(?=\n---|\Z)", out, re.S))
    for service in ("ollama", "open-webui", "litellm", "postgres"):
        assert f"{service}.service" in units, sorted(units)
    assert "aistack-network.service" in units
    litellm = units["litellm.service"]
    assert "Requires=postgres.service" in litellm and "After=postgres.service" in litellm
    assert "--health-cmd" in litellm and "/health/liveliness" in litellm
    assert "--sdnotify=healthy" in units["postgres.service"]
    assert "Wants=ollama.service litellm.service" in units["open-webui.service"]
    guest.run(["rm", "-rf", "/tmp/units"])
