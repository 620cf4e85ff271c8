"""The real daemon with backups on, against the real PostgreSQL server: POST /v1/backups,
/status, /metrics, the catch-up run at start, stale backups degrading the state, and a
SIGTERM in the middle of a dump."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.backup.runner import BackupRunner
from tests.conftest import HANG_S, AgentProcess
from tests.conftest import http as http_request

from .conftest import PgServer

DAY = 86400


def backups_yaml(pg: PgServer, directory: Path, database: str, **extra: str) -> str:
    keys = {
        "enabled": "true",
        "directory": str(directory),
        "source": "local",
        "host": pg.host,
        "port": str(pg.port),
        "user": pg.user,
        "database": database,
        "password_file": str(pg.password_file),
        "dependents": "none",
        "min_free": "1MiB",
        "min_size": "512B",
        "catch_up_delay": "1h",
    }
    keys.update(extra)
    return "backups:\n" + "".join(f"  {k}: {v}\n" for k, v in keys.items())


def get(agent: AgentProcess, path: str) -> Any:
    status, _, body = http_request("GET", f"{agent.base}{path}")
    assert status == 200, body
    return json.loads(body) if path != "/metrics" else body.decode()


def post(agent: AgentProcess, path: str, token: str | None = None) -> tuple[int, Any]:
    """POST with the query string kept (tests.conftest.http drops it)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=60)
    try:
        conn.request("POST", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or (line.startswith(name + "{") and line.split()[0] == name):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in metrics")


def test_manual_run_through_the_api(
    start_agent: Callable[..., AgentProcess], pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    agent = start_agent(backups_yaml(pg_server, tmp_path / "backups", seeded))
    section = get(agent, "/status")["backups"]
    assert section["state"] == "pending" and section["next_run_at"]
    assert section["last_success_at"] is None
    assert metric(get(agent, "/metrics"), "aistack_backup_last_success_timestamp_seconds") == 0

    assert post(agent, "/v1/backups?wait=true")[0] == 401
    status, result = post(agent, "/v1/backups?wait=true", agent.token)
    assert status == 200 and result["result"] == "success", result
    assert result["trigger"] == "api" and result["sha256"] and result["retained"] == 1

    listing = wait_for(
        "the snapshot to show it", lambda: (d := get(agent, "/v1/backups"))["backups"] and d
    )
    assert listing["backups"][0]["id"] == result["id"]
    assert listing["backups"][0]["keep"][0] == "last 1"
    doc = get(agent, "/status")
    assert doc["backups"]["state"] == "ok"
    assert doc["backups"]["last_success_id"] == result["id"]
    assert doc["backups"]["retained"] == 1
    assert not any(r.startswith("backups:") for r in doc["state_reasons"])
    text = get(agent, "/metrics")
    assert metric(text, "aistack_backup_last_success_timestamp_seconds") > time.time() - 60
    assert 'aistack_backup_runs_total{result="success"} 1.0' in text
    assert metric(text, "aistack_backup_last_size_bytes") == result["size_bytes"]


def test_one_run_at_a_time(
    start_agent: Callable[..., AgentProcess], pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    agent = start_agent(backups_yaml(pg_server, tmp_path / "backups", seeded))
    holder = pg_server.session(seeded)
    assert holder.stdin is not None
    holder.stdin.write("BEGIN; LOCK TABLE models IN ACCESS EXCLUSIVE MODE;\n")
    holder.stdin.flush()
    try:
        status, body = post(agent, "/v1/backups", agent.token)
        assert status == 202 and body == {"started": True}
        status, body = post(agent, "/v1/backups?wait=true", agent.token)
        assert status == 409 and "already running" in body["error"]["message"]
        running = wait_for(
            "the run in the status", lambda: get(agent, "/status")["backups"]["running"]
        )
        assert running["trigger"] == "api"
    finally:
        holder.stdin.write("ROLLBACK;\n\\q\n")
        holder.stdin.flush()
        holder.wait(10)
    wait_for("the run to finish", lambda: get(agent, "/status")["backups"]["state"] == "ok")


def test_catch_up_run_at_start(
    start_agent: Callable[..., AgentProcess], pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    yaml = backups_yaml(pg_server, tmp_path / "backups", seeded, catch_up_delay="0s")
    agent = start_agent(yaml)
    doc = wait_for(
        "the catch-up backup",
        lambda: (d := get(agent, "/status"))["backups"]["state"] == "ok" and d,
    )
    assert doc["backups"]["last_success_age_seconds"] < 60
    runs = get(agent, "/metrics")
    assert 'aistack_backup_runs_total{result="success"} 1.0' in runs
    assert "catch-up backup scheduled" in agent.log()


def test_stale_backup_degrades_until_a_new_success(
    start_agent: Callable[..., AgentProcess], pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded)
    old = asyncio.run(
        BackupRunner(cfg, Path("/nonexistent"), clock=lambda: time.time() - 3 * DAY).run("test")
    )
    assert old.ok
    agent = start_agent(backups_yaml(pg_server, tmp_path / "backups", seeded))
    doc = get(agent, "/status")
    assert doc["state"] == "degraded"
    assert doc["backups"]["state"] == "stale"
    assert any(
        r.startswith("backups: last successful backup 3d 0h ago") for r in doc["state_reasons"]
    )
    assert "catch-up backup scheduled" in agent.log()  # older than the interval
    status, result = post(agent, "/v1/backups?wait=true", agent.token)
    assert status == 200 and result["result"] == "success"
    doc = wait_for(
        "a fresh state", lambda: (d := get(agent, "/status"))["backups"]["state"] == "ok" and d
    )
    assert not any(r.startswith("backups:") for r in doc["state_reasons"])


def test_failed_run_is_reported(
    start_agent: Callable[..., AgentProcess], pg_server: PgServer, tmp_path: Path
) -> None:
    agent = start_agent(backups_yaml(pg_server, tmp_path / "backups", "no_such_db"))
    status, result = post(agent, "/v1/backups?wait=true", agent.token)
    assert status == 200 and result["result"] == "failure" and result["stage"] == "dump"
    assert 'database "no_such_db" does not exist' in result["stderr"]
    doc = wait_for(
        "the failure in the status",
        lambda: (d := get(agent, "/status"))["backups"]["last_error"] and d,
    )
    assert doc["backups"]["state"] == "never-succeeded"
    assert any(r.startswith("backups: no backup has succeeded yet") for r in doc["state_reasons"])
    text = get(agent, "/metrics")
    assert metric(text, "aistack_backup_last_failure_timestamp_seconds") > 0
    assert 'aistack_backup_runs_total{result="failure"} 1.0' in text
    assert [p.name for p in (tmp_path / "backups").iterdir() if not p.name.startswith(".")] == []


def test_sigterm_mid_dump_stops_within_5s_and_cleans_up(
    start_agent: Callable[..., AgentProcess], pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    directory = tmp_path / "backups"
    holder = pg_server.session(seeded)
    assert holder.stdin is not None
    holder.stdin.write("BEGIN; LOCK TABLE spend IN ACCESS EXCLUSIVE MODE;\n")
    holder.stdin.flush()
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
        "'aistack-backup' AND wait_event_type = 'Lock'"
    )
    try:
        agent = start_agent(backups_yaml(pg_server, directory, seeded, catch_up_delay="0s"))
        wait_for("pg_dump to wait on the lock", lambda: pg_server.psql(waiting) == "1")
        assert [p.name for p in directory.iterdir() if p.name.startswith(".partial-")]
        agent.proc.send_signal(signal.SIGTERM)
        # pg_dump waits on a lock this test holds until `finally`: an agent that waited
        # for its run would never exit, and the hang guard would end the test.
        code = agent.proc.wait(HANG_S)
    finally:
        holder.stdin.write("ROLLBACK;\n\\q\n")
        holder.stdin.flush()
        holder.wait(10)
    assert code == 0, (code, agent.log())
    assert [p.name for p in directory.iterdir() if not p.name.startswith(".")] == []
    assert not [p.name for p in directory.iterdir() if p.name.startswith(".partial-")]
    state = json.loads((directory / ".state.json").read_text())
    assert state["last_error_stage"] == "interrupted"
    wait_for("pg_dump to be gone", lambda: pg_server.psql(waiting) == "0")
