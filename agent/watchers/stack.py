"""The stack's services as systemd and Podman see them: one snapshot, `services` in /status.

Per enabled service: the unit's ActiveState/SubState/Result/NRestarts (D-Bus) and the
container's id, state, image, health and start time (the Podman API). Health is the
container's healthcheck status (`healthy`, `unhealthy`, `starting`), `unknown` without
a container.

Event-driven: the libpod event stream (a container died, started, changed health) and
systemd's PropertiesChanged/JobRemoved signals wake the watcher at once, so /status
follows a kill -9 within milliseconds; the periodic poll (watch.interval) is the
reconcile that catches whatever a dropped stream missed. Container stats (a slow call)
are sampled on the periodic poll only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import journal, podman_api, systemd_ctl
from ..config import AgentConfig, StackConfig, WatchConfig
from ..snapshot import SnapshotStore, SourceState
from ..stack import secrets
from ..stack.model import enabled, enabled_names
from ..views import EventView, ServiceView, StackView, freeze_map
from .base import SourceUnavailable, Watcher
from .events import ContainerEvent

# What a transition is: these fields changing (not memory, CPU or the restart count).
_TRANSITION_FIELDS = ("active_state", "sub_state", "health", "container_state", "container_id")


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _cpu_seconds(stats: dict[str, Any] | None) -> float | None:
    nano = (stats or {}).get("CPUNano")
    return round(nano / 1e9, 3) if isinstance(nano, int | float) else None


STARTING_REREAD_S = 10.0


class LastWords:
    """Why a service stopped or cannot start, in its own words: the last error-like line
    its current (or last) run wrote to the journal. Read once per stop (a unit's state,
    run and restart count), and at most every STARTING_REREAD_S while a start drags on
    (an error there is news; a start's ordinary lines are not words)."""

    def __init__(self, monotonic: Any = time.monotonic) -> None:
        self._seen: dict[str, tuple[tuple[Any, ...], str | None]] = {}
        self._monotonic = monotonic

    def __call__(self, st: systemd_ctl.UnitState) -> str | None:
        starting = st.active_state == "activating"
        key: tuple[Any, ...] = (st.active_state, st.sub_state, st.result, st.n_restarts,
                                st.invocation_id)  # fmt: skip
        if starting:
            key += (int(self._monotonic() // STARTING_REREAD_S),)
        cached = self._seen.get(st.name)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            lines = journal.unit_output(st.name, st.invocation_id)
            words = journal.last_words(lines, secrets.known_values(), errors_only=starting)
        except journal.JournalError:
            words = None
        self._seen[st.name] = (key, words)
        return words


def read_services(
    stack: StackConfig,
    socket: Path,
    cached: Mapping[str, Any] | None = None,
    last_words: LastWords | None = None,
) -> tuple[dict[str, ServiceView], bool]:
    """Every enabled service now, and whether a stats sample was taken: `cached` (a
    recent sample) is reused when it covers every running service. With `last_words`, a
    service that exited or failed says why in its own words."""
    specs = enabled(stack)
    states = systemd_ctl.unit_states(s.unit for s in specs)
    running = [s.name for s in specs if states[s.unit].active_state == "active"]
    podman_ok = True
    sampled = cached is None or any(name not in cached for name in running)
    stats: Mapping[str, Any] = cached or {}
    if sampled:
        try:
            stats = podman_api.container_stats(socket, running)
        except podman_api.PodmanApiError:
            stats = {}
    services: dict[str, ServiceView] = {}
    for spec in specs:
        unit = spec.unit
        st = states[unit]
        container = None
        if podman_ok:
            try:
                container = podman_api.inspect_container(socket, spec.name)
            except podman_api.PodmanApiError:
                podman_ok = False  # the socket is down: the other inspects would fail too
        health = (container.health if container else "") or "unknown"
        if container is not None:
            container_state = container.status or "unknown"
        else:
            container_state = "absent" if podman_ok else "unknown"
        error = None
        if st.load_state == "not-found":
            error = "not installed: run aistack up"
        elif st.active_state == "failed":
            error = f"unit failed ({st.result}); see journalctl -u {unit}"
        elif st.job_id and st.active_state == "inactive":
            error = "waiting for its queued start job"
        elif st.sub_state == "auto-restart":
            error = f"exited ({st.result}); systemd restarts it"
        elif st.active_state in ("activating", "deactivating", "reloading"):
            after = f" after {st.result}" if st.result not in ("", "success") else ""
            error = f"{st.active_state} ({st.sub_state}{after})"
        elif st.active_state == "active" and podman_ok and container_state != "running":
            error = f"container {container_state}"
        elif health == "unhealthy":
            error = "health check failing"
        stopped = (
            st.active_state in ("failed", "activating")
            or st.sub_state == "auto-restart"
            or (st.active_state == "deactivating" and st.result not in ("", "success"))
        )
        if stopped and last_words is not None and error is not None and (words := last_words(st)):
            error = f"{error}; it said: {words}"
        services[spec.name] = ServiceView(
            unit=unit,
            active_state=st.active_state,
            sub_state=st.sub_state,
            result=st.result,
            installed=st.load_state != "not-found",
            pending_job=bool(st.job_id),
            health=health,
            container_state=container_state,
            oom_killed=container.oom_killed if container else None,
            container_id=container.id if container else None,
            image=(container.image_name or container.image) if container else None,
            image_digest=container.image_digest if container else None,
            started_at=container.started_at if container else _iso(st.active_enter_timestamp),
            restarts=st.n_restarts,
            memory_bytes=(stats.get(spec.name) or {}).get("MemUsage") if container else None,
            cpu_seconds=_cpu_seconds(stats.get(spec.name)) if container else None,
            ports=tuple(spec.settings(stack).ports),
            last_error=error,
        )
    return services, sampled


class StackWatcher(Watcher):
    source = "stack"

    def __init__(
        self,
        store: SnapshotStore,
        config: WatchConfig,
        clock: Any = time.time,
        monotonic: Any = time.monotonic,
    ) -> None:
        super().__init__(store, config)
        self.stack = StackConfig()
        self._clock = clock
        self._monotonic = monotonic
        self._stats: dict[str, Any] = {}
        self._stats_at = float("-inf")
        # service -> (container id, health): a new container's first health is news even
        # when the old container's last one was the same word
        self._health_seen: dict[str, tuple[str | None, str | None]] = {}
        self._last_event: dict[str, EventView] = {}
        self._transitions: dict[str, tuple[tuple[Any, ...], float]] = {}
        self._last_words = LastWords()

    def configure(self, config: AgentConfig) -> None:
        self.stack = config.stack
        super().configure(config)

    def services(self) -> frozenset[str]:
        return frozenset(enabled_names(self.stack))

    def units(self) -> frozenset[str]:
        return frozenset(f"{name}.service" for name in self.services())

    def on_container_event(self, event: ContainerEvent) -> bool:
        """From the libpod event stream: remember it, and look again now when it may
        change a service's state (health_status repeats every check: only a change).
        True when it did (the caller may wake the probes too)."""
        if event.name not in self.services():
            return False
        if event.action == "health_status":
            seen = (event.id, event.health)
            if self._health_seen.get(event.name) == seen:
                return False
            self._health_seen[event.name] = seen
        elif event.action.startswith("exec"):
            return False  # our own probes' execs: not a state change
        self._last_event[event.name] = EventView(
            action=event.action,
            at=_iso(event.time_nano / 1e9),
            exit_code=event.exit_code,
            health=event.health,
        )
        self._wake.set()
        return True

    def last_event(self, service: str) -> EventView | None:
        """The last container event of `service` the stream delivered (None: none yet)."""
        return self._last_event.get(service)

    def on_unit_change(self, unit: str) -> None:
        """From systemd's PropertiesChanged/JobRemoved signals."""
        if unit in self.units():
            self._wake.set()

    async def poll(self) -> tuple[SourceState, str | None, StackView]:
        fresh = self._monotonic() - self._stats_at < self.config.interval * 0.9
        try:
            services, sampled = await asyncio.to_thread(
                read_services, self.stack, self.config.podman_socket,
                self._stats if fresh else None, self._last_words,
            )  # fmt: skip
        except systemd_ctl.SystemdError as exc:
            raise SourceUnavailable(str(exc)) from None
        if sampled:
            self._stats_at = self._monotonic()
            self._stats = {
                name: {"MemUsage": s.memory_bytes, "CPUNano": (s.cpu_seconds or 0) * 1e9}
                for name, s in services.items()
                if s.memory_bytes is not None
            }
        now = self._clock()
        for name, svc in services.items():
            key = tuple(getattr(svc, f) for f in _TRANSITION_FIELDS)
            previous = self._transitions.get(name)
            if previous is None or previous[0] != key:
                self._transitions[name] = (key, now)
            services[name] = svc = replace(
                svc,
                last_transition_at=_iso(self._transitions[name][1]),
                last_event=self._last_event.get(name),
            )
            if svc.health in ("healthy", "unhealthy", "starting"):
                self._health_seen[name] = (svc.container_id, svc.health)
        view = StackView(freeze_map(services))
        down = [n for n, s in services.items() if s.last_error]
        if down:
            reason = "; ".join(f"{n}: {services[n].last_error}" for n in down)
            return SourceState.DEGRADED, reason, view
        return SourceState.OK, None, view
