"""Per-service metrics from the stack snapshot: up, healthy, restarts (systemd's NRestarts)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..snapshot import SourceSnapshot
from ..views import EMPTY_STACK, StackView

_Families = tuple[
    GaugeMetricFamily,
    GaugeMetricFamily,
    CounterMetricFamily,
    GaugeMetricFamily,
    CounterMetricFamily,
]


class ServiceCollector(Collector):
    def __init__(self, snapshots: Callable[[], Mapping[str, SourceSnapshot[Any]]]) -> None:
        self._snapshots = snapshots

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def _families(self) -> _Families:
        up = GaugeMetricFamily(
            "aistack_service_up", "1 when the service's unit is active.", labels=["service"]
        )
        healthy = GaugeMetricFamily(
            "aistack_service_healthy",
            "1 when the service's container health check passes.",
            labels=["service"],
        )
        restarts = CounterMetricFamily(
            "aistack_service_restarts",
            "Restarts of the service's unit by systemd (NRestarts) since it was last started "
            "or its counter was reset (heal.forget_restarts_after).",
            labels=["service"],
        )
        memory = GaugeMetricFamily(
            "aistack_service_memory_bytes",
            "Memory the service's container uses (podman stats, sampled by the agent).",
            labels=["service"],
        )
        cpu = CounterMetricFamily(
            "aistack_service_cpu_seconds",
            "CPU time the service's container has used (podman stats).",
            labels=["service"],
        )
        return up, healthy, restarts, memory, cpu

    def collect(self) -> Iterator[Metric]:
        up, healthy, restarts, memory, cpu = self._families()
        snap = self._snapshots().get("stack")
        services = snap.view(StackView, EMPTY_STACK).services if snap is not None else {}
        for name, svc in sorted(services.items()):
            up.add_metric([name], 1.0 if svc.active_state == "active" else 0.0)
            healthy.add_metric([name], 1.0 if svc.health == "healthy" else 0.0)
            restarts.add_metric([name], float(svc.restarts or 0))
            if svc.memory_bytes is not None:
                memory.add_metric([name], float(svc.memory_bytes))
            if svc.cpu_seconds is not None:
                cpu.add_metric([name], float(svc.cpu_seconds))
        yield from (up, healthy, restarts, memory, cpu)
