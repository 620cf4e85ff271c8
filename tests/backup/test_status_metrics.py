"""Backup health, the /status section, the overall state and the metrics, all from a
`backups` snapshot with the clock injected."""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from agent.backup.metrics import BackupCollector
from agent.backup.status import backups_document, degraded_reason, health, status_section
from agent.snapshot import SourceSnapshot, SourceState
from agent.status import overall

DAY = 86400.0
NOW = 1_800_000_000.0


def data(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "enabled": True,
        "interval_seconds": DAY,
        "stale_after_seconds": 1.5 * DAY,
        "last_success_at": None,
        "last_failure_at": None,
        "last_error": None,
        "running": None,
        "runs": {"success": 0, "failure": 0, "refused": 0},
        "retained": {"all": 0},
        "free_bytes": 10 << 30,
        "required_free_bytes": 1 << 30,
        "next_run_at": NOW + 3600,
        "schedule": "0 3 * * *",
        "timezone": "UTC",
        "backups": [],
    }
    base.update(kw)
    return base


def snap(state: SourceState = SourceState.OK, **kw: Any) -> SourceSnapshot:
    return SourceSnapshot("backups", state, None, data(**kw))


def test_health_states() -> None:
    assert health(data(enabled=False), NOW) == ("disabled", None)
    assert health(data(), NOW) == ("pending", None)
    assert health(data(running={"since": NOW}), NOW) == ("running", None)
    assert health(data(last_success_at=NOW - 3600), NOW) == ("ok", None)
    failing = health(
        data(
            last_success_at=NOW - 3600,
            last_failure_at=NOW - 60,
            last_error="pg_dump exited with status 1",
        ),
        NOW,
    )
    assert failing == ("failing", "last backup run failed: pg_dump exited with status 1")
    never = health(data(last_failure_at=NOW - 60, last_error="boom"), NOW)
    assert never == ("never-succeeded", "no backup has succeeded yet; last error: boom")


def test_stale_exactly_past_one_and_a_half_intervals() -> None:
    fresh = data(last_success_at=NOW - 1.5 * DAY)
    assert health(fresh, NOW)[0] == "ok"
    state, reason = health(data(last_success_at=NOW - 1.5 * DAY - 1), NOW)
    assert state == "stale"
    assert reason == (
        "last successful backup 1d 12h ago, older than 1.5 x the schedule interval (1d 0h)"
    )
    # A weekly schedule tolerates 10 days.
    weekly = data(
        interval_seconds=7 * DAY, stale_after_seconds=10.5 * DAY, last_success_at=NOW - 9 * DAY
    )
    assert health(weekly, NOW)[0] == "ok"


def test_overall_state_degrades_only_for_stale_or_never_succeeded() -> None:
    base = {
        "podman": SourceSnapshot("podman", SourceState.OK),
        "systemd": SourceSnapshot("systemd", SourceState.OK),
    }
    assert overall({**base, "backups": snap(last_success_at=NOW)}) == ("ok", [])
    failing = snap(last_success_at=time.time() - 60, last_failure_at=time.time(), last_error="x")
    assert overall({**base, "backups": failing})[0] == "ok"
    stale = snap(last_success_at=time.time() - 3 * DAY)
    state, reasons = overall({**base, "backups": stale})
    assert state == "degraded"
    assert reasons[0].startswith("backups: last successful backup 3d 0h ago")
    never = snap(last_failure_at=time.time(), last_error="no container 'postgres'")
    assert overall({**base, "backups": never})[1] == [
        "backups: no backup has succeeded yet; last error: no container 'postgres'"
    ]
    assert overall({**base, "backups": snap(enabled=False)}) == ("ok", [])
    assert degraded_reason(None) is None


def test_status_section_fields() -> None:
    section = status_section(
        snap(
            last_success_at=NOW - 7200,
            last_size_bytes=12345,
            last_success_id="20270115T080000Z",
            retained={"all": 5, "daily": 5},
        ),
        NOW,
    )
    assert section["state"] == "ok"
    assert section["last_success_at"] == "2027-01-15T06:00:00Z"
    assert section["last_success_age_seconds"] == 7200
    assert section["last_size_bytes"] == 12345 and section["retained"] == 5
    assert section["next_run_at"] == "2027-01-15T09:00:00Z"
    assert section["last_failure_at"] is None and section["last_error"] is None
    assert status_section(None) == {"state": "not-configured"}
    off = "backups.enabled is auto and the stack's PostgreSQL is not applied yet"
    assert status_section(snap(enabled=False, reason=off)) == {"state": "disabled", "reason": off}
    down = SourceSnapshot("backups", SourceState.UNAVAILABLE, "cannot read /x: Permission denied")
    assert status_section(down)["state"] == "unavailable"
    doc = backups_document(snap(backups=[{"id": "a", "started_at": NOW, "finished_at": NOW}]))
    assert doc["backups"][0]["started_at"] == "2027-01-15T08:00:00Z"


def _render(snapshots: dict[str, SourceSnapshot]) -> str:
    registry = CollectorRegistry()
    registry.register(BackupCollector(lambda: snapshots))
    return generate_latest(registry).decode()


def test_metrics_before_the_first_backup_are_zero() -> None:
    text = _render({"backups": snap()})
    assert "aistack_backup_enabled 1.0" in text
    assert "aistack_backup_last_success_timestamp_seconds 0.0" in text
    assert "aistack_backup_last_failure_timestamp_seconds 0.0" in text
    assert 'aistack_backup_runs_total{result="success"} 0.0' in text
    assert 'aistack_backup_runs_total{result="refused"} 0.0' in text
    assert 'aistack_backup_retained{bucket="all"} 0.0' in text
    assert "aistack_backup_dir_free_bytes 1.073741824e+010" in text
    assert "aistack_backup_max_age_seconds 129600.0" in text


def test_metrics_after_runs() -> None:
    text = _render(
        {
            "backups": snap(
                last_success_at=NOW,
                last_failure_at=NOW - 10,
                last_duration_seconds=12.5,
                last_size_bytes=4096,
                runs={"success": 3, "failure": 1, "refused": 2},
                retained={"all": 4, "last": 3, "daily": 4},
            )
        }
    )
    assert "aistack_backup_last_success_timestamp_seconds 1.8e+09" in text
    assert "aistack_backup_last_duration_seconds 12.5" in text
    assert "aistack_backup_last_size_bytes 4096.0" in text
    assert 'aistack_backup_runs_total{result="failure"} 1.0' in text
    assert 'aistack_backup_retained{bucket="daily"} 4.0' in text


def test_disabled_or_missing_exports_only_enabled() -> None:
    assert "aistack_backup_enabled 0.0" in _render({"backups": snap(enabled=False)})
    text = _render({})
    assert "aistack_backup_enabled 0.0" in text
    assert "last_success" not in text


def test_promtool_check_metrics_is_clean() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package 'prometheus')"
    payload = _render({"backups": snap(last_success_at=NOW, last_size_bytes=1)}).encode()
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=payload, capture_output=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
