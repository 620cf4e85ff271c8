"""The heal state file: round trip, atomic save, and tolerance of a bad file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.heal.policy import ServiceHealState
from agent.heal.state import VERSION, load, save

STATES = {
    "postgres": ServiceHealState(),
    "litellm": ServiceHealState(
        status="waiting-for-dependency",
        waiting_for=("postgres",),
        restarts=(100.0, 105.5),
        next_attempt=125.5,
        reason="litellm.service failed (exit-code); not restarting while ...",
        unhealthy_since=90.0,
    ),
    "ollama": ServiceHealState(status="gave-up", restarts=(1.0, 2.0, 3.0, 4.0, 5.0)),
}


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "heal.json"
    save(path, STATES)
    loaded = load(path)
    assert loaded.states == STATES
    assert loaded.warnings == ()
    assert json.loads(path.read_text())["version"] == VERSION


def test_missing_file_is_a_first_start(tmp_path: Path) -> None:
    loaded = load(tmp_path / "absent.json")
    assert loaded.states == {} and loaded.warnings == ()


def test_save_is_atomic_a_failed_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "heal.json"
    save(path, STATES)
    before = path.read_bytes()

    def boom(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save(path, {"postgres": ServiceHealState(status="gave-up")})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heal.json"]  # no temp file left


def test_save_replaces_the_previous_state(tmp_path: Path) -> None:
    path = tmp_path / "heal.json"
    save(path, STATES)
    save(path, {"postgres": ServiceHealState(status="backing-off", next_attempt=9.0)})
    assert load(path).states == {
        "postgres": ServiceHealState(status="backing-off", next_attempt=9.0)
    }


@pytest.mark.parametrize(
    "text",
    [
        b"{not json",
        b"",
        b"[]",
        b'{"version": 99, "services": {}}',
        b'{"version": 1}',
        b'{"version": 1, "services": []}',
        b"\xff\xfe\x00garbage",
    ],
)
def test_corrupt_file_fresh_state_with_a_warning(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "heal.json"
    path.write_bytes(text)
    loaded = load(path)
    assert loaded.states == {}
    [warning] = loaded.warnings
    assert str(path) in warning and "starting fresh" in warning


def test_one_corrupt_service_does_not_lose_the_others(tmp_path: Path) -> None:
    path = tmp_path / "heal.json"
    save(path, STATES)
    doc = json.loads(path.read_text())
    doc["services"]["ollama"]["restarts"] = ["yesterday"]
    doc["services"]["postgres"]["status"] = "sleeping"
    path.write_text(json.dumps(doc))
    loaded = load(path)
    assert loaded.states == {"litellm": STATES["litellm"]}
    assert len(loaded.warnings) == 2
    assert any("ollama" in w and "restart time" in w for w in loaded.warnings)
    assert any("postgres" in w and "sleeping" in w for w in loaded.warnings)


def test_unknown_service_names_ignored(tmp_path: Path) -> None:
    path = tmp_path / "heal.json"
    save(path, {**STATES, "removed-service": ServiceHealState(status="gave-up")})
    loaded = load(path)
    assert "removed-service" not in loaded.states
    assert loaded.states == STATES
    assert loaded.warnings == ()
    assert load(path, services=["ollama"]).states == {"ollama": STATES["ollama"]}


def test_restarts_loaded_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "heal.json"
    path.write_text(
        json.dumps(
            {"version": VERSION, "services": {"ollama": {"status": "ok", "restarts": [5, 1, 3]}}}
        )
    )
    assert load(path).states["ollama"].restarts == (1.0, 3.0, 5.0)
