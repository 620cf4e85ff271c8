"""GPU and Ollama-model metrics, rendered from the GPU snapshot only (never NVML).

Names follow Prometheus conventions (base units, `_total` counters, `_ratio` for 0-1),
labelled `gpu` (index) and `uuid`; docs/gpu.md maps each one to its dcgm-exporter and
nvidia_gpu_exporter twin. A value the GPU does not report gets no sample, not a zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..snapshot import SourceSnapshot

_IDS = ["gpu", "uuid"]
# (name, help, key in the gpus entry)
_GAUGES = (
    ("aistack_gpu_temperature_celsius", "GPU temperature.", "temperature_celsius"),
    ("aistack_gpu_memory_used_bytes", "GPU memory in use.", "memory_used_bytes"),
    ("aistack_gpu_memory_total_bytes", "GPU memory in total.", "memory_total_bytes"),
    ("aistack_gpu_utilization_ratio", "Share of the last sample period the GPU was busy (0-1).",
     "utilization_ratio"),
    ("aistack_gpu_power_watts", "GPU power draw.", "power_watts"),
    ("aistack_gpu_power_limit_watts", "GPU power management limit.", "power_limit_watts"),
    ("aistack_gpu_fan_speed_ratio", "GPU fan speed as a share of its maximum (0-1).",
     "fan_ratio"),
)  # fmt: skip


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class GpuMetricsCollector(Collector):
    def __init__(self, snapshots: Callable[[], Mapping[str, SourceSnapshot[Any]]]) -> None:
        self._snapshots = snapshots

    def describe(self) -> Iterator[Metric]:
        """Names only, so registering does not read the snapshots."""
        yield from self._families().values()

    def _families(self) -> dict[str, Any]:
        fams: dict[str, Any] = {
            "info": GaugeMetricFamily(
                "aistack_gpu_info",
                "GPU identity; always 1.",
                labels=[*_IDS, "name", "vendor", "pci_bus_id"],
            ),
        }
        for name, help_text, key in _GAUGES:
            fams[key] = GaugeMetricFamily(name, help_text, labels=_IDS)
        fams["ecc"] = CounterMetricFamily(
            "aistack_gpu_ecc_errors",
            "ECC errors since the driver loaded (volatile), by type: corrected, uncorrected.",
            labels=[*_IDS, "type"],
        )
        fams["xid"] = CounterMetricFamily(
            "aistack_gpu_xid_errors",
            "XID errors the agent has seen since it started, by XID number.",
            labels=[*_IDS, "xid"],
        )
        fams["healthy"] = GaugeMetricFamily(
            "aistack_gpu_healthy",
            "1 when the GPU is healthy by the agent's rules (docs/gpu.md), else 0.",
            labels=_IDS,
        )
        fams["throttled"] = GaugeMetricFamily(
            "aistack_gpu_throttled",
            "1 while the GPU's clocks are slowed down, by reason: thermal, power.",
            labels=[*_IDS, "reason"],
        )
        fams["model_vram"] = GaugeMetricFamily(
            "aistack_ollama_model_vram_bytes",
            "GPU memory a loaded Ollama model uses (size_vram in /api/ps).",
            labels=["model"],
        )
        fams["model_size"] = GaugeMetricFamily(
            "aistack_ollama_model_size_bytes",
            "Total memory a loaded Ollama model uses, GPU and system (size in /api/ps).",
            labels=["model"],
        )
        return fams

    def collect(self) -> Iterator[Metric]:
        fams = self._families()
        snap = self._snapshots().get("gpu")
        data: Mapping[str, Any] = snap.data if snap is not None else {}
        for gpu in data.get("gpus", ()):
            self._add_gpu(fams, gpu)
        ollama = data.get("ollama") or {}
        for model in ollama.get("models", ()):
            fams["model_vram"].add_metric([model["name"]], float(model["vram_bytes"]))
            fams["model_size"].add_metric([model["name"]], float(model["size_bytes"]))
        yield from fams.values()

    def _add_gpu(self, fams: dict[str, Any], gpu: Mapping[str, Any]) -> None:
        ids = [str(gpu["index"]), str(gpu["uuid"])]
        fams["info"].add_metric(
            [*ids, str(gpu["name"]), str(gpu["vendor"]), str(gpu.get("pci_bus_id") or "")], 1.0
        )
        for _, _, key in _GAUGES:
            value = _num(gpu.get(key))
            if value is not None:
                fams[key].add_metric(ids, value)
        for kind, count in (gpu.get("ecc_errors") or {}).items():
            value = _num(count)
            if value is not None:
                fams["ecc"].add_metric([*ids, kind], value)
        for xid, count in sorted((gpu.get("xid_errors") or {}).items(), key=lambda kv: int(kv[0])):
            fams["xid"].add_metric([*ids, str(xid)], float(count))
        fams["healthy"].add_metric(ids, 1.0 if gpu.get("healthy", True) else 0.0)
        for reason, active in (gpu.get("throttled") or {}).items():
            if isinstance(active, bool):
                fams["throttled"].add_metric([*ids, reason], 1.0 if active else 0.0)
