"""A real PostgreSQL server for the backup tests, started once per session.

Debian's server (`apt-get install postgresql`; `make deps` does not install it yet): initdb
into a temp dir, password (scram-sha-256) auth over TCP on a free loopback port, fsync off
(speed; durability of the test server is not what is tested), stopped at the end. As
root the server runs as the `postgres` user (runuser), as PostgreSQL refuses root.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import BackupConfig
from tests.conftest import free_port

PASSWORD = "s3cret-Test"


def _pg_bin() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


@dataclasses.dataclass
class PgServer:
    bin_dir: Path
    root: Path
    host: str
    port: int
    user: str
    password: str
    password_file: Path

    @property
    def major(self) -> int:
        return int(self.bin_dir.parent.name)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = self.password
        return env

    def conn_args(self) -> list[str]:
        return ["-h", self.host, "-p", str(self.port), "-U", self.user]

    def psql(self, sql: str, db: str = "postgres", check: bool = True) -> str:
        proc = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                *self.conn_args(),
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"psql failed: {sql[:200]}\n{proc.stderr}")
        return proc.stdout.strip()

    def session(self, db: str) -> subprocess.Popen[str]:
        """An interactive psql session, kept open (e.g. to hold a lock)."""
        return subprocess.Popen(
            [str(self.bin_dir / "psql"), *self.conn_args(), "-X", "-q", "-d", db],
            env=self.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def create_db(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def drop_db(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def config(self, directory: Path, database: str, **overrides: object) -> BackupConfig:
        base = BackupConfig(
            directory=directory,
            source="local",
            host=self.host,
            port=self.port,
            user=self.user,
            database=database,
            password_file=self.password_file,
            dependents="none",
            min_free=1 << 20,
            min_size=512,
        )
        return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server not installed (apt-get install -y postgresql)")
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no postgres user to run the test server as")
    root = Path(tempfile.mkdtemp(prefix="aistack-pg-"))
    root.chmod(0o755)
    data = root / "data"
    pwfile = root / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        os.chown(root, pw.pw_uid, pw.pw_gid)
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
    port = free_port()
    log = root / "server.log"
    subprocess.run(
        _as_postgres(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    subprocess.run(
        _as_postgres(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=90,
    )
    client_pw = root / "client-password"
    client_pw.write_text(PASSWORD + "\n")
    client_pw.chmod(0o600)
    server = PgServer(bin_dir, root, "127.0.0.1", port, "postgres", PASSWORD, client_pw)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.psql("SELECT 1")
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield server
    finally:
        subprocess.run(
            _as_postgres(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            ),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


_counter = iter(range(1, 1_000_000))


@pytest.fixture
def dbname(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    pg_server.create_db(name)
    yield name
    pg_server.drop_db(name)


SEED = """
CREATE ROLE aistack_reader NOLOGIN;
CREATE TABLE models (id serial PRIMARY KEY, name text NOT NULL UNIQUE, size bigint,
                     created timestamptz DEFAULT '2026-01-01');
CREATE TABLE spend (key text, amount numeric(12, 4), at timestamptz, meta jsonb);
CREATE SEQUENCE invoice_no START 1000;
CREATE TABLE blobs (id int PRIMARY KEY, data bytea);
INSERT INTO models (name, size) SELECT 'model-' || g, g * 1000 FROM generate_series(1, 500) g;
INSERT INTO spend SELECT 'sk-' || (g % 37), g / 7.0,
       '2026-01-01'::timestamptz + g * interval '1 min',
       jsonb_build_object('n', g, 'tag', md5(g::text)) FROM generate_series(1, 3000) g;
INSERT INTO blobs SELECT g, decode(md5(g::text) || md5((g + 1)::text), 'hex')
       FROM generate_series(1, 200) g;
SELECT setval('invoice_no', 1234);
GRANT SELECT ON models, spend TO aistack_reader;
"""


def table_checksums(server: PgServer, db: str) -> dict[str, str]:
    """md5 of every table's rows in a stable order, plus the sequences' values."""
    out = {}
    for table in ("models", "spend", "blobs"):
        out[table] = server.psql(
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t",
            db,
        )
    out["invoice_no"] = server.psql("SELECT last_value FROM invoice_no", db)
    out["models_id_seq"] = server.psql("SELECT last_value FROM models_id_seq", db)
    return out


@pytest.fixture
def seeded(pg_server: PgServer, dbname: str) -> Iterator[str]:
    pg_server.psql("DROP ROLE IF EXISTS aistack_reader")
    pg_server.psql(SEED, dbname)
    yield dbname
    pg_server.drop_db(dbname)
    pg_server.psql("DROP ROLE IF EXISTS aistack_reader", check=False)
