"""agent.podman_api's typed container (Container.from_inspect, inspect_container) and its
one exec with a deadline (run_exec), without Podman.

The inspect document is a Podman 5 answer, trimmed of fields nobody reads. run_exec meets
a socket that does not exist, and a fake libpod on a real unix socket that speaks the
exec protocol (create, the hijacked start stream in frames, inspect) and injects faults:
a missing container, a hung command, a stream cut inside a frame, an exit code podman
never records. (Real Podman: tests/e2e/test_probes.py, tests/e2e/test_doctor.py.)
"""

from __future__ import annotations

import http.server
import json
import socketserver
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import podman_api as pa
from agent.podman_api import Container, Network

from .conftest import HANG_S

NO_PODMAN = Path("/nonexistent/podman.sock")

# `podman container inspect ollama` (Podman 5.2, rootful, on the stack network), trimmed.
PODMAN5_INSPECT: dict[str, Any] = json.loads("""
{
  "Id": "3f1c2a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f",
  "Created": "2025-03-01T10:12:44.123456789Z",
  "Path": "/bin/ollama",
  "Args": ["serve"],
  "State": {
    "OciVersion": "1.2.0",
    "Status": "running",
    "Running": true,
    "Paused": false,
    "Restarting": false,
    "OOMKilled": false,
    "Dead": false,
    "Pid": 41234,
    "ConmonPid": 41230,
    "ExitCode": 0,
    "Error": "",
    "StartedAt": "2025-03-01T10:12:45.987654321Z",
    "FinishedAt": "0001-01-01T00:00:00Z",
    "Health": {
      "Status": "healthy",
      "FailingStreak": 0,
      "Log": [{"Start": "2025-03-01T10:13:15Z", "End": "2025-03-01T10:13:15Z",
               "ExitCode": 0, "Output": ""}]
    },
    "CgroupPath": "/machine.slice/libpod-3f1c2a9e8b7d.scope",
    "CheckpointedAt": "0001-01-01T00:00:00Z",
    "RestoredAt": "0001-01-01T00:00:00Z"
  },
  "Image": "a67c01f3b8d5e1c5b1a9e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3",
  "ImageDigest": "sha256:8f2b1d0c9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c",
  "ImageName": "docker.io/ollama/ollama:0.6.8",
  "Rootfs": "",
  "Pod": "",
  "Name": "ollama",
  "RestartCount": 0,
  "Driver": "overlay",
  "ExecIDs": [],
  "Mounts": [{"Type": "volume", "Name": "ollama-models", "Destination": "/root/.ollama"}],
  "NetworkSettings": {
    "EndpointID": "",
    "Gateway": "",
    "IPAddress": "",
    "IPPrefixLen": 0,
    "GlobalIPv6Address": "",
    "MacAddress": "",
    "Ports": {"11434/tcp": [{"HostIp": "127.0.0.1", "HostPort": "11434"}]},
    "SandboxKey": "/run/netns/netns-6d1c0b2a",
    "Networks": {
      "aistack": {
        "EndpointID": "",
        "Gateway": "10.89.0.1",
        "IPAddress": "10.89.0.5",
        "IPPrefixLen": 24,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": "6a:2f:11:08:c4:9e",
        "NetworkID": "aistack",
        "DriverOpts": null,
        "IPAMConfig": null,
        "Links": null,
        "Aliases": ["ollama", "3f1c2a9e8b7d"]
      }
    }
  },
  "Namespace": "",
  "IsInfra": false,
  "IsService": false,
  "Config": {
    "Hostname": "3f1c2a9e8b7d",
    "User": "",
    "Env": [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "OLLAMA_HOST=0.0.0.0:11434",
      "OLLAMA_KEEP_ALIVE=5m",
      "EXTRA=a=b",
      "container=podman",
      "HOME=/root"
    ],
    "Cmd": ["serve"],
    "Image": "docker.io/ollama/ollama:0.6.8",
    "Labels": {"PODMAN_SYSTEMD_UNIT": "ollama.service"},
    "Healthcheck": {"Test": ["CMD-SHELL", "ollama list"], "Interval": 30000000000},
    "HealthcheckOnFailureAction": "none",
    "StopSignal": "SIGTERM"
  },
  "HostConfig": {"NetworkMode": "bridge", "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}}
}
""")


# --------------------------------------------------------------------------- Container


def test_from_a_podman_5_inspect() -> None:
    c = Container.from_inspect(PODMAN5_INSPECT)
    assert c.id == PODMAN5_INSPECT["Id"] and c.name == "ollama"
    assert c.image == PODMAN5_INSPECT["Image"]
    assert c.image_name == "docker.io/ollama/ollama:0.6.8"
    assert c.image_digest == PODMAN5_INSPECT["ImageDigest"]
    assert (c.status, c.running, c.pid, c.exit_code) == ("running", True, 41234, 0)
    assert c.oom_killed is False
    assert c.started_at == "2025-03-01T10:12:45.987654321Z"
    assert c.health == "healthy"  # State.Health.Status
    assert c.env["OLLAMA_HOST"] == "0.0.0.0:11434"
    assert c.env["EXTRA"] == "a=b"  # only the first = splits
    assert len(c.env) == 6
    assert c.networks == {"aistack": Network("10.89.0.5", "")}
    assert c.address("aistack") == "10.89.0.5"


def test_env_is_not_in_the_repr() -> None:
    """It holds the unit's secrets: a logged Container must not show them."""
    data = {**PODMAN5_INSPECT, "Config": {"Env": ["DATABASE_URL=postgresql://u:s3cret@db/x"]}}
    container = Container.from_inspect(data)
    assert container.env["DATABASE_URL"].endswith("@db/x")
    assert "s3cret" not in repr(container)


@pytest.mark.parametrize(
    ("state", "health"),
    [
        ({"Health": {"Status": "unhealthy"}}, "unhealthy"),
        ({"Health": {"Status": "starting"}}, "starting"),
        ({"Healthcheck": {"Status": "healthy"}}, "healthy"),  # older Podman's name
        ({"Health": {"Status": ""}}, ""),  # podman 5 without a health check
        ({"Health": {"Status": "reset"}}, ""),  # not a state the agent knows
        ({}, ""),
    ],
)
def test_health(state: dict[str, Any], health: str) -> None:
    data = {**PODMAN5_INSPECT, "State": {"Status": "running", "Running": True, **state}}
    assert Container.from_inspect(data).health == health


def test_an_exited_container_killed_for_memory() -> None:
    state = {"Status": "exited", "Running": False, "OOMKilled": True, "ExitCode": 137, "Pid": 0}
    c = Container.from_inspect({**PODMAN5_INSPECT, "State": state})
    assert (c.status, c.running, c.exit_code, c.oom_killed, c.pid) == (
        "exited", False, 137, True, 0,
    )  # fmt: skip
    assert c.started_at is None and c.health == ""


def test_what_podman_leaves_out_has_safe_defaults() -> None:
    c = Container.from_inspect({"State": None, "Config": {"Env": None}, "NetworkSettings": None})
    assert (c.id, c.status, c.running, c.exit_code, c.health) == ("", "", False, None, "")
    assert c.image_digest is None and dict(c.env) == {} and dict(c.networks) == {}
    assert c.address("aistack") is None


def test_address_prefers_the_network_asked_for_then_any_then_ipv6() -> None:
    nets = {"proxy": {"IPAddress": "10.0.0.9"}, "aistack": {"IPAddress": "10.89.0.5"},
            "junk": "not a network"}  # fmt: skip
    c = Container.from_inspect({"NetworkSettings": {"Networks": nets}})
    assert set(c.networks) == {"proxy", "aistack"}
    assert c.address("aistack") == "10.89.0.5"
    assert c.address("proxy") == "10.0.0.9"
    v6 = {"aistack": {"IPAddress": "", "GlobalIPv6Address": "fd00::5"}}
    assert (
        Container.from_inspect({"NetworkSettings": {"Networks": v6}}).address("aistack")
        == "fd00::5"
    )
    empty = {"aistack": {"IPAddress": "", "GlobalIPv6Address": ""}}
    assert Container.from_inspect({"NetworkSettings": {"Networks": empty}}).address("x") is None


# --------------------------------------------------------------------------- a fake libpod


class FakeLibpod:
    """One container, "web", whose exec runs `script`: frames sent on the start stream,
    then `end`: "close" (the command exited), "hang" (it never does), or raw bytes (sent
    as they are, e.g. half a frame, before the connection closes). Exec inspect says
    Running until `records_exit`."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.end: str | bytes = "close"
        self.exit_code = 0
        self.records_exit = True
        self.release = threading.Event()
        self.created: list[dict[str, Any]] = []

    def json_call(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if method == "POST" and path == f"{pa.API}/containers/web/exec":
            self.created.append(json.loads(body))
            return 201, {"Id": "e1e1e1e1e1e1e1e1"}
        if method == "POST" and path == f"{pa.API}/containers/stopped/exec":
            return 409, {"message": "container state improper"}
        if method == "POST" and path.endswith("/exec"):
            return 404, {"message": "no such container"}
        if method == "GET" and path == f"{pa.API}/exec/e1e1e1e1e1e1e1e1/json":
            if self.records_exit:
                return 200, {"Running": False, "ExitCode": self.exit_code}
            return 200, {"Running": True, "ExitCode": 0}
        if method == "GET" and path == f"{pa.API}/containers/web/json":
            return 200, PODMAN5_INSPECT
        if method == "GET" and path.startswith(f"{pa.API}/containers/"):
            return 404, {"message": "no such container"}
        return 400, {"message": f"unexpected {method} {path}"}


@pytest.fixture
def serve() -> Iterator[Callable[[FakeLibpod], Path]]:
    servers: list[tuple[socketserver.UnixStreamServer, FakeLibpod]] = []
    short = Path(tempfile.mkdtemp(prefix="libpod"))  # AF_UNIX paths are short

    def start(fake: FakeLibpod) -> Path:
        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith("/start"):
                    self._stream()
                    return
                status, data = fake.json_call(self.command, self.path, body)
                raw = b"" if data is None else json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _stream(self) -> None:
                """The hijacked connection: 200, then frames (no length, no chunks)."""
                self.send_response(200)
                self.end_headers()
                for stream, payload in fake.frames:
                    self.wfile.write(pa.encode_frame(stream, payload))
                self.wfile.flush()
                if fake.end == "hang":
                    fake.release.wait(HANG_S)
                elif isinstance(fake.end, bytes):
                    self.wfile.write(fake.end)

            do_GET = do_POST = _any

            def log_message(self, *args: Any) -> None:
                pass

        sock = short / f"podman{len(servers)}.sock"
        server = socketserver.ThreadingUnixStreamServer(str(sock), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append((server, fake))
        return sock

    yield start
    for server, fake in servers:
        fake.release.set()
        server.shutdown()
        server.server_close()
    for path in short.iterdir():
        path.unlink()
    short.rmdir()


def test_inspect_container(serve: Callable[[FakeLibpod], Path]) -> None:
    sock = serve(FakeLibpod())
    container = pa.inspect_container(sock, "web")
    assert container == Container.from_inspect(PODMAN5_INSPECT)
    assert pa.inspect_container(sock, "nope") is None
    with pytest.raises(pa.PodmanApiError, match=r"podman\.socket"):
        pa.inspect_container(NO_PODMAN, "web")


# --------------------------------------------------------------------------- run_exec


def test_run_exec_without_podman_names_the_socket() -> None:
    with pytest.raises(pa.PodmanApiError, match=r"cannot reach the Podman API at .*podman\.sock"):
        pa.run_exec(NO_PODMAN, "web", ["true"], 2.0)


def test_run_exec_output_and_exit_code(serve: Callable[[FakeLibpod], Path]) -> None:
    fake = FakeLibpod()
    fake.frames = [(pa.STDOUT, b"one\n"), (pa.STDERR, b"warn\n"), (pa.STDOUT, b"two\n")]
    fake.exit_code = 3
    result = pa.run_exec(serve(fake), "web", ["sh", "-c", "x"], 5.0, env=["LC_MESSAGES=C"])
    assert result == pa.ExecResult(3, "one\ntwo\n", "warn\n", "one\nwarn\ntwo\n")
    assert not result.timed_out
    (created,) = fake.created
    assert created["Cmd"] == ["sh", "-c", "x"] and created["Env"] == ["LC_MESSAGES=C"]
    assert created["Tty"] is False


def test_run_exec_cuts_the_output_at_the_cap(serve: Callable[[FakeLibpod], Path]) -> None:
    fake = FakeLibpod()
    fake.frames = [(pa.STDOUT, b"a" * 6), (pa.STDERR, b"b" * 6), (pa.STDOUT, b"c" * 6)]
    result = pa.run_exec(serve(fake), "web", ["x"], 5.0, cap=8)
    assert (result.stdout, result.stderr, result.output) == ("aaaaaacc", "bbbbbb", "aaaaaabb")
    assert result.exit_code == 0


def test_run_exec_no_container_and_not_running(serve: Callable[[FakeLibpod], Path]) -> None:
    sock = serve(FakeLibpod())
    with pytest.raises(pa.ContainerNotFound, match="no container 'gone'"):
        pa.run_exec(sock, "gone", ["true"], 2.0)
    with pytest.raises(pa.PodmanApiError, match="'stopped' is not running") as info:
        pa.run_exec(sock, "stopped", ["true"], 2.0)
    assert not isinstance(info.value, pa.ContainerNotFound)


def test_run_exec_a_hung_command_times_out_with_its_output(
    serve: Callable[[FakeLibpod], Path],
) -> None:
    fake = FakeLibpod()
    fake.frames = [(pa.STDOUT, b"started\n")]
    fake.end = "hang"
    result = pa.run_exec(serve(fake), "web", ["sleep", "inf"], 0.5)
    assert result.timed_out and result.exit_code is None
    assert result.stdout == result.output == "started\n"


def test_run_exec_a_stream_cut_inside_a_frame_is_an_error(
    serve: Callable[[FakeLibpod], Path],
) -> None:
    fake = FakeLibpod()
    fake.frames = [(pa.STDOUT, b"partial")]
    fake.end = pa.encode_frame(pa.STDOUT, b"abcdef")[:10]
    with pytest.raises(pa.ExecStreamError, match="inside a frame"):
        pa.run_exec(serve(fake), "web", ["x"], 5.0)


def test_run_exec_without_an_exit_code_has_none(serve: Callable[[FakeLibpod], Path]) -> None:
    """The stream ended but podman keeps saying Running: no exit code, past the grace."""
    fake = FakeLibpod()
    fake.records_exit = False
    result = pa.run_exec(serve(fake), "web", ["x"], 0.3, exit_grace=0.2)
    assert result.timed_out and result.exit_code is None
