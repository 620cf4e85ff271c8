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


def _health_cmd(unit: str) -> list[str]:
    """The shipped unit's HealthCmd as podman runs it: a JSON list as argv, else sh -c."""
    import json

    text = (testbed.REPO_ROOT / "units" / unit).read_text()
    value = re.search(r"^HealthCmd=(.*)$", text, re.M)
    assert value, unit
    cmd = value.group(1).strip()
    return list(json.loads(cmd)) if cmd.startswith("[") else ["/bin/sh", "-c", cmd]


@pytest.mark.parametrize(
    ("unit", "image"),
    [("ollama.container", "ollama"), ("open-webui.container", "open-webui"),
     ("litellm.container", "litellm")],
)  # fmt: skip
def test_shipped_health_commands_run_in_the_stand_ins(
    guest: Guest, standin_images: dict[str, str], unit: str, image: str
) -> None:
    """The stand-ins answer the shipped units' own health commands, so what the testbed
    proves about health holds for the units users get; a 500 makes the command fail."""
    name = f"hc-{image}"
    guest.podman("run", "-d", "--name", name, standin_images[image])
    cmd = _health_cmd(unit)
    guest.wait_for(
        f"{unit} health command passing",
        lambda: guest.run(["podman", "exec", name, *cmd], check=False).returncode == 0,
        timeout=30,
    )
    guest.podman("exec", name, "touch", "/run/fault/500")
    assert guest.run(["podman", "exec", name, *cmd], check=False).returncode != 0
    guest.podman("rm", "-f", "-t", "0", name)


GOLDEN = testbed.REPO_ROOT / "tests" / "stack" / "golden"


@pytest.mark.parametrize("case", sorted(p.name for p in GOLDEN.iterdir()))
def test_generator_accepts_every_rendered_golden(guest: Guest, case: str) -> None:
    """Every rendering mode (GPU, proxy, custom, older Podman) as the renderer writes it
    (tests/stack/golden), through Podman 5.4's generator."""
    folder = f"/tmp/golden-{case}"
    guest.run(["mkdir", "-p", folder])
    names = [
        p for p in (GOLDEN / case).iterdir() if p.suffix in (".container", ".network", ".volume")
    ]
    for path in names:
        guest.copy_in(path, f"{folder}/{path.name}")
    res = guest.run(
        ["env", f"QUADLET_UNIT_DIRS={folder}", GENERATOR, "--dryrun"], check=False, timeout=60
    )
    assert res.returncode == 0, res.stderr
    units = dict(re.findall(r"---(\S+)---\n(.*?)(?=\n---|\Z)", str(res.stdout), re.S))
    expected = {p.stem + ".service" for p in names if p.suffix == ".container"}
    assert expected <= set(units), (sorted(units), res.stderr)
    if case == "gpu-nvidia":
        assert "--device nvidia.com/gpu=all" in units["ollama.service"]
    if case == "proxy-traefik":
        assert "--network proxy" in units["open-webui.service"]
    guest.run(["rm", "-rf", folder])
