"""AMD GPUs from a fake /sys/class/drm tree (tests/fixtures/gpu/sysfs), and no GPU at all."""

from __future__ import annotations

from pathlib import Path

from agent.gpu.amd import amd_cards, read_amd
from agent.snapshot import SourceState

from ..fixtures.gpu.support import FIXTURES, make_watcher

DRM = FIXTURES / "sysfs" / "class" / "drm"


def test_only_amd_cards_are_read() -> None:
    assert [c.name for c in amd_cards(DRM)] == ["card0", "card2"]  # not the iGPU, not DP-1


def test_rx_7900_xtx_with_hwmon() -> None:
    xtx, rx6600 = read_amd(DRM)
    assert (xtx.index, xtx.vendor, xtx.uuid) == (0, "amd", "amd-4a8f2e1c0d3b5a69")
    assert xtx.name == "AMD GPU 1002:744C" and xtx.pci_bus_id == "0000:03:00.0"
    assert xtx.utilization_ratio == 0.23
    assert xtx.memory_used_bytes == 8485761024 and xtx.memory_total_bytes == 25753026560
    assert xtx.temperature_celsius == 48.0  # the edge sensor, not junction or memory
    assert xtx.power_watts == 71.0 and xtx.power_limit_watts == 327.0
    assert xtx.fan_ratio == round(76 / 255, 4)
    assert xtx.ecc_uncorrected is None and xtx.throttle_thermal is None  # not in sysfs
    # The second card: no unique_id (uuid from the PCI slot), power1_input only, no fan.
    assert rx6600.uuid == "amd-0000:0b:00.0" and rx6600.index == 1
    assert rx6600.power_watts == 9.0 and rx6600.fan_ratio is None
    assert rx6600.temperature_celsius == 39.0


def test_missing_files_are_none(tmp_path: Path) -> None:
    device = tmp_path / "card3" / "device"
    device.mkdir(parents=True)
    (device / "vendor").write_text("0x1002\n")
    (gpu,) = read_amd(tmp_path)
    assert gpu.uuid == "amd-card3" and gpu.temperature_celsius is None
    assert gpu.memory_total_bytes is None and gpu.utilization_ratio is None


async def test_watcher_reads_amd_without_any_nvidia(tmp_path: Path) -> None:
    watcher = make_watcher(tmp_path, None, nvidia=False, drm_root=DRM)
    snap = await watcher.poll_once()
    watcher.close()
    assert snap.state is SourceState.OK
    assert snap.data["backend"] == "sysfs" and snap.data["vendor"] == "amd"
    assert [g["name"] for g in snap.data["gpus"]] == ["AMD GPU 1002:744C", "AMD GPU 1002:73FF"]
    assert snap.data["gpus"][0]["health"] == "ok"


async def test_no_gpu_at_all_is_unavailable_with_empty_gpus_not_an_error(tmp_path: Path) -> None:
    watcher = make_watcher(tmp_path, None, nvidia=False)
    snap = await watcher.poll_once()
    watcher.close()
    assert snap.state is SourceState.UNAVAILABLE
    assert snap.reason is not None and snap.reason.startswith("no GPU found (no NVIDIA driver at")
    assert snap.data["gpus"] == ()
    assert snap.data["ollama"]["state"] == "ok"
