"""The stack's services as systemd and Podman see them: one snapshot, `services` in /status.

Per enabled service: the unit's ActiveState/SubState/Result/NRestarts (D-Bus) and the
container's id, state, image, health and start time (the Podman API). Health is the
container's healthcheck status (`healthy`, `unhealthy`, `starting`), `unknown` without
a container.

Event-driven: the kernel (a pidfd per container's main process: watchers/exits.py), the
libpod event stream (a container died, started, changed health) and systemd's
PropertiesChanged/JobRemoved signals each change the published snapshot at once (a new
snapshot from the last one plus what the event says) and wake the watcher, so /status
follows a kill -9 within milliseconds; the poll that follows, and the periodic one
(watch.interval), is the reconcile that stays the truth and catches whatever a dropped
stream missed. Container stats (a slow call)
are sampled on the periodic poll only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import journal, podman_api, systemd_ctl
from ..config import AgentConfig, StackConfig, WatchConfig
from ..snapshot import SnapshotStore, SourceSnapshot, SourceState
from ..stack import secrets
from ..stack.extra import members
from ..views import EMPTY_STACK, EventView, ServiceView, StackView, freeze_map
from .base import SourceUnavailable, Watcher
from .events import ContainerEvent
from .exits import ExitWatch

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
    specs = members(stack)
    states = systemd_ctl.unit_states(s.unit for s in specs)
    running = [s.container for s in specs if states[s.unit].active_state == "active"]
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
                container = podman_api.inspect_container(socket, spec.container)
            except podman_api.PodmanApiError:
                podman_ok = False  # the socket is down: the other inspects would fail too
        health = (container.health if container else "") or "unknown"
        if container is not None:
            container_state = container.status or "unknown"
        else:
            container_state = "absent" if podman_ok else "unknown"
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
            pid=container.pid if container and container.running and container.pid > 0 else None,
            image=(container.image_name or container.image) if container else None,
            image_digest=container.image_digest if container else None,
            started_at=container.started_at if container else _iso(st.active_enter_timestamp),
            restarts=st.n_restarts,
            memory_bytes=(stats.get(spec.container) or {}).get("MemUsage") if container else None,
            cpu_seconds=_cpu_seconds(stats.get(spec.container)) if container else None,
            ports=spec.ports,
            container=spec.container,
            project=spec.project,
            oneshot=spec.oneshot,
            requires=spec.requires,
        )
        view = services[spec.name]
        error = describe(view)
        words = last_words(st) if error and last_words is not None and _stopped(view) else None
        if words:
            error = f"{error}; it said: {words}"
        services[spec.name] = replace(view, last_error=error)
    return services, sampled


def describe(svc: ServiceView) -> str | None:
    """The one line for a person of what is wrong with a service, from its fields (None:
    nothing). Shared by the poll and the event patches, so both say the same."""
    unit = svc.unit
    if not svc.installed:
        return "not installed: run aistack up"
    if svc.sub_state in systemd_ctl.RESTARTING_SUB_STATES:  # before failed: on its way
        return f"exited ({svc.result}); systemd restarts it"
    if svc.active_state == "failed":
        return f"unit failed ({svc.result}); see journalctl -u {unit}"
    if svc.pending_job and svc.active_state == "inactive":
        return "waiting for its queued start job"
    if svc.active_state in ("activating", "deactivating", "reloading"):
        after = f" after {svc.result}" if svc.result not in ("", "success") else ""
        return f"{svc.active_state} ({svc.sub_state}{after})"
    if svc.oneshot and svc.active_state == "active" and svc.sub_state == "exited":
        return None  # a one-shot job that ran to completion (its container is gone)
    if svc.active_state == "active" and svc.container_state not in ("running", "unknown"):
        return f"container {svc.container_state}"
    if svc.health == "unhealthy":
        return "health check failing"
    return None


def _stopped(svc: ServiceView) -> bool:
    """Stopped or failing to start: its own last words say why."""
    return (
        svc.active_state in ("failed", "activating")
        or svc.sub_state in systemd_ctl.RESTARTING_SUB_STATES
        or (svc.active_state == "deactivating" and svc.result not in ("", "success"))
    )


def summary(services: Mapping[str, ServiceView]) -> tuple[SourceState, str | None]:
    """The stack source's state and reason from its services."""
    down = [n for n, s in services.items() if s.last_error]
    if down:
        return SourceState.DEGRADED, "; ".join(f"{n}: {services[n].last_error}" for n in down)
    return SourceState.OK, None


# Container events that say what the container now is (the poll confirms it later).
_EVENT_STATES = {"died": "exited", "stop": "exited", "remove": "absent", "start": "running",
                 "pause": "paused", "unpause": "running"}  # fmt: skip


def after_container_event(svc: ServiceView, event: ContainerEvent) -> ServiceView | None:
    """The service as `event` says it is, before any poll: a new view from the old one plus
    the event, or None when the event changes nothing shown (another container's late
    event, an action that is not a state)."""
    current = svc.container_id
    ours = current is None or event.id == current
    if event.action == "start":
        if ours and svc.container_state == "running":
            return None
        changed = replace(svc, container_state="running", container_id=event.id)
        if not ours:  # a new container: nothing known of its health yet
            changed = replace(changed, health="unknown", oom_killed=None)
    elif not ours:
        return None  # about a container the service no longer has
    elif event.action == "health_status" and event.health:
        changed = replace(svc, health=event.health)
    elif event.action == "oom":
        changed = replace(svc, oom_killed=True)
    elif event.action in _EVENT_STATES:
        state = _EVENT_STATES[event.action]
        health = "unknown" if state != "running" else svc.health
        changed = replace(svc, container_state=state, health=health)
        if state == "absent":
            changed = replace(changed, container_id=None)
    else:
        return None
    if changed == svc:
        return None
    return replace(changed, last_error=describe(changed))


def after_unit_change(svc: ServiceView, props: Mapping[str, str]) -> ServiceView | None:
    """The service as systemd's PropertiesChanged says its unit is (ActiveState, SubState,
    Result), or None when the signal carried none of them or changed nothing."""
    changed = replace(
        svc,
        active_state=props.get("ActiveState", svc.active_state),
        sub_state=props.get("SubState", svc.sub_state),
        result=props.get("Result", svc.result),
    )
    if changed == svc:
        return None
    return replace(changed, last_error=describe(changed))


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
        self._patched_at: dict[str, float] = {}  # service -> when an event last patched it
        self.exits = ExitWatch(self.on_process_exit)

    def configure(self, config: AgentConfig) -> None:
        self.stack = config.stack
        super().configure(config)

    def _containers(self) -> dict[str, str]:
        """Container name -> service, from the one catalogue (core + stack.extra; cached
        by the compose files' stamps, so an edited project is followed)."""
        return {m.container: m.name for m in members(self.stack)}

    def services(self) -> frozenset[str]:
        return frozenset(m.name for m in members(self.stack))

    def is_service(self, name: str) -> bool:
        """Whether a container of this name is one of the stack's (enabled) services."""
        return name in self._containers()

    def units(self) -> frozenset[str]:
        return frozenset(f"{name}.service" for name in self.services())

    def on_container_event(self, event: ContainerEvent) -> bool:
        """From the libpod event stream: remember it, and look again now when it may
        change a service's state (health_status repeats every check: only a change).
        True when it did (the caller may wake the probes too)."""
        service = self._containers().get(event.name)
        if service is None:
            return False
        event = replace(event, name=service)  # from here on: the service's name
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
        self._patch(event.name, lambda svc: after_container_event(svc, event))
        self._wake.set()
        return True

    def on_process_exit(self, service: str, container_id: str) -> None:
        """From the kernel (watchers/exits.py): the container's main process ended. Shown
        at once, as a `died` event would be; the poll it wakes says what followed."""
        died = ContainerEvent(container_id, service, "died", time.time_ns())
        self._patch(service, lambda svc: after_container_event(svc, died))
        self._wake.set()

    def last_event(self, service: str) -> EventView | None:
        """The last container event of `service` the stream delivered (None: none yet)."""
        return self._last_event.get(service)

    def on_unit_change(self, unit: str, props: Mapping[str, str] | None = None) -> None:
        """From systemd's PropertiesChanged (with the unit's new ActiveState, SubState,
        Result when the signal carried them) and JobRemoved signals."""
        if unit not in self.units():
            return
        if props:
            name = unit.removesuffix(".service")
            self._patch(name, lambda svc: after_unit_change(svc, props))
        self._wake.set()

    def _patch(self, name: str, change: Callable[[ServiceView], ServiceView | None]) -> None:
        """Publish at once what an event says of one service: a new snapshot from the last
        one plus the event. The poll it wakes stays the truth and follows within
        milliseconds; a poll that was already under way when the event came keeps this
        entry (it read the service before the change)."""
        snap = self.store.get(self.source)
        if snap is None or snap.state is SourceState.UNAVAILABLE:
            return  # nothing to patch: the poll will say
        services = dict(snap.view(StackView, EMPTY_STACK).services)
        svc = services.get(name)
        if svc is None or (changed := change(svc)) is None:
            return
        services[name] = replace(changed, last_transition_at=_iso(self._clock()),
                                 last_event=self._last_event.get(name))  # fmt: skip
        self._patched_at[name] = self._monotonic()
        state, reason = summary(services)
        view = StackView(freeze_map(services))
        self.store.publish(SourceSnapshot(self.source, state, reason, view))

    async def poll(self) -> tuple[SourceState, str | None, StackView]:
        started = self._monotonic()
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
        published = self.store.get(self.source)
        patched = published.view(StackView, EMPTY_STACK).services if published else {}
        for name in list(services):
            if self._patched_at.get(name, float("-inf")) > started and name in patched:
                services[name] = patched[name]  # an event came after this poll read it
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
        self.exits.follow({
            name: (svc.container_id, svc.pid)
            for name, svc in services.items()
            if svc.container_state == "running" and svc.container_id and svc.pid
        })  # fmt: skip
        state, reason = summary(services)
        return state, reason, StackView(freeze_map(services))
