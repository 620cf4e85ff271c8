"""When a GPU is sick, and what that means for Ollama: pure functions of samples and time.

Three levels: `ok`; `warning` (worth a look, the GPU still works: warm, memory nearly
full, an application XID); `unhealthy` (the GPU needs attention before it serves again:
critical temperature, an uncorrectable ECC error, an XID that needs a reset or reboot, an
XID storm, or the GPU cannot be read at all). Time comes in as an argument, so the XID
window is tested without waiting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..config import GpuConfig, format_duration
from .model import GpuSample
from .xid import XidEvent, xid_name

Level = Literal["ok", "warning", "unhealthy"]


@dataclass(frozen=True)
class Health:
    level: Level
    reasons: tuple[str, ...] = ()  # why unhealthy
    warnings: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.level != "unhealthy"


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


def evaluate(
    gpu: GpuSample, recent_xids: Sequence[XidEvent], config: GpuConfig, now: float
) -> Health:
    """Judge one sample; `recent_xids` are this GPU's XIDs within gpu.xid_window."""
    reasons: list[str] = []
    warnings: list[str] = []
    if gpu.error:
        reasons.append(f"cannot read the GPU: {gpu.error}")
    temp = gpu.temperature_celsius
    if temp is not None:
        if temp >= config.temperature_critical:
            reasons.append(
                f"temperature {temp:.0f}°C is at or above gpu.temperature_critical "
                f"({config.temperature_critical}°C)"
            )
        elif temp >= config.temperature_warn:
            warnings.append(
                f"temperature {temp:.0f}°C is at or above gpu.temperature_warn "
                f"({config.temperature_warn}°C)"
            )
    used, total = gpu.memory_used_bytes, gpu.memory_total_bytes
    if used is not None and total:
        percent = 100 * used / total
        if percent >= config.memory_full_percent:
            warnings.append(
                f"memory {percent:.0f}% full ({_gib(used)} of {_gib(total)}; "
                f"gpu.memory_full_percent is {config.memory_full_percent})"
            )
    if gpu.ecc_uncorrected:
        reasons.append(
            f"{gpu.ecc_uncorrected} uncorrectable ECC error(s) since the driver loaded; "
            "reset the GPU or reboot"
        )
    if gpu.throttle_thermal:
        warnings.append("clocks slowed down to cool the GPU (thermal throttling)")
    reasons += _xid_reasons(recent_xids, config, now)
    warnings += _xid_warnings(recent_xids, config)
    level: Level = "unhealthy" if reasons else "warning" if warnings else "ok"
    return Health(level, tuple(reasons), tuple(warnings))


def _xid_reasons(events: Sequence[XidEvent], config: GpuConfig, now: float) -> list[str]:
    out = []
    reset = config.reset_xid_set
    latest: dict[int, XidEvent] = {}
    for event in events:
        if event.xid in reset:
            latest[event.xid] = event
    for xid, event in sorted(latest.items()):
        ago = format_duration(max(0, round(now - event.at)))
        out.append(f"XID {xid} ({xid_name(xid)}) {ago} ago: needs a GPU reset or reboot")
    window = format_duration(config.xid_window)
    if config.xid_storm and len(events) >= config.xid_storm:
        out.append(
            f"XID storm: {len(events)} XIDs in the last {window} "
            f"(gpu.xid_storm is {config.xid_storm})"
        )
    return out


def _xid_warnings(events: Sequence[XidEvent], config: GpuConfig) -> list[str]:
    reset, app = config.reset_xid_set, config.application_xid_set
    counts = Counter(e.xid for e in events if e.xid not in reset)
    window = format_duration(config.xid_window)
    out = []
    for xid, n in sorted(counts.items()):
        kind = "application XID" if xid in app else "XID"
        out.append(f"{kind} {xid} ({xid_name(xid)}) x{n} in the last {window}")
    return out


def summary(gpu: GpuSample, health: Health) -> str:
    """`GPU 0 (NVIDIA H200): <first reason>`: one line for /status and systemd's STATUS."""
    why = health.reasons[0] if health.reasons else (health.warnings or ("ok",))[0]
    more = len(health.reasons) - 1
    return f"GPU {gpu.index} ({gpu.name}): {why}" + (f" (+{more} more)" if more > 0 else "")


def ollama_view(
    judged: Sequence[tuple[GpuSample, Health]], models: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Ollama as the GPU side sees it: degraded while a GPU is unhealthy, with the reason.

    A model partly in system memory (`size_vram < size`) is a warning: it runs, slowly
    (the seed's "model loading slow"). The services work reads `state` and `reasons`.
    """
    reasons = [f"GPU unhealthy: {summary(g, h)}" for g, h in judged if not h.healthy]
    warnings = []
    if judged:  # with no GPU, running on the CPU is the plan, not a problem
        for model in models:
            size, vram = model["size_bytes"], model["vram_bytes"]
            if vram < size:
                where = "entirely on the CPU"
                if vram:
                    cpu = f"{_gib(size - vram)} of {_gib(size)}"
                    where = f"partly on the CPU ({cpu} in system memory)"
                warnings.append(f"model {model['name']} is {where}: expect slow answers")
    return {
        "state": "degraded" if reasons else "ok",
        "reasons": reasons,
        "warnings": warnings,
    }
