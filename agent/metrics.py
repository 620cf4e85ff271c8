"""Prometheus metrics from snapshots, on the agent's own CollectorRegistry.

A scrape renders what the snapshot store already holds: it never calls Podman, D-Bus
or NVML, so a slow or dead external system cannot make /metrics slow or fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Info, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .backup.metrics import BackupCollector
from .gpu.metrics import GpuMetricsCollector
from .heal.metrics import HealCollector
from .snapshot import SourceSnapshot, SourceState
from .stack.backend_metrics import BackendCollector
from .stack.metrics import ServiceCollector
from .status import AgentInfo


class SnapshotCollector(Collector):
    def __init__(
        self,
        snapshots: Callable[[], Mapping[str, SourceSnapshot[Any]]],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._snapshots = snapshots
        self._monotonic = monotonic

    def describe(self) -> Iterator[Metric]:
        """Names only, so registering does not read the snapshots."""
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        age = GaugeMetricFamily(
            "aistack_snapshot_age_seconds",
            "Seconds since the source's watcher last published a snapshot.",
            labels=["source"],
        )
        up = GaugeMetricFamily(
            "aistack_source_up",
            "1 when the agent can reach the source (Podman, systemd, GPU), else 0.",
            labels=["source"],
        )
        return age, up

    def collect(self) -> Iterator[Metric]:
        now = self._monotonic()
        age, up = self._families()
        for name, snap in sorted(self._snapshots().items()):
            age.add_metric([name], snap.age(now))
            up.add_metric([name], 1.0 if snap.state is SourceState.OK else 0.0)
        yield age
        yield up


def build_registry(
    info: AgentInfo, snapshots: Callable[[], Mapping[str, SourceSnapshot[Any]]]
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    Info("aistack_agent", "The running aistack agent.", registry=registry).info(
        {"version": info.version}
    )
    Gauge(
        "aistack_agent_start_time_seconds",
        "Unix time the agent started.",
        registry=registry,
    ).set(info.started_at)
    ProcessCollector(registry=registry)
    registry.register(SnapshotCollector(snapshots))
    registry.register(GpuMetricsCollector(snapshots))
    registry.register(BackupCollector(snapshots))
    registry.register(ServiceCollector(snapshots))
    registry.register(HealCollector(snapshots))
    registry.register(BackendCollector(snapshots))
    return registry
