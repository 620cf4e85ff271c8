"""One way to run promtool (Debian's `prometheus` package) for the rules and dashboard
tests: the binary located once, the same timeouts and the same failure message."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import HANG_S


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is required (Debian package 'prometheus'); make deps installs it"
    return found


def check_rules(path: Path) -> str:
    """`promtool check rules PATH`; its stdout ("SUCCESS: N rules found")."""
    proc = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=HANG_S
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def run_rule_tests(path: Path) -> str:
    """`promtool test rules` run beside the test file (its rule_files are relative)."""
    proc = subprocess.run(
        [promtool(), "test", "rules", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=2 * HANG_S,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout
