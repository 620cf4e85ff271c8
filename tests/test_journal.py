"""agent/journal.py: a unit's last words, picked, redacted and bounded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agent import journal

LITELLM_BAD_CONFIG = """\
INFO:     Started server process [1]
Traceback (most recent call last):
  File "/opt/litellm/lib/python3.11/site-packages/litellm/proxy/proxy_server.py", line 2, in x
    config = yaml.safe_load(f)
             ^^^^^^^^^^^^^^^^^
yaml.parser.ParserError: while parsing a flow sequence
  in "/app/config.yaml", line 1, column 13
expected ',' or ']', but got '<stream end>'
"""


def test_the_last_error_like_line_is_picked_not_a_traceback_frame() -> None:
    words = journal.last_words(LITELLM_BAD_CONFIG.splitlines())
    assert words == "yaml.parser.ParserError: while parsing a flow sequence"


OPEN_WEBUI_READ_ONLY = """\
│ ❱  630 │   │   return self.loaded_dbapi.connect(*cargs, **cparams)  # type:  │
│        ignore[no-any-return]  # NOQA: E501                                   │
╰──────────────────────────────────────────────────────────────────────────────╯
OperationalError: (sqlite3.OperationalError) unable to open database file
(Background on this error at: https://sqlalche.me/e/20/e3q8)
"""


def test_the_exception_a_program_ended_with_wins_over_later_error_words() -> None:
    """Open WebUI's rich traceback: boxes, then the exception, then a link that also
    says "error"."""
    words = journal.last_words(OPEN_WEBUI_READ_ONLY.splitlines())
    assert words == "OperationalError: (sqlite3.OperationalError) unable to open database file"


def test_without_an_error_line_the_last_line_and_nothing_for_no_output() -> None:
    assert journal.last_words(["starting", "listening on :8080", "  "]) == "listening on :8080"
    assert journal.last_words([]) is None


def test_secrets_never_come_out() -> None:
    line = (
        "Error: connect postgresql://llm:s3cretpass@postgres:5432/x with Bearer abc.def "
        "key sk-1234567890abcdef and the master key m4sterKEYvalue!"
    )
    words = journal.last_words([line], secrets=["m4sterKEYvalue!", "short"])
    assert words is not None
    for secret in ("s3cretpass", "abc.def", "sk-1234567890abcdef", "m4sterKEYvalue!"):
        assert secret not in words, words
    assert "postgresql://llm:<redacted>@postgres" in words


def test_long_lines_and_control_characters_are_cut() -> None:
    words = journal.last_words(["error: " + "x" * 5000 + "\x1b[31m"])
    assert words is not None and len(words) == journal.MAX_LINE and words.endswith("…")
    assert "\x1b" not in words


@pytest.mark.skipif(shutil.which("journalctl") is None, reason="needs journalctl")
def test_a_unit_with_no_output_has_no_words() -> None:
    """The real journalctl (this host has no running journal: no entries, not an error)."""
    assert journal.unit_output("aistack-test-no-such-unit.service") == []


def test_a_hung_journalctl_costs_its_timeout_and_no_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: a journalctl that never answers (a journal on a stuck disk)."""
    fake = tmp_path / "journalctl"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(journal.JournalError, match=r"did not answer within 0\.5 s"):
        journal.unit_output("x.service", timeout=0.5)


def test_no_journalctl_is_a_journal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(journal.JournalError, match="not installed"):
        journal.unit_output("x.service")


def test_while_starting_only_an_error_is_words() -> None:
    """A start that drags on: its ordinary lines say nothing; an error line does."""
    assert journal.last_words(["loading models", "INFO: waiting"], errors_only=True) is None
    starting = ["INFO: waiting", "sqlite3.OperationalError: unable to open database file"]
    assert journal.last_words(starting, errors_only=True) == starting[1]
