"""Typed views of the agent's own snapshots: what the stack, probes and heal sources publish.

Readers (the healer, /status, the metrics) read these fields and enums; JSON exists only
at the edge (`to_json`, used by status.py and the API). Frozen, and built only of
immutable parts, so a snapshot can be shared by every reader without copies.

The sources of external systems (podman, systemd, gpu, backups) still publish frozen
JSON-like mappings: their data is shown as it is under `sources` in /status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

HealState = Literal["ok", "backing-off", "gave-up", "waiting-for-dependency", "disabled"]


def _frozen_map() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class EventView:
    """The last container event of a service (libpod's event stream)."""

    action: str
    at: str | None
    exit_code: int | None
    health: str | None


@dataclass(frozen=True)
class ServiceView:
    """One service as systemd and Podman see it (the stack source)."""

    unit: str
    active_state: str
    sub_state: str = ""
    result: str = ""
    installed: bool = True  # its unit exists (LoadState is not not-found)
    pending_job: bool = False  # systemd has a job queued for it: it acts
    health: str = "unknown"  # healthy | unhealthy | starting | unknown (no container/check)
    container_state: str = "unknown"  # running, exited, ..., absent, unknown
    oom_killed: bool | None = None
    container_id: str | None = None
    pid: int | None = None  # the container's main process, as the host sees it (running)
    image: str | None = None
    image_digest: str | None = None
    started_at: str | None = None
    restarts: int = 0  # systemd's NRestarts
    memory_bytes: int | None = None
    cpu_seconds: float | None = None
    ports: tuple[str, ...] = ()
    last_error: str | None = None  # the one line for a person; decisions read the fields
    last_transition_at: str | None = None
    last_event: EventView | None = None
    # What the catalogue says of it (agent/stack/extra.py: core and stack.extra members)
    container: str = ""  # the container's name (an extra's may differ from the unit's)
    project: str | None = None  # the compose project of an extra service; None: core
    oneshot: bool = False  # a one-shot job: done once it ran to completion
    requires: tuple[str, ...] = ()  # services it needs (Requires=): the healer waits


@dataclass(frozen=True)
class StackView:
    services: Mapping[str, ServiceView] = field(default_factory=_frozen_map)


@dataclass(frozen=True)
class ProbeView:
    """The agent's probes of one service, and its failures in a row."""

    ok: bool
    reason: str | None = None
    container_id: str | None = None  # the healer ignores a count about another container
    failures: int = 0
    counted: bool = True  # False while the service settles: a failure then does not count
    # Its hard dependencies that were down at some point of the round that probed it (not
    # settled at its start or at its end, or in another container by its end): a miss
    # then may be theirs, and the healer waits for them instead of restarting this one.
    deps_down: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    checks: Mapping[str, str] = field(default_factory=_frozen_map)


@dataclass(frozen=True)
class ProbesView:
    services: Mapping[str, ProbeView] = field(default_factory=_frozen_map)


@dataclass(frozen=True)
class HealServiceView:
    state: HealState
    reason: str | None = None
    waiting_for: tuple[str, ...] = ()
    restarts: int = 0  # the agent's, within the give-up window
    last_restart_at: str | None = None
    next_attempt_at: str | None = None
    restarting: bool = False


@dataclass(frozen=True)
class ActionCount:
    service: str
    action: str
    reason: str  # the low-cardinality code
    count: int


@dataclass(frozen=True)
class ActionRecord:
    service: str
    action: str
    by: str  # healer | person | gpu
    reason_code: str
    reason: str
    at: str | None
    result: str | None


@dataclass(frozen=True)
class HealView:
    enabled: bool = True
    paused: str | None = None  # why the healer does not act now; None when it can
    services: Mapping[str, HealServiceView] = field(default_factory=_frozen_map)
    actions: tuple[ActionCount, ...] = ()
    recent: tuple[ActionRecord, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class BackendView:
    """One remote Ollama of stack.litellm.ollama_backends, as the front's agent last saw it."""

    up: bool
    models: tuple[str, ...] = ()  # installed (GET /api/tags)
    missing: tuple[str, ...] = ()  # of stack.ollama.models; only known while up
    latency_seconds: float | None = None  # the /api/tags round trip; None when down
    reason: str | None = None  # why it is down or incomplete, for a person; None when fine


@dataclass(frozen=True)
class BackendsView:
    """The backends source: each remote Ollama by URL, and whether the front has a local
    Ollama as a deployment too (then no remote backend being up is not an outage)."""

    backends: Mapping[str, BackendView] = field(default_factory=_frozen_map)
    local: bool = False


EMPTY_STACK, EMPTY_PROBES, EMPTY_HEAL = StackView(), ProbesView(), HealView()
EMPTY_BACKENDS = BackendsView()


def to_json(view: Any) -> Any:
    """A view (or anything made of views, mappings and tuples) as JSON-ready data."""
    if dataclasses.is_dataclass(view) and not isinstance(view, type):
        return {f.name: to_json(getattr(view, f.name)) for f in dataclasses.fields(view)}
    if isinstance(view, Mapping):
        return {str(k): to_json(v) for k, v in view.items()}
    if isinstance(view, list | tuple):
        return [to_json(v) for v in view]
    return view


def freeze_map(items: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy, for a view's mapping fields."""
    return MappingProxyType(dict(items))
