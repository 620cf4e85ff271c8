"""Hostile and broken config files (issue 15): each is refused with exit 78 naming the key
or the problem, through the real CLI, in bounded time and memory: never a traceback, a
hang, or a value that crashes the agent later. The subprocess timeout is a hang guard."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.config import EX_CONFIG, ConfigError, parse_config

from .conftest import HANG_S, PYTHON, REPO

NINES = "9" * 400


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "agent.cli", "check-config", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=HANG_S,
    )  # fmt: skip


def refused(path: Path, *expected: str) -> None:
    proc = check(path)
    assert proc.returncode == EX_CONFIG, (proc.returncode, proc.stdout[-500:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    for text in expected:
        assert text in proc.stderr, proc.stderr[-2000:]


BILLION_LAUGHS = "x-lol: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"x-l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"watch:\n  interval: {NINES}s\n", "watch.interval: too long"),
        (f"api:\n  max_body_size: {NINES}B\n", "api.max_body_size: too large"),
        (f"backups:\n  misfire_grace: {NINES}h\n", "backups.misfire_grace: too long"),
        ("api:\n  max_body_size: 0B\n", "api.max_body_size: must be at least 1KiB"),
        ("heal:\n  backoff_factor: .inf\n", "heal.backoff_factor: must be a number"),
        ("? [a, b]\n: 1\n", "a key must be a plain name"),
        ('watch:\n  podman_socket: "/run/po\\0d.sock"\n', "watch.podman_socket: must not contain"),
        ("api:\n  token_file: \"/etc/a\\0b\"\n", "api.token_file: must not contain a NUL"),
        ('stack:\n  ollama:\n    env: {A: "x\\0y"}\n', "stack.ollama.env: A: must not contain"),
        ("x: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested too deeply"),
        (BILLION_LAUGHS, "more than 100000 values"),
        ("api:\n" + "".join(f"  k{i}: 1\n" for i in range(60_000)), "more than 100000 values"),
        ("x: [" + ", ".join(["1"] * 200_000) + "]\n", "more than 100000 values"),
    ],
    ids=["interval", "max_body_size", "misfire_grace", "zero-body", "inf", "complex-key",
         "nul-socket", "nul-token", "nul-env", "deep", "billion-laughs", "many-keys",
         "long-list"],
)  # fmt: skip
def test_refused_by_name(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    refused(path, expected)
    with pytest.raises(ConfigError):  # the same in the daemon's loader
        parse_config(text)


def test_dev_zero_and_a_fifo_are_not_config_files(tmp_path: Path) -> None:
    refused(Path("/dev/zero"), "/dev/zero is not a regular file")
    fifo = tmp_path / "agent.yaml"
    os.mkfifo(fifo)  # nobody writes to it: reading would block forever
    refused(fifo, "is not a regular file")


def test_a_config_larger_than_the_bound_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("# " + "x" * (2 << 20) + "\n")
    refused(path, "is larger than 1024 KiB")


def test_allowed_hosts_are_host_names(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("api:\n  allowed_hosts: ['evil host/../']\n")
    refused(path, "api.allowed_hosts: not a host name")
    assert parse_config("api:\n  allowed_hosts: [ai-box.lan, ai-box]\n").api.allowed_hosts == (
        "ai-box.lan",
        "ai-box",
    )
