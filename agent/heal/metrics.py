"""Healing metrics from the heal and probes snapshots (never computed at scrape time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, get_args

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..snapshot import SourceSnapshot
from ..views import EMPTY_HEAL, EMPTY_PROBES, HealView, ProbesView
from .policy import Status

HEAL_STATES: tuple[str, ...] = (*get_args(Status), "disabled")


class HealCollector(Collector):
    def __init__(self, snapshots: Callable[[], Mapping[str, SourceSnapshot[Any]]]) -> None:
        self._snapshots = snapshots

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def _families(
        self,
    ) -> tuple[CounterMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        actions = CounterMetricFamily(
            "aistack_heal_actions",
            "Healing actions taken since the agent started (restart, reset-failed, give-up, "
            "reset-restarts), by the reason code.",
            labels=["service", "action", "reason"],
        )
        state = GaugeMetricFamily(
            "aistack_heal_state",
            "1 for the service's current heal state (ok, backing-off, gave-up, "
            "waiting-for-dependency, disabled), 0 for the others.",
            labels=["service", "state"],
        )
        probe_ok = GaugeMetricFamily(
            "aistack_service_probe_ok",
            "1 when the agent's last probe of the service passed.",
            labels=["service"],
        )
        probe_failures = GaugeMetricFamily(
            "aistack_service_probe_failures",
            "Failed probes of the service in a row (the healing threshold counts these).",
            labels=["service"],
        )
        return actions, state, probe_ok, probe_failures

    def collect(self) -> Iterator[Metric]:
        actions, state, probe_ok, probe_failures = self._families()
        snaps = self._snapshots()
        heal = snaps.get("heal")
        if heal is not None:
            view = heal.view(HealView, EMPTY_HEAL)
            for item in view.actions:
                actions.add_metric([item.service, item.action, item.reason], float(item.count))
            for name, svc in sorted(view.services.items()):
                for st in HEAL_STATES:
                    state.add_metric([name, st], 1.0 if svc.state == st else 0.0)
        probes = snaps.get("probes")
        if probes is not None:
            for name, probe in sorted(probes.view(ProbesView, EMPTY_PROBES).services.items()):
                probe_ok.add_metric([name], 1.0 if probe.ok else 0.0)
                probe_failures.add_metric([name], float(probe.failures))
        yield from (actions, state, probe_ok, probe_failures)
