"""Backups of the PostgreSQL container through the Podman API, by the agent running as
its real hardened unit (no capabilities: it cannot run the podman CLI): `aistack backup
now` asks the agent, which streams `pg_dump -Fc` out of the container (zstd, PostgreSQL
17); verify streams the archive back into the container's pg_restore; restore stops a
dependent unit through systemd, restores, and starts it again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import testbed
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

UNIT = "aistack-agent.service"
DEPENDENT = "e2e-dep.service"
POSTGRES = """[Container]
Image={image}
ContainerName=e2e-pg
Volume=e2e-pgdata.volume:/var/lib/postgresql/data
Environment=POSTGRES_USER=aistack POSTGRES_PASSWORD=s3cret POSTGRES_DB=litellm
HealthCmd=pg_isready -h 127.0.0.1 -U aistack -d litellm
HealthInterval=2s
HealthRetries=30
Notify=healthy

[Service]
TimeoutStartSec=120
"""
CONFIG = """backups:
  enabled: true
  source: podman
  container: e2e-pg
  user: aistack
  database: litellm
  dependents: e2e-dep.service
  catch_up_delay: 1h
  min_free: 1MiB
  min_size: 512B
"""
SEED = """
CREATE ROLE e2e_reader NOLOGIN;
CREATE TABLE models (id serial PRIMARY KEY, name text UNIQUE, size bigint);
CREATE TABLE spend (key text, amount numeric(12, 4), meta jsonb);
CREATE SEQUENCE invoice_no START 1000;
INSERT INTO models (name, size) SELECT 'model-' || g, g FROM generate_series(1, 300) g;
INSERT INTO spend SELECT 'sk-' || (g % 7), g / 3.0, jsonb_build_object('n', g)
  FROM generate_series(1, 2000) g;
SELECT setval('invoice_no', 4242);
GRANT SELECT ON models TO e2e_reader;
"""
CHECKSUMS = (
    "SELECT (SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM models t) || ' ' || "
    "(SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM spend t) || ' ' || "
    "(SELECT last_value FROM invoice_no) || ' ' || "
    "has_table_privilege('e2e_reader', 'models', 'SELECT')"
)


def _sql(guest: Guest, sql: str) -> str:
    return guest.podman(
        "exec",
        "e2e-pg",
        "psql",
        "-U",
        "aistack",
        "-d",
        "litellm",
        "-v",
        "ON_ERROR_STOP=1",
        "-Atqc",
        sql,
    ).strip()


def _aistack(guest: Guest, *args: str) -> tuple[int, str, str]:
    res = guest.run(["aistack", *args], check=False, timeout=300)
    return res.returncode, str(res.stdout), str(res.stderr)


@pytest.fixture
def stack(guest: Guest, postgres_image: str, agent_deb: Path) -> Iterator[Guest]:
    guest.write_quadlet("e2e-pgdata.volume", "[Volume]\n")
    guest.write_quadlet("e2e-pg.container", POSTGRES.format(image=postgres_image))
    guest.write_file(
        f"/etc/systemd/system/{DEPENDENT}", "[Service]\nExecStart=/bin/sleep infinity\n"
    )
    guest.daemon_reload()
    guest.start("e2e-pg.service", timeout=150)
    guest.start(DEPENDENT)
    testbed.install_agent_from_deb(guest, agent_deb)
    guest.write_file("/etc/aistack/agent.yaml", CONFIG)
    guest.units_of_interest.add(UNIT)
    guest.start(UNIT, timeout=90)
    yield guest
    guest.run(["systemctl", "stop", UNIT, DEPENDENT], check=False)
    guest.run(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", "-q", "aistack"],
              check=False, timeout=120)  # fmt: skip
    guest.run(["rm", "-rf", "/var/lib/aistack", "/etc/aistack"])
    guest.daemon_reload()


def test_container_backup_verify_restore(stack: Guest) -> None:
    guest = stack
    _sql(guest, SEED)
    before = _sql(guest, CHECKSUMS)

    code, out, err = _aistack(guest, "backup", "now", "--json")
    assert code == 0, out + err
    result = json.loads(out)
    assert result["result"] == "success" and result["trigger"] == "api", result
    backup_id = result["id"]
    folder = f"/var/lib/aistack/backups/{backup_id}"
    manifest = json.loads(guest.read_file(f"{folder}/manifest.json"))
    assert manifest["source"] == "podman container e2e-pg"
    assert manifest["server_version"].startswith("17.")
    assert manifest["compression"] == "zstd:3"
    assert manifest["verified"] is True
    assert b"e2e_reader" in guest.read_file(f"{folder}/globals.sql")
    assert guest.read_file(f"{folder}/database.dump").startswith(b"PGDMP")

    # Verify streams the archive into the container's pg_restore (stdin, half-close).
    code, out, err = _aistack(guest, "backup", "verify", "--all")
    assert code == 0 and f"{backup_id}: ok: sha256 ok, full read ok" in out, out + err

    # A second backup, cut in half with a matching manifest: only the full read sees it.
    code, out, err = _aistack(guest, "backup", "now", "--json")
    assert code == 0, out + err
    second = json.loads(out)["id"]
    cut = f"/var/lib/aistack/backups/{second}"
    data = guest.read_file(f"{cut}/database.dump")
    guest.write_file(f"{cut}/database.dump", data[: len(data) // 2], 0o600)
    import hashlib

    m2 = json.loads(guest.read_file(f"{cut}/manifest.json"))
    m2["dump"].update(
        size_bytes=len(data) // 2, sha256=hashlib.sha256(data[: len(data) // 2]).hexdigest()
    )
    guest.write_file(f"{cut}/manifest.json", json.dumps(m2), 0o600)
    code, out, err = _aistack(guest, "backup", "verify", second)
    assert code == 1 and "full read failed" in out, out + err

    # Lose data and the role; restore over the live database, dependents cycled.
    before_dep = guest.unit_properties(DEPENDENT, "InvocationID")["InvocationID"]
    _sql(
        guest,
        "DROP TABLE spend; DELETE FROM models; DROP OWNED BY e2e_reader; DROP ROLE e2e_reader",
    )
    code, out, err = _aistack(guest, "backup", "restore", backup_id, "--yes", "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["ok"] and report["stopped"] == [DEPENDENT] and report["started"] == [DEPENDENT]
    assert _sql(guest, CHECKSUMS) == before
    props = guest.wait_unit(DEPENDENT, "active")
    assert props["ActiveState"] == "active"
    assert guest.unit_properties(DEPENDENT, "InvocationID")["InvocationID"] != before_dep

    status, body = guest.http("GET", "http://127.0.0.1:9200/status")
    section = json.loads(body)["backups"]
    assert status == 200 and section["state"] in ("ok", "failing"), section
    metrics = guest.http("GET", "http://127.0.0.1:9200/metrics")[1]
    assert 'aistack_backup_runs_total{result="success"} 2.0' in metrics


def test_agent_stop_mid_dump_kills_pg_dump_in_the_container(stack: Guest) -> None:
    """systemctl stop while pg_dump waits on a table lock inside the container: the agent
    exits within 5 s, kills the exec'd pg_dump (closing the connection alone would leave it
    running in the container), and leaves no partial or final backup."""
    guest = stack
    _sql(guest, SEED)
    guest.podman(
        "exec", "-d", "e2e-pg", "psql", "-U", "aistack", "-d", "litellm", "-c",
        "BEGIN; LOCK TABLE spend IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120);",
    )  # fmt: skip
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aistack-backup' "
        "AND wait_event_type = 'Lock'"
    )
    guest.wait_for("the lock", lambda: _sql(guest, "SELECT count(*) FROM pg_locks WHERE "
                   "mode = 'AccessExclusiveLock' AND granted") != "0")  # fmt: skip
    code, out, err = _aistack(guest, "backup", "now", "--no-wait")
    assert code == 0, out + err
    guest.wait_for("pg_dump waiting on the lock", lambda: _sql(guest, waiting) == "1")
    listing = guest.run(["ls", "-A", "/var/lib/aistack/backups"]).stdout.split()
    assert any(name.startswith(".partial-") for name in listing), listing

    res = guest.run(["sh", "-c", "s=$(date +%s%N); systemctl stop aistack-agent.service; "
                     "echo $(( ($(date +%s%N) - s) / 1000000 ))"])  # fmt: skip
    assert int(str(res.stdout).split()[-1]) < 5000, res.stdout
    assert guest.unit_properties(UNIT, "Result")["Result"] == "success"
    # The server backend waits on for the lock (PostgreSQL notices a gone client only when
    # it next talks to it); the pg_dump process in the container must be gone.
    guest.wait_for(
        "pg_dump gone from the container",
        lambda: "pg_dump" not in guest.podman("top", "e2e-pg", "args"),
        timeout=10,
    )
    listing = guest.run(["ls", "-A", "/var/lib/aistack/backups"]).stdout.split()
    assert not [n for n in listing if not n.startswith(".")], listing
    assert not [n for n in listing if n.startswith(".partial-")], listing
    state = json.loads(guest.read_file("/var/lib/aistack/backups/.state.json"))
    assert state["last_error_stage"] == "interrupted"
    _sql(guest, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()")  # fmt: skip
