"""Quadlet through the guest's real systemd: a .network and two .container files become
services whose containers share a bridge network and reach each other by name."""

from __future__ import annotations

import pytest

from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

NETWORK = "[Network]\nLabel=app=aistack-e2e\n"
OLLAMA = """[Unit]
Description=e2e ollama stand-in

[Container]
Image={image}
ContainerName=e2e-ollama
Network=e2e.network
"""
WEBUI = """[Unit]
Description=e2e open-webui stand-in
Requires=e2e-ollama.service
After=e2e-ollama.service

[Container]
Image={image}
ContainerName=e2e-webui
Network=e2e.network
Environment=OLLAMA_BASE_URL=http://e2e-ollama:11434
"""


def test_generator_accepts_files_and_containers_reach_each_other_by_name(
    guest: Guest, standin_images: dict[str, str]
) -> None:
    guest.write_quadlet("e2e.network", NETWORK)
    guest.write_quadlet("e2e-ollama.container", OLLAMA.format(image=standin_images["ollama"]))
    guest.write_quadlet("e2e-webui.container", WEBUI.format(image=standin_images["open-webui"]))
    dry = guest.run(["/usr/lib/systemd/system-generators/podman-system-generator", "--dryrun"])
    assert "e2e-webui.service" in dry.stdout or "e2e-webui" in dry.stderr
    guest.daemon_reload()

    guest.start("e2e-webui.service")  # pulls in e2e-ollama.service and e2e-network.service
    for unit in ("e2e-network.service", "e2e-ollama.service", "e2e-webui.service"):
        guest.wait_unit(unit, "active", timeout=30)

    assert guest.podman("network", "inspect", "systemd-e2e", "--format", "{{.Driver}}").strip() == (
        "bridge"
    )
    for ctr in ("e2e-ollama", "e2e-webui"):
        nets = guest.podman(
            "inspect",
            ctr,
            "--format",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        )
        assert nets.split() == ["systemd-e2e"], ctr
    # Name resolution (aardvark-dns) and routing over the bridge, both directions.
    got = guest.podman("exec", "e2e-webui", "curl", "-f", "-s", "http://e2e-ollama:11434/")
    assert got == "Ollama is running"
    got = guest.podman("exec", "e2e-ollama", "wget", "-q", "-O-", "http://e2e-webui:8080/health")
    assert got == '{"status":true}'
    env = guest.podman("exec", "e2e-webui", "env").split()
    assert "OLLAMA_BASE_URL=http://e2e-ollama:11434" in env
    # The container's processes belong to the service's cgroup: systemd owns them.
    cgroup = guest.podman("inspect", "e2e-ollama", "--format", "{{.State.Pid}}").strip()
    assert "e2e-ollama.service" in guest.run(["cat", f"/proc/{cgroup}/cgroup"]).stdout
