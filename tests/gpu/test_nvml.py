"""The GPU watcher against the fake NVML module: every scenario the issue names, and more.

FakeNvml (tests/fixtures/gpu/fake_nvml.py) is the one fake: a hardware boundary, there
is no GPU here. Everything else is real: the watcher, the XID thread (a real thread
blocking in the fake's nvmlEventSetWait_v2), the health rules, /proc fixture files.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.config import GpuConfig
from agent.snapshot import SnapshotStore, SourceState

from ..fixtures.gpu.fake_nvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    FakeGpu,
    FakeNvml,
)
from ..fixtures.gpu.support import Clock, closed_url, make_watcher
from ..fixtures.wait import until

A_ID = "3f9a1c27b6e04d5a8c1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e"


def gpu_cfg(**kw: object) -> GpuConfig:
    return GpuConfig(ollama_url=closed_url(), kernel_log=False, **kw)  # type: ignore[arg-type]


# --- 1. normal ---------------------------------------------------------------------------
async def test_normal_gpu_is_read_fully_and_healthy(tmp_path: Path) -> None:
    fake = FakeNvml(FakeGpu(fan=41, processes=[(4242, 5 * 2**30), (4246, None)]))
    watcher = make_watcher(tmp_path, fake)
    try:
        snap = await watcher.poll_once()
    finally:
        watcher.close()
    assert snap.state is SourceState.OK and snap.reason is None
    assert snap.data["backend"] == "nvml" and snap.data["driver"] == "550.54.15"
    gpu = snap.data["gpus"][0]
    assert (gpu["index"], gpu["name"], gpu["vendor"]) == (0, "NVIDIA L4", "nvidia")
    assert gpu["uuid"] == "GPU-5f1e0b6c-0000-4000-8000-000000000000"
    assert gpu["pci_bus_id"] == "00000000:01:00.0"
    assert gpu["temperature_celsius"] == 51
    assert gpu["memory_used_bytes"] == 2 * 2**30  # v2: without the driver's reservation
    assert gpu["memory_total_bytes"] == 24 * 2**30
    assert gpu["utilization_ratio"] == 0.37
    assert gpu["power_watts"] == 72.5 and gpu["power_limit_watts"] == 72.0  # mW -> W
    assert gpu["fan_ratio"] == 0.41
    assert dict(gpu["ecc_errors"]) == {"corrected": 0, "uncorrected": 0}
    assert dict(gpu["throttled"]) == {"thermal": False, "power": False}
    assert (gpu["healthy"], gpu["health"], gpu["reasons"], gpu["warnings"]) == (
        True, "ok", (), (),
    )  # fmt: skip
    ollama_proc, host_proc = gpu["processes"]
    assert dict(ollama_proc) == {
        "pid": 4242, "name": "ollama", "memory_bytes": 5 * 2**30,
        "container_id": A_ID, "container": A_ID[:12],
    }  # fmt: skip
    assert host_proc["container_id"] is None and host_proc["memory_bytes"] is None
    assert snap.data["xid"]["events"] == "listening on 1 GPU(s)"


async def test_nvml_is_initialised_once_across_polls_and_released_on_stop(tmp_path: Path) -> None:
    fake = FakeNvml()
    watcher = make_watcher(tmp_path, fake)
    for _ in range(5):
        assert (await watcher.poll_once()).state is SourceState.OK
    assert fake.init_calls == 2  # the session + the XID thread's own reference
    watcher.close()
    assert fake.refcount == 0 and all(s.freed for s in fake.event_sets)


async def test_datacenter_card_without_fan_reports_none_not_zero(tmp_path: Path) -> None:
    fake = FakeNvml(FakeGpu(fan=None, ecc_corrected=None, ecc_uncorrected=None))
    watcher = make_watcher(tmp_path, fake)
    snap = await watcher.poll_once()
    watcher.close()
    gpu = snap.data["gpus"][0]
    assert gpu["fan_ratio"] is None
    assert dict(gpu["ecc_errors"]) == {"corrected": None, "uncorrected": None}


# --- 2. hot --------------------------------------------------------------------------------
async def test_hot_gpu_warns_then_is_unhealthy_at_critical(tmp_path: Path) -> None:
    fake = FakeNvml(FakeGpu(temperature=86, clock_reasons=0x20))  # SwThermalSlowdown
    watcher = make_watcher(tmp_path, fake, gpu=gpu_cfg())
    snap = await watcher.poll_once()
    gpu = snap.data["gpus"][0]
    assert snap.state is SourceState.OK and gpu["health"] == "warning"
    assert gpu["throttled"]["thermal"] is True
    assert any("86°C" in w and "temperature_warn (83°C)" in w for w in gpu["warnings"])
    fake.gpus[0].temperature = 93
    snap = await watcher.poll_once()
    watcher.close()
    gpu = snap.data["gpus"][0]
    assert snap.state is SourceState.DEGRADED and gpu["healthy"] is False
    assert gpu["reasons"][0].startswith("temperature 93°C is at or above")
    assert snap.reason is not None and snap.reason.startswith("GPU 0 (NVIDIA L4): temperature 93")
    assert snap.data["ollama"]["state"] == "degraded"
    assert "temperature 93°C" in snap.data["ollama"]["reasons"][0]


# --- 3. memory full -------------------------------------------------------------------------
async def test_memory_nearly_full_is_a_warning(tmp_path: Path) -> None:
    fake = FakeNvml(FakeGpu(memory_used=23 * 2**30))  # of 24 GiB: 96%
    watcher = make_watcher(tmp_path, fake)
    snap = await watcher.poll_once()
    watcher.close()
    gpu = snap.data["gpus"][0]
    assert gpu["health"] == "warning" and gpu["healthy"] is True
    assert gpu["warnings"] == (
        "memory 96% full (23.0 GiB of 24.0 GiB; gpu.memory_full_percent is 95)",
    )
    assert snap.state is SourceState.OK


# --- 4. ECC ---------------------------------------------------------------------------------
async def test_uncorrectable_ecc_error_makes_the_gpu_unhealthy(tmp_path: Path) -> None:
    fake = FakeNvml(FakeGpu(ecc_corrected=12, ecc_uncorrected=0))
    watcher = make_watcher(tmp_path, fake)
    assert (await watcher.poll_once()).data["gpus"][0]["health"] == "ok"  # corrected: fine
    fake.gpus[0].ecc_uncorrected = 1
    snap = await watcher.poll_once()
    watcher.close()
    gpu = snap.data["gpus"][0]
    assert gpu["healthy"] is False
    assert gpu["reasons"] == (
        "1 uncorrectable ECC error(s) since the driver loaded; reset the GPU or reboot",
    )
    assert dict(gpu["ecc_errors"]) == {"corrected": 12, "uncorrected": 1}


# --- 5. XID needing a reset, through the event thread --------------------------------------
async def test_reset_xid_from_nvml_events_is_unhealthy_for_the_window(tmp_path: Path) -> None:
    clock = Clock()
    fake = FakeNvml()
    watcher = make_watcher(tmp_path, fake, gpu=gpu_cfg(xid_window=600.0), clock=clock)
    await watcher.poll_once()
    fake.emit_xid(0, 48)
    assert watcher.sampler is not None
    await until(lambda: watcher.sampler.tracker.counts(fake.gpus[0].uuid) == {48: 1})  # type: ignore[union-attr]
    clock.advance(120)
    snap = await watcher.poll_once()
    gpu = snap.data["gpus"][0]
    assert gpu["healthy"] is False
    assert gpu["reasons"] == ("XID 48 (double-bit ECC error) 2m ago: needs a GPU reset or reboot",)
    assert dict(gpu["xid_errors"]) == {"48": 1}
    assert gpu["last_xid"]["xid"] == 48 and gpu["last_xid"]["source"] == "nvml"
    clock.advance(600)  # out of the window: healthy again, still counted
    snap = await watcher.poll_once()
    watcher.close()
    assert snap.data["gpus"][0]["healthy"] is True
    assert dict(snap.data["gpus"][0]["xid_errors"]) == {"48": 1}


# --- 6. XID storm -----------------------------------------------------------------------------
async def test_xid_storm_is_counted_exactly_and_makes_the_gpu_unhealthy(tmp_path: Path) -> None:
    fake = FakeNvml()
    watcher = make_watcher(tmp_path, fake, gpu=gpu_cfg(xid_storm=20))
    await watcher.poll_once()
    for _ in range(250):
        fake.emit_xid(0, 13)
    uuid = fake.gpus[0].uuid
    await until(lambda: watcher.sampler.tracker.counts(uuid) == {13: 250})  # type: ignore[union-attr]
    snap = await watcher.poll_once()
    watcher.close()
    gpu = snap.data["gpus"][0]
    assert dict(gpu["xid_errors"]) == {"13": 250}
    assert gpu["healthy"] is False
    assert gpu["reasons"] == ("XID storm: 250 XIDs in the last 1h (gpu.xid_storm is 20)",)


# --- 7. application XID -----------------------------------------------------------------------
async def test_application_xid_is_counted_but_the_gpu_stays_healthy(tmp_path: Path) -> None:
    fake = FakeNvml()
    watcher = make_watcher(tmp_path, fake)
    await watcher.poll_once()
    for xid in (13, 31, 43):
        fake.emit_xid(0, xid)
    uuid = fake.gpus[0].uuid
    await until(lambda: sum(watcher.sampler.tracker.counts(uuid).values()) == 3)  # type: ignore[union-attr]
    snap = await watcher.poll_once()
    watcher.close()
    gpu = snap.data["gpus"][0]
    assert gpu["healthy"] is True and gpu["health"] == "warning"
    assert dict(gpu["xid_errors"]) == {"13": 1, "31": 1, "43": 1}
    assert gpu["warnings"][0] == "application XID 13 (graphics engine exception) x1 in the last 1h"
    assert snap.state is SourceState.OK
    assert snap.data["ollama"]["state"] == "ok"


# --- 8. GPU lost ------------------------------------------------------------------------------
async def test_gpu_lost_is_gpu_state_and_the_other_gpu_keeps_working(tmp_path: Path) -> None:
    good = FakeGpu(uuid="GPU-good", bus_id="00000000:02:00.0")
    fake = FakeNvml(FakeGpu(name="NVIDIA H200", uuid="GPU-lost"), good)
    watcher = make_watcher(tmp_path, fake)
    await watcher.poll_once()
    fake.gpus[0].lost = True
    snap = await watcher.poll_once()
    watcher.close()
    assert snap.state is SourceState.DEGRADED
    lost, ok = snap.data["gpus"]
    assert (lost["uuid"], lost["name"]) == ("GPU-lost", "NVIDIA H200")  # remembered
    assert lost["error"].startswith("GPU is lost (fell off the bus)")
    assert lost["temperature_celsius"] is None and lost["healthy"] is False
    assert lost["reasons"][0].startswith("cannot read the GPU: GPU is lost")
    assert ok["healthy"] is True and ok["temperature_celsius"] == 51
    assert snap.reason is not None and snap.reason.startswith("GPU 0 (NVIDIA H200): cannot read")


# --- 9. driver missing ------------------------------------------------------------------------
async def test_driver_not_loaded_is_unavailable_with_a_reason(tmp_path: Path) -> None:
    fake = FakeNvml()
    fake.init_error = NVML_ERROR_DRIVER_NOT_LOADED
    watcher = make_watcher(tmp_path, fake)
    snap = await watcher.poll_once()
    watcher.close()
    assert snap.state is SourceState.UNAVAILABLE
    assert snap.reason == (
        "NVIDIA driver not loaded (is the nvidia kernel module loaded? see lsmod, dmesg) "
        "(NVML: Driver Not Loaded)"
    )
    assert snap.data["gpus"] == ()


async def test_driver_lost_after_start_reports_known_gpus_then_recovers(tmp_path: Path) -> None:
    fake = FakeNvml()
    watcher = make_watcher(tmp_path, fake)
    assert (await watcher.poll_once()).state is SourceState.OK
    fake.count_error = NVML_ERROR_LIB_RM_VERSION_MISMATCH  # driver upgraded under us
    fake.init_error = NVML_ERROR_LIB_RM_VERSION_MISMATCH
    snap = await watcher.poll_once()
    assert snap.state is SourceState.DEGRADED  # the GPU is known: it is sick, not absent
    assert "reboot or reload the nvidia module" in snap.data["gpus"][0]["error"]
    assert fake.refcount in (0, 1)  # the session is dropped (the thread may be finishing)
    snap = await watcher.poll_once()  # still broken: init fails, still reported
    assert snap.state is SourceState.DEGRADED
    fake.count_error = fake.init_error = None  # the driver is back
    snap = await watcher.poll_once()
    assert snap.state is SourceState.OK and snap.data["gpus"][0]["healthy"] is True
    await until(lambda: watcher.sampler.event_status.startswith("listening"))  # type: ignore[union-attr]
    watcher.close()
    await until(lambda: fake.refcount == 0)


async def test_no_nvidia_library_falls_through_to_no_gpu(tmp_path: Path) -> None:
    fake = FakeNvml()
    fake.init_error = NVML_ERROR_LIBRARY_NOT_FOUND  # nvidia-ml-py installed, no driver
    watcher = make_watcher(tmp_path, fake, nvidia=False)
    snap = await watcher.poll_once()
    watcher.close()
    assert snap.state is SourceState.UNAVAILABLE
    assert snap.reason is not None and snap.reason.startswith("no GPU found (NVML library")
    assert snap.data["gpus"] == ()


async def test_nvml_error_on_one_field_is_not_a_lost_gpu(tmp_path: Path) -> None:
    fake = FakeNvml()
    watcher = make_watcher(tmp_path, fake)

    def no_permission(handle: object) -> int:
        from ..fixtures.gpu.fake_nvml import NVMLError

        raise NVMLError(4)

    fake.nvmlDeviceGetPowerUsage = no_permission  # type: ignore[method-assign]
    snap = await watcher.poll_once()
    watcher.close()
    gpu = snap.data["gpus"][0]
    assert gpu["power_watts"] is None and gpu["healthy"] is True and gpu["error"] is None


# --- 10. event wait timeout -------------------------------------------------------------------
async def test_event_wait_times_out_quietly_and_keeps_listening(tmp_path: Path) -> None:
    fake = FakeNvml()
    watcher = make_watcher(tmp_path, fake)
    await watcher.poll_once()
    await until(lambda: fake.waits >= 3)  # three 100 ms waits ended in NVMLError_Timeout
    snap = await watcher.poll_once()
    assert snap.state is SourceState.OK
    assert snap.data["xid"]["events"] == "listening on 1 GPU(s)"
    fake.emit_xid(0, 43)  # and an event after the timeouts still arrives
    await until(lambda: watcher.sampler.tracker.counts(fake.gpus[0].uuid) == {43: 1})  # type: ignore[union-attr]
    watcher.close()


async def test_event_wait_error_other_than_timeout_is_reported_not_spun(tmp_path: Path) -> None:
    fake = FakeNvml()
    watcher = make_watcher(tmp_path, fake)
    await watcher.poll_once()
    fake.wait_error = NVML_ERROR_GPU_IS_LOST
    await until(lambda: "event wait failed" in watcher.sampler.event_status)  # type: ignore[union-attr]
    waits = fake.waits
    await asyncio.sleep(0.3)
    assert fake.waits - waits <= 2  # backs off (1 s) instead of spinning on the error
    watcher.close()


async def test_gpu_without_xid_events_relies_on_the_kernel_log(tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("6,1,1000,-;old record before the agent started\n")
    clock = Clock(now=5300.0)
    fake = FakeNvml(FakeGpu(xid_events=False))
    cfg = GpuConfig(ollama_url=closed_url(), kernel_log=True)
    watcher = make_watcher(tmp_path, fake, gpu=cfg, clock=clock, kmsg=kmsg)
    snap = await watcher.poll_once()
    assert snap.data["xid"]["events"].startswith("unavailable: GPU-5f1e0b6c")
    assert snap.data["xid"]["kernel_log"] == "reading"
    with kmsg.open("a") as f:
        f.write((Path(__file__).parent.parent / "fixtures/gpu/kmsg-xid.txt").read_text())
    snap = await watcher.poll_once()
    watcher.close()
    gpu = snap.data["gpus"][0]
    # 79 and 13 name this GPU's PCI address; 31 names another (an old driver's format).
    assert dict(gpu["xid_errors"]) == {"13": 1, "79": 1}
    assert gpu["reasons"] == (
        "XID 79 (GPU has fallen off the bus) 3m20s ago: needs a GPU reset or reboot",
    )
    assert gpu["last_xid"]["source"] == "kernel"
    assert dict(snap.data["xid"]["unattributed"]) == {"31": 1}


async def test_xid_from_both_nvml_and_kernel_log_counts_once(tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    clock = Clock(now=5200.0)  # the kernel record below is stamped 5200.000000 s
    fake = FakeNvml()
    cfg = GpuConfig(ollama_url=closed_url(), kernel_log=True)
    watcher = make_watcher(tmp_path, fake, gpu=cfg, clock=clock, kmsg=kmsg)
    await watcher.poll_once()
    fake.emit_xid(0, 13)
    uuid = fake.gpus[0].uuid
    await until(lambda: watcher.sampler.tracker.counts(uuid) == {13: 1})  # type: ignore[union-attr]
    with kmsg.open("a") as f:
        f.write("4,1522,5200000000,-;NVRM: Xid (PCI:0000:01:00): 13, pid=4242, name=ollama\n")
    snap = await watcher.poll_once()
    watcher.close()
    assert dict(snap.data["gpus"][0]["xid_errors"]) == {"13": 1}


# --- 11. shutdown during wait ----------------------------------------------------------------
async def test_shutdown_during_event_wait_stops_the_thread_and_releases_nvml(
    tmp_path: Path,
) -> None:
    fake = FakeNvml()
    watcher = make_watcher(tmp_path, fake, wait_ms=500)  # the thread is inside it at stop
    task = asyncio.create_task(watcher.run())
    await until(lambda: watcher.sampler is not None and fake.waits >= 1)
    sampler = watcher.sampler
    assert sampler is not None and sampler.xid_events is not None
    thread = sampler.xid_events.thread
    assert thread is not None and thread.is_alive()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # run() returned only after the thread ended: bounded by one wait (500 ms), not hung.
    assert not thread.is_alive()
    assert fake.refcount == 0 and all(s.freed for s in fake.event_sets)
    assert watcher.sampler is None


async def test_agent_stops_promptly_with_the_xid_thread_running(
    tmp_path: Path,
    start_agent,  # type: ignore[no-untyped-def]
) -> None:
    """The real daemon with the fake module on its import path: SIGTERM ends it < 5 s."""
    import json
    import signal
    import subprocess

    from ..conftest import HANG_S, REPO, http

    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "pynvml.py").write_text(
        "import sys\n"
        "from tests.fixtures.gpu.fake_nvml import FakeGpu, FakeNvml\n"
        "sys.modules[__name__] = FakeNvml(FakeGpu(temperature=64))\n"
    )
    agent = start_agent(PYTHONPATH=f"{shim}:{REPO}")
    doc = json.loads(http("GET", f"{agent.base}/status")[2])
    assert doc["gpus"][0]["temperature_celsius"] == 64
    assert doc["sources"]["gpu"]["state"] == "ok"
    metrics = http("GET", f"{agent.base}/metrics")[2].decode()
    uuid = "GPU-5f1e0b6c-0000-4000-8000-000000000000"
    assert f'aistack_gpu_temperature_celsius{{gpu="0",uuid="{uuid}"}} 64.0' in metrics
    agent.proc.send_signal(signal.SIGTERM)
    try:
        code = agent.proc.wait(HANG_S)
    except subprocess.TimeoutExpired:
        raise AssertionError("the agent did not stop on SIGTERM (NVML's thread held it)") from None
    assert code == 0


async def test_store_gets_a_first_snapshot_even_when_nvml_hangs(tmp_path: Path) -> None:
    """A hung NVML call times out the poll; the next poll says so instead of piling up."""
    import threading

    release = threading.Event()
    fake = FakeNvml()

    def hang() -> int:
        release.wait(10)
        return 1

    store = SnapshotStore()
    watcher = make_watcher(tmp_path, fake, store=store)
    watcher.config = type(watcher.config)(interval=2.0, timeout=0.3)
    await watcher.poll_once()
    fake.nvmlDeviceGetCount = hang  # type: ignore[method-assign]
    snap = await watcher.poll_once()
    assert snap.state is SourceState.UNAVAILABLE and snap.reason == "no answer within 300ms"
    snap = await watcher.poll_once()
    assert snap.reason == "the previous GPU sample is still running (a hung NVML call?)"
    release.set()
    await until(lambda: not watcher.sampler.busy)  # type: ignore[union-attr]
    watcher.close()
