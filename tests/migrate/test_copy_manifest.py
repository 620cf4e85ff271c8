"""copy.py and manifest.py on real files: a copy killed half way continues, keeps owners,
modes, times and links, and the manifests see a lost blob, a lost row, a broken db."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.migrate import manifest
from agent.migrate.checks import open_files_under
from agent.migrate.copy import PART, copy_tree, tree_size


def _tree(root: Path) -> None:
    (root / "models/blobs").mkdir(parents=True)
    (root / "models/manifests/registry.ollama.ai/library/llama3.2").mkdir(parents=True)
    (root / "models/manifests/registry.ollama.ai/library/llama3.2/1b").write_text("{}")
    for i in range(5):
        (root / f"models/blobs/sha256-{i:064d}").write_bytes(bytes([i]) * (1000 * (i + 1)))
    (root / "id_ed25519").write_text("key")
    (root / "id_ed25519").chmod(0o600)
    (root / "link").symlink_to("models/blobs")
    os.utime(root / "models", ns=(1_000_000_000, 1_000_000_000))


def test_copy_keeps_modes_times_links_and_sizes(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _tree(src)
    stats = copy_tree(src, dst)
    assert stats.files == 7 and stats.skipped == 0
    assert tree_size(dst) == tree_size(src) == 15000 + 2 + 3
    assert (dst / "id_ed25519").stat().st_mode & 0o777 == 0o600
    assert os.readlink(dst / "link") == "models/blobs"
    assert (dst / "models").stat().st_mtime_ns == 1_000_000_000
    assert manifest.ollama(dst) == manifest.ollama(src)
    again = copy_tree(src, dst)
    assert again.files == 0 and again.skipped == 7  # nothing copied twice


def test_a_copy_interrupted_half_way_continues(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _tree(src)
    seen: list[int] = []

    def crash_after_two(n: int) -> None:
        seen.append(n)
        if len(seen) == 2:
            raise KeyboardInterrupt  # as a kill half way through

    with pytest.raises(KeyboardInterrupt):
        copy_tree(src, dst, crash_after_two)
    # a half-written file as a crash in mid-write leaves it
    blob = next((dst / "models/blobs").iterdir(), None)
    if blob is not None:
        (blob.parent / f".{blob.name}{PART}").write_bytes(b"half")
    stats = copy_tree(src, dst)
    assert stats.skipped == 2 and stats.files == 5
    assert manifest.ollama(dst) == manifest.ollama(src)
    # a file changed in the target since (size) is copied again
    target = dst / "models/blobs" / f"sha256-{0:064d}"
    target.write_bytes(b"x")
    assert copy_tree(src, dst).files == 1
    assert manifest.compare(manifest.ollama(src), manifest.ollama(dst), "ollama") == []


def test_ollama_manifest_names_models_and_catches_a_lost_or_short_blob(tmp_path: Path) -> None:
    _tree(tmp_path)
    before = manifest.ollama(tmp_path)
    assert before["models"] == ["registry.ollama.ai/library/llama3.2:1b"]
    assert len(before["blobs"]) == 5
    (tmp_path / f"models/blobs/sha256-{1:064d}").unlink()
    (tmp_path / f"models/blobs/sha256-{2:064d}").write_bytes(b"short")
    (tmp_path / "models/manifests/registry.ollama.ai/library/llama3.2/1b").unlink()
    found = manifest.compare(before, manifest.ollama(tmp_path), "ollama")
    assert any("models missing after: registry.ollama.ai/library/llama3.2:1b" in f for f in found)
    assert any("3000 bytes before, 5 after" in f for f in found)
    assert any("2000 bytes before, none after" in f for f in found)


def test_webui_manifest_counts_rows_and_checks_integrity(tmp_path: Path) -> None:
    db = tmp_path / "webui.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        'CREATE TABLE user (id TEXT); CREATE TABLE "chat x" (id TEXT);'
        "INSERT INTO user VALUES ('a'), ('b'); INSERT INTO \"chat x\" VALUES ('c');"
    )
    conn.commit()
    conn.close()
    before = manifest.webui(tmp_path)
    assert before == {"integrity": "ok", "tables": {"chat x": 1, "user": 2}}
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM user WHERE id = 'a'")
    conn.commit()
    conn.close()
    found = manifest.compare(before, manifest.webui(tmp_path), "open_webui")
    assert found == ["open_webui: table user: 2 rows before, 1 rows after"]
    # a running Open WebUI may add rows: allowed with grown=True, a lost one never
    assert manifest.compare(before, manifest.webui(tmp_path), "open_webui", grown=True)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO user VALUES ('x'), ('y')")
    conn.commit()
    conn.close()
    assert manifest.compare(before, manifest.webui(tmp_path), "open_webui", grown=True) == []
    assert manifest.compare(before, manifest.webui(tmp_path), "open_webui") != []
    db.unlink()
    assert manifest.compare(before, manifest.webui(tmp_path), "open_webui") == [
        "open_webui: the database is missing after"
    ]
    assert manifest.webui(tmp_path) == {"database": "absent"}


def test_a_process_holding_a_file_of_the_data_is_found(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "data" / "webui.db").write_text("x")
    assert open_files_under([tmp_path / "data"]) == []
    script = "import sys; f = open(sys.argv[1]); print('open', flush=True); sys.stdin.read()"
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "data" / "webui.db")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        found = open_files_under([tmp_path / "data"])
        assert len(found) == 1 and f"pid {holder.pid}" in found[0] and "webui.db" in found[0]
        assert open_files_under([tmp_path / "other"]) == []
    finally:
        holder.kill()
        holder.wait()
