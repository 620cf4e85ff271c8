"""Unit tests without a server: manifest, folder layout and lock, the archive header,
podman's exec stream framing, the restore's unit ordering, the schedule interval and the
backups config section."""

from __future__ import annotations

import struct
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent import podman_api
from agent.backup.manifest import FileInfo, Manifest, ManifestError
from agent.backup.model import BusyError
from agent.backup.restore import start_order, stop_order
from agent.backup.scheduler import cron_trigger, schedule_interval
from agent.backup.store import (
    DUMP_FILE,
    MANIFEST_FILE,
    BackupStore,
    DirLock,
    State,
    is_backup_id,
)
from agent.backup.verify import VerifyError, parse_header
from agent.config import BackupConfig, ConfigError, parse_config

SHA = "ab" * 32


def manifest(backup_id: str = "20260101T030000Z", started: float = 1767236400.0) -> Manifest:
    return Manifest(
        id=backup_id,
        database="litellm",
        source="local 127.0.0.1:5432",
        started_at=started,
        finished_at=started + 1.25,
        dump=FileInfo(DUMP_FILE, 1000, SHA),
        globals=FileInfo("globals.sql", 20, SHA),
        compression="zstd:3",
        server_version="17.2",
        pg_dump_version="17.2",
        verified_at=started + 1.25,
        warnings=("size drop: ...",),
        agent_version="0.1.0",
    )


def test_manifest_round_trip_and_validation() -> None:
    m = manifest()
    again = Manifest.from_json(m.to_json())
    assert again == m and again.size == 1020
    data = m.to_dict()
    assert data["started_at"] == "2026-01-01T03:00:00.000Z"
    assert data["finished_at"] == "2026-01-01T03:00:01.250Z"
    for broken in (b"{", b"[]", b'{"schema": 2}', m.to_json().replace(b'"id"', b'"idx"')):
        with pytest.raises(ManifestError):
            Manifest.from_json(broken)
    bad = m.to_json().replace(SHA.encode(), b"00", 1)
    with pytest.raises(ManifestError, match="bad sha256"):
        Manifest.from_json(bad)


def _complete(store: BackupStore, backup_id: str) -> Path:
    partial = store.new_partial(backup_id)
    (partial / DUMP_FILE).write_bytes(b"PGDMP")
    store.write_manifest(partial, manifest(backup_id))
    return store.commit(partial, backup_id)


def test_commit_renames_whole_folders_and_scan_ignores_partials(tmp_path: Path) -> None:
    store = BackupStore(tmp_path / "b")
    final = _complete(store, "20260101T030000Z")
    assert final.is_dir() and (final / MANIFEST_FILE).is_file()
    assert store.directory.stat().st_mode & 0o777 == 0o700
    partial = store.new_partial("20260102T030000Z")  # a run in progress / crashed
    (partial / DUMP_FILE).write_bytes(b"half")
    (store.directory / "20260103T030000Z").mkdir()  # no manifest: not a backup
    (store.directory / "notes").mkdir()
    manifests, problems = store.scan()
    assert [m.id for m in manifests] == ["20260101T030000Z"]
    assert problems == ["20260103T030000Z: no manifest.json"]
    with store.lock("test"):
        assert store.clean_stale() == [".partial-20260102T030000Z"]
    assert not partial.exists()
    with pytest.raises(FileExistsError):
        store.commit(store.new_partial("x"), "20260101T030000Z")


def test_delete_renames_before_removing(tmp_path: Path) -> None:
    store = BackupStore(tmp_path / "b")
    _complete(store, "20260101T030000Z")
    store.delete("20260101T030000Z")
    assert list(store.directory.iterdir()) == []


def test_ids_are_unique_and_recognised(tmp_path: Path) -> None:
    store = BackupStore(tmp_path / "b")
    first = store.new_id(1767236400.0)
    assert first == "20260101T030000Z"
    _complete(store, first)
    assert store.new_id(1767236400.4) == "20260101T030000Z-2"
    assert is_backup_id("20260101T030000Z") and is_backup_id("20260101T030000Z-2")
    assert not is_backup_id("2026-01-01") and not is_backup_id("20260101T030000Z-x")
    assert store.get("latest").id == first
    with pytest.raises(Exception, match="no backup 'nope'"):
        store.get("nope")


def test_lock_excludes_other_holders_and_names_them(tmp_path: Path) -> None:
    store = BackupStore(tmp_path / "b")
    with store.lock("backup run (schedule)"):
        with pytest.raises(BusyError, match=r"backup run \(schedule\) \(pid \d+\)"):
            store.lock("prune").acquire()
        assert not store.lock("verify", exclusive=False).try_acquire()
    with store.lock("prune"):
        pass


def test_a_full_disk_does_not_leak_the_lock() -> None:
    """Found by the gauntlet's full backup disk: writing the holder's name failed with
    ENOSPC after the flock was taken, the run crashed, and the lock stayed held by the
    agent itself, so every later run waited forever. /dev/full answers every write with
    ENOSPC (fault injection by the kernel's own device)."""
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full")
    lock = DirLock(full, exclusive=True, what="backup run (schedule)")
    assert lock.try_acquire()  # held, though its holder could not be written
    assert not DirLock(full, exclusive=True, what="prune").try_acquire()
    lock.release()
    again = DirLock(full, exclusive=True, what="prune")
    assert again.try_acquire()
    again.release()


def test_state_round_trip_keeps_unknown_keys(tmp_path: Path) -> None:
    store = BackupStore(tmp_path / "b")
    assert store.read_state() == State()
    state = State(last_failure_at=1.5, last_error="boom", extra={"future": 1})
    store.write_state(state)
    assert store.read_state() == state


# --- archive header ------------------------------------------------------------------------


def _int(value: int, size: int = 4) -> bytes:
    return bytes([1 if value < 0 else 0]) + abs(value).to_bytes(size, "little")


def _str(text: str) -> bytes:
    return _int(len(text)) + text.encode()


def _header(version: tuple[int, int, int], compression: bytes) -> bytes:
    head = b"PGDMP" + bytes(version) + bytes([4, 8, 1]) + compression
    head += b"".join(_int(v) for v in (0, 0, 3, 1, 0, 126, 0))
    return head + _str("litellm") + _str("17.2 (Debian)") + _str("17.2 (Debian)") + b"rest"


def test_header_of_a_pg16_plus_archive() -> None:
    h = parse_header(_header((1, 16, 0), bytes([3])))
    assert (h.format, h.compression, h.database) == ("custom", "zstd", "litellm")
    assert h.server_version == h.pg_dump_version == "17.2 (Debian)"
    assert h.archive_version == "1.16.0"


def test_header_of_an_older_archive_and_garbage() -> None:
    h = parse_header(_header((1, 14, 0), _int(-1)))
    assert h.compression == "gzip" and h.database == "litellm"
    assert parse_header(_header((1, 14, 0), _int(0))).compression == "none"
    with pytest.raises(VerifyError, match="no PGDMP magic"):
        parse_header(b"-- PostgreSQL database dump\n")
    with pytest.raises(VerifyError, match="truncated"):
        parse_header(_header((1, 16, 0), bytes([3]))[:30])


# --- podman exec stream --------------------------------------------------------------------


def _reader(data: bytes, piece: int = 3):  # type: ignore[no-untyped-def]
    """read_exact over data, as a socket gives it: in small pieces."""
    pos = 0

    def read_exact(n: int) -> bytes:
        nonlocal pos
        out = data[pos : pos + n]
        pos += len(out)
        return out

    return read_exact


def test_demux_splits_stdout_and_stderr() -> None:
    stream = (
        podman_api.encode_frame(1, b"PGDMP\x00\x01")
        + podman_api.encode_frame(2, b"warn\n")
        + podman_api.encode_frame(1, b"")
        + podman_api.encode_frame(1, b"x" * 70000)
    )
    demux = podman_api.Demuxer(_reader(stream))
    frames = []
    while (frame := demux.frame()) is not None:
        frames.append(frame)
    assert frames == [(1, b"PGDMP\x00\x01"), (2, b"warn\n"), (1, b""), (1, b"x" * 70000)]
    assert struct.unpack(">BxxxI", podman_api.encode_frame(2, b"abc")[:8]) == (2, 3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (podman_api.encode_frame(1, b"abcdef")[:10], "inside a frame"),
        (b"\x01\x00\x00", "inside a frame header"),
        (b"\x07\x00\x00\x00\x00\x00\x00\x01x", "out of step"),
    ],
)
def test_demux_refuses_a_cut_or_garbled_stream(data: bytes, message: str) -> None:
    demux = podman_api.Demuxer(_reader(data))
    with pytest.raises(podman_api.PodmanApiError, match=message):
        demux.frame()


def test_exec_create_without_podman_says_so(tmp_path: Path) -> None:
    with pytest.raises(podman_api.PodmanApiError, match=r"podman\.socket"):
        podman_api.exec_create(tmp_path / "podman.sock", "postgres", ["pg_dump", "--version"])


# --- dependents order ----------------------------------------------------------------------


def test_stop_in_order_only_what_runs_and_start_in_reverse() -> None:
    running = {"open-webui.service": True, "litellm.service": True, "cron.service": False}
    units = ("open-webui.service", "cron.service", "litellm.service", "open-webui.service")
    stopped = stop_order(units, lambda u: running[u])
    assert stopped == ["open-webui.service", "litellm.service"]
    assert start_order(stopped) == ["litellm.service", "open-webui.service"]
    assert stop_order((), lambda u: True) == []


# --- schedule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "hours"),
    [
        ("0 3 * * *", 24),
        ("*/15 * * * *", 0.25),
        ("0 3 * * 1-5", 72),  # the weekend gap counts
        ("0 3 * * 0", 168),
        ("30 2 1 * *", 31 * 24),
        ("0 */6 * * *", 6),
    ],
)
def test_schedule_interval_is_the_longest_gap(cron: str, hours: float) -> None:
    config = BackupConfig(schedule=cron, timezone="UTC")
    start = datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC"))
    assert schedule_interval(cron_trigger(config), start) == hours * 3600


def test_schedule_in_a_time_zone_across_dst() -> None:
    config = BackupConfig(schedule="0 3 * * *", timezone="Europe/Berlin")
    trigger = cron_trigger(config)
    start = datetime(2026, 3, 20, tzinfo=ZoneInfo("Europe/Berlin"))
    fire = trigger.get_next_fire_time(None, start)
    assert fire.hour == 3 and fire.utcoffset().total_seconds() == 3600
    # The night of the spring change is 23 h; the longest gap stays a day.
    assert schedule_interval(trigger, start) == 24 * 3600


# --- config ----------------------------------------------------------------------------------


def test_backups_config_defaults_and_units() -> None:
    config = parse_config("backups:\n  min_free: 5GiB\n  misfire_grace: 12h\n  dependents: none\n")
    assert config.backups.min_free == 5 << 30 and config.backups.misfire_grace == 12 * 3600
    assert config.backups.dependent_units == ()
    assert BackupConfig().dependent_units == ("litellm.service",)
    # auto: on once the stack's PostgreSQL is applied (test_activation.py); daily at 03:00
    assert BackupConfig().enabled == "auto" and BackupConfig().schedule == "0 3 * * *"
    for text, value in (("true", True), ("false", False), ("auto", "auto")):
        assert parse_config(f"backups:\n  enabled: {text}\n").backups.enabled == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("schedule: '0 3 * *'", "backups.schedule: not a cron expression: '0 3 * *'"),
        ("schedule: '61 3 * * *'", "backups.schedule: not a cron expression"),
        ("timezone: Mars/Olympus", "backups.timezone: unknown time zone 'Mars/Olympus'"),
        ("dependents: litellm", "backups.dependents: not a list of systemd units"),
        ("compression: brotli", "backups.compression: must be one of 'auto', 'zstd'"),
        ("compression: gzip\n  compression_level: 12", "backups.compression_level: gzip takes"),
        ("timeout: 10s", "backups.timeout: must be at least 1m"),
        ("min_free: 5", "backups.min_free: a size needs a unit"),
        ("keep_dayly: 3", "did you mean 'backups.keep_daily'?"),
        ("database: 'drop table'", "backups.database: not a PostgreSQL name"),
        ("min_keep: 0", "backups.min_keep: must be between 1 and 10000"),
        ("source: docker", "backups.source: must be one of 'podman', 'local'"),
        ("enabled: 1", "backups.enabled: must be one of true, false, 'auto' (got 1)"),
        ("enabled: sometimes", "backups.enabled: must be one of true, false, 'auto'"),
    ],
)
def test_backups_config_mistakes_name_the_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"backups:\n  {text}\n")
    assert expected in info.value.render()
