"""The shipped Prometheus alert rules are valid and behave as tests/backup/rules_test.yml
says (promtool test rules): too old, never succeeded, failing, size drop, disk low."""

from __future__ import annotations

import shutil
import subprocess

from tests.conftest import REPO

RULES = REPO / "etc/prometheus/aistack-backups.rules.yml"
TESTS = REPO / "tests/backup/rules_test.yml"


def _promtool() -> str:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package 'prometheus'); make deps installs it"
    return promtool


def test_rules_are_valid() -> None:
    proc = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 5 rules found" in proc.stdout


def test_rules_unit_tests_pass() -> None:
    proc = subprocess.run(
        [_promtool(), "test", "rules", TESTS.name],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_only_use_metrics_the_agent_exports() -> None:
    from agent.backup.metrics import BackupCollector

    exported = {m.name for m in BackupCollector(dict).describe()}
    exported |= {f"{m}_total" for m in exported}
    import re

    used = set(re.findall(r"aistack_backup_[a-z_]+", RULES.read_text()))
    assert used and used <= exported, used - exported
