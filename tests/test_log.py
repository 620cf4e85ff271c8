"""Log rendering: JSON lines off a TTY, journal fields under systemd, level + component."""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile

import pytest
import structlog

from agent.log import journal_fields, resolve_format, setup_logging, under_journal


@pytest.fixture(autouse=True)
def _reset_logging() -> None:
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = []


def test_json_lines_have_level_and_component() -> None:
    out = io.StringIO()
    assert setup_logging("info", "auto", out) == "json"  # StringIO is no TTY
    structlog.get_logger(component="watch.podman").info("source state", state="unavailable")
    structlog.get_logger().warning("no component given")
    structlog.get_logger().debug("filtered out at info")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["source state", "no component given"]
    assert lines[0]["level"] == "info" and lines[0]["component"] == "watch.podman"
    assert lines[1]["level"] == "warning" and lines[1]["component"] == "agent"


def test_stdlib_loggers_are_routed_with_component() -> None:
    out = io.StringIO()
    setup_logging("info", "json", out)
    logging.getLogger("aiohttp.server").error("boom")
    line = json.loads(out.getvalue())
    assert line == {**line, "event": "boom", "level": "error", "component": "aiohttp.server"}


def test_console_format_is_readable() -> None:
    out = io.StringIO()
    setup_logging("debug", "console", out)
    structlog.get_logger(component="api").info("hello", port=9200)
    text = out.getvalue()
    assert "hello" in text and "component=api" in text and "port=9200" in text
    assert not text.lstrip().startswith("{")


def test_journal_fields_map_level_to_priority_and_fields_to_upper_case() -> None:
    fields = journal_fields(
        {"event": "restarting", "level": "warning", "component": "heal", "unit": "ollama.service",
         "attempt": 3, "extra-key": {"a": 1}}
    )  # fmt: skip
    assert fields == {
        "MESSAGE": "restarting",
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "aistack-agent",
        "COMPONENT": "heal",
        "UNIT": "ollama.service",
        "ATTEMPT": "3",
        "EXTRA_KEY": '{"a": 1}',
    }
    assert journal_fields({"event": "x", "level": "error"})["PRIORITY"] == "3"
    assert journal_fields({"event": "x", "level": "debug"})["PRIORITY"] == "7"


def test_journal_fields_never_override_message_or_priority() -> None:
    fields = journal_fields({"event": "e", "level": "info", "message": "m", "priority": 1})
    assert fields["MESSAGE"] == "e" and fields["PRIORITY"] == "6"
    assert fields["AISTACK_MESSAGE"] == "m" and fields["AISTACK_PRIORITY"] == "1"


def test_journal_detected_only_when_journal_stream_is_our_stderr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with tempfile.TemporaryFile("w") as stream, tempfile.TemporaryFile("w") as other:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert under_journal(stream)
        assert resolve_format("auto", stream) == "journal"
        # inherited by a child whose stderr was redirected: not the journal any more
        assert not under_journal(other)
        assert resolve_format("auto", other) == "json"
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not under_journal(io.StringIO())
