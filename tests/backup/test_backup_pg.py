"""Backups against a real PostgreSQL server (tests/backup/conftest.py starts one).

No mock of PostgreSQL: the real pg_dump, pg_dumpall, pg_restore and psql run against a
real server. Faults are injected around them (a stream cut short, a trickling stream, a
full tmpfs, a held table lock, a SIGKILL), never instead of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.backup.model import RunResult
from agent.backup.restore import restore_backup
from agent.backup.runner import BackupRunner
from agent.backup.sources import DumpSource, LocalSource, make_source
from agent.backup.store import DUMP_FILE, MANIFEST_FILE, BackupStore
from agent.backup.verify import VerifyError, full_read, read_header
from agent.config import BackupConfig
from tests.conftest import REPO

from .conftest import PgServer, table_checksums
from .faults import SlowSource, TruncatingSource

NO_PODMAN = Path("/nonexistent/podman.sock")


def run(cfg: BackupConfig, source: DumpSource | None = None, clock=time.time) -> RunResult:  # type: ignore[no-untyped-def]
    return asyncio.run(BackupRunner(cfg, NO_PODMAN, source=source, clock=clock).run("test"))


def finals(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


def partials(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".partial-"))


def source_for(cfg: BackupConfig) -> DumpSource:
    return make_source(cfg, NO_PODMAN)


def write_agent_config(tmp_path: Path, cfg: BackupConfig) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        api:
          token_file: {tmp_path / "api-token"}
        backups:
          directory: {cfg.directory}
          source: local
          host: {cfg.host}
          port: {cfg.port}
          user: {cfg.user}
          database: {cfg.database}
          password_file: {cfg.password_file}
          dependents: none
          min_free: 1MiB
          min_size: 512B
        """)
    )
    return path


def cli(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "--config", str(config), "backup", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- the round trip ----------------------------------------------------------------------


def test_round_trip_tables_role_sequence(pg_server: PgServer, seeded: str, tmp_path: Path) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded)
    before = table_checksums(pg_server, seeded)
    result = run(cfg)
    assert result.ok, result
    folder = cfg.directory / str(result.id)
    assert sorted(p.name for p in folder.iterdir()) == [DUMP_FILE, "globals.sql", MANIFEST_FILE]
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["verified"] is True and manifest["format"] == "custom"
    assert manifest["database"] == seeded
    assert manifest["server_version"].startswith(f"{pg_server.major}.")
    assert manifest["compression"] == ("zstd:3" if pg_server.major >= 16 else "gzip:1")
    assert len(manifest["dump"]["sha256"]) == 64 and manifest["size_bytes"] == result.size_bytes
    assert read_header(folder / DUMP_FILE).database == seeded
    assert "aistack_reader" in (folder / "globals.sql").read_text()

    pg_server.drop_db(seeded)
    pg_server.psql("DROP ROLE aistack_reader")
    store = BackupStore(cfg.directory)
    report = asyncio.run(restore_backup(cfg, source_for(cfg), store, str(result.id)))
    assert report.ok, report
    assert report.created_database and report.in_place and report.stopped == []
    assert table_checksums(pg_server, seeded) == before
    grant = "SELECT has_table_privilege('aistack_reader', 'models', 'SELECT')"
    assert pg_server.psql(grant, seeded) == "t"
    assert pg_server.psql("SELECT nextval('invoice_no')", seeded) == "1235"


def test_restore_in_place_replaces_changed_data(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded)
    before = table_checksums(pg_server, seeded)
    result = run(cfg)
    assert result.ok, result
    pg_server.psql(
        "DELETE FROM spend WHERE amount > 10; UPDATE models SET size = 0; "
        "CREATE TABLE stray (x int); SELECT setval('invoice_no', 99999)",
        seeded,
    )
    assert table_checksums(pg_server, seeded) != before
    store = BackupStore(cfg.directory)
    report = asyncio.run(restore_backup(cfg, source_for(cfg), store, "latest"))
    assert report.ok, report
    assert not report.created_database
    assert table_checksums(pg_server, seeded) == before


def test_restore_to_another_database_leaves_the_live_one(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded)
    before = table_checksums(pg_server, seeded)
    assert run(cfg).ok
    pg_server.psql("DELETE FROM models", seeded)
    other = f"{seeded}_copy"
    config_file = write_agent_config(tmp_path, cfg)
    try:
        refused = cli(config_file, "restore", "latest", "--to-db", other)
        assert refused.returncode == 2 and "--yes" in refused.stderr
        done = cli(config_file, "restore", "latest", "--to-db", other, "--yes", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert report["ok"] and report["created_database"] and not report["in_place"]
        assert table_checksums(pg_server, other) == before
        assert pg_server.psql("SELECT count(*) FROM models", seeded) == "0"
    finally:
        pg_server.drop_db(other)


# --- verification ------------------------------------------------------------------------


def test_truncated_archive_passes_list_but_fails_verify(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded)
    result = run(cfg)
    assert result.ok
    dump = cfg.directory / str(result.id) / DUMP_FILE
    truncated = tmp_path / "truncated.dump"
    data = dump.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])
    listing = subprocess.run(
        [str(pg_server.bin_dir / "pg_restore"), "--list", str(truncated)],
        capture_output=True,
        text=True,
    )
    assert listing.returncode == 0 and "TABLE DATA public spend" in listing.stdout
    with pytest.raises(VerifyError) as info:
        asyncio.run(full_read(source_for(cfg), truncated))
    assert "full read failed" in info.value.message
    assert asyncio.run(full_read(source_for(cfg), dump)).format == "custom"


def test_verify_cli_detects_a_truncated_backup_and_marks_it(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded)
    good, bad = run(cfg), run(cfg)
    assert good.ok and bad.ok
    config_file = write_agent_config(tmp_path, cfg)
    ok = cli(config_file, "verify", "--all")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": ok: sha256 ok, full read ok") == 2
    # Cut the archive and make its manifest agree (a truncation before hashing): the
    # checksum passes, only the full read can tell.
    folder = cfg.directory / str(bad.id)
    dump = folder / DUMP_FILE
    cut = dump.read_bytes()[: dump.stat().st_size // 2]
    dump.write_bytes(cut)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    import hashlib

    manifest["dump"].update(size_bytes=len(cut), sha256=hashlib.sha256(cut).hexdigest())
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    failed = cli(config_file, "verify", str(bad.id), str(good.id))
    assert failed.returncode == 1
    assert f"{bad.id}: FAILED: full read failed" in failed.stdout
    assert f"{good.id}: ok" in failed.stdout
    assert json.loads((folder / MANIFEST_FILE).read_text())["verified"] is False
    assert BackupStore(cfg.directory).get("latest").id == good.id


# --- failures leave nothing behind --------------------------------------------------------


def _assert_nothing_stored(cfg: BackupConfig, before: list[str]) -> None:
    assert finals(cfg.directory) == before
    assert partials(cfg.directory) == []


def test_truncated_stream_fails_verify_and_stores_nothing(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded)
    assert run(cfg).ok
    before = finals(cfg.directory)
    result = run(cfg, TruncatingSource(source_for(cfg), keep=20_000))
    assert result.result == "failure" and result.stage == "verify", result
    assert "full read failed" in str(result.error)
    _assert_nothing_stored(cfg, before)
    state = BackupStore(cfg.directory).read_state()
    assert state.last_result == "failure" and state.last_error_stage == "verify"


def test_wrong_database_fails_and_stores_nothing(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    cfg = pg_server.config(tmp_path / "backups", "no_such_db")
    result = run(cfg)
    assert result.result == "failure" and result.stage == "dump", result
    assert 'database "no_such_db" does not exist' in str(result.stderr)
    assert "pg_dump exited with status 1" in str(result.error)
    _assert_nothing_stored(cfg, [])


def test_wrong_password_fails_and_stores_nothing(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    for with_globals, stage in ((True, "globals"), (False, "dump")):
        cfg = pg_server.config(
            tmp_path / "backups", seeded, password_file=wrong, globals=with_globals
        )
        result = run(cfg)
        assert result.result == "failure" and result.stage == stage, result
        assert "password authentication failed" in str(result.stderr)
        _assert_nothing_stored(cfg, [])


def test_size_floor_fails_the_run(pg_server: PgServer, seeded: str, tmp_path: Path) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded, min_size=64 << 20)
    result = run(cfg)
    assert result.result == "failure" and result.stage == "size", result
    _assert_nothing_stored(cfg, [])


def test_refused_when_free_space_is_below_the_floor(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded, min_free=1 << 60)
    result = run(cfg)
    assert result.result == "refused" and result.stage == "disk", result
    assert "not starting" in str(result.error) and "backups.min_free" in str(result.error)
    assert result.required_free_bytes == 1 << 60 and result.free_bytes
    _assert_nothing_stored(cfg, [])


def test_required_space_follows_the_last_backup(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded, min_free=1)
    first = run(cfg)
    assert first.ok and first.required_free_bytes == 1
    second = run(cfg)
    assert second.required_free_bytes == int(1.5 * int(first.size_bytes or 0) + 0.999)


def test_cancelled_mid_dump_cleans_up(pg_server: PgServer, seeded: str, tmp_path: Path) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded)
    slow = SlowSource(source_for(cfg), delay=0.05)

    async def scenario() -> None:
        task = asyncio.create_task(BackupRunner(cfg, NO_PODMAN, source=slow).run("test"))
        await asyncio.to_thread(slow.started.wait, 30)
        assert len(partials(cfg.directory)) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    _assert_nothing_stored(cfg, [])
    state = BackupStore(cfg.directory).read_state()
    assert state.last_error_stage == "interrupted"


def _wait_for(what: str, probe, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_killed_mid_dump_leaves_no_final_file(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    """SIGKILL of the process running the backup (`aistack backup now --local`) while
    pg_dump is mid-dump (waiting on a table lock another session holds)."""
    cfg = pg_server.config(tmp_path / "backups", seeded)
    config_file = write_agent_config(tmp_path, cfg)
    holder = pg_server.session(seeded)
    assert holder.stdin is not None
    holder.stdin.write("BEGIN; LOCK TABLE spend IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n")
    holder.stdin.flush()
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aistack-backup' "
        "AND wait_event_type = 'Lock'"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "--config",
            str(config_file),
            "backup",
            "now",
            "--local",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for("pg_dump blocked on the lock", lambda: pg_server.psql(waiting) == "1")
        assert len(partials(cfg.directory)) == 1  # mid-dump: the partial folder exists
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        holder.stdin.write("ROLLBACK;\n\\q\n")
        holder.stdin.flush()
        holder.wait(10)
    assert finals(cfg.directory) == []
    assert len(partials(cfg.directory)) == 1  # left by the kill, never a final name
    _wait_for("the orphaned pg_dump to go", lambda: pg_server.psql(waiting) == "0")
    again = cli(config_file, "now", "--local", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert partials(cfg.directory) == []  # the stale partial was cleaned before the run
    assert finals(cfg.directory) == [json.loads(again.stdout)["id"]]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_disk_full_mid_dump_keeps_old_backups(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(small)], check=True
    )
    try:
        cfg = pg_server.config(small / "backups", seeded, min_free=64 << 10, globals=False)
        first = run(cfg)
        assert first.ok, first
        old = cfg.directory / str(first.id)
        old_bytes = (old / DUMP_FILE).read_bytes()
        # Random text compresses badly: about 3 MB of dump for a 1 MiB filesystem.
        pg_server.psql(
            "INSERT INTO spend SELECT md5(random()::text) || md5(random()::text), "
            "g, now(), NULL FROM generate_series(1, 60000) g",
            seeded,
        )
        result = run(cfg)
        assert result.result == "failure" and result.stage == "dump", result
        assert "No space left on device" in str(result.error)
        assert finals(cfg.directory) == [first.id]
        assert partials(cfg.directory) == []
        assert (old / DUMP_FILE).read_bytes() == old_bytes
        asyncio.run(full_read(source_for(cfg), old / DUMP_FILE))
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


# --- after a success -----------------------------------------------------------------------


def test_failed_runs_never_prune_and_successes_do(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    cfg = pg_server.config(
        tmp_path / "backups",
        seeded,
        keep_last=2,
        keep_daily=0,
        keep_weekly=0,
        keep_monthly=0,
        keep_yearly=0,
        min_keep=1,
    )
    ids = [run(cfg).id for _ in range(3)]
    assert finals(cfg.directory) == sorted(ids[1:])
    broken = dataclasses.replace(cfg, database="no_such_db")
    for _ in range(3):
        assert run(broken).result == "failure"
    assert finals(cfg.directory) == sorted(ids[1:])
    last = run(cfg)
    assert last.ok and last.pruned == (ids[1],) and last.retained == 2
    assert finals(cfg.directory) == sorted([ids[2], str(last.id)])


def test_size_drop_is_a_warning(pg_server: PgServer, seeded: str, tmp_path: Path) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded, size_drop_percent=50)
    pg_server.psql(
        "INSERT INTO spend SELECT md5(random()::text), g, now(), NULL "
        "FROM generate_series(1, 20000) g",
        seeded,
    )
    assert run(cfg).ok
    pg_server.psql("TRUNCATE spend", seeded)
    result = run(cfg)
    assert result.ok
    assert any(w.startswith("size drop") for w in result.warnings), result.warnings


def test_trial_restore_leaves_no_scratch_database(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded, trial_restore=True)
    result = run(cfg)
    assert result.ok
    trial = result.extra["trial_restore"]
    assert trial["ok"] is True, trial
    assert (
        pg_server.psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'aistack_trial%'")
        == "0"
    )
    assert BackupStore(cfg.directory).read_state().last_trial_restore["ok"] is True


def test_list_and_prune_dry_run(pg_server: PgServer, seeded: str, tmp_path: Path) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded)
    ids = [run(cfg).id for _ in range(3)]
    config_file = write_agent_config(tmp_path, cfg)
    table = cli(config_file, "list")
    assert table.returncode == 0 and all(str(i) in table.stdout for i in ids)
    assert "KEPT BY" in table.stdout
    listed = json.loads(cli(config_file, "list", "--json").stdout)
    assert [b["id"] for b in listed["backups"]] == list(reversed(ids))
    assert listed["backups"][0]["keep"][:2] == [
        "last 1",
        "daily " + listed["backups"][0]["keep"][1].split()[1],
    ]
    # Tighter rules in the file: the dry run shows what would go and deletes nothing.
    text = config_file.read_text().replace(
        "  dependents: none\n",
        "  dependents: none\n"
        "  keep_last: 1\n  keep_daily: 0\n  keep_weekly: 0\n"
        "  keep_monthly: 0\n  keep_yearly: 0\n  min_keep: 1\n",
    )
    config_file.write_text(text)
    dry = cli(config_file, "prune", "--dry-run")
    assert dry.returncode == 0 and "1 kept, 2 would delete" in dry.stdout
    assert finals(cfg.directory) == sorted(ids)
    done = cli(config_file, "prune", "--json")
    assert json.loads(done.stdout)["delete"] == ids[:2]
    assert finals(cfg.directory) == [ids[2]]


def test_busy_folder_is_reported(pg_server: PgServer, seeded: str, tmp_path: Path) -> None:
    cfg = pg_server.config(tmp_path / "backups", seeded)
    config_file = write_agent_config(tmp_path, cfg)
    with BackupStore(cfg.directory).lock("a test holding the lock"):
        busy = cli(config_file, "prune")
    assert busy.returncode == 75
    assert "a test holding the lock" in busy.stderr


def test_local_source_needs_its_tools(tmp_path: Path) -> None:
    source = LocalSource("127.0.0.1", 1, "x", bin_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        source.start("pg_dump", ["--version"])
    assert shutil.which("pg_dump"), "the PostgreSQL client is needed for these tests"


def test_an_empty_database_is_kept_with_a_warning_until_it_had_data(
    pg_server: PgServer, dbname: str, tmp_path: Path
) -> None:
    """A stack just deployed: LiteLLM has not created its tables, the dump is under
    min_size. Kept (with why); once a backup had data, a small dump fails again."""
    cfg = pg_server.config(tmp_path / "backups", dbname, min_size=4096)
    first = run(cfg)
    assert first.ok, first
    assert any("has no tables yet" in w and "below backups.min_size" in w for w in first.warnings)
    pg_server.psql(SEED_TABLE, db=dbname)
    assert run(cfg).ok  # now with data, above min_size
    pg_server.psql("DROP TABLE filler", db=dbname)
    gone = run(cfg)
    assert gone.result == "failure" and gone.stage == "size", gone
    assert "an empty or wrong database?" in str(gone.error)


SEED_TABLE = (
    "CREATE TABLE filler (id int, payload text);"
    "INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 2000) g;"
)
