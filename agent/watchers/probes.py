"""The probes source: runs the service probes (agent/stack/probes.py) on their own
interval and counts failures in a row, the number the healing policy acts on.

A failure counts only when it is the service's: not while its unit is starting or
stopping, not while its container health check is still `starting`, and not when
Podman itself is unreachable (then nothing can be probed and the source says so).
A new container (another id) starts its count afresh.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from .. import podman_api
from ..config import AgentConfig, StackConfig, WatchConfig
from ..podman_api import Container
from ..snapshot import SnapshotStore, SourceState
from ..stack.model import enabled_names
from ..stack.probes import ProbeResult, probe_all
from ..views import EMPTY_STACK, ProbesView, ProbeView, ServiceView, StackView, freeze_map
from .base import SourceUnavailable, Watcher

SOURCE = "probes"


def _inspect_all(socket: Path, names: list[str]) -> dict[str, Container | None]:
    return {name: podman_api.inspect_container(socket, name, timeout=5.0) for name in names}


class ProbeWatcher(Watcher):
    source = SOURCE

    def __init__(self, store: SnapshotStore, config: WatchConfig) -> None:
        super().__init__(store, config)
        self.stack = StackConfig()
        self.probe_timeout = 5.0
        self._failures: dict[str, tuple[str | None, int]] = {}  # service -> (container id, n)

    def configure(self, config: AgentConfig) -> None:
        self.stack = config.stack
        self.probe_timeout = config.heal.probe_timeout
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
        socket = self.config.podman_socket
        try:
            containers = await asyncio.to_thread(_inspect_all, socket, names)
        except podman_api.PodmanApiError as exc:
            raise SourceUnavailable(f"cannot probe: Podman API unreachable ({exc})") from None
        results = await probe_all(self.stack, socket, self.probe_timeout, containers)
        stack = self.store.get("stack")
        units = stack.view(StackView, EMPTY_STACK).services if stack is not None else {}
        services: dict[str, ProbeView] = {}
        for name in names:
            result = results.get(name)
            if result is None:
                continue
            services[name] = self._count(name, result, containers.get(name), units.get(name))
        failing = [s.reason for s in services.values() if not s.ok and s.reason]
        warnings = [w for s in services.values() for w in s.warnings]
        view = ProbesView(freeze_map(services))
        if failing or warnings:
            return SourceState.DEGRADED, "; ".join([*failing, *warnings]), view
        return SourceState.OK, None, view

    def _count(
        self, name: str, result: ProbeResult, found: Container | None, unit: ServiceView | None
    ) -> ProbeView:
        container = found.id if found is not None else None
        previous_id, failures = self._failures.get(name, (container, 0))
        if previous_id != container:
            failures = 0
        settling = unit is None or unit.active_state != "active" or unit.health == "starting"
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
