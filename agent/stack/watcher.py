"""The stack's services as systemd and Podman see them: one snapshot, `services` in /status.

Per enabled service: the unit's ActiveState/SubState/Result/NRestarts (D-Bus) and the
container's id, image, health and start time (the Podman API). Health is the container's
healthcheck status (`healthy`, `unhealthy`, `starting`), `unknown` without a container.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import podman_api, systemd_ctl
from ..config import AgentConfig, StackConfig, WatchConfig
from ..snapshot import SnapshotStore, SourceState
from ..watchers.base import SourceUnavailable, Watcher
from .render import SERVICES


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _health(inspect: dict[str, Any] | None) -> str:
    if inspect is None:
        return "unknown"
    state = inspect.get("State") or {}
    health = state.get("Health") or state.get("Healthcheck") or {}
    status = str(health.get("Status") or "")
    return status if status in ("healthy", "unhealthy", "starting") else "unknown"


def _cpu_seconds(stats: dict[str, Any] | None) -> float | None:
    nano = (stats or {}).get("CPUNano")
    return round(nano / 1e9, 3) if isinstance(nano, int | float) else None


def read_services(stack: StackConfig, socket: Path) -> dict[str, Any]:
    enabled = [s for s in SERVICES if getattr(stack, s.config_key).enabled]
    states = systemd_ctl.unit_states(f"{s.name}.service" for s in enabled)
    running = [s.name for s in enabled if states[f"{s.name}.service"].active_state == "active"]
    try:
        stats = podman_api.container_stats(socket, running)
    except podman_api.PodmanApiError:
        stats = {}
    services: dict[str, Any] = {}
    for spec in enabled:
        unit = f"{spec.name}.service"
        st = states[unit]
        try:
            inspect = podman_api.container_inspect(socket, spec.name)
        except podman_api.PodmanApiError:
            inspect = None
        state = (inspect or {}).get("State") or {}
        health = _health(inspect)
        error = None
        if st.load_state == "not-found":
            error = "not installed: run aistack up"
        elif st.active_state == "failed":
            error = f"unit failed ({st.result}); see journalctl -u {unit}"
        elif health == "unhealthy":
            error = "health check failing"
        services[spec.name] = {
            "unit": unit,
            "active_state": st.active_state,
            "sub_state": st.sub_state,
            "health": health,
            "container_id": (inspect or {}).get("Id"),
            "image": (inspect or {}).get("ImageName") or (inspect or {}).get("Image"),
            "image_digest": (inspect or {}).get("ImageDigest"),
            "started_at": state.get("StartedAt") if inspect else _iso(st.active_enter_timestamp),
            "restarts": st.n_restarts,
            "memory_bytes": (stats.get(spec.name) or {}).get("MemUsage"),
            "cpu_seconds": _cpu_seconds(stats.get(spec.name)),
            "ports": [p for p in getattr(stack, spec.config_key).ports],
            "last_error": error,
        }
    return services


class StackWatcher(Watcher):
    source = "stack"

    def __init__(self, store: SnapshotStore, config: WatchConfig) -> None:
        super().__init__(store, config)
        self.stack = StackConfig()

    def configure(self, config: AgentConfig) -> None:
        self.stack = config.stack
        super().configure(config)

    def wake(self) -> None:
        self._wake.set()

    async def poll(self) -> tuple[SourceState, str | None, dict[str, Any]]:
        try:
            services = await asyncio.to_thread(read_services, self.stack, self.config.podman_socket)
        except systemd_ctl.SystemdError as exc:
            raise SourceUnavailable(str(exc)) from None
        down = [n for n, s in services.items() if s["last_error"]]
        if down:
            reason = "; ".join(f"{n}: {services[n]['last_error']}" for n in down)
            return SourceState.DEGRADED, reason, {"services": services}
        return SourceState.OK, None, {"services": services}
