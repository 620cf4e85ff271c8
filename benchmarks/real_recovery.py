"""Benchmark: recovery from kill -9 of the real Open WebUI and LiteLLM, beside the stand-ins.

The detection benchmark measures recovery with busybox stand-ins, which start in well
under a second; what a user waits for after a crash is the real software's start. In the
testbed (root), one guest, one stack without PostgreSQL (the real LiteLLM cannot start
with a database offline: tests/e2e/test_real_software.py): first the stand-ins, then the
same units with the real images (tests/e2e/testbed.py REAL_IMAGES). For each, N trials
round-robin over litellm and open-webui: kill -9 of the container's main process, then
the time until /status shows it healthy again in a new container (systemd's
RestartSec=100ms, the start, the first passing health check). Prints p50 and max per
service for both, side by side, and the real/stand-in ratio, with the machine's conditions.

Exits 0 whatever the figures; 2 only when it could not measure.

    sudo .venv/bin/python benchmarks/real_recovery.py [--trials 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conditions import print_conditions  # noqa: E402
from detection import GUEST_SCRIPT  # noqa: E402

from tests.e2e import testbed  # noqa: E402

SERVICES = ["litellm", "open-webui"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=4, help="per stack, over both services")
    args = parser.parse_args()
    print_conditions("start")
    try:
        rows = measure(args.trials)
    except (testbed.TestbedError, subprocess.SubprocessError, OSError, ValueError) as exc:
        print(f"real recovery benchmark: could not measure: {exc}", file=sys.stderr)
        return 2
    report(rows)
    print_conditions("end")
    return 0


def measure(trials: int) -> dict[str, list[dict[str, Any]]]:
    deb = testbed.build_deb()
    guest = testbed.boot_guest()
    rows: dict[str, list[dict[str, Any]]] = {}
    try:
        testbed.install_agent_from_deb(guest, deb)
        standins = {n: testbed.ensure_image(guest, n) for n in testbed.STANDIN_NAMES}
        kinds = {
            "stand-in": standins,
            "real": {
                "ollama": standins["ollama"],
                "open-webui": testbed.ensure_image(guest, "open-webui-real"),
                "litellm": testbed.ensure_image(guest, "litellm-real"),
            },
        }
        dropin = "[Unit]\nStartLimitBurst=1000\n[Service]\nRestartSteps=0\n"
        for name in SERVICES:  # every trial's recovery comparable (as detection.py)
            guest.write_file(f"/etc/systemd/system/{name}.service.d/bench.conf", dropin)
        guest.write_file(GUEST_SCRIPT, (REPO / "benchmarks/limits_guest.py").read_text())
        guest.run(["systemctl", "start", "podman.socket"], timeout=60)
        for kind, images in kinds.items():
            guest.write_file("/etc/aistack/agent.yaml", testbed.no_database_config(images))
            if kind == "stand-in":
                guest.start("aistack-agent.service", timeout=90)
            else:
                guest.run(["systemctl", "reload", "aistack-agent.service"], timeout=60)
            guest.run(["aistack", "up"], timeout=900)
            t0 = time.monotonic()
            res = guest.run(["python3", GUEST_SCRIPT, "kill", ",".join(SERVICES), str(trials)],
                            timeout=trials * 300)  # fmt: skip
            rows[kind] = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
            print(f"  {kind}: {len(rows[kind])} trials in {time.monotonic() - t0:.0f} s")
    finally:
        guest.run(["aistack", "down"], check=False, timeout=300)
        guest.teardown(check=False)
    return rows


def report(rows: dict[str, list[dict[str, Any]]]) -> None:
    print("kill -9 -> healthy again in a new container (s): stand-in vs real")
    print(f"  {'service':<11} {'stand-in p50':>13} {'max':>6} {'real p50':>9} {'max':>6}  ratio")
    for name in SERVICES:
        got = {k: [r["recovered_s"] for r in v if r["service"] == name] for k, v in rows.items()}
        if not got.get("stand-in") or not got.get("real"):
            print(f"  {name:<11} (no trial finished)")
            continue
        s50, r50 = statistics.median(got["stand-in"]), statistics.median(got["real"])
        print(f"  {name:<11} {s50:13.1f} {max(got['stand-in']):6.1f} {r50:9.1f} "
              f"{max(got['real']):6.1f}  {r50 / s50:5.2f}")  # fmt: skip
    print("  (RestartSec=100ms, then the start; the real start is what a user waits for)")


if __name__ == "__main__":
    sys.exit(main())
