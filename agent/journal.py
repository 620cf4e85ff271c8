"""The systemd journal, the one gateway to it: a unit's last words, the line of its own
output that says why its service stopped ("yaml.parser.ParserError: ...", "attempt to
write a readonly database"), for the reason `/status` gives.

Read with journalctl, bounded in time and size: it is on every systemd host, needs no
capability for the system journal as root (the agent's unit as shipped), and a child
process that overruns is killed, so the journal can never hang the agent. Only the
service's own output is read, not systemd's lines about the unit nor conmon's.
Secrets never leave here: URL passwords, bearer tokens and the given secret values are
redacted before a line is returned.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable

TIMEOUT_S = 3.0
MAX_BYTES = 64 * 1024
MAX_LINE = 240
_ERRORISH = re.compile(
    r"error|exception|fatal|panic|denied|read-only|readonly|no such file|permission|"
    r"cannot|can't|could not|invalid|failed|refused|not found|traceback",
    re.IGNORECASE,
)
# Traceback frames, carets, and the boxes of rich's tracebacks (Open WebUI prints those)
_NOISE = re.compile(r"^\s*(File \"|\^+\s*$|~+\s*$|at |\||[│╭╰─])")
# What an exception says when it ends a program: "yaml.parser.ParserError: ...",
# "OperationalError: (sqlite3.OperationalError) unable to open database file"
_RAISED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Failure)\b:?")
_URL_PASSWORD = re.compile(r"(://[^/@\s:]+:)[^@\s/]+@")
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
_API_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")


class JournalError(Exception):
    """journalctl could not be run or did not answer in time."""


def unit_output(
    unit: str, invocation: str = "", lines: int = 50, timeout: float = TIMEOUT_S
) -> list[str]:
    """The last `lines` lines the unit's service wrote: its container's output (quadlet
    sets SyslogIdentifier=%N, Podman's journald log driver tags it with the container's
    name: both the unit's stem here), not conmon's or Podman's own warnings."""
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        raise JournalError("journalctl is not installed")
    name = unit.removesuffix(".service")
    argv = [journalctl, "--no-pager", "--quiet", "--output=cat", f"--lines={lines}",
            f"_SYSTEMD_UNIT={unit}", f"SYSLOG_IDENTIFIER={name}"]  # fmt: skip
    if invocation:  # only this run's lines (given: the unit's InvocationID)
        argv.append(f"_SYSTEMD_INVOCATION_ID={invocation}")
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise JournalError(f"journalctl did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise JournalError(f"cannot run journalctl: {exc.strerror}") from None
    if done.returncode != 0:
        raise JournalError(f"journalctl exited {done.returncode}")
    return done.stdout[-MAX_BYTES:].decode(errors="replace").splitlines()


def last_words(
    lines: Iterable[str], secrets: Iterable[str] = (), errors_only: bool = False
) -> str | None:
    """The exception a program ended with, else the last line that reads like an error,
    else (unless errors_only) the last line; redacted and cut."""
    kept = [line.strip() for line in lines if line.strip() and not _NOISE.match(line)]
    line = next((x for x in reversed(kept) if _RAISED.match(x)), None)
    if line is None:
        line = next((x for x in reversed(kept) if _ERRORISH.search(x)), None)
    if line is None and not errors_only and kept:
        line = kept[-1]
    return redact(line, secrets) if line is not None else None


def redact(line: str, secrets: Iterable[str] = ()) -> str:
    for value in secrets:
        if len(value) >= 8:
            line = line.replace(value, "<redacted>")
    line = _URL_PASSWORD.sub(r"\1<redacted>@", line)
    line = _BEARER.sub(r"\1<redacted>", line)
    line = _API_KEY.sub("<redacted>", line)
    line = " ".join("".join(c if c.isprintable() else " " for c in line).split())
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"
