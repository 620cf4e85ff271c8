"""The daemon as a real subprocess with a real NOTIFY_SOCKET: start, reload, stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

from .conftest import HANG_S, PYTHON, REPO, AgentProcess, NotifySocket, agent_env, free_port, http


def test_ready_only_when_api_answers_and_snapshot_exists(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent: AgentProcess = start_agent()
    ready = agent.notify.messages[-1]
    assert ready["READY"] == "1"
    assert ready["STATUS"].startswith("degraded: ")  # no Podman, no D-Bus on this host
    assert "API on 127.0.0.1:" in ready["STATUS"]
    # READY came after the bind and the first snapshots: both usable at once, no retry.
    status, _, body = http("GET", f"{agent.base}/status")
    assert status == 200
    doc = json.loads(body)
    assert set(doc["sources"]) == {"podman", "systemd", "gpu"}


def test_sources_unavailable_on_this_host_are_explained(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent: AgentProcess = start_agent()
    doc = json.loads(http("GET", f"{agent.base}/status")[2])
    assert doc["state"] == "degraded"
    podman = doc["sources"]["podman"]
    assert podman["state"] == "unavailable"
    assert "/run/podman/podman.sock" in podman["reason"]
    assert doc["sources"]["systemd"]["state"] == "unavailable"
    assert "D-Bus" in doc["sources"]["systemd"]["reason"]
    assert doc["gpus"] == []


def test_token_file_is_generated_0600(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent: AgentProcess = start_agent()
    token_file = agent.config.parent / "api-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(agent.token) >= 32
    assert agent.token not in agent.log()  # never logged


def test_sighup_with_broken_config_keeps_serving_old_config(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent: AgentProcess = start_agent()
    new_port = free_port()
    good = agent.config.read_text()
    agent.config.write_text(good.replace(f"port: {agent.port}", f"port: {new_port}") + "bogus: 1\n")
    agent.proc.send_signal(signal.SIGHUP)
    reloading = agent.notify.wait_for("RELOADING", "1")
    now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert 0 < now_usec - int(reloading["MONOTONIC_USEC"]) < 10_000_000
    agent.notify.wait_for("READY", "1")
    assert http("GET", f"{agent.base}/healthz")[0] == 200
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", new_port)) != 0  # new port not taken
    assert agent.proc.poll() is None
    log = agent.log()
    assert "reload refused; the running config is unchanged" in log
    assert "bogus: unknown key" in log


def test_sighup_with_valid_config_moves_the_api(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent: AgentProcess = start_agent()
    new_port = free_port()
    agent.config.write_text(
        agent.config.read_text().replace(f"port: {agent.port}", f"port: {new_port}")
    )
    agent.proc.send_signal(signal.SIGHUP)
    agent.notify.wait_for("RELOADING", "1")
    agent.notify.wait_for("READY", "1")
    assert http("GET", f"http://127.0.0.1:{new_port}/healthz")[0] == 200
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", agent.port)) != 0


def test_reload_endpoint_needs_token_and_reports_invalid_config(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent: AgentProcess = start_agent()
    url = f"{agent.base}/v1/reload"
    assert http("POST", url)[0] == 401
    auth = {"Authorization": f"Bearer {agent.token}"}
    status, _, body = http("POST", url, auth)
    assert status == 200 and json.loads(body)["reloaded"] is True
    agent.config.write_text(agent.config.read_text() + "logging: {level: chatty}\n")
    status, headers, body = http("POST", url, auth)
    assert status == 422
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert "running config is unchanged" in error["message"]
    assert any(p.startswith("logging.level: must be one of") for p in error["problems"])
    assert http("GET", f"{agent.base}/healthz")[0] == 200


def test_sigterm_exits_0_and_closes_the_socket(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent: AgentProcess = start_agent()
    agent.proc.send_signal(signal.SIGTERM)
    agent.notify.wait_for("STOPPING", "1", timeout=HANG_S)
    assert agent.proc.wait(timeout=HANG_S) == 0
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", agent.port)) != 0  # socket closed


def test_sigterm_with_an_open_keepalive_connection(start_agent) -> None:  # type: ignore[no-untyped-def]
    import http.client

    agent: AgentProcess = start_agent()
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=10)
    conn.request("GET", "/status")
    conn.getresponse().read()  # connection stays open (keep-alive)
    agent.proc.send_signal(signal.SIGTERM)
    # The open connection holds the exit no longer than the shutdown grace: the agent
    # exits while it is still open on this side.
    assert agent.proc.wait(timeout=HANG_S) == 0
    conn.close()


def test_watchdog_pings_at_half_the_interval(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent: AgentProcess = start_agent(WATCHDOG_USEC="1000000")
    pings = 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        msg = agent.notify.receive(deadline - time.monotonic())
        if msg and msg.get("WATCHDOG") == "1":
            pings += 1
    assert 4 <= pings <= 8, pings  # every 0.5 s for 3 s


def test_taken_port_fails_with_message_naming_the_port(
    write_config, notify_socket: NotifySocket
) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        config = write_config(port=port)
        proc = subprocess.run(
            [PYTHON, "-m", "agent.daemon", "--config", str(config)],
            cwd=REPO, env=agent_env(NOTIFY_SOCKET=str(notify_socket.path)),
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert proc.returncode == 69
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in proc.stderr
    assert not any(m.get("READY") == "1" for m in notify_socket.messages)
    assert notify_socket.receive(0.3) is None  # and none was sent


def test_unwritable_token_location_fails_clearly(write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = write_config(f"api:\n  port: {free_port()}\n  token_file: {blocker}/api-token\n")
    proc = subprocess.run(
        [PYTHON, "-m", "agent.daemon", "--config", str(config)],
        cwd=REPO, env=agent_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 73
    # We run as root, so a non-directory parent is the failure that permissions can't hide.
    assert f"API token file {blocker}/api-token: Not a directory" in proc.stderr


def test_logs_are_json_lines_with_level_and_component(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent: AgentProcess = start_agent()
    agent.stop()
    lines = [json.loads(line) for line in agent.log().splitlines() if line.strip()]
    assert lines, "no log lines"
    for line in lines:
        assert {"level", "component", "event", "timestamp"} <= line.keys(), line
    assert any(line["event"] == "agent ready" for line in lines)


def test_config_from_environment_variable(write_config, notify_socket: NotifySocket) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    config = write_config(port=port)
    proc = subprocess.Popen(
        [PYTHON, "-m", "agent.daemon"], cwd=REPO,
        env=agent_env(AISTACK_CONFIG=str(config), NOTIFY_SOCKET=str(notify_socket.path)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        notify_socket.wait_for("READY", "1", timeout=20)
        doc = json.loads(http("GET", f"http://127.0.0.1:{port}/status")[2])
        assert doc["config_path"] == str(config)
        assert doc["pid"] == proc.pid
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0


def test_init_creates_token_once_and_exits(write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = write_config(port=free_port())
    token_file = tmp_path / "api-token"

    def init() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "agent.daemon", "--config", str(config), "--init"],
            cwd=REPO, env=agent_env(), capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    first = init()
    assert first.returncode == 0 and first.stdout.strip() == str(token_file)
    token = token_file.read_text()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert init().returncode == 0
    assert token_file.read_text() == token  # an existing token is kept
