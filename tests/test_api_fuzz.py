"""Schemathesis over /openapi.json against the real daemon, bounded and seeded: no
request it generates gets a 5xx. Two passes: without the token (every state change must
be a 401, every route's parser and middleware see the input), and with it on the routes
that change nothing outside this test's temporary folder (apply, update and secret
rotation write under /etc on a real host; models/pull and service actions answer 502/503
here, their dependency being absent, and have their own hostile-input tests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import AgentProcess, running_daemon, sandbox_yaml

ST = Path(sys.executable).parent / "st"
CHANGES_OUTSIDE_THE_TEST = r"^/v1/(apply|update|secrets/.*|models/pull|services/.*)$"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with running_daemon(tmp, "", sandbox_yaml(tmp)) as proc:
        yield proc


def fuzz(agent: AgentProcess, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    st = str(ST) if ST.exists() else shutil.which("st")
    assert st, "schemathesis is a dev dependency (pip install -e '.[dev]')"
    return subprocess.run(
        [st, "run", f"{agent.base}/openapi.json", "--checks", "not_a_server_error",
         "--max-examples", "25", "--seed", "20261203", "--request-timeout", "30", *extra],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_no_5xx_without_the_token(agent: AgentProcess, tmp_path: Path) -> None:
    proc = fuzz(agent, tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "unhandled error" not in agent.log()


def test_no_5xx_with_the_token_where_nothing_outside_the_test_changes(
    agent: AgentProcess, tmp_path: Path
) -> None:
    proc = fuzz(agent, tmp_path, "-H", f"Authorization: Bearer {agent.token}",
                "--exclude-path-regex", CHANGES_OUTSIDE_THE_TEST)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "unhandled error" not in agent.log()
