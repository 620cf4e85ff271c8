"""Logging: structlog events with `level` and `component`, rendered for where they go.

- under systemd (stderr is the journal stream): straight into the journal through
  pystemd.journal, with structured fields and the right PRIORITY;
- stderr not a TTY: one JSON object per line;
- a TTY: readable console lines.
Library loggers (aiohttp, asyncio) are routed through the same pipeline.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}  # fmt: skip
# syslog priorities as journald expects them in PRIORITY=
PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}
SYSLOG_IDENTIFIER = "aistack-agent"
_FIELD_OK = re.compile(r"[^A-Z0-9_]")


def under_journal(stream: TextIO = sys.stderr) -> bool:
    """True when stderr is connected to journald (systemd sets JOURNAL_STREAM=dev:ino)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not dev or not ino:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return f"{st.st_dev}:{st.st_ino}" == value


def resolve_format(fmt: str, stream: TextIO = sys.stderr) -> str:
    if fmt != "auto":
        return fmt
    if under_journal(stream):
        return "journal"
    return "console" if stream.isatty() else "json"


def journal_fields(event_dict: MutableMapping[str, Any]) -> dict[str, str]:
    """Map one event to journal fields: MESSAGE, PRIORITY, and the rest upper-cased."""
    event = dict(event_dict)
    level = str(event.pop("level", "info"))
    fields = {
        "MESSAGE": str(event.pop("event", "")),
        "PRIORITY": str(PRIORITY.get(level, 6)),
        "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
    }
    for key, value in event.items():
        name = _FIELD_OK.sub("_", key.upper()).lstrip("_") or "FIELD"
        if name in fields or name in ("PRIORITY", "MESSAGE"):
            name = f"AISTACK_{name}"
        fields[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return fields


def _to_journal(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
    from pystemd.journal import sendv

    sendv(**journal_fields(event_dict))
    raise structlog.DropEvent


def _ensure_component(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
    event_dict.setdefault("component", "agent")
    return event_dict


# Loggers whose tracebacks may quote what a client sent (aiohttp's request parser puts
# the offending header, a token among them, in its exception): only the exception's type
# reaches the log. Clients' input never does.
CLIENT_INPUT_LOGGERS = ("aiohttp.server", "aiohttp.access", "aiohttp.web")


class _StdlibBridge(logging.Handler):
    """Send records of libraries that use stdlib logging through structlog."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = structlog.get_logger(component=record.name)
        kwargs: dict[str, Any] = {}
        if record.name.startswith(CLIENT_INPUT_LOGGERS):
            if record.exc_info and record.exc_info[0] is not None:
                kwargs["error"] = record.exc_info[0].__name__
            logger.log(record.levelno, str(record.msg).split("%", 1)[0].strip(), **kwargs)
            return
        if record.exc_info:
            kwargs["exc_info"] = record.exc_info
        logger.log(record.levelno, record.getMessage(), **kwargs)


def setup_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> str:
    """Configure structlog (again, on reload); returns the format actually used."""
    out = stream or sys.stderr
    mode = resolve_format(fmt, out)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _ensure_component,
        structlog.processors.format_exc_info,
    ]
    if mode == "journal":
        processors.append(_to_journal)
    elif mode == "json":
        processors += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    else:
        processors += [
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=out.isatty()),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers[:] = [_StdlibBridge()]
    root.setLevel(LEVELS[level])
    return mode
