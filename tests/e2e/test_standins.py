"""The stand-in images answer as specified (README.md), their health-check commands work
as the real images' do, and each fault switch does what it says."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.testbed import Guest, GuestCommandError

pytestmark = pytest.mark.e2e

PORTS = {"ollama": 11434, "open-webui": 8080, "litellm": 4000}
CONTAINER = """[Container]
Image={image}
ContainerName=e2e-{name}
Network=e2e.network
PublishPort=127.0.0.1:{port}:{port}
"""


@pytest.fixture
def standins(guest: Guest, standin_images: dict[str, str]) -> Iterator[Guest]:
    """All three stand-ins running under systemd, published on the guest's loopback."""
    guest.write_quadlet("e2e.network", "[Network]\n")
    for name, port in PORTS.items():
        text = CONTAINER.format(image=standin_images[name], name=name, port=port)
        guest.write_quadlet(f"e2e-{name}.container", text)
    guest.daemon_reload()
    guest.start(*(f"e2e-{name}.service" for name in PORTS))
    for name, port in PORTS.items():
        guest.wait_for(f"{name} answering", lambda p=port: _answers(guest, p), timeout=30)
    yield guest


def _answers(guest: Guest, port: int) -> bool:
    try:
        guest.http("GET", f"http://127.0.0.1:{port}/", timeout=2)
    except GuestCommandError:
        return False
    return True


def _get_json(guest: Guest, url: str, status: int = 200) -> object:
    got, body = guest.http("GET", url)
    assert got == status, body
    return json.loads(body)


def test_ollama_endpoints(standins: Guest) -> None:
    g, base = standins, "http://127.0.0.1:11434"
    assert g.http("GET", base + "/") == (200, "Ollama is running")
    assert _get_json(g, base + "/api/version") == {"version": "0.6.8"}
    tags = _get_json(g, base + "/api/tags")
    assert isinstance(tags, dict)
    assert [m["name"] for m in tags["models"]] == ["llama3.2:1b"]
    ps = _get_json(g, base + "/api/ps")
    assert isinstance(ps, dict)
    (loaded,) = ps["models"]
    assert loaded["name"] == "llama3.2:1b"
    assert loaded["size"] == loaded["size_vram"] > 0

    status, body = g.http("POST", base + "/api/pull", '{"model": "qwen2.5:0.5b"}')
    assert status == 200
    lines = [json.loads(line) for line in body.splitlines()]
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1] == {"status": "success"}
    assert any(line.get("total") and line.get("completed") == line["total"] for line in lines)
    status, body = g.http("POST", base + "/api/pull", '{"model": "x-notfound", "stream": false}')
    assert status == 500 and "file does not exist" in body

    names = g.podman("exec", "e2e-ollama", "ollama", "list")
    assert "qwen2.5:0.5b" in names and "llama3.2:1b" in names
    assert g.http("DELETE", base + "/api/delete", '{"model": "qwen2.5:0.5b"}')[0] == 200
    assert g.http("DELETE", base + "/api/delete", '{"model": "qwen2.5:0.5b"}')[0] == 404
    assert "qwen2.5" not in g.http("GET", base + "/api/tags")[1]
    assert g.http("GET", base + "/api/nothing")[0] == 404


def test_open_webui_and_litellm_endpoints(standins: Guest) -> None:
    g = standins
    assert _get_json(g, "http://127.0.0.1:8080/health") == {"status": True}
    assert _get_json(g, "http://127.0.0.1:8080/health/db") == {"status": True}
    assert "version" in _get_json(g, "http://127.0.0.1:8080/api/version")  # type: ignore[operator]
    assert _get_json(g, "http://127.0.0.1:4000/health/liveliness") == "I'm alive!"
    ready = _get_json(g, "http://127.0.0.1:4000/health/readiness")
    assert isinstance(ready, dict)
    assert ready["db"] == "Not connected" and ready["status"] == "healthy"
    # From another container, over the network, by name.
    got = g.podman(
        "exec", "e2e-open-webui", "curl", "-fsS", "http://e2e-litellm:4000/health/liveliness"
    )
    assert got == '"I\'m alive!"'


HEALTH_CMDS = {
    "ollama": ["ollama", "list"],
    "open-webui": ["curl", "--silent", "--fail", "http://localhost:8080/health"],
    "litellm": ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:4000/health/liveliness"],
}


@pytest.mark.parametrize("name", list(PORTS))
def test_health_commands_and_fault_switches(standins: Guest, name: str) -> None:
    g, ctr, port = standins, f"e2e-{name}", PORTS[name]

    def health() -> int:
        """The image's health command, bounded like a HealthTimeout would bound it."""
        argv = ["podman", "exec", ctr, "timeout", "5", *HEALTH_CMDS[name]]
        rc: int = g.run(argv, check=False, timeout=30).returncode
        return rc

    assert health() == 0
    g.podman("exec", ctr, "touch", "/run/fault/500")
    assert g.http("GET", f"http://127.0.0.1:{port}/")[0] == 500
    assert health() != 0
    g.podman("exec", ctr, "mv", "/run/fault/500", "/run/fault/hang")
    with pytest.raises(GuestCommandError, match="timed out"):
        g.http("GET", f"http://127.0.0.1:{port}/", timeout=2)
    assert health() != 0
    g.podman("exec", ctr, "rm", "/run/fault/hang")
    assert health() == 0
    g.podman("exec", ctr, "touch", "/run/fault/exit")
    g.wait_unit(f"{ctr}.service", "failed", timeout=20)
    code = g.podman("inspect", ctr, "--format", "{{.State.ExitCode}}", check=False)
    assert code.strip() in ("75", "")  # the container may be removed already (--rm)
    assert "fault exit" in g.journal(f"{ctr}.service")


def test_crash_at_start_switch(guest: Guest, standin_images: dict[str, str]) -> None:
    res = guest.run_unit(
        [
            "podman",
            "run",
            "--rm",
            "-e",
            "AISTACK_FAULT_CRASH_AT_START=1",
            standin_images["litellm"],
        ],
        check=False,
    )
    assert res.returncode == 70
    assert "fault crash-at-start" in res.stderr + res.stdout
