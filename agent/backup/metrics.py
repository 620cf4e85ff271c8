"""Prometheus metrics of the backups, from the `backups` snapshot only.

Alert rules for these ship in etc/prometheus/aistack-backups.rules.yml.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..snapshot import SourceSnapshot
from .model import RESULTS
from .retention import BUCKETS


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"aistack_backup_{name}", doc, labels=labels)


class BackupCollector(Collector):
    def __init__(self, snapshots: Callable[[], Mapping[str, SourceSnapshot[Any]]]) -> None:
        self._snapshots = snapshots

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def _families(self) -> list[Metric]:
        return [
            _gauge("enabled", "1 when scheduled backups are enabled (backups.enabled)."),
            _gauge(
                "last_success_timestamp_seconds",
                "Unix time the newest verified backup finished; 0 before the first.",
            ),
            _gauge(
                "last_failure_timestamp_seconds",
                "Unix time the last failed or refused run ended; 0 if none ever failed.",
            ),
            _gauge("last_duration_seconds", "Duration of the last run, successful or not."),
            _gauge("last_size_bytes", "Size of the newest verified backup (dump + roles)."),
            CounterMetricFamily(
                "aistack_backup_runs",
                "Backup runs since the agent started, by result (success, failure, refused: "
                "not started for lack of disk space).",
                labels=["result"],
            ),
            _gauge(
                "retained",
                "Backups kept by each retention rule (a backup may count under several); "
                "bucket=all: every kept backup.",
                ["bucket"],
            ),
            _gauge("dir_free_bytes", "Free bytes on the backup folder's filesystem."),
            _gauge(
                "dir_required_free_bytes",
                "Free bytes a run needs to start: max(1.5 x last size, backups.min_free).",
            ),
            _gauge("max_age_seconds", "Age of the last success past which status degrades."),
            _gauge("next_run_timestamp_seconds", "Unix time of the next scheduled run."),
            _gauge("running", "1 while a backup run is in progress."),
        ]

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshots().get("backups")
        gauges: dict[str, GaugeMetricFamily] = {}
        runs: CounterMetricFamily | None = None
        for family in self._families():
            if isinstance(family, GaugeMetricFamily):
                gauges[family.name.removeprefix("aistack_backup_")] = family
            elif isinstance(family, CounterMetricFamily):
                runs = family
        assert runs is not None
        data = snap.data if snap is not None else {}
        enabled = bool(data.get("enabled"))
        gauges["enabled"].add_metric([], 1.0 if enabled else 0.0)
        yield gauges["enabled"]
        if snap is None or not enabled or "retained" not in data:
            return

        def value(key: str) -> float:
            v = data.get(key)
            return float(v) if isinstance(v, int | float) else 0.0

        simple = {
            "last_success_timestamp_seconds": "last_success_at",
            "last_failure_timestamp_seconds": "last_failure_at",
            "last_duration_seconds": "last_duration_seconds",
            "last_size_bytes": "last_size_bytes",
            "dir_free_bytes": "free_bytes",
            "dir_required_free_bytes": "required_free_bytes",
            "max_age_seconds": "stale_after_seconds",
            "next_run_timestamp_seconds": "next_run_at",
        }
        for name, key in simple.items():
            gauges[name].add_metric([], value(key))
            yield gauges[name]
        counts = data.get("runs") or {}
        for result in RESULTS:
            runs.add_metric([result], float(counts.get(result, 0)))
        yield runs
        retained = data.get("retained") or {}
        for bucket in (*BUCKETS, "all"):
            gauges["retained"].add_metric([bucket], float(retained.get(bucket, 0)))
        yield gauges["retained"]
        gauges["running"].add_metric([], 1.0 if data.get("running") else 0.0)
        yield gauges["running"]
