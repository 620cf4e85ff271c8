"""The `aistack` CLI against the real daemon, and without one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from agent.cli import build_parser

from .conftest import PYTHON, REPO, AgentProcess, agent_env, free_port


def aistack(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "agent.cli", *args], cwd=REPO, capture_output=True, text=True,
        timeout=30, env=env or agent_env(),
    )  # fmt: skip


def test_status_table_and_exit_1_when_degraded(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent: AgentProcess = start_agent()
    proc = aistack("--config", str(agent.config), "status")
    assert proc.returncode == 1, proc.stderr  # no Podman/D-Bus here: degraded
    out = proc.stdout
    assert out.startswith("aistack-agent 0.1.0  state: degraded")
    assert "SOURCE" in out and "podman" in out and "unavailable" in out
    assert "/run/podman/podman.sock" in out


def test_status_json(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent: AgentProcess = start_agent()
    proc = aistack("--config", str(agent.config), "status", "--json")
    doc = json.loads(proc.stdout)
    assert doc["schema_version"] == 1 and doc["config_path"] == str(agent.config)


def test_status_config_from_environment(start_agent) -> None:  # type: ignore[no-untyped-def]
    agent: AgentProcess = start_agent()
    proc = aistack("status", "--json", env=agent_env(AISTACK_CONFIG=str(agent.config)))
    assert json.loads(proc.stdout)["pid"] == agent.proc.pid


def test_status_when_agent_not_running(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "agent.yaml"
    config.write_text(f"api: {{port: {port}}}\n")
    proc = aistack("--config", str(config), "status")
    assert proc.returncode == 3
    assert f"the agent is not answering at http://127.0.0.1:{port}" in proc.stderr
    assert "systemctl status aistack-agent" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_status_with_invalid_config_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("api: {port: x}\n")
    proc = aistack("--config", str(config), "status")
    assert proc.returncode == 78 and "api.port: must be a whole number" in proc.stderr


def test_check_config_prints_effective_config(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("api: {port: 9333}\nwatch: {interval: 90s}\n")
    proc = aistack("check-config", str(config))
    assert proc.returncode == 0
    assert f"# {config}: valid" in proc.stdout
    assert "port: 9333" in proc.stdout and "interval: 1m30s" in proc.stdout
    assert "token_file: /etc/aistack/api-token" in proc.stdout  # defaults filled in
    as_json = json.loads(aistack("check-config", str(config), "--json").stdout)
    assert as_json["valid"] is True and as_json["config"]["api"]["port"] == 9333


def test_check_config_json_on_invalid(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("api: {prot: 1}\n")
    proc = aistack("check-config", "--json", str(config))
    assert proc.returncode == 78
    doc = json.loads(proc.stdout)
    assert doc["valid"] is False and doc["problems"][0].startswith("api.prot: unknown key")


def test_version() -> None:
    assert aistack("version").stdout == "aistack 0.1.0\n"
    assert json.loads(aistack("version", "--json").stdout) == {"version": "0.1.0"}


@pytest.mark.parametrize("command", [[], ["status"], ["check-config"], ["version"]])
def test_help_on_every_command(command: list[str]) -> None:
    proc = aistack(*command, "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: aistack")


def test_help_lists_exit_codes_and_every_command() -> None:
    text = build_parser().format_help()
    for code in ("0 ", "1 ", "2 ", "3 ", "78 "):
        assert f"  {code}" in text
    for command in ("status", "check-config", "version"):
        assert command in text


def test_unknown_command_is_usage_error() -> None:
    proc = aistack("frobnicate")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_agent_help() -> None:
    proc = subprocess.run(
        [PYTHON, "-m", "agent.daemon", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "Exit codes" in proc.stdout and "SIGHUP" in proc.stdout
