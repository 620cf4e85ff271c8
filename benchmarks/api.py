"""Benchmark the local API: /status and /metrics latency, and the agent's idle RSS.

Starts the real daemon (`python -m agent.daemon`) on a free loopback port with a temp
config, waits for READY, then sends N sequential requests per endpoint over one
keep-alive connection. Prints p50/p99 in milliseconds, RSS in MB, and each figure as a
ratio of its target (/metrics p99 <= 5 ms, RSS <= 60 MB; a ratio <= 1.0 meets it), with
the machine's conditions at start and end. Exits 0 whatever the ratios; non-zero only
when it could not measure (the agent did not start, a request failed).

    .venv/bin/python benchmarks/api.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conditions import print_conditions

REPO = Path(__file__).resolve().parent.parent
TARGET_METRICS_P99_MS = 5.0
TARGET_RSS_MB = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def wait_ready(sock: socket.socket, timeout: float) -> None:
    sock.settimeout(timeout)
    while True:
        if b"READY=1" in sock.recv(4096):
            return


def measure(port: int, path: str, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    samples = []
    for _ in range(50):  # warm-up, not counted
        conn.request("GET", path)
        conn.getresponse().read()
    for _ in range(n):
        start = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        samples.append((time.perf_counter() - start) * 1000)
        assert resp.status == 200, resp.status
    conn.close()
    return samples


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per endpoint")
    args = parser.parse_args()
    print_conditions("start")
    tmp = Path(tempfile.mkdtemp(prefix="aistack-bench"))
    port = free_port()
    config = tmp / "agent.yaml"
    config.write_text(f"api: {{port: {port}, token_file: {tmp / 'token'}}}\n")
    notify_path = tmp / "notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTACK_", "WATCHDOG_"))}
    env["NOTIFY_SOCKET"] = str(notify_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.daemon", "--config", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(notify, 30)
        time.sleep(2)
        idle = rss_mb(proc.pid)
        results = {p: measure(port, p, args.requests) for p in ("/status", "/metrics")}
        after = rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        notify.close()
    print(
        f"aistack agent API benchmark: {args.requests} sequential requests per endpoint, keep-alive"
    )
    for path, samples in results.items():
        p50, p99 = pct(samples, 50), pct(samples, 99)
        line = f"  {path:9} p50 {p50:6.3f} ms   p99 {p99:6.3f} ms   max {max(samples):6.3f} ms"
        if path == "/metrics":
            ratio = p99 / TARGET_METRICS_P99_MS
            line += f"   p99/target {ratio:.2f} (target {TARGET_METRICS_P99_MS} ms)"
        print(line)
    print(f"  RSS idle {idle:.1f} MB   after load {after:.1f} MB   "
          f"idle/target {idle / TARGET_RSS_MB:.2f} (target {TARGET_RSS_MB:.0f} MB)")  # fmt: skip
    print_conditions("end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
