"""The fault gauntlet, short: every kind of fault in the catalogue once, in a seeded
order, against the stack in its own guest (tests/e2e/gauntlet.py says what is checked).
The full run (100 faults) is `make gauntlet`. The figures go to the test log."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import gauntlet, testbed

pytestmark = pytest.mark.e2e

SEED = 20261203


def test_every_kind_of_fault_is_recovered_with_nothing_lost(
    agent_deb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faults = gauntlet.plan(len(gauntlet.CATALOGUE), SEED)
    assert {f.name for f in faults} == {f.name for f in gauntlet.CATALOGUE}
    guest = testbed.boot_guest()
    try:
        result = gauntlet.run(guest, agent_deb, faults)
    finally:
        guest.run(["aistack", "down"], check=False, timeout=300)
        guest.teardown(check=False)
    with capsys.disabled():
        print("\n" + "\n".join(gauntlet.summary(result)))
    rows = result["rows"]
    assert all(r["recovered"] for r in rows), rows
    assert not any(r["storm"] for r in rows), rows
    assert result["backups"] >= 2 and result["backups_failed"] == [], result
    assert result["leaked"] == [], result
