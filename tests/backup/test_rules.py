"""The shipped Prometheus alert rules are valid and behave as tests/backup/rules_test.yml
says (promtool test rules): too old, never succeeded, failing, size drop, disk low."""

from __future__ import annotations

import re

from tests.conftest import REPO
from tests.promtool import check_rules, run_rule_tests

RULES = REPO / "etc/prometheus/aistack-backups.rules.yml"
TESTS = REPO / "tests/backup/rules_test.yml"


def test_rules_are_valid() -> None:
    assert "SUCCESS: 5 rules found" in check_rules(RULES)


def test_rules_unit_tests_pass() -> None:
    run_rule_tests(TESTS)


def test_rules_only_use_metrics_the_agent_exports() -> None:
    from agent.backup.metrics import BackupCollector

    exported = {m.name for m in BackupCollector(dict).describe()}
    exported |= {f"{m}_total" for m in exported}
    used = set(re.findall(r"aistack_backup_[a-z_]+", RULES.read_text()))
    assert used and used <= exported, used - exported
