"""The /status document (schema 1) and the one-line sd_notify STATUS, from snapshots only.

Schema 1, documented in README.md ("Status document"). Additive changes keep the number;
a removed or re-typed field bumps `schema_version`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import __version__
from .backup.status import degraded_reason as backups_degraded
from .backup.status import status_section as backups_section
from .snapshot import SourceSnapshot, SourceState, thaw
from .stack.backends import none_serving
from .views import (
    EMPTY_BACKENDS,
    EMPTY_HEAL,
    EMPTY_PROBES,
    EMPTY_STACK,
    BackendsView,
    HealView,
    ProbesView,
    StackView,
    to_json,
)

SCHEMA_VERSION = 1
# Without these the stack cannot run; the GPU is optional (CPU inference works).
REQUIRED_SOURCES = ("podman", "systemd")
# Snapshots of the agent's own work, shown in their sections (`services` merges the
# stack, probes and heal snapshots), not under `sources`.
OWN_SECTIONS = ("backups", "stack", "probes", "heal", "backends")
STATES = ("ok", "degraded", "failed")


@dataclass(frozen=True)
class AgentInfo:
    config_path: str
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    version: str = __version__
    pid: int = field(default_factory=os.getpid)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def overall(snapshots: Mapping[str, SourceSnapshot[Any]]) -> tuple[str, list[str]]:
    """`ok` when every required source is ok; `failed` when the agent gave up healing a
    service (a person must act); else `degraded`, with one reason each."""
    reasons = []
    gave_up = []
    heal_snap = snapshots.get("heal")
    heal = heal_snap.view(HealView, EMPTY_HEAL) if heal_snap is not None else None
    if heal is not None:
        for name, svc in heal.services.items():
            if svc.state == "gave-up":
                gave_up.append(name)
                reasons.append(f"{name}: {svc.reason}")
    for name in REQUIRED_SOURCES:
        snap = snapshots.get(name)
        if snap is None:
            reasons.append(f"{name}: not checked yet")
        elif snap.state is not SourceState.OK:
            reasons.append(f"{name}: {snap.reason or snap.state}")
    # Backups degrade the state when the last success is older than 1.5 x the interval.
    if backup_reason := backups_degraded(snapshots.get("backups")):
        reasons.append(f"backups: {backup_reason}")
    # The stack's services; when Podman or systemd is down their reason already says why.
    stack = snapshots.get("stack")
    if stack is not None and stack.state is SourceState.DEGRADED:
        reasons.append(f"services: {stack.reason}")
    probes = snapshots.get("probes")
    if probes is not None and probes.state is not SourceState.OK:
        reasons.append(f"probes: {probes.reason}")
    if heal is not None and heal.paused and heal.enabled:
        reasons.append(f"heal: {heal.paused}")
    # The front's remote Ollamas (docs/fleet.md): one down degrades, LiteLLM fails over;
    # none left (and no local Ollama) is an outage of every Ollama model.
    backends = snapshots.get("backends")
    if backends is not None and backends.state is not SourceState.OK:
        reasons.append(f"backends: {backends.reason}")
    if gave_up or (
        backends is not None and none_serving(backends.view(BackendsView, EMPTY_BACKENDS))
    ):
        return "failed", reasons
    return ("ok" if not reasons else "degraded"), reasons


def services_section(snapshots: Mapping[str, SourceSnapshot[Any]]) -> dict[str, Any]:
    """Per service: the stack watcher's view, its probe results and its heal state, and
    one `reason` line saying what is wrong (null when nothing is)."""
    stack, probes, heal = (snapshots.get(s) for s in ("stack", "probes", "heal"))
    views = stack.view(StackView, EMPTY_STACK).services if stack is not None else {}
    services: dict[str, Any] = to_json(views)
    probe_data = to_json(probes.view(ProbesView, EMPTY_PROBES).services) if probes else {}
    heal_data = to_json(heal.view(HealView, EMPTY_HEAL).services) if heal else {}
    for name, svc in services.items():
        probe = probe_data.get(name)
        healing = heal_data.get(name)
        svc["probe"] = probe
        svc["heal"] = healing
        reason = svc.get("last_error")
        if reason is None and probe is not None and not probe["ok"]:
            reason = probe["reason"]
        if healing is not None and healing["state"] in ("gave-up", "waiting-for-dependency"):
            reason = healing["reason"]
        elif reason is not None and healing is not None and healing["state"] == "backing-off":
            reason = f"{reason}; {healing['reason']}"
        svc["reason"] = reason
    return services


def status_document(
    info: AgentInfo,
    snapshots: Mapping[str, SourceSnapshot[Any]],
    now_monotonic: float | None = None,
) -> dict[str, Any]:
    now = time.monotonic() if now_monotonic is None else now_monotonic
    state, reasons = overall(snapshots)
    gpu = snapshots.get("gpu")
    return {
        "schema_version": SCHEMA_VERSION,
        "version": info.version,
        "pid": info.pid,
        "started_at": _iso(info.started_at),
        "uptime_seconds": round(now - info.started_monotonic, 3),
        "config_path": info.config_path,
        "state": state,
        "state_reasons": reasons,
        "sources": {
            name: {
                "state": str(snap.state),
                "reason": snap.reason,
                "checked_at": _iso(snap.taken_at),
                "age_seconds": round(snap.age(now), 3),
                "data": thaw(snap.data),
            }
            for name, snap in sorted(snapshots.items())
            if name not in OWN_SECTIONS  # not external systems: their own sections below
        },
        "services": services_section(snapshots),
        "gpus": thaw(gpu.data.get("gpus", ())) if gpu is not None else [],
        "backups": backups_section(snapshots.get("backups")),
        "heal": _heal_section(snapshots.get("heal")),
        "backends": _backends_section(snapshots.get("backends")),
    }


def _backends_section(snap: SourceSnapshot[Any] | None) -> dict[str, Any]:
    """Each remote Ollama by URL: up, its models, the declared ones it lacks, the latency
    of its last answer, and the reason (null when fine). Empty on a host without any."""
    if snap is None:
        return {}
    section: dict[str, Any] = to_json(snap.view(BackendsView, EMPTY_BACKENDS).backends)
    return section


def _heal_section(heal: SourceSnapshot[Any] | None) -> dict[str, Any] | None:
    """The healer as a whole: on or off, paused (and why), what it did lately."""
    if heal is None:
        return None
    data: dict[str, Any] = to_json(heal.view(HealView, EMPTY_HEAL))
    return {k: data.get(k) for k in ("enabled", "paused", "actions", "recent", "warnings")}


def summary(snapshots: Mapping[str, SourceSnapshot[Any]], listen: str) -> str:
    """One line for `systemctl status`: overall state, each source, where the API is."""
    state, _ = overall(snapshots)
    parts = ", ".join(f"{n} {s.state}" for n, s in sorted(snapshots.items()))
    return f"{state}: {parts}; API on {listen}"
