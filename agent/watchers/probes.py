"""The probes source: runs the service probes (agent/stack/probes.py) on their own
interval and counts failures in a row, the number the healing policy acts on. A miss is
asked again after `heal.probe_confirm` (1 s), so a hang reaches the restart threshold in
seconds while a single slow answer is forgiven by the next one. Checks that need a
`podman exec` run every DEEP_INTERVAL (and to confirm a miss of one of them), not every
round.

A failure counts only when it is the service's: not while its unit is starting or
stopping, not while its container health check is still `starting`, and not when
Podman itself is unreachable (then nothing can be probed and the source says so).
A new container (another id) starts its count afresh. A miss while a hard dependency was
down during the round (PostgreSQL for LiteLLM) still counts, with that dependency named
(`deps_down`): the healer then waits for it rather than restart the dependent, also when
the dependency is back by the time the round ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeGuard

from .. import podman_api
from ..config import AgentConfig, StackConfig, WatchConfig
from ..podman_api import Container
from ..snapshot import SnapshotStore, SourceState
from ..stack.model import enabled_names
from ..stack.probes import DEEP_ONLY, Check, ProbeResult, probe_all, with_carried
from ..views import EMPTY_STACK, ProbesView, ProbeView, ServiceView, StackView, freeze_map
from .base import SourceUnavailable, Watcher

SOURCE = "probes"
# How often the checks that run in a container (pg_isready, Open WebUI's reach-Ollama:
# each a `podman exec`, whose session Podman keeps for minutes) run; the probe rounds
# between them ask over the network only.
DEEP_INTERVAL = 30.0


def _inspect_all(socket: Path, names: list[str]) -> dict[str, Container | None]:
    return {name: podman_api.inspect_container(socket, name, timeout=5.0) for name in names}


def _settled(unit: ServiceView | None) -> TypeGuard[ServiceView]:
    """Up: its unit active and its health check past `starting` (a miss then counts)."""
    return unit is not None and unit.active_state == "active" and unit.health != "starting"


def _settled_throughout(
    name: str, before: Mapping[str, ServiceView], after: Mapping[str, ServiceView]
) -> bool:
    """Up at the round's start and at its end, in the same container: not restarted
    (PostgreSQL back within a second of a kill can be up at both ends of one round)."""
    first, last = before.get(name), after.get(name)
    return _settled(first) and _settled(last) and first.container_id == last.container_id


class ProbeWatcher(Watcher):
    source = SOURCE

    def __init__(
        self, store: SnapshotStore, config: WatchConfig, monotonic: Any = time.monotonic
    ) -> None:
        super().__init__(store, config)
        self.stack = StackConfig()
        self.probe_timeout = 2.0
        self.probe_confirm = 1.0
        self.probe_failures = 2
        self._confirming = False  # a counted miss below the threshold: look again soon
        self._monotonic = monotonic
        self._last_deep = float("-inf")
        self._carried: dict[str, tuple[Check, ...]] = {}  # the last deep round's DEEP_ONLY
        self._deep_ids: dict[str, str | None] = {}  # the containers the last one asked
        self._failures: dict[str, tuple[str | None, int]] = {}  # service -> (container id, n)

    def configure(self, config: AgentConfig) -> None:
        self.stack = config.stack
        self.probe_timeout = config.heal.probe_timeout
        self.probe_confirm = config.heal.probe_confirm
        self.probe_failures = config.heal.probe_failures
        # Its own cadence: probes every heal.probe_interval, each bounded by probe_timeout
        # (plus the exec round trips), the same loop as every watcher.
        self.reconfigure(
            WatchConfig(
                interval=config.heal.probe_interval,
                timeout=config.heal.probe_timeout * 2 + 2.0,
                podman_socket=config.watch.podman_socket,
            )
        )

    async def poll(self) -> tuple[SourceState, str | None, ProbesView]:
        names = list(enabled_names(self.stack))
        before = self._units()  # a dependency's outage can begin or end during the round
        socket = self.config.podman_socket
        try:
            containers = await asyncio.to_thread(_inspect_all, socket, names)
        except podman_api.PodmanApiError as exc:
            raise SourceUnavailable(f"cannot probe: Podman API unreachable ({exc})") from None
        now = self._monotonic()
        # Deep rounds (the checks that `podman exec`) every DEEP_INTERVAL; the rounds
        # between ask only over the network: cheap enough for a probe every few seconds.
        # A miss is confirmed by the same kind of round: an exec check that failed is
        # carried as failing, which makes the next round deep; a network check's miss is
        # asked again over the network only (a round of every service's exec checks can
        # overrun under load: a hang's restart took 11.1 s once against the 10 s target).
        ids = {name: c.id if c is not None else None for name, c in containers.items()}
        deep = (
            now - self._last_deep >= DEEP_INTERVAL
            or ids != self._deep_ids  # a new container: ask it everything now
            or any(not c.ok for checks in self._carried.values() for c in checks)
        )  # (a carried warning is asked again every round, so it clears once fixed)
        results = await probe_all(self.stack, socket, self.probe_timeout, containers, deep=deep)
        if deep:
            self._last_deep, self._deep_ids = now, ids
            self._carried = {
                name: tuple(c for c in r.checks if c.name in DEEP_ONLY)
                for name, r in results.items()
            }
        else:
            results = {
                name: with_carried(r, self._carried.get(name, ())) for name, r in results.items()
            }
        units = self._units()
        services: dict[str, ProbeView] = {}
        for name in names:
            result = results.get(name)
            if result is None:
                continue
            probe = self._count(name, result, containers.get(name), units.get(name))
            if not probe.ok and (unit := units.get(name)) is not None:
                down = tuple(d for d in unit.requires if not _settled_throughout(d, before, units))
                probe = replace(probe, deps_down=down)
            services[name] = probe
        self._confirming = any(
            s.counted and 0 < s.failures < self.probe_failures for s in services.values()
        )
        failing = [s.reason for s in services.values() if not s.ok and s.reason]
        warnings = [w for s in services.values() for w in s.warnings]
        view = ProbesView(freeze_map(services))
        if failing or warnings:
            return SourceState.DEGRADED, "; ".join([*failing, *warnings]), view
        return SourceState.OK, None, view

    def _units(self) -> Mapping[str, ServiceView]:
        stack = self.store.get("stack")
        return stack.view(StackView, EMPTY_STACK).services if stack is not None else {}

    def next_interval(self) -> float:
        """A miss is confirmed after heal.probe_confirm, not a whole probe_interval later:
        a hang is restarted within seconds, and one slow answer restarts nothing."""
        if self._confirming:
            return min(self.probe_confirm, self.config.interval)
        return self.config.interval

    def _count(
        self, name: str, result: ProbeResult, found: Container | None, unit: ServiceView | None
    ) -> ProbeView:
        container = found.id if found is not None else None
        previous_id, failures = self._failures.get(name, (container, 0))
        if previous_id != container:
            failures = 0
        settling = not _settled(unit)
        if result.ok:
            failures = 0
        elif not settling:
            failures += 1
        self._failures[name] = (container, failures)
        return ProbeView(
            ok=result.ok,
            reason=result.reason,
            container_id=container,
            failures=failures,
            counted=not settling,
            warnings=tuple(result.warnings),
            checks=freeze_map({c.name: c.detail for c in result.checks}),
        )
