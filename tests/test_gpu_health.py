"""Health rules, Ollama's view and the restart policy: pure functions, time passed in."""

from __future__ import annotations

from pathlib import Path

from agent.config import GpuConfig
from agent.gpu.health import RestartPolicy, evaluate, ollama_view, summary
from agent.gpu.model import GpuSample
from agent.gpu.xid import XidEvent
from agent.snapshot import SourceState

from .fixtures.gpu.fake_nvml import FakeNvml
from .fixtures.gpu.support import Clock, make_watcher

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


def test_restart_policy_never_loops() -> None:
    cfg = GpuConfig(restart_ollama_on_xid=True, restart_cooldown=1800.0)
    policy = RestartPolicy()
    assert policy.decide([xid(43, 0)], False, GpuConfig(), 0) is None  # off by default
    assert policy.decide([], False, cfg, 0) is None
    assert policy.decide([xid(48, 0)], False, cfg, 0) is None  # not an application XID
    first = policy.decide([xid(43, 0)], False, cfg, now=100)
    assert first is not None and first.restart
    assert first.message == "XID 43 (GPU stopped processing): restarting Ollama"
    again = policy.decide([xid(43, 0)], False, cfg, now=160)
    assert again is not None and not again.restart
    assert again.message == (
        "XID 43 again 1m after restarting Ollama: not restarting again within "
        "gpu.restart_cooldown (30m)"
    )
    later = policy.decide([xid(13, 0)], False, cfg, now=100 + 1800)
    assert later is not None and later.restart
    reset = policy.decide([xid(13, 0)], True, cfg, now=10_000)
    assert reset is not None and not reset.restart and "needs a reset" in reset.message


async def test_watcher_restarts_ollama_once_per_cooldown(tmp_path: Path) -> None:
    """With the real systemd hook (no D-Bus here, so it fails and says so), once only."""
    from .fixtures.gpu.support import closed_url
    from .test_gpu_nvml import until

    clock = Clock()
    fake = FakeNvml()
    cfg = GpuConfig(ollama_url=closed_url(), kernel_log=False, restart_ollama_on_xid=True)
    watcher = make_watcher(tmp_path, fake, gpu=cfg, clock=clock)
    await watcher.poll_once()
    uuid = fake.gpus[0].uuid
    fake.emit_xid(0, 43)
    await until(lambda: watcher.sampler.tracker.counts(uuid) == {43: 1})  # type: ignore[union-attr]
    snap = await watcher.poll_once()
    restart = snap.data["ollama"]["restart"]
    assert restart["enabled"] is True and restart["unit"] == "ollama.service"
    assert restart["reason"] == "XID 43 (GPU stopped processing): restarting Ollama"
    first_at = restart["last_at"]
    assert watcher._restart_task is not None
    await watcher._restart_task
    assert str(watcher._restart["result"]).startswith("failed:")
    clock.advance(60)
    fake.emit_xid(0, 43)
    await until(lambda: watcher.sampler.tracker.counts(uuid) == {43: 2})  # type: ignore[union-attr]
    task = watcher._restart_task
    snap = await watcher.poll_once()
    watcher.close()
    assert watcher._restart_task is task  # no second restart inside the cooldown
    assert snap.data["ollama"]["restart"]["last_at"] == first_at
    assert snap.state is SourceState.OK
