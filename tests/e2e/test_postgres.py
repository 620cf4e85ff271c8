"""The real PostgreSQL 17 image: initialised from POSTGRES_* like the official image,
ready by pg_isready, password auth over TCP, and a custom-format dump streamed to the host
that pg_restore can read back."""

from __future__ import annotations

import json

import pytest

from tests.e2e.testbed import Guest, GuestCommandError

pytestmark = pytest.mark.e2e

NETWORK = "[Network]\n"
VOLUME = "[Volume]\n"
POSTGRES = """[Container]
Image={image}
ContainerName=e2e-pg
Network=e2e.network
Volume=e2e-pgdata.volume:/var/lib/postgresql/data
PublishPort=127.0.0.1:15432:5432
Environment=POSTGRES_USER=aistack POSTGRES_PASSWORD=s3cret POSTGRES_DB=litellm
HealthCmd=pg_isready -h 127.0.0.1 -U aistack -d litellm
HealthInterval=2s
HealthRetries=30
Notify=healthy

[Service]
TimeoutStartSec=120
"""
LITELLM = """[Container]
Image={image}
ContainerName=e2e-litellm
Network=e2e.network
Environment=DATABASE_URL=postgresql://aistack:s3cret@e2e-pg:5432/litellm
PublishPort=127.0.0.1:4000:4000
"""


def _psql(guest: Guest, sql: str, password: str = "s3cret") -> str:
    """psql from the guest (Debian's client) over TCP: exercises password auth."""
    res = guest.run(
        [
            "env",
            f"PGPASSWORD={password}",
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            "15432",
            "-U",
            "aistack",
            "-d",
            "litellm",
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        ],
        check=False,
    )
    return f"rc={res.returncode}\n{res.stdout}{res.stderr}"


def _readiness(guest: Guest) -> dict[str, object] | None:
    try:
        status, body = guest.http("GET", "http://127.0.0.1:4000/health/readiness", timeout=3)
    except GuestCommandError:
        return None
    doc = json.loads(body)
    return doc if status == 200 and isinstance(doc, dict) else None


def test_postgres_ready_dump_streamed_to_host_and_restorable(
    guest: Guest, postgres_image: str, standin_images: dict[str, str]
) -> None:
    guest.write_quadlet("e2e.network", NETWORK)
    guest.write_quadlet("e2e-pgdata.volume", VOLUME)
    guest.write_quadlet("e2e-pg.container", POSTGRES.format(image=postgres_image))
    guest.daemon_reload()
    guest.start("e2e-pg.service", timeout=150)  # Notify=healthy: pg_isready passed
    assert guest.run(["podman", "exec", "e2e-pg", "pg_isready", "-U", "aistack"]).returncode == 0

    who = guest.podman(
        "exec",
        "e2e-pg",
        "psql",
        "-U",
        "aistack",
        "-d",
        "litellm",
        "-Atc",
        "select current_user, current_database(), version()",
    )
    assert who.startswith("aistack|litellm|PostgreSQL 17.")
    assert _psql(guest, "create table models (name text primary key, size bigint)") == (
        "rc=0\nCREATE TABLE\n"
    )
    _psql(guest, "insert into models values ('llama3.2:1b', 1), ('qwen2.5:0.5b', 2)")
    assert _psql(guest, "select count(*) from models") == "rc=0\n2\n"
    wrong = _psql(guest, "select 1", password="wrong")
    assert wrong.startswith("rc=2") and "password authentication failed" in wrong

    # pg_dump -Fc streamed out of the container, through nsenter, into host memory.
    dump = guest.run(
        ["podman", "exec", "e2e-pg", "pg_dump", "-Fc", "-U", "aistack", "litellm"], binary=True
    ).stdout
    assert isinstance(dump, bytes) and dump.startswith(b"PGDMP")
    guest.write_file("/var/tmp/e2e.dump", dump)
    listing = guest.run(["pg_restore", "--list", "/var/tmp/e2e.dump"]).stdout
    assert "TABLE public models aistack" in listing
    guest.run(["rm", "-f", "/var/tmp/e2e.dump"])
    # ...and restores into a fresh database inside the container.
    guest.podman("exec", "e2e-pg", "createdb", "-U", "aistack", "restored")
    guest.run(
        ["podman", "exec", "-i", "e2e-pg", "pg_restore", "-U", "aistack", "-d", "restored"],
        input=dump,
    )
    count = guest.podman(
        "exec",
        "e2e-pg",
        "psql",
        "-U",
        "aistack",
        "-d",
        "restored",
        "-Atc",
        "select count(*) from models",
    )
    assert count.strip() == "2"

    # The LiteLLM stand-in's readiness sees the database by name on the network.
    guest.write_quadlet("e2e-litellm.container", LITELLM.format(image=standin_images["litellm"]))
    guest.daemon_reload()
    guest.start("e2e-litellm.service")
    ready = guest.wait_for("litellm readiness", lambda: _readiness(guest), timeout=30)
    assert ready["db"] == "connected" and ready["status"] == "connected"
