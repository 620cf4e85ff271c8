"""AMD GPUs from sysfs (the amdgpu driver's files), with no extra dependency.

Per card, under /sys/class/drm/cardN/device: `vendor` (0x1002), `gpu_busy_percent`,
`mem_info_vram_used` / `mem_info_vram_total` (bytes), and the hwmon directory:
`temp*_input` (millidegrees; the `edge` sensor), `power1_average` or `power1_input`
and `power1_cap` (microwatts), `pwm1` (0-255). A file the card lacks is None.
"""

from __future__ import annotations

import re
from pathlib import Path

from .model import GpuSample

AMD_VENDOR = "0x1002"
_CARD = re.compile(r"card(\d+)$")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def amd_cards(drm_root: Path) -> list[Path]:
    """The `cardN` directories of AMD GPUs (connectors such as card0-DP-1 are skipped)."""
    try:
        entries = list(drm_root.iterdir())
    except OSError:
        return []
    cards = [e for e in entries if _CARD.match(e.name)]
    cards.sort(key=lambda e: int(_CARD.match(e.name).group(1)))  # type: ignore[union-attr]
    return [c for c in cards if _read(c / "device" / "vendor") == AMD_VENDOR]


def _uevent(device: Path) -> dict[str, str]:
    text = _read(device / "uevent") or ""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _hwmon(device: Path) -> Path | None:
    try:
        found = sorted((device / "hwmon").glob("hwmon*"))
    except OSError:
        return None
    return found[0] if found else None


def _edge_temperature(hwmon: Path) -> float | None:
    inputs = sorted(hwmon.glob("temp*_input"))
    for path in inputs:
        if _read(path.with_name(path.name.replace("_input", "_label"))) == "edge":
            value = _int(path)
            return value / 1000 if value is not None else None
    value = _int(hwmon / "temp1_input")
    return value / 1000 if value is not None else None


def read_card(card: Path, index: int) -> GpuSample:
    device = card / "device"
    uevent = _uevent(device)
    slot = uevent.get("PCI_SLOT_NAME")
    unique = _read(device / "unique_id")
    name = _read(device / "product_name") or f"AMD GPU {uevent.get('PCI_ID', card.name)}"
    sample = GpuSample(
        index=index,
        uuid=f"amd-{unique or slot or card.name}",
        name=name,
        vendor="amd",
        pci_bus_id=slot,
    )
    busy = _int(device / "gpu_busy_percent")
    sample.utilization_ratio = busy / 100 if busy is not None else None
    sample.memory_used_bytes = _int(device / "mem_info_vram_used")
    sample.memory_total_bytes = _int(device / "mem_info_vram_total")
    hwmon = _hwmon(device)
    if hwmon is not None:
        sample.temperature_celsius = _edge_temperature(hwmon)
        power = _int(hwmon / "power1_average")
        if power is None:
            power = _int(hwmon / "power1_input")
        sample.power_watts = power / 1e6 if power is not None else None
        cap = _int(hwmon / "power1_cap")
        sample.power_limit_watts = cap / 1e6 if cap is not None else None
        pwm = _int(hwmon / "pwm1")
        sample.fan_ratio = round(pwm / 255, 4) if pwm is not None else None
    return sample


def read_amd(drm_root: Path) -> list[GpuSample]:
    return [read_card(card, index) for index, card in enumerate(amd_cards(drm_root))]
