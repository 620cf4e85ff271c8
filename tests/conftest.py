"""Shared fixtures: temp configs, free ports, a real sd_notify datagram socket."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# A limit only a hang reaches. Tests assert behaviour, never wall-clock speed (speed is
# for benchmarks/): a wait that a slow, busy machine could outrun is a defect.
HANG_S = 60.0

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write an agent.yaml under tmp_path; the token file lives there too."""

    def write(text: str = "", name: str = "agent.yaml", port: int | None = None) -> Path:
        path = tmp_path / name
        body = textwrap.dedent(text)
        if port is not None:
            body = (
                f"api:\n  port: {port}\n  token_file: {tmp_path / 'api-token'}\n"
                "watch:\n  interval: 2s\n  timeout: 1s\n" + body
            )
        path.write_text(body)
        return path

    return write


class NotifySocket:
    """A real AF_UNIX datagram socket, as systemd's NOTIFY_SOCKET is."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []

    def receive(self, timeout: float) -> dict[str, str] | None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                raw = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            msg = dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)
            self.messages.append(msg)
            return msg
        return None

    def wait_for(self, key: str, value: str | None = None, timeout: float = 15.0) -> dict[str, str]:
        import time

        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.receive(left)
            if msg is not None and key in msg and (value is None or msg[key] == value):
                return msg
        raise AssertionError(f"no {key}={value or '*'} within {timeout}s; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    import tempfile

    short = Path(tempfile.mkdtemp(prefix="ntf"))
    ns = NotifySocket(short / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(ns.path))
    yield ns
    ns.close()
    ns.path.unlink(missing_ok=True)
    short.rmdir()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "AISTACK_CONFIG",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "JOURNAL_STREAM",
    ):
        monkeypatch.delenv(var, raising=False)


def agent_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AISTACK_", "NOTIFY_", "WATCHDOG_"))
    }
    env.pop("JOURNAL_STREAM", None)
    env.update(extra)
    return env


class AgentProcess:
    """The real daemon (`python -m agent.daemon`) as a subprocess, READY observed."""

    def __init__(self, config: Path, notify: NotifySocket, port: int, **env: str) -> None:
        import subprocess

        self.config = config
        self.notify = notify
        self.port = port
        self.log_path = config.parent / "agent.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "agent.daemon", "--config", str(config)],
            cwd=REPO,
            env=agent_env(NOTIFY_SOCKET=str(notify.path), **env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.config.parent / "api-token").read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def http(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One real HTTP request; returns (status, headers, body) for any status."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=HANG_S)
    try:
        conn.request(method, parts.path or "/", body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def start_agent(write_config, notify_socket) -> Iterator[Callable[..., AgentProcess]]:  # type: ignore[no-untyped-def]
    started: list[AgentProcess] = []

    def start(extra_yaml: str = "", wait_ready: bool = True, **env: str) -> AgentProcess:
        port = free_port()
        agent = AgentProcess(write_config(extra_yaml, port=port), notify_socket, port, **env)
        started.append(agent)
        if wait_ready:
            try:
                notify_socket.wait_for("READY", "1", timeout=HANG_S)
            except AssertionError:
                agent.stop()
                raise AssertionError(f"agent never sent READY=1; log:\n{agent.log()}") from None
        return agent

    yield start
    for agent in started:
        agent.stop()


def sandbox_yaml(tmp: Path) -> str:
    """Config sections that keep a test agent's files in `tmp`: the stack's unit folder,
    the heal state and the backups (running_daemon's rest_yaml)."""
    return (
        f"stack:\n  unit_dir: {tmp / 'units'}\n"
        f"heal:\n  state_file: {tmp / 'heal.json'}\n"
        f"backups:\n  directory: {tmp / 'backups'}\n"
    )


@contextlib.contextmanager
def running_daemon(tmp: Path, api_yaml: str = "", rest_yaml: str = "") -> Iterator[AgentProcess]:
    """The real daemon on a free loopback port, READY observed, for a module's tests:
    `api_yaml` goes into the api section (indented two spaces), `rest_yaml` after it.
    Podman's socket points at nothing; the token file is in `tmp`."""
    port = free_port()
    config = tmp / "agent.yaml"
    config.write_text(
        f"api:\n  port: {port}\n  token_file: {tmp / 'api-token'}\n{api_yaml}"
        f"watch:\n  podman_socket: {tmp / 'no-podman.sock'}\n{rest_yaml}"
    )
    ns = NotifySocket(Path(tempfile.mkdtemp(prefix="ntf")) / "notify")
    proc = AgentProcess(config, ns, port)
    try:
        ns.wait_for("READY", "1", timeout=HANG_S)
        yield proc
        assert proc.stop() == 0
    finally:
        proc.stop()
        ns.close()
