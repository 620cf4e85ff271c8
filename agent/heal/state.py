"""The healing policy's memory on disk, so an agent restart neither resets the restart
count (a flapping service would get fresh restarts after each agent crash) nor skips a
backoff (restarting at once what was just restarted).

One JSON file, written atomically (agent/atomic.py). A missing file is a first start; an
unreadable or corrupt one must not stop the agent: it starts fresh and says so, which
at worst grants a failing service one more round of restarts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

import structlog

from ..atomic import write_atomic
from .policy import SERVICE_ORDER, ServiceHealState, Status

DEFAULT_STATE_PATH = Path("/var/lib/aistack/heal-state.json")
VERSION = 1
log = structlog.get_logger(component="heal.state")


@dataclass(frozen=True)
class Loaded:
    states: dict[str, ServiceHealState]
    warnings: tuple[str, ...]  # what was ignored or discarded, for a person


def save(path: Path, states: Mapping[str, ServiceHealState]) -> None:
    doc = {
        "version": VERSION,
        "services": {
            name: {**asdict(st), "waiting_for": list(st.waiting_for), "restarts": list(st.restarts)}
            for name, st in sorted(states.items())
        },
    }
    write_atomic(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def load(path: Path, services: Iterable[str] = SERVICE_ORDER) -> Loaded:
    """The saved state of the known `services`; fresh state, with a warning, for what
    cannot be read. Unknown service names (a service since removed) are dropped."""
    known = set(services)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Loaded({}, ())
    except OSError as exc:
        return _fresh(f"cannot read the heal state {path} ({exc}); starting fresh")
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise ValueError(f"not a version {VERSION} heal state")
        entries = doc["services"]
        if not isinstance(entries, dict):
            raise ValueError("services is not a mapping")
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        return _fresh(f"heal state {path} is corrupt ({exc}); starting fresh")
    states: dict[str, ServiceHealState] = {}
    warnings: list[str] = []
    for name, entry in entries.items():
        if name not in known:
            continue
        try:
            states[name] = _state(entry)
        except (ValueError, TypeError, KeyError) as exc:
            warnings.append(f"heal state of {name} in {path} is corrupt ({exc}); starting fresh")
    for warning in warnings:
        log.warning(warning)
    return Loaded(states, tuple(warnings))


def _fresh(warning: str) -> Loaded:
    log.warning(warning)
    return Loaded({}, (warning,))


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} is not a number: {value!r}")
    return float(value)


def _state(entry: Any) -> ServiceHealState:
    if not isinstance(entry, dict):
        raise ValueError("not a mapping")
    status = entry["status"]
    if status not in get_args(Status):
        raise ValueError(f"unknown status {status!r}")
    waiting_for = entry.get("waiting_for", [])
    if not isinstance(waiting_for, list) or not all(isinstance(d, str) for d in waiting_for):
        raise ValueError("waiting_for is not a list of names")
    restarts = entry.get("restarts", [])
    if not isinstance(restarts, list):
        raise ValueError("restarts is not a list")
    since = entry.get("unhealthy_since")
    return ServiceHealState(
        status=status,
        waiting_for=tuple(waiting_for),
        restarts=tuple(sorted(_number(t, "a restart time") for t in restarts)),
        next_attempt=_number(entry.get("next_attempt", 0.0), "next_attempt"),
        reason=str(entry.get("reason", "")),
        unhealthy_since=None if since is None else _number(since, "unhealthy_since"),
    )
