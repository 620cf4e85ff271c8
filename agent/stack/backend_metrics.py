"""Metrics of the front's remote Ollama backends, from the backends snapshot only: a
scrape never asks a GPU host anything (docs/fleet.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..snapshot import SourceSnapshot
from ..views import EMPTY_BACKENDS, BackendsView

_Families = tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]


class BackendCollector(Collector):
    def __init__(self, snapshots: Callable[[], Mapping[str, SourceSnapshot[Any]]]) -> None:
        self._snapshots = snapshots

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def _families(self) -> _Families:
        up = GaugeMetricFamily(
            "aistack_backend_up",
            "1 when the remote Ollama backend answered its last GET /api/tags, else 0.",
            labels=["backend"],
        )
        latency = GaugeMetricFamily(
            "aistack_backend_latency_seconds",
            "Seconds the backend's last GET /api/tags took (only while it is up).",
            labels=["backend"],
        )
        models = GaugeMetricFamily(
            "aistack_backend_models",
            "Models installed on the backend (GET /api/tags).",
            labels=["backend"],
        )
        missing = GaugeMetricFamily(
            "aistack_backend_models_missing",
            "Models of stack.ollama.models the backend does not have (only while it is up).",
            labels=["backend"],
        )
        return up, latency, models, missing

    def collect(self) -> Iterator[Metric]:
        up, latency, models, missing = self._families()
        snap = self._snapshots().get("backends")
        view = snap.view(BackendsView, EMPTY_BACKENDS) if snap is not None else EMPTY_BACKENDS
        for url, backend in sorted(view.backends.items()):
            up.add_metric([url], 1.0 if backend.up else 0.0)
            if backend.up:
                models.add_metric([url], float(len(backend.models)))
                missing.add_metric([url], float(len(backend.missing)))
            if backend.latency_seconds is not None:
                latency.add_metric([url], backend.latency_seconds)
        yield from (up, latency, models, missing)
