"""GPU device check: the agent's collector against real NVML, compared with nvidia-smi.

For a machine with an NVIDIA GPU and nvidia-ml-py installed. It

1. samples every GPU with the agent's NVML backend (the code the daemon runs),
2. asks nvidia-smi for the same values and compares them field by field, with
   tolerances for what moves between two reads (temperature, power, utilization),
3. runs one full GPU watcher poll (health, Ollama, snapshot) and renders the GPU metrics,
4. measures the cost of one sample (p50/p95/max over --samples), NVML start-up, the XID
   event thread's idle CPU and its stop latency, and one nvidia-smi call for scale.

    python3 benchmarks/gpu_device_check.py [--samples 200] [--json FILE]

Exit 0: every compared value agrees. Exit 1: a real mismatch (or the collector raised).
Exit 2: the check could not run (no nvidia-ml-py, or NVML does not start). A field
either side does not report is printed as n/a and never fails the check. Runs < 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEADLINE = time.monotonic() + 50.0  # keep the whole check under a minute

# field, nvidia-smi query name, comparison: ("exact"), ("abs", tol), ("mib", tol MiB),
# ("rel", abs tol, relative tol); core fields must be read by the agent when smi has them.
FIELDS: list[tuple[str, str, tuple[Any, ...], bool]] = [
    ("uuid", "uuid", ("exact",), True),
    ("name", "name", ("exact",), True),
    ("pci_bus_id", "pci.bus_id", ("pci",), True),
    ("temperature_celsius", "temperature.gpu", ("abs", 3.0), True),
    ("memory_total_bytes", "memory.total", ("mib", 2.0), True),
    ("memory_used_bytes", "memory.used", ("mib", 256.0), True),
    ("utilization_ratio", "utilization.gpu", ("abs", 0.25), True),
    ("power_watts", "power.draw", ("rel", 15.0, 0.15), True),
    ("power_limit_watts", "power.limit", ("abs", 1.0), True),
    ("fan_ratio", "fan.speed", ("abs", 0.10), False),
    ("ecc_corrected", "ecc.errors.corrected.volatile.total", ("exact",), False),
    ("ecc_uncorrected", "ecc.errors.uncorrected.volatile.total", ("exact",), False),
    ("throttle_thermal", "thermal", ("soft",), False),
    ("throttle_power", "power", ("soft",), False),
]
SMI_THROTTLE = {
    "thermal": ("hw_thermal_slowdown", "sw_thermal_slowdown"),
    "power": ("sw_power_cap", "hw_power_brake_slowdown"),
}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f} ms"


def _num(text: str) -> float | None:
    text = text.strip()
    if not text or text.startswith("[") or text in ("N/A", "Unknown Error"):
        return None
    try:
        return float(text.split()[0])
    except ValueError:
        return None


def smi_query(smi: str) -> tuple[list[dict[str, str]], float, str | None]:
    """nvidia-smi's own view, parsed here independently of the agent's smi module."""
    names = sorted({f[1] for f in FIELDS if f[1] not in SMI_THROTTLE} | {"index", "driver_version"})
    for prefix in ("clocks_event_reasons.", "clocks_throttle_reasons."):
        throttle = [prefix + r for pair in SMI_THROTTLE.values() for r in pair]
        query = names + throttle
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [smi, f"--query-gpu={','.join(query)}", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=20, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            return [], 0.0, f"nvidia-smi did not run: {exc}"
        took = time.perf_counter() - start
        if proc.returncode == 0:
            rows = []
            for line in proc.stdout.strip().splitlines():
                values = [v.strip() for v in line.split(",")]
                row = dict(zip(query, values, strict=False))
                for key, pair in SMI_THROTTLE.items():
                    states = [row.get(prefix + r, "") for r in pair]
                    known = [s for s in states if s in ("Active", "Not Active")]
                    row[key] = "" if not known else str(any(s == "Active" for s in known))
                rows.append(row)
            return rows, took, None
        if "is not a valid field" not in proc.stdout + proc.stderr:
            return [], took, f"nvidia-smi exit {proc.returncode}: {proc.stdout.strip()[:200]}"
    return [], 0.0, "nvidia-smi refused both throttle field spellings"


def smi_apps(smi: str) -> dict[str, set[int]] | None:
    try:
        proc = subprocess.run(
            [smi, "--query-compute-apps=gpu_uuid,pid", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    out: dict[str, set[int]] = {}
    for line in proc.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[1].isdigit():
            out.setdefault(parts[0], set()).add(int(parts[1]))
    return out


def compare(
    field: str, ours: Any, raw: str | None, rule: tuple[Any, ...], core: bool
) -> tuple[str, str]:
    """(verdict, smi value shown): verdict is ok, MISMATCH, MISSING, n/a, or note."""
    if raw is None:
        return "n/a", "-"
    kind = rule[0]
    if kind == "exact" and field in ("uuid", "name"):
        return ("ok" if ours == raw else "MISMATCH"), raw
    if kind == "pci":
        same = (ours or "").lower().lstrip("0") == raw.lower().lstrip("0")
        return ("ok" if same else "MISMATCH"), raw
    if kind == "soft":
        theirs: bool | None = {"True": True, "False": False}.get(raw)
        if theirs is None or ours is None:
            return "n/a", raw or "-"
        return ("ok" if ours == theirs else "note (moves)"), raw
    value = _num(raw)
    if field in ("utilization_ratio", "fan_ratio") and value is not None:
        value /= 100
    if field.startswith("memory_") and value is not None:
        value *= 2**20
    if value is None and ours is None:
        return "n/a", raw
    if value is None:
        return "note (smi n/a)", raw
    if ours is None:
        return ("MISSING" if core else "note (agent n/a)"), raw
    diff = abs(float(ours) - value)
    if kind == "exact":
        ok = diff == 0
    elif kind == "abs":
        ok = diff <= rule[1]
    elif kind == "mib":
        ok = diff <= rule[1] * 2**20
    else:  # rel
        ok = diff <= max(rule[1], rule[2] * value)
    return ("ok" if ok else "MISMATCH"), raw


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="samples timed (default 200)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    report: dict[str, Any] = {"failures": [], "notes": []}
    code = run(args, report)
    report["exit_code"] = code
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    print(f"\nresult: {'OK' if code == 0 else 'MISMATCH' if code == 1 else 'COULD NOT RUN'}"
          f" (exit {code})")  # fmt: skip
    for failure in report["failures"]:
        print(f"  FAIL {failure}")
    return code


def run(args: argparse.Namespace, report: dict[str, Any]) -> int:
    try:
        import pynvml
    except ImportError:
        print("nvidia-ml-py is not installed: pip install nvidia-ml-py", file=sys.stderr)
        return 2
    from agent.gpu.nvml import NvmlBackend
    from agent.gpu.xid import XidTracker

    try:
        from importlib.metadata import version

        nvml_version = version("nvidia-ml-py")
    except Exception:
        nvml_version = "?"
    print(f"nvidia-ml-py {nvml_version}, python {sys.version.split()[0]}")
    report["nvidia_ml_py"] = nvml_version
    tracker = XidTracker()
    backend = NvmlBackend(pynvml, tracker, wait_ms=500)
    start = time.perf_counter()
    try:
        first = backend.collect()
    except Exception as exc:  # a bug in the collector on real hardware: that is a failure
        report["failures"].append(f"collector raised on first sample: {exc!r}")
        return 1
    cold = time.perf_counter() - start
    if not first.gpus:
        print(f"NVML did not start or found no GPU: {first.problem}", file=sys.stderr)
        backend.close()
        return 2
    print(f"driver {first.driver}; {len(first.gpus)} GPU(s); XID events: {backend.event_status}")
    report["driver"] = first.driver
    report["event_status"] = backend.event_status
    failures: list[str] = report["failures"]
    try:
        # --- 1+2: values against nvidia-smi ---------------------------------------------------
        sample = backend.collect()
        smi = shutil.which("nvidia-smi")
        rows, smi_time, smi_problem = smi_query(smi) if smi else ([], 0.0, "nvidia-smi not on PATH")
        if smi_problem:
            print(f"\nno comparison: {smi_problem}")
            report["notes"].append(smi_problem)
        by_index = {r.get("index", ""): r for r in rows}
        report["gpus"] = []
        for gpu in sample.gpus:
            row = by_index.get(str(gpu.index))
            print(
                f"\nGPU {gpu.index}: {gpu.name} ({gpu.uuid})"
                + (f" ERROR {gpu.error}" if gpu.error else "")
            )
            if gpu.error:
                failures.append(f"GPU {gpu.index} could not be read: {gpu.error}")
            print(f"  {'field':22} {'agent (NVML)':>22} {'nvidia-smi':>22}  verdict")
            fields = {}
            for field, smi_name, rule, core in FIELDS:
                ours = getattr(gpu, field, None)
                raw = row.get(smi_name) if row is not None else None
                verdict, shown = compare(field, ours, raw, rule, core)
                fields[field] = {"agent": ours, "nvidia_smi": shown, "verdict": verdict}
                print(f"  {field:22} {ours!s:>22} {shown:>22}  {verdict}")
                if verdict in ("MISMATCH", "MISSING"):
                    failures.append(
                        f"GPU {gpu.index} {field}: agent {ours!r}, nvidia-smi {shown!r}"
                    )
            if (
                row is not None
                and sample.driver
                and row.get("driver_version") not in (None, sample.driver)
            ):
                failures.append(
                    f"driver: agent {sample.driver}, nvidia-smi {row.get('driver_version')}"
                )
            report["gpus"].append({"index": gpu.index, "name": gpu.name, "fields": fields,
                                   "processes": [p.as_dict() for p in gpu.processes]})  # fmt: skip
        apps = smi_apps(smi) if smi else None
        if apps is not None:
            for gpu in sample.gpus:
                ours_p = {p.pid for p in gpu.processes}
                theirs_p = apps.get(gpu.uuid, set())
                verdict = "ok" if ours_p == theirs_p else "note (processes come and go)"
                both = f"agent {sorted(ours_p)} nvidia-smi {sorted(theirs_p)}"
                print(f"  compute processes: {both}  {verdict}")
        if row_missing := [g.index for g in sample.gpus if rows and str(g.index) not in by_index]:
            failures.append(f"GPUs {row_missing} are not in nvidia-smi's answer")

        # --- 4: cost of one sample ----------------------------------------------------------
        times: list[float] = []
        for _ in range(max(1, args.samples)):
            if times and time.monotonic() > DEADLINE - 15:
                report["notes"].append(f"sampling stopped early after {len(times)} samples")
                break
            t0 = time.perf_counter()
            backend.collect()
            times.append(time.perf_counter() - t0)
        per_gpu = statistics.mean(times) / len(sample.gpus)
        print(
            f"\ncost of one sample ({len(times)} samples, {len(sample.gpus)} GPU(s), in-process):"
        )
        print(f"  p50 {_ms(percentile(times, 50))}   p95 {_ms(percentile(times, 95))}   "
              f"max {_ms(max(times))}   mean per GPU {_ms(per_gpu)}")  # fmt: skip
        print(f"  NVML start + first sample (cold) {_ms(cold)}")
        if smi_time:
            print(f"  for scale, one nvidia-smi query {_ms(smi_time)}")
        report["sample_ms"] = {
            "p50": percentile(times, 50) * 1000,
            "p95": percentile(times, 95) * 1000,
            "max": max(times) * 1000,
            "mean_per_gpu": per_gpu * 1000,
            "n": len(times),
            "cold": cold * 1000,
            "nvidia_smi": smi_time * 1000,
        }

        # --- XID thread: idle CPU and stop latency ---------------------------------------------
        events = backend.events
        if events is not None and events.alive:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            time.sleep(2.0)
            idle_cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
            print(f"  XID event thread idle CPU {idle_cpu * 100:.3f}% of one core (2 s)")
            report["xid_thread_idle_cpu_percent"] = idle_cpu * 100
        else:
            print(f"  XID event thread not running: {backend.event_status}")
            report["notes"].append(f"XID events: {backend.event_status}")
    except Exception as exc:
        failures.append(f"collector raised: {exc!r}")
    finally:
        events = backend.events
        t0 = time.perf_counter()
        backend.close()
        stop = time.perf_counter() - t0
        print(f"  stop (XID thread join + nvmlShutdown) {_ms(stop)}"
              + ("" if events is None or not events.alive else "  THREAD STILL ALIVE"))  # fmt: skip
        report["stop_ms"] = stop * 1000
        if events is not None and events.alive:
            failures.append("the XID event thread did not stop")
        if stop > 1.5:
            failures.append(f"stopping took {stop:.2f} s (must stay well under the 5 s budget)")

    # --- 3: the whole watcher, once, with the real module -----------------------------------
    try:
        watcher_check(report)
    except Exception as exc:
        failures.append(f"watcher poll raised: {exc!r}")
    return 1 if failures else 0


def watcher_check(report: dict[str, Any]) -> None:
    from prometheus_client import generate_latest

    from agent.config import GpuConfig, WatchConfig
    from agent.metrics import build_registry
    from agent.snapshot import SnapshotStore
    from agent.status import AgentInfo
    from agent.watchers.gpu import GpuWatcher

    async def poll() -> Any:
        store = SnapshotStore()
        watcher = GpuWatcher(store, WatchConfig(interval=15.0, timeout=10.0), GpuConfig())
        try:
            t0 = time.perf_counter()
            snap = await watcher.poll_once()
            took = time.perf_counter() - t0
        finally:
            closer = threading.Thread(target=watcher.close, daemon=True)
            closer.start()
            closer.join(3)
        return store, snap, took

    store, snap, took = asyncio.run(poll())
    print(f"\nwatcher poll (first, NVML start included) {_ms(took)}: state {snap.state}"
          + (f", reason: {snap.reason}" if snap.reason else ""))  # fmt: skip
    for gpu in snap.data.get("gpus", ()):
        print(f"  GPU {gpu['index']}: health {gpu['health']}"
              + "".join(f"\n    - {r}" for r in (*gpu["reasons"], *gpu["warnings"])))  # fmt: skip
    print(
        f"  XID events: {snap.data['xid']['events']}; kernel log: {snap.data['xid']['kernel_log']}"
    )
    text = generate_latest(build_registry(AgentInfo("gpu-device-check"), store.latest)).decode()
    lines = [ln for ln in text.splitlines() if ln.startswith("aistack_gpu_") and "_info{" not in ln]
    print(f"  {len(lines)} GPU metric samples, e.g.:")
    for line in lines[:8]:
        print(f"    {line}")
    report["watcher"] = {"state": str(snap.state), "reason": snap.reason, "poll_ms": took * 1000,
                         "metric_samples": len(lines)}  # fmt: skip
    promtool = shutil.which("promtool")
    if promtool:
        proc = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                              capture_output=True, timeout=20, check=False)  # fmt: skip
        verdict = "clean" if proc.returncode == 0 and not (proc.stdout + proc.stderr) else (
            (proc.stdout + proc.stderr).decode()[:300])  # fmt: skip
        print(f"  promtool check metrics: {verdict}")
        if verdict != "clean":
            report["failures"].append(f"promtool: {verdict}")


if __name__ == "__main__":
    sys.exit(main())
