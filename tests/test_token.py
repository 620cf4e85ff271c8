"""The API token file: generated 0600, tightened when others can read it, and never
followed through a symlink nor taken from anything but a regular file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.token import TokenError, ensure_token, read_token, token_matches


def test_generated_once_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "api-token"
    token = ensure_token(path)
    assert len(token) >= 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token(path) == token == read_token(path)


def test_a_file_others_can_read_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "api-token"
    path.write_text("x" * 32 + "\n")
    path.chmod(0o644)
    assert ensure_token(path) == "x" * 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_symlink_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "someone-elses-file"
    target.write_text("y" * 32 + "\n")
    target.chmod(0o644)
    link = tmp_path / "api-token"
    link.symlink_to(target)
    with pytest.raises(TokenError, match="symlink; refusing to follow it"):
        ensure_token(link)
    with pytest.raises(TokenError, match="symlink"):
        read_token(link)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not chmodded through the link


def test_a_directory_is_refused_and_not_chmodded(tmp_path: Path) -> None:
    directory = tmp_path / "api-token"
    directory.mkdir(mode=0o755)
    with pytest.raises(TokenError, match="not a regular file"):
        ensure_token(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "api-token"
    os.mkfifo(fifo)
    with pytest.raises(TokenError, match="not a regular file"):
        ensure_token(fifo)


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Basic abc", "Bearer \udcff\udcfe", "Bearer tokén", "Bearer wrong"],
)
def test_anything_but_the_token_does_not_match_and_never_raises(header: str | None) -> None:
    assert not token_matches("t" * 32, header)


def test_the_token_matches() -> None:
    assert token_matches("t" * 32, "Bearer " + "t" * 32)
    assert token_matches("t" * 32, "bearer  " + "t" * 32 + " ")
