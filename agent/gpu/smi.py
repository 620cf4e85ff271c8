"""NVIDIA GPUs through `nvidia-smi --query-gpu=... --format=csv`, when nvidia-ml-py is absent.

Columns are found by their header names, not their position, so the parser reads any
field list (the recorded outputs in the tests carry every field a driver knows). Values
come as `143771 MiB`, `85.12 W`, `7 %`, `Active`, or `[N/A]` / `[Not Supported]` /
`[Requested functionality has been deprecated]`, all of which mean "not reported".
Drivers before 535 call the throttle fields `clocks_throttle_reasons.*`; both spellings
are accepted and the query is retried with the old one when the driver refuses the new.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from . import procs
from .model import Collection, GpuProcess, GpuSample

QUERY_FIELDS = (
    "index", "uuid", "name", "pci.bus_id", "driver_version", "temperature.gpu",
    "memory.used", "memory.total", "utilization.gpu", "power.draw", "power.limit",
    "fan.speed", "ecc.errors.corrected.volatile.total", "ecc.errors.uncorrected.volatile.total",
    "clocks_event_reasons.sw_thermal_slowdown", "clocks_event_reasons.hw_thermal_slowdown",
    "clocks_event_reasons.sw_power_cap", "clocks_event_reasons.hw_power_brake_slowdown",
)  # fmt: skip
APPS_FIELDS = ("gpu_uuid", "pid", "process_name", "used_memory")

_EVENT, _THROTTLE = "clocks_event_reasons.", "clocks_throttle_reasons."
_UNIT = re.compile(r"\s*\[([^\]]*)\]$")
_NUMBER = re.compile(r"^(-?\d+(?:\.\d+)?)\s*([A-Za-z%]*)$")
_BYTES = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}

# (returncode, stdout, stderr) for an argument list.
Runner = Callable[[Sequence[str], float], tuple[int, str, str]]


def run_command(args: Sequence[str], timeout: float) -> tuple[int, str, str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def parse_csv(text: str) -> list[dict[str, tuple[str, str | None]]]:
    """Rows as {field: (raw value, unit from the header)}; field names in today's spelling."""
    rows = list(csv.reader(io.StringIO(text.strip()), skipinitialspace=True))
    if not rows:
        return []
    header = []
    for cell in rows[0]:
        cell = cell.strip()
        unit = _UNIT.search(cell)
        name = _UNIT.sub("", cell).strip().replace(_THROTTLE, _EVENT)
        header.append((name, unit.group(1) if unit else None))
    out = []
    for row in rows[1:]:
        if not row or all(not c.strip() for c in row):
            continue
        out.append(
            {name: (value.strip(), unit) for (name, unit), value in zip(header, row, strict=False)}
        )
    return out


def _missing(raw: str) -> bool:
    return not raw or raw.startswith("[") or raw in ("N/A", "Unknown Error")


def number(cell: tuple[str, str | None] | None) -> tuple[float, str | None] | None:
    """(value, unit) of a numeric cell; the unit from the value, else from the header."""
    if cell is None or _missing(cell[0]):
        return None
    match = _NUMBER.match(cell[0])
    if not match:
        return None
    return float(match.group(1)), match.group(2) or cell[1]


def to_bytes(cell: tuple[str, str | None] | None) -> int | None:
    value = number(cell)
    if value is None:
        return None
    return int(value[0] * _BYTES.get(value[1] or "MiB", 2**20))


def to_ratio(cell: tuple[str, str | None] | None) -> float | None:
    value = number(cell)
    return value[0] / 100 if value is not None else None


def to_float(cell: tuple[str, str | None] | None) -> float | None:
    value = number(cell)
    return value[0] if value is not None else None


def to_int(cell: tuple[str, str | None] | None) -> int | None:
    value = number(cell)
    return int(value[0]) if value is not None else None


def to_active(*cells: tuple[str, str | None] | None) -> bool | None:
    seen = [c[0] for c in cells if c is not None and not _missing(c[0])]
    if not seen:
        return None
    return any(v.lower() == "active" for v in seen)


def _text(cell: tuple[str, str | None] | None) -> str | None:
    return None if cell is None or _missing(cell[0]) else cell[0]


def parse_query_gpu(text: str) -> list[GpuSample]:
    samples = []
    for position, row in enumerate(parse_csv(text)):
        index = to_int(row.get("index"))
        index = position if index is None else index
        samples.append(
            GpuSample(
                index=index,
                uuid=_text(row.get("uuid")) or f"nvidia-{index}",
                name=_text(row.get("name")) or "NVIDIA GPU",
                vendor="nvidia",
                pci_bus_id=_text(row.get("pci.bus_id")),
                temperature_celsius=to_float(row.get("temperature.gpu")),
                memory_used_bytes=to_bytes(row.get("memory.used")),
                memory_total_bytes=to_bytes(row.get("memory.total")),
                utilization_ratio=to_ratio(row.get("utilization.gpu")),
                power_watts=to_float(row.get("power.draw")),
                power_limit_watts=to_float(row.get("power.limit")),
                fan_ratio=to_ratio(row.get("fan.speed")),
                ecc_corrected=to_int(row.get("ecc.errors.corrected.volatile.total")),
                ecc_uncorrected=to_int(row.get("ecc.errors.uncorrected.volatile.total")),
                throttle_thermal=to_active(
                    row.get(_EVENT + "sw_thermal_slowdown"), row.get(_EVENT + "hw_thermal_slowdown")
                ),
                throttle_power=to_active(
                    row.get(_EVENT + "sw_power_cap"), row.get(_EVENT + "hw_power_brake_slowdown")
                ),
            )
        )
    return samples


def driver_version(text: str) -> str | None:
    for row in parse_csv(text):
        version = _text(row.get("driver_version"))
        if version:
            return version
    return None


def parse_compute_apps(text: str) -> list[tuple[str, GpuProcess]]:
    """`--query-compute-apps` rows as (GPU uuid, process); the header says `used_gpu_memory`."""
    out = []
    for row in parse_csv(text):
        uuid, pid = _text(row.get("gpu_uuid")), to_int(row.get("pid"))
        if uuid is None or pid is None:
            continue
        memory = row.get("used_gpu_memory") or row.get("used_memory")
        out.append((uuid, GpuProcess(pid, _text(row.get("process_name")), to_bytes(memory))))
    return out


def _first_line(out: str, err: str) -> str:
    for line in (err + "\n" + out).splitlines():
        if line.strip():
            return line.strip()
    return "no output"


class SmiBackend:
    def __init__(
        self, command: str, run: Runner = run_command, *, proc_root: Path = Path("/proc"),
        timeout: float = 5.0,
    ) -> None:  # fmt: skip
        self.command = command
        self.run = run
        self.proc_root = proc_root
        self.timeout = timeout
        self._fields: Sequence[str] = QUERY_FIELDS

    def collect(self) -> Collection:
        try:
            code, out, err = self._query(self._fields)
            if code != 0 and "is not a valid field" in out + err and self._fields is QUERY_FIELDS:
                self._fields = [f.replace(_EVENT, _THROTTLE) for f in QUERY_FIELDS]  # < 535
                code, out, err = self._query(self._fields)
        except (OSError, subprocess.SubprocessError) as exc:
            return Collection("nvidia-smi", problem=f"nvidia-smi did not run: {exc}")
        if code != 0:
            return Collection(
                "nvidia-smi", problem=f"nvidia-smi failed (exit {code}): {_first_line(out, err)}"
            )
        gpus = parse_query_gpu(out)
        self._add_processes(gpus)
        return Collection("nvidia-smi", gpus, driver=driver_version(out))

    def _query(self, fields: Sequence[str]) -> tuple[int, str, str]:
        args = [self.command, f"--query-gpu={','.join(fields)}", "--format=csv"]
        return self.run(args, self.timeout)

    def _add_processes(self, gpus: list[GpuSample]) -> None:
        args = [self.command, f"--query-compute-apps={','.join(APPS_FIELDS)}", "--format=csv"]
        try:
            code, out, _ = self.run(args, self.timeout)
        except (OSError, subprocess.SubprocessError):
            return
        if code != 0:
            return
        by_uuid = {g.uuid: g for g in gpus}
        for uuid, proc in parse_compute_apps(out):
            if uuid in by_uuid:
                proc.container_id = procs.container_of(proc.pid, self.proc_root)
                by_uuid[uuid].processes.append(proc)
