"""Health rules and Ollama's view: pure functions, time passed in (the XID restart rule:
tests/heal/test_xid_rule.py)."""

from __future__ import annotations

from agent.config import GpuConfig
from agent.gpu.health import evaluate, ollama_view, summary
from agent.gpu.model import GpuSample
from agent.gpu.xid import XidEvent

CFG = GpuConfig()


def gpu(**kw: object) -> GpuSample:
    base: dict[str, object] = {
        "index": 0, "uuid": "GPU-a", "name": "NVIDIA L4", "vendor": "nvidia",
        "temperature_celsius": 50.0, "memory_used_bytes": 1 << 30, "memory_total_bytes": 24 << 30,
    }  # fmt: skip
    return GpuSample(**{**base, **kw})  # type: ignore[arg-type]


def xid(n: int, at: float) -> XidEvent:
    return XidEvent(n, at, 0.0, "nvml", "GPU-a")


def test_thresholds_are_inclusive_and_configurable() -> None:
    assert evaluate(gpu(temperature_celsius=82.9), [], CFG, 0).level == "ok"
    assert evaluate(gpu(temperature_celsius=83), [], CFG, 0).level == "warning"
    assert evaluate(gpu(temperature_celsius=90), [], CFG, 0).level == "unhealthy"
    hot = GpuConfig(temperature_warn=70, temperature_critical=75)
    assert evaluate(gpu(temperature_celsius=75), [], hot, 0).level == "unhealthy"
    assert (
        evaluate(gpu(memory_used_bytes=95, memory_total_bytes=100), [], CFG, 0).level == "warning"
    )
    assert evaluate(gpu(memory_used_bytes=94, memory_total_bytes=100), [], CFG, 0).level == "ok"
    roomy = GpuConfig(memory_full_percent=100)
    assert evaluate(gpu(memory_used_bytes=99, memory_total_bytes=100), [], roomy, 0).level == "ok"


def test_unknown_values_never_trip_a_rule() -> None:
    blank = GpuSample(0, "GPU-a", "x", "nvidia")
    assert evaluate(blank, [], CFG, 0).level == "ok"


def test_xid_window_with_an_injected_clock() -> None:
    events = [xid(79, 1000.0)]
    health = evaluate(gpu(), events, CFG, now=1090.0)
    assert health.reasons == (
        "XID 79 (GPU has fallen off the bus) 1m30s ago: needs a GPU reset or reboot",
    )
    # The caller passes only the events within the window; outside it, nothing is left.
    assert evaluate(gpu(), [], CFG, now=1000.0 + 3601).level == "ok"


def test_reset_xids_are_configurable() -> None:
    cfg = GpuConfig(reset_xids=(13,), application_xids=(31,))
    assert evaluate(gpu(), [xid(13, 0)], cfg, 1).level == "unhealthy"
    assert evaluate(gpu(), [xid(48, 0)], cfg, 1).level == "warning"  # now just "an XID"
    assert evaluate(gpu(), [xid(48, 0)], cfg, 1).warnings == (
        "XID 48 (double-bit ECC error) x1 in the last 1h",
    )


def test_storm_threshold_and_off() -> None:
    events = [xid(13, float(i)) for i in range(20)]
    assert evaluate(gpu(), events, CFG, 30).level == "unhealthy"
    assert evaluate(gpu(), events[:19], CFG, 30).level == "warning"
    assert evaluate(gpu(), events, GpuConfig(xid_storm=0), 30).level == "warning"


def test_summary_names_the_gpu_and_counts_more_reasons() -> None:
    sick = gpu(temperature_celsius=99, ecc_uncorrected=2)
    health = evaluate(sick, [], CFG, 0)
    assert summary(sick, health).startswith("GPU 0 (NVIDIA L4): temperature 99°C")
    assert summary(sick, health).endswith("(+1 more)")


MODELS = [
    {"name": "llama3.1:8b", "size_bytes": 6 << 30, "vram_bytes": 6 << 30},
    {"name": "qwen2.5:32b", "size_bytes": 24 << 30, "vram_bytes": 16 << 30},
    {"name": "tiny:cpu", "size_bytes": 1 << 30, "vram_bytes": 0},
]


def test_ollama_view() -> None:
    healthy = [(gpu(), evaluate(gpu(), [], CFG, 0))]
    view = ollama_view(healthy, MODELS)
    assert view["state"] == "ok" and view["reasons"] == []
    assert view["warnings"] == [
        "model qwen2.5:32b is partly on the CPU (8.0 GiB of 24.0 GiB in system memory): "
        "expect slow answers",
        "model tiny:cpu is entirely on the CPU: expect slow answers",
    ]
    sick = gpu(ecc_uncorrected=1)
    view = ollama_view([(sick, evaluate(sick, [], CFG, 0))], [])
    assert view["state"] == "degraded"
    assert view["reasons"] == [
        "GPU unhealthy: GPU 0 (NVIDIA L4): 1 uncorrectable ECC error(s) since the driver "
        "loaded; reset the GPU or reboot"
    ]
    assert ollama_view([], MODELS)["warnings"] == []  # no GPU: the CPU is the plan
