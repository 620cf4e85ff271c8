"""The healer: turns what the watchers saw into restarts, through systemd, and reports.

It is a consumer of snapshots like the API: each time the stack, probes, Podman or
systemd snapshot changes (and when a backoff or grace period runs out), it builds one
Observation per service, asks the pure policy (agent/heal/policy.py) what to do, runs
the actions through the one Actuator (reset-failed, then RestartUnit with the job
followed to its end), stores the policy's state atomically, and publishes the `heal`
snapshot that /status and the metrics read: every action of the actuator, the person's
and the GPU rule's too. Each round also runs the GPU rule (heal/xid.py) on the gpu
snapshot; its restarts of Ollama count in Ollama's give-up window.

It heals only what it can see: while Podman or systemd is unreachable, or the stack
snapshot is stale, it takes no action (a blind restart of healthy services is the worst
outcome of an outage of the watcher itself).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import structlog

from .. import systemd_ctl
from ..config import AgentConfig
from ..snapshot import SnapshotStore, SourceSnapshot, SourceState
from ..stack.actuator import Act, Actuator
from ..stack.extra import member_names
from ..views import (
    EMPTY_PROBES,
    EMPTY_STACK,
    ActionCount,
    ActionRecord,
    HealServiceView,
    HealView,
    ProbesView,
    StackView,
    freeze_map,
)
from . import state as heal_state
from .policy import (
    SERVICE_ORDER,
    Action,
    Observation,
    ServiceHealState,
    decide,
    manual_reset,
    reload_reset,
)
from .xid import XidRule

log = structlog.get_logger(component="heal")
SOURCE = "heal"
MAX_SLEEP = 5.0  # seconds between rounds at most, so a grace period ends on time
# Fields whose change is worth a write of the state file (not the reason's countdown).
_DURABLE = ("status", "waiting_for", "restarts", "next_attempt", "unhealthy_since")


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _durable(states: Mapping[str, ServiceHealState]) -> dict[str, tuple[Any, ...]]:
    return {n: tuple(getattr(s, f) for f in _DURABLE) for n, s in states.items()}


@dataclass(frozen=True)
class Blind:
    """Why the healer cannot see enough to act; None when it can."""

    reason: str | None


def blindness(snaps: Mapping[str, SourceSnapshot[Any]], stale_after: float) -> Blind:
    for source in ("systemd", "podman"):
        snap = snaps.get(source)
        if snap is None or snap.state is not SourceState.OK:
            why = snap.reason if snap is not None else "not checked yet"
            return Blind(f"{source} unavailable ({why}); not healing blind")
    stack = snaps.get("stack")
    if stack is None or stack.state is SourceState.UNAVAILABLE:
        return Blind("the stack's state is unknown; not healing blind")
    if stack.age() > stale_after:
        return Blind(f"the stack's state is {round(stack.age())}s old; not healing blind")
    return Blind(None)


def observations(
    snaps: Mapping[str, SourceSnapshot[Any]], busy: frozenset[str]
) -> dict[str, Observation]:
    """One Observation per service of the stack snapshot, probe failures added.

    A service whose restart we are running is observed as `activating`: the policy waits
    for a running job exactly as for systemd's own restart.
    """
    stack = snaps.get("stack")
    probes = snaps.get("probes")
    services = stack.view(StackView, EMPTY_STACK).services if stack is not None else {}
    probe_views = probes.view(ProbesView, EMPTY_PROBES).services if probes is not None else {}
    out: dict[str, Observation] = {}
    for name, svc in services.items():
        active, sub = svc.active_state, svc.sub_state
        # A clean stop (systemctl stop, aistack down/stop) is a person's decision: the
        # agent does not start it again. Not installed: not deployed (aistack up does that).
        should_run = svc.installed and not (active == "inactive" and svc.result in ("success", ""))
        if name in busy:
            active, sub = "activating", "agent-restart"
        elif svc.pending_job:  # e.g. the restart systemd propagates from postgres
            active, sub = "activating", "job-queued"
        probe = probe_views.get(name)
        # Failures counted against an earlier container say nothing about this one (a
        # restart happened since the probe ran): the next probe decides.
        counted = probe if probe is not None and probe.container_id == svc.container_id else None
        out[name] = Observation(
            active_state=active,
            sub_state=sub,
            result=svc.result,
            health=svc.health,
            probe_failures=counted.failures if counted is not None else 0,
            deps_down=counted.deps_down if counted is not None else (),
            restarts=svc.restarts,
            should_run=should_run,
        )
    return out


def dependencies(snaps: Mapping[str, SourceSnapshot[Any]]) -> dict[str, tuple[str, ...]]:
    """Each service's hard dependencies, as the stack snapshot's catalogue says (the core
    stack's and the extra services' Requires=)."""
    stack = snaps.get("stack")
    services = stack.view(StackView, EMPTY_STACK).services if stack is not None else {}
    return {name: svc.requires for name, svc in services.items()}


class Healer:
    def __init__(
        self,
        store: SnapshotStore,
        config: AgentConfig,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        hold: Callable[[], bool] = lambda: False,
        actuator: Actuator | None = None,
        xid_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._hold = hold  # true while a person's apply or service action runs
        self.actuator = actuator or Actuator(clock)
        self.actuator.listen(self._on_act)
        self.xid = XidRule(self.actuator, xid_clock)
        self._gpu = config.gpu
        self._stack = config.stack
        self.config = config.heal
        self._stale_after = max(3 * config.watch.interval, 30.0)
        self._clock = clock
        self._rng = rng
        self._states: dict[str, ServiceHealState] = {}
        self._saved: dict[str, tuple[Any, ...]] = {}
        self._loaded = False
        self._warnings: tuple[str, ...] = ()
        self._jobs: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    # --- control ------------------------------------------------------------------

    def configure(self, config: AgentConfig, reloaded: bool = False) -> None:
        """A (re)loaded config; a reload also forgets every give-up: it may be the fix."""
        self.config = config.heal
        self._gpu = config.gpu
        self._stack = config.stack
        self._stale_after = max(3 * config.watch.interval, 30.0)
        if reloaded and self._loaded:
            self._states = reload_reset(self._states)
            log.info("heal state reset by a config reload")
        self._wake.set()

    def manual_reset(self, service: str) -> None:
        """`aistack restart SERVICE` (or start): a person took over this service."""
        if self._loaded:
            self._states = manual_reset(self._states, service)
            log.info("heal state reset by a manual action", service=service)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    @property
    def states(self) -> Mapping[str, ServiceHealState]:
        """The policy's state per service, as last decided."""
        return dict(self._states)

    @property
    def busy(self) -> frozenset[str]:
        """Services with an action of the actuator running (any part's)."""
        return self.actuator.busy

    async def load(self) -> None:
        """Read the policy's state file (run() does this first)."""
        names = (*SERVICE_ORDER, *await asyncio.to_thread(member_names, self._stack))
        loaded = await asyncio.to_thread(heal_state.load, self.config.state_file, names)
        self._states, self._warnings, self._loaded = loaded.states, loaded.warnings, True
        self._saved = _durable(self._states)

    async def settle(self) -> None:
        """Wait for the actions this healer and its GPU rule started (tests, stop)."""
        await asyncio.gather(*self._jobs, return_exceptions=True)
        await self.xid.settle()

    def _on_act(self, act: Act) -> None:
        """Every part's action ends here too: a GPU restart counts in Ollama's give-up
        window (one window, whoever restarts), and any action means: look again."""
        if act.by == "gpu" and act.action == "restart" and self._loaded:
            st = self._states.get(act.service, ServiceHealState())
            self._states[act.service] = replace(st, restarts=(*st.restarts, act.at))
        self._wake.set()

    # --- loop ---------------------------------------------------------------------

    async def run(self) -> None:
        await self.load()
        changed = self.store.subscribe()
        seen: tuple[float, ...] = ()
        try:
            while True:
                inputs = self._inputs_version()
                if inputs != seen or self._wake.is_set():
                    seen = inputs
                    self._wake.clear()
                    await self.round()
                sleep = self._next_wakeup()
                try:
                    async with asyncio.timeout(sleep):
                        waits = [asyncio.ensure_future(changed.wait()),
                                 asyncio.ensure_future(self._wake.wait())]  # fmt: skip
                        try:
                            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                        finally:
                            for w in waits:
                                w.cancel()
                except TimeoutError:
                    self._wake.set()  # a deadline: decide again even if nothing changed
                changed.clear()
        finally:
            for job in list(self._jobs):
                job.cancel()

    def _inputs_version(self) -> tuple[float, ...]:
        snaps = self.store.latest()
        return tuple(
            snaps[s].taken_monotonic if s in snaps else -1.0
            for s in ("stack", "probes", "podman", "systemd", "gpu")
        )

    def _next_wakeup(self) -> float:
        now = self._clock()
        deadlines = [st.next_attempt - now for st in self._states.values() if st.next_attempt > now]
        deadlines += [
            st.unhealthy_since + self.config.unhealthy_grace - now
            for st in self._states.values()
            if st.unhealthy_since is not None
        ]
        soonest = min((d for d in deadlines if d > 0), default=MAX_SLEEP)
        return max(0.05, min(MAX_SLEEP, soonest + 0.05))

    async def round(self) -> list[Action]:
        """One decision round; returns the actions started (for tests)."""
        snaps = self.store.latest()
        self.xid.observe(snaps.get("gpu"), self._gpu)  # its own switch: gpu.restart_ollama_on_xid
        now = self._clock()
        blind = blindness(snaps, self._stale_after)
        if blind.reason is None and self._hold():
            blind = Blind("an apply or a service action is running; healing resumes after it")
        actions: list[Action] = []
        if self.config.enabled and blind.reason is None:
            obs = observations(snaps, self.actuator.busy)
            actions, self._states = decide(
                self.config, obs, self._states, now, self._rng, dependencies(snaps)
            )
            for action in actions:
                self._start(action)
        await self._save()
        self._publish(blind, snaps)
        return actions

    def _start(self, action: Action) -> None:
        if action.action == "give-up":
            log.error("giving up on a service", service=action.service, reason=action.reason)
            self.actuator.note(action.service, "give-up", "healer", action.code, action.reason)
            return
        if action.action == "reset-restarts":  # bookkeeping on a running unit, not a heal
            log.info("forgetting a service's restarts", service=action.service,
                     reason=action.reason)  # fmt: skip
        else:
            log.warning("healing a service", service=action.service, action=action.action,
                        reason=action.reason)  # fmt: skip
        task = asyncio.create_task(self._execute(action), name=f"heal.{action.service}")
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _execute(self, action: Action) -> None:
        try:
            await self.actuator.act(
                action.service, action.action, "healer", action.code, action.reason
            )
        except systemd_ctl.SystemdError as exc:
            log.error("restart failed", unit=action.unit, error=str(exc))

    async def _save(self) -> None:
        durable = _durable(self._states)
        if durable == self._saved:
            return
        try:
            await asyncio.to_thread(heal_state.save, self.config.state_file, dict(self._states))
            self._saved = durable
        except OSError as exc:  # a full disk must not stop healing; say so, retry next round
            log.error("cannot write the heal state", path=str(self.config.state_file),
                      error=str(exc))  # fmt: skip

    def _publish(self, blind: Blind, snaps: Mapping[str, SourceSnapshot[Any]]) -> None:
        services: dict[str, HealServiceView] = {}
        stack = snaps.get("stack")
        names = list(stack.view(StackView, EMPTY_STACK).services) if stack is not None else []
        window_start = self._clock() - self.config.give_up_window
        for name in names:
            st = self._states.get(name, ServiceHealState())
            restarts = [t for t in st.restarts if t > window_start]
            services[name] = HealServiceView(
                state=st.status if self.config.enabled else "disabled",
                reason=st.reason or None,
                waiting_for=st.waiting_for,
                restarts=len(restarts),
                last_restart_at=_iso(restarts[-1]) if restarts else None,
                next_attempt_at=_iso(st.next_attempt) if st.next_attempt > self._clock() else None,
                restarting=name in self.actuator.busy,
            )
        data = HealView(
            enabled=self.config.enabled,
            paused=blind.reason,
            services=freeze_map(services),
            actions=tuple(
                ActionCount(s, a, r, n) for (s, a, r), n in sorted(self.actuator.counts.items())
            ),
            recent=tuple(
                ActionRecord(
                    a.service, a.action, a.by, a.code, a.reason, _iso(a.at), a.result or None
                )
                for a in self.actuator.recent
            ),
            warnings=self._warnings,
        )
        gave_up = [n for n, s in services.items() if s.state == "gave-up"]
        if gave_up:
            state, reason = SourceState.DEGRADED, f"gave up on {', '.join(gave_up)}"
        elif blind.reason is not None and self.config.enabled:
            state, reason = SourceState.DEGRADED, blind.reason
        else:
            state, reason = SourceState.OK, None
        previous = self.store.get(SOURCE)
        snap = SourceSnapshot(source=SOURCE, state=state, reason=reason, data=data)
        if previous is not None and (previous.state, previous.reason, previous.data) == (
            snap.state, snap.reason, snap.data,
        ):  # fmt: skip
            return  # nothing new: do not wake every subscriber (this loop included)
        self.store.publish(snap)
