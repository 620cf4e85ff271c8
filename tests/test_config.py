"""Config loading: every malformed file is refused with its key path, and exit 78."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.config import (
    AgentConfig,
    ConfigError,
    Secret,
    _build,
    effective,
    format_duration,
    format_size,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
    render_yaml,
    resolve_path,
)

from .conftest import PYTHON, REPO

# (yaml text, substring every error message must contain)
MALFORMED = [
    ("api: {prot: 9300}", "api.prot: unknown key in section 'api' (did you mean 'api.port'?)"),
    ("apii: {}", "apii: unknown key (did you mean 'api'?)"),
    ("wacth: {}", "wacth: unknown key (did you mean 'watch'?)"),
    ("logging: {levle: info}", "logging.levle: unknown key in section 'logging' (did you mean 'logging.level'?)"),
    ("zzz: 1", "zzz: unknown key; known keys: api, backups, gpu, heal, logging, stack, watch"),
    ("api: {port: nine}", "api.port: must be a whole number (got 'nine')"),
    ("heal: {jitter: lots}", "heal.jitter: must be a number (got 'lots')"),
    ("heal: {backoff_factor: true}", "heal.backoff_factor: must be a number (got True)"),
    ("heal: {backoff_factor: .nan}", "heal.backoff_factor: must be a number (got nan)"),
    ("heal: {jitter: 1.5}", "heal.jitter: must be between 0 and 0.99 (got 1.5)"),
    ("heal: {probe_timeout: 30s, probe_interval: 10s}", "heal.probe_timeout: must be shorter than heal.probe_interval"),
    ("heal: {give_up_after: 0}", "heal.give_up_after: must be between 1 and 1000 (got 0)"),
    ("api: {failed_status_code: 99}", "api.failed_status_code: must be between 200 and 599 (got 99)"),
    ("api: {port: 0}", "api.port: must be between 1 and 65535 (got 0)"),
    ("api: {port: 70000}", "api.port: must be between 1 and 65535 (got 70000)"),
    ("api: {port: true}", "api.port: must be a whole number (got True)"),
    ("api: {port: 9200.5}", "api.port: must be a whole number (got 9200.5)"),
    ("api: {listen: 0.0.0.0}", "api.listen: 0.0.0.0 is not a loopback address"),
    ("api: {listen: 192.168.1.10}", "set api.allow_remote: true"),
    ("api: {listen: localhost.example}", "api.listen: not an IP address: 'localhost.example'"),
    ("api: {allow_remote: 'yes please'}", "api.allow_remote: must be true or false (got 'yes please')"),
    ("api: {token_file: relative/token}", "api.token_file: must be an absolute path (got 'relative/token')"),
    ("api: {max_body_size: 10}", "api.max_body_size: a size needs a unit"),
    ("api: {max_body_size: lots}", "api.max_body_size: not a size: 'lots'"),
    ("api: 9200", "api: must be a mapping of keys (a section), got 9200"),
    ("api: [port, 9200]", "api: must be a mapping of keys (a section), got a list"),
    ("logging: {level: verbose}", "logging.level: must be one of 'debug', 'info', 'warning', 'error' (got 'verbose')"),
    ("logging: {format: xml}", "logging.format: must be one of 'auto', 'journal', 'json', 'console'"),
    ("watch: {interval: 30}", "watch.interval: a duration needs a unit: write 30s, 30m or 30h"),
    ("watch: {interval: soon}", "watch.interval: not a duration: 'soon'"),
    ("watch: {timeout: 0s}", "watch.timeout: must be longer than 0s"),
    ("watch: {interval: 10s, timeout: 10s}", "watch.timeout: must be shorter than watch.interval (10s), got 10s"),
    ("watch: {podman_socket: run/podman.sock}", "watch.podman_socket: must be an absolute path"),
    ("heal: {forget_restarts_after: 30s}", "heal.forget_restarts_after: must be 0s (never) or at least 1m"),
    ("watch: {startup_check_interval: 50ms}", "watch.startup_check_interval: must be 0s (off) or between 100ms and 5s, got 50ms"),
    ("watch: {startup_check_interval: 1m}", "watch.startup_check_interval: must be 0s (off) or between 100ms and 5s, got 1m"),
    ("watch: {timeout: 1h, interval: 1m}", "watch.timeout: must be shorter than watch.interval (1m), got 1h"),
    ("- api\n- watch", "top level must be a mapping of sections, got list"),
    ("just a string", "top level must be a mapping of sections, got str"),
    ("api:\n  port: 1\n  port: 2", "duplicate key 'port' (first at line 2)"),
    ("api: {port: 1", "YAML: line 1"),
    ("api:\n\tport: 1", "YAML: line 2"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), MALFORMED, ids=[m[0][:40] for m in MALFORMED])
def test_malformed_config_is_refused_with_key_path(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "agent.yaml")
    rendered = info.value.render()
    assert rendered.startswith("invalid configuration in agent.yaml:")
    assert expected in rendered, rendered


def test_there_are_at_least_twenty_malformed_cases() -> None:
    assert len(MALFORMED) >= 20


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("api: {port: 0, prot: 1}\nwatch: {timeout: soon}\nlogging: {level: x}")
    problems = info.value.problems
    assert len(problems) == 4, problems
    assert {p.split(":")[0] for p in problems} == {
        "api.port",
        "api.prot",
        "watch.timeout",
        "logging.level",
    }


@pytest.mark.parametrize(
    ("text", "expected"), MALFORMED[:22], ids=[m[0][:40] for m in MALFORMED[:22]]
)
def test_check_config_cli_exits_78_and_names_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    proc = subprocess.run(
        [PYTHON, "-m", "agent.cli", "check-config", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 78, proc.stderr
    assert expected in proc.stderr
    assert proc.stdout == ""


def test_daemon_exits_78_on_bad_config(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config("api: {prot: 1}\n")
    proc = subprocess.run(
        [PYTHON, "-m", "agent.daemon", "--config", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 78
    assert "api.prot: unknown key" in proc.stderr


def test_missing_explicit_file_is_an_error_but_missing_default_means_defaults(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml", must_exist=True)
    assert load_config(tmp_path / "nope.yaml", must_exist=False) == AgentConfig()


def test_empty_file_and_empty_sections_mean_defaults() -> None:
    assert parse_config("") == AgentConfig()
    assert parse_config("api:\nwatch:\n") == AgentConfig()


def test_shipped_default_config_is_valid_and_equals_builtin_defaults() -> None:
    assert load_config(REPO / "etc/aistack/agent.yaml") == AgentConfig()


def test_shipped_default_config_mentions_every_key() -> None:
    text = (REPO / "etc/aistack/agent.yaml").read_text()
    for section, values in effective(AgentConfig()).items():
        assert f"{section}:" in text
        for key in values:
            assert f"# {key}: " in text, f"{section}.{key} is not documented in the shipped config"


def test_values_are_typed() -> None:
    config = parse_config(
        "api: {port: 9300, max_body_size: 2MiB}\nwatch: {interval: 1m30s, timeout: 250ms}"
    )
    assert config.api.port == 9300
    assert config.api.max_body_size == 2 * 1024 * 1024
    assert config.watch.interval == 90.0
    assert config.watch.timeout == 0.25


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), ("250ms", 0.25), ("1h30m", 5400),
     ("1.5s", 1.5)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10GiB", 10 * 2**30),
        ("512MiB", 512 * 2**20),
        ("1GB", 10**9),
        ("300B", 300),
        ("64KiB", 65536),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size
    assert parse_size(format_size(size)) == size


@pytest.mark.parametrize("bad", ["", "s", "10", "5 minutes", "1h 30m", "-5s", "3x"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_config_path_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AISTACK_CONFIG", raising=False)
    assert resolve_path(None) == (Path("/etc/aistack/agent.yaml"), False)
    monkeypatch.setenv("AISTACK_CONFIG", "/srv/a.yaml")
    assert resolve_path(None) == (Path("/srv/a.yaml"), True)
    assert resolve_path("/x.yaml") == (Path("/x.yaml"), True)


_PLACEHOLDER = Secret("placeholder")


@dataclass(frozen=True)
class _WithSecret:
    password: Secret = _PLACEHOLDER
    user: str = "llmproxy"


def test_secrets_are_redacted_in_effective_config() -> None:
    errors: list[str] = []
    built = _build(_WithSecret, {"password": "hunter2hunter2"}, "", errors)
    assert errors == []
    assert built.password == "hunter2hunter2"  # the value itself is usable
    plain = effective(built)
    assert plain == {"password": "**********", "user": "llmproxy"}
    assert "hunter2" not in repr(built)
    assert "hunter2" not in json.dumps(plain)


def test_render_yaml_roundtrips() -> None:
    config = parse_config("api: {port: 9301}\nwatch: {interval: 1m}")
    assert parse_config(render_yaml(config)) == config


@pytest.mark.parametrize(("text", "seconds"), [("0s", 0.0), ("100ms", 0.1), ("250ms", 0.25)])
def test_startup_checks_can_be_turned_off_or_tuned(text: str, seconds: float) -> None:
    config = parse_config(f"watch: {{startup_check_interval: {text}}}", "agent.yaml")
    assert config.watch.startup_check_interval == seconds
