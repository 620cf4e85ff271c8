"""nvidia-smi CSV parsing from recorded real output, and the nvidia-smi backend.

The recordings (tests/fixtures/gpu/smi, see its README) carry every field the driver
knows; `projecting_smi` answers the agent's own query by projecting columns out of them,
as nvidia-smi itself would, so the backend is tested on real values end to end.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from agent.gpu.smi import (
    QUERY_FIELDS,
    SmiBackend,
    parse_compute_apps,
    parse_csv,
    parse_query_gpu,
)
from agent.snapshot import SourceState

from ..fixtures.gpu.support import FIXTURES, make_watcher

SMI = FIXTURES / "smi"
H200 = SMI / "h200-580.173.02-query-gpu.csv"
RTX = SMI / "rtx4080super-595.71.05-load-query-gpu.csv"
RTX_APPS = SMI / "rtx4080super-595.71.05-load-compute-apps.csv"
MASKED_UUID = "GPU-00000000-0000-0000-0000-000000000000"


def test_h200_idle_recording() -> None:
    (gpu,) = parse_query_gpu(H200.read_text())
    assert (gpu.index, gpu.name, gpu.uuid) == (0, "NVIDIA H200", MASKED_UUID)
    assert gpu.pci_bus_id == "00000000:83:00.0"
    assert gpu.temperature_celsius == 37
    assert gpu.memory_used_bytes == 0
    assert gpu.memory_total_bytes == 143771 * 2**20
    assert gpu.utilization_ratio == 0
    assert gpu.power_watts == 85.12 and gpu.power_limit_watts == 700.0
    assert gpu.fan_ratio is None  # "[N/A]": no fan on an SXM module, not 0
    assert (gpu.ecc_corrected, gpu.ecc_uncorrected) == (0, 0)
    assert (gpu.throttle_thermal, gpu.throttle_power) == (False, False)  # only "gpu_idle" active


def test_rtx_4080_under_load_recording() -> None:
    (gpu,) = parse_query_gpu(RTX.read_text())
    assert gpu.name == "NVIDIA GeForce RTX 4080 SUPER"
    assert gpu.temperature_celsius == 46
    assert gpu.memory_used_bytes == 1474 * 2**20 and gpu.memory_total_bytes == 16376 * 2**20
    assert gpu.utilization_ratio == 0.07
    assert gpu.power_watts == 84.24 and gpu.power_limit_watts == 320.0
    assert gpu.fan_ratio == 0.0  # "0 %": a fan that stands still is a real 0
    assert (gpu.ecc_corrected, gpu.ecc_uncorrected) == (None, None)  # consumer card: no ECC


def test_header_units_and_both_throttle_spellings() -> None:
    text = (
        "index, memory.used [MiB], clocks_throttle_reasons.hw_thermal_slowdown, "
        "clocks_throttle_reasons.sw_power_cap, power.draw [W]\n"
        "0, 2048, Active, Not Active, [Not Supported]\n"
    )  # --format=csv,nounits from a driver before 535
    (gpu,) = parse_query_gpu(text)
    assert gpu.memory_used_bytes == 2 * 2**30
    assert (gpu.throttle_thermal, gpu.throttle_power) == (True, False)
    assert gpu.power_watts is None
    assert set(parse_csv(text)[0]) >= {"clocks_event_reasons.hw_thermal_slowdown"}


def test_compute_apps_recording() -> None:
    apps = parse_compute_apps(RTX_APPS.read_text())
    assert [(uuid, p.pid, p.name, p.memory_bytes) for uuid, p in apps] == [
        (MASKED_UUID, 2165, "/usr/bin/kwin_wayland", 25 * 2**20),
        (MASKED_UUID, 5022, "ffmpeg", 503 * 2**20),
        (MASKED_UUID, 5021, "ffmpeg", 360 * 2**20),
    ]
    assert parse_compute_apps((SMI / "h200-580.173.02-idle-compute-apps.csv").read_text()) == []


def _project(recording: Path, query: str, legacy: bool) -> str:
    """What nvidia-smi prints for `query` (comma list), from a full-field recording."""
    rows = list(csv.reader(io.StringIO(recording.read_text()), skipinitialspace=True))
    names = [h.split(" [")[0] for h in rows[0]]
    wanted = [
        q.replace("clocks_throttle_reasons.", "clocks_event_reasons.") for q in query.split(",")
    ]
    cols = [names.index(w) for w in wanted]
    header = [rows[0][c] for c in cols]
    if legacy:
        header = [h.replace("clocks_event_reasons.", "clocks_throttle_reasons.") for h in header]
    lines = [", ".join(header)] + [", ".join(r[c] for c in cols) for r in rows[1:]]
    return "\n".join(lines) + "\n"


class ProjectingSmi:
    """Answers the agent's nvidia-smi calls from the recordings (an old driver refuses the
    `clocks_event_reasons` spelling, as drivers before 535 do)."""

    def __init__(self, query: Path, apps: Path | None = None, old_driver: bool = False) -> None:
        self.query, self.apps, self.old_driver = query, apps, old_driver
        self.calls: list[list[str]] = []

    def __call__(self, args: Sequence[str], timeout: float) -> tuple[int, str, str]:
        self.calls.append(list(args))
        arg = args[1]
        if arg.startswith("--query-compute-apps="):
            return 0, self.apps.read_text() if self.apps else "", ""
        query = arg.removeprefix("--query-gpu=")
        if self.old_driver and "clocks_event_reasons." in query:
            bad = next(f for f in query.split(",") if f.startswith("clocks_event_reasons."))
            return 2, f'Field "{bad}" is not a valid field to query.\n\n', ""
        return 0, _project(self.query, query, legacy=self.old_driver), ""


def test_backend_on_the_recordings() -> None:
    smi = ProjectingSmi(RTX, RTX_APPS)
    collection = SmiBackend("nvidia-smi", smi, proc_root=FIXTURES / "proc").collect()
    assert collection.backend == "nvidia-smi" and collection.driver == "595.71.05"
    (gpu,) = collection.gpus
    assert gpu.temperature_celsius == 46 and [p.pid for p in gpu.processes] == [2165, 5022, 5021]
    assert smi.calls[0] == ["nvidia-smi", f"--query-gpu={','.join(QUERY_FIELDS)}", "--format=csv"]


def test_backend_retries_with_the_old_field_names() -> None:
    smi = ProjectingSmi(H200, old_driver=True)
    backend = SmiBackend("nvidia-smi", smi)
    (gpu,) = backend.collect().gpus
    assert gpu.temperature_celsius == 37 and gpu.throttle_thermal is False
    assert "clocks_throttle_reasons.sw_thermal_slowdown" in smi.calls[1][1]
    backend.collect()  # remembered: no second refusal
    assert sum("clocks_event_reasons" in c[1] for c in smi.calls) == 1


def test_backend_reports_a_failing_nvidia_smi() -> None:
    message = (SMI / "driver-not-loaded.txt").read_text()
    collection = SmiBackend("nvidia-smi", lambda args, timeout: (9, message, "")).collect()
    assert collection.gpus == []
    assert collection.problem == (
        "nvidia-smi failed (exit 9): NVIDIA-SMI has failed because it couldn't communicate "
        "with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."
    )


def test_backend_when_nvidia_smi_cannot_run() -> None:
    def missing(args: Sequence[str], timeout: float) -> tuple[int, str, str]:
        raise FileNotFoundError(2, "No such file or directory", args[0])

    collection = SmiBackend("/usr/bin/nvidia-smi", missing).collect()
    assert collection.problem is not None and collection.problem.startswith(
        "nvidia-smi did not run"
    )


async def test_watcher_uses_nvidia_smi_without_nvidia_ml_py(tmp_path: Path) -> None:
    watcher = make_watcher(tmp_path, None, smi_command="/usr/bin/nvidia-smi",
                           smi_run=ProjectingSmi(H200))  # fmt: skip
    snap = await watcher.poll_once()
    watcher.close()
    assert snap.state is SourceState.OK
    assert snap.data["backend"] == "nvidia-smi" and snap.data["driver"] == "580.173.02"
    assert snap.data["gpus"][0]["memory_total_bytes"] == 143771 * 2**20
    assert snap.data["xid"]["events"] == "no NVML"


async def test_watcher_with_nvidia_driver_but_no_way_to_read_it(tmp_path: Path) -> None:
    watcher = make_watcher(tmp_path, None, nvidia=True)
    snap = await watcher.poll_once()
    watcher.close()
    assert snap.state is SourceState.UNAVAILABLE
    assert snap.reason is not None and "nvidia-ml-py is not installed" in snap.reason
