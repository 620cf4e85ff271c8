"""Running the checks (each in its own thread, with a deadline) and printing findings."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from typing import Any

from .checks_backends import check_backends
from .checks_host import check_agent, check_disk, check_network, check_podman
from .checks_resources import check_gpu, check_memory
from .checks_services import (
    check_postgres,
    check_services,
    check_webui_litellm,
    check_webui_ollama,
)
from .context import (
    CHECK_LIMIT_S,
    EX_OK,
    EX_PROBLEMS,
    FIX_PODMAN_FIRST,
    OK,
    PROBLEM,
    PROGRESS_AFTER_S,
    WARNING,
    Context,
    Finding,
    PodmanDown,
    not_checked,
    problem,
    warn,
)

Check = Callable[[Context], list[Finding]]
CHECKS: tuple[tuple[str, Check], ...] = (
    ("agent", check_agent),
    ("podman", check_podman),  # before the checks that need Podman: it records why not
    ("network", check_network),
    ("services", check_services),
    ("webui-ollama", check_webui_ollama),
    ("webui-litellm", check_webui_litellm),
    ("postgres", check_postgres),
    ("backends", check_backends),
    ("memory", check_memory),
    ("gpu", check_gpu),
    ("disk", check_disk),
)


# --------------------------------------------------------------------------- running


def _run_one(
    name: str, check: Check, ctx: Context, limit: float, progress: Callable[[str], None]
) -> list[Finding]:
    """One check in a daemon thread: past `limit` it is left behind, and reported."""
    result: list[Finding] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.extend(check(ctx))
        except PodmanDown as exc:
            result.append(not_checked(name, str(exc), FIX_PODMAN_FIRST))
        except BaseException as exc:  # a failing check is a finding, never the end
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"doctor-{name}", daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(min(PROGRESS_AFTER_S, limit))
    if thread.is_alive() and limit > PROGRESS_AFTER_S:
        progress(f"aistack doctor: still checking {name} ...")
    thread.join(max(0.0, limit - (time.monotonic() - started)))
    if thread.is_alive():
        if name == "podman":
            ctx.podman_error = f"the Podman API at {ctx.socket} gave no answer in {limit:g} s"
        return [problem(name, f"the check got no answer within {limit:g} s (something it asks "
                        "hangs)", "systemctl status podman.socket dbus.socket aistack-agent; "
                        "journalctl -n 50")]  # fmt: skip
    if failure:
        why = f"the check failed: {type(failure[0]).__name__}: {failure[0]}"
        return [warn(name, why, "run doctor again; if it persists, report it with this line")]
    return result


def run_checks(
    ctx: Context,
    checks: Iterable[tuple[str, Check]] = CHECKS,
    limit: float = CHECK_LIMIT_S,
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> list[Finding]:
    """Every check in order, each bounded by `limit` seconds."""
    findings: list[Finding] = []
    for name, check in checks:
        findings.extend(_run_one(name, check, ctx, limit, progress))
    return findings


# --------------------------------------------------------------------------- output


def counts(findings: Sequence[Finding]) -> tuple[int, int]:
    """(problems, warnings)."""
    severities = [f.severity for f in findings]
    return severities.count(PROBLEM), severities.count(WARNING)


def exit_code(findings: Sequence[Finding]) -> int:
    """1 when anything is a problem; warnings alone are not a failure."""
    return EX_PROBLEMS if counts(findings)[0] else EX_OK


def to_json(findings: Sequence[Finding]) -> dict[str, Any]:
    problems, warnings = counts(findings)
    return {"findings": [asdict(f) for f in findings], "problems": problems, "warnings": warnings}


MARKERS: dict[str, str] = {OK: "✓", WARNING: "!", PROBLEM: "✗"}
ASCII_MARKERS: dict[str, str] = {OK: "+", WARNING: "!", PROBLEM: "x"}


def render(findings: Sequence[Finding], encoding: str | None = "utf-8") -> str:
    """One line per finding (marker, check, summary), its fix indented under each warning
    and problem, and the count at the end. ASCII markers where the output cannot take ✓."""
    try:
        "✓✗".encode(encoding or "ascii")
        markers = MARKERS
    except (UnicodeEncodeError, LookupError):
        markers = ASCII_MARKERS
    width = max((len(f.check) for f in findings), default=0)
    lines = []
    for f in findings:
        lines.append(f"{markers[f.severity]} {f.check.ljust(width)}  {f.summary}")
        if f.fix and f.severity != OK:
            lines.append(f"  {' ' * width}  fix: {f.fix}")
    problems, warnings = counts(findings)
    verdict = f"{problems} problem{'s' * (problems != 1)}" if problems else "no problems"
    return "\n".join([*lines, "", f"{verdict}, {warnings} warning{'s' * (warnings != 1)}"])
