"""benchmarks/gpu_device_check.py runs end to end (on the fake NVML module, no nvidia-smi).

On a real GPU host it is run by hand; here it must at least run, report, and pick the
right exit code, so it does not break unnoticed between device checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_device_check.py"


def _run(tmp_path: Path, shim: bool) -> subprocess.CompletedProcess[str]:
    pythonpath = str(REPO)
    if shim:
        (tmp_path / "pynvml.py").write_text(
            "import sys\n"
            "from tests.fixtures.gpu.fake_nvml import FakeGpu, FakeNvml\n"
            "sys.modules[__name__] = FakeNvml(FakeGpu(fan=40))\n"
        )
        pythonpath = f"{tmp_path}:{REPO}"
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = {"PATH": str(empty), "PYTHONPATH": pythonpath}  # no nvidia-smi, no promtool
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--samples", "20", "--json", str(tmp_path / "out.json")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_runs_against_nvml_and_reports(tmp_path: Path) -> None:
    proc = _run(tmp_path, shim=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no comparison: nvidia-smi not on PATH" in proc.stdout
    assert "cost of one sample (20 samples, 1 GPU(s), in-process)" in proc.stdout
    assert "XID events: listening on 1 GPU(s)" in proc.stdout
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["exit_code"] == 0 and report["sample_ms"]["n"] == 20
    assert report["gpus"][0]["fields"]["temperature_celsius"]["agent"] == 51.0
    assert report["stop_ms"] < 1500


def test_without_nvidia_ml_py_it_says_it_could_not_run(tmp_path: Path) -> None:
    proc = _run(tmp_path, shim=False)
    assert proc.returncode == 2
    # Either nvidia-ml-py is absent, or (installed in this venv) it finds no NVIDIA driver.
    assert "nvidia-ml-py is not installed" in proc.stderr or "NVML did not start" in proc.stderr
