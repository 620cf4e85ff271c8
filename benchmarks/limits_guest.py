"""The guest half of benchmarks/detection.py: runs inside the testbed guest, where the
kill, the hang and the polling of the agent share one clock and one namespace.

    python3 limits_guest.py idle SECONDS
    python3 limits_guest.py start SERVICE,...
    python3 limits_guest.py kill SERVICE,... TRIALS
    python3 limits_guest.py hang SERVICE,...
    python3 limits_guest.py latency REQUESTS
    python3 limits_guest.py bursts COUNT CONTAINER,...
    python3 limits_guest.py agent

Each prints one JSON object per line. Standard library only (the guest's python3).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

AGENT = "aistack-agent.service"
CONN = http.client.HTTPConnection("127.0.0.1", 9200, timeout=10)


def fetch(path: str) -> tuple[bytes, http.client.HTTPMessage]:
    """GET on the kept-alive connection (opened again once if it broke): body, headers."""
    global CONN
    try:
        CONN.request("GET", path)
        response = CONN.getresponse()
    except (OSError, http.client.HTTPException):
        CONN.close()
        CONN = http.client.HTTPConnection("127.0.0.1", 9200, timeout=10)
        CONN.request("GET", path)
        response = CONN.getresponse()
    return response.read(), response.headers


def get(path: str) -> bytes:
    return fetch(path)[0]


def services() -> dict[str, Any]:
    return json.loads(get("/status"))["services"]  # type: ignore[no-any-return]


def healthy(s: dict[str, Any]) -> bool:
    return bool(
        s["active_state"] == "active"
        and s["health"] == "healthy"
        and s["container_state"] == "running"
    )


def wait(pred: Callable[[dict[str, Any]], bool], limit: float, what: str) -> float:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pred(services()):
            return time.monotonic()
        time.sleep(0.02)
    raise SystemExit(f"timed out after {limit:.0f} s waiting for {what}")


def all_healthy(limit: float = 300) -> None:
    wait(lambda s: all(healthy(x) for x in s.values()), limit, "every service healthy")


def agent_pid() -> int:
    out = subprocess.check_output(["systemctl", "show", "-p", "MainPID", "--value", AGENT])
    return int(out.strip())


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(pid: int) -> dict[str, float]:
    """RSS and its parts (smaps_rollup): anonymous memory is the agent's own; file pages
    are the interpreter's and the libraries' code, shared and reclaimable."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Anonymous", "Pss_File", "Pss_Anon"):
                out[key.lower()] = int(rest.split()[0]) / 1024
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
    return out


def heal_restarts(name: str | None = None) -> int:
    """The agent's restarts so far (aistack_heal_actions_total), of one service or all."""
    total = 0
    for line in get("/metrics").decode().splitlines():
        if not line.startswith("aistack_heal_actions_total{"):
            continue
        if 'action="restart"' not in line and 'action="reset-failed"' not in line:
            continue
        if name is not None and f'service="{name}"' not in line:
            continue
        total += int(float(line.rsplit(" ", 1)[1]))
    return total


def idle(seconds: float) -> None:
    """The agent's CPU and memory over an idle stretch, and any restart it made then (a
    false restart: nothing was wrong)."""
    all_healthy()
    pid = agent_pid()
    before, c0, t0 = heal_restarts(), cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    share = (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100
    print(json.dumps({"cpu_pct": share, "false_restarts": heal_restarts() - before,
                      **memory(pid)}))  # fmt: skip


def start(names: list[str]) -> None:
    """Each service's own start-to-healthy: stopped, then started and polled until
    /status says healthy (PostgreSQL's dependent LiteLLM started after, not timed)."""
    for name in names:
        all_healthy()
        subprocess.run(["systemctl", "stop", f"{name}.service"], check=True, timeout=120)
        wait(lambda s, n=name: s[n]["active_state"] != "active", 60, f"{name} stopped")
        t0 = time.monotonic()
        subprocess.run(["systemctl", "start", "--no-block", f"{name}.service"], check=True)
        back = wait(lambda s, n=name: healthy(s[n]), 300, f"{name} healthy")
        print(json.dumps({"service": name, "start_s": back - t0}), flush=True)
        if name == "postgres":  # Requires=: LiteLLM was stopped with it
            subprocess.run(["systemctl", "start", "litellm.service"], check=True, timeout=300)


def back_in_new(name: str, old: str | None) -> float:
    """When `name` is healthy again in another container than `old`."""
    return wait(lambda s: healthy(s[name]) and s[name]["container_id"] not in (old, None),
                300, f"{name} back")  # fmt: skip


def container_pids(name: str) -> list[str]:
    out = subprocess.check_output(["podman", "top", name, "hpid"], text=True)
    return [p for p in out.split()[1:] if p.isdigit()]


# After PostgreSQL's kill: long enough for LiteLLM's probes to fail twice and the agent to
# restart it, were it going to (probe every 4 s, confirm 1 s, 2 s each).
SETTLE_AFTER = {"postgres": 10.0}


def kill(names: list[str], trials: int) -> None:
    """kill -9 of a service's main process: until /status shows it (detection), until it
    is healthy again in a new container (recovery)."""
    for i in range(trials):
        name = names[i % len(names)]
        all_healthy()
        ids = {n: s["container_id"] for n, s in services().items()}
        acted = heal_restarts()
        old = ids[name]
        pid = int(subprocess.check_output(
            ["podman", "inspect", name, "--format", "{{.State.Pid}}"]).strip())  # fmt: skip
        t0 = time.monotonic()
        os.kill(pid, 9)
        while True:
            s = services()[name]
            if (s["container_id"] != old or s["container_state"] != "running"
                    or s["active_state"] != "active"):  # fmt: skip
                detected = time.monotonic() - t0
                break
            if time.monotonic() - t0 > 30:
                raise SystemExit(f"{name}: no change in /status 30 s after kill -9")
            time.sleep(0.002)
        back = back_in_new(name, old)
        row: dict[str, object] = {"service": name, "detected_s": detected, "recovered_s": back - t0}
        if name in SETTLE_AFTER:  # did its crash cost a dependent its container, or a restart?
            time.sleep(SETTLE_AFTER[name])
            now = services()
            row["replaced"] = sorted(
                n for n, s in now.items() if n != name and s["container_id"] != ids.get(n)
            )
            row["agent_restarts"] = heal_restarts() - acted
        print(json.dumps(row), flush=True)


def hang(names: list[str]) -> None:
    """Every process of a service's container SIGSTOPped (alive, answering nothing): until
    the agent restarts it (its action counted), until healthy in a new container."""
    for name in names:
        all_healthy()
        old = services()[name]["container_id"]
        before = heal_restarts(name)
        pids = container_pids(name)
        t0 = time.monotonic()
        # a short-lived child (a request's handler) may be gone already: stop the rest
        subprocess.run(["kill", "-STOP", *pids], check=False, stderr=subprocess.DEVNULL)
        restarted = None
        while restarted is None:
            if heal_restarts(name) > before:
                restarted = time.monotonic() - t0
            elif time.monotonic() - t0 > 180:
                raise SystemExit(f"{name}: not restarted 180 s after the hang")
            else:
                time.sleep(0.05)
        back = back_in_new(name, old)
        print(json.dumps({"service": name, "restart_s": restarted, "healthy_s": back - t0}),
              flush=True)  # fmt: skip


def latency(requests: int) -> None:
    """/status and /metrics, one keep-alive connection, one after another: seconds each,
    as the client saw it and as the agent spent it (its Server-Timing header), and the
    answer's size."""
    pid = agent_pid()
    for path in ("/status", "/metrics"):
        times, server, sizes = [], [], []
        preempted = preemptions(pid)
        for _ in range(requests):
            t0 = time.perf_counter()
            body, headers = fetch(path)
            times.append(time.perf_counter() - t0)
            sizes.append(len(body))
            timing = headers.get("Server-Timing", "app;dur=nan")
            server.append(float(timing.partition("dur=")[2]) / 1000)
        preempted = preemptions(pid) - preempted
        # the body's median size: a later sample may answer a larger document (heal.recent
        # grows with the trials between), which costs time of its own
        print(json.dumps({"path": path, "seconds": times, "server_seconds": server,
                          "preempted": preempted, "bytes": sorted(sizes)[len(sizes) // 2]}),
              flush=True)  # fmt: skip


def preemptions(pid: int) -> int:
    """How often the kernel took a CPU from the agent's threads while they could run
    (involuntary context switches, summed over its threads)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("nonvoluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


class PodmanConnection(http.client.HTTPConnection):
    """Podman's REST API on its unix socket: events without a `podman` process each."""

    def __init__(self) -> None:
        super().__init__("podman", timeout=60)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect("/run/podman/podman.sock")


def bursts(count: int, names: list[str]) -> None:
    """`count` event bursts: pause, then unpause, each of `names` through the API (two
    events per container per burst); the agent's memory before and after."""
    pid = agent_pid()
    first = memory(pid)
    api = PodmanConnection()
    t0 = time.monotonic()
    half: dict[str, float] = {}
    for i in range(count):
        if i == count // 2:
            half = memory(pid)
        for action in ("pause", "unpause"):
            for name in names:
                api.request("POST", f"/v5.0.0/libpod/containers/{name}/{action}")
                api.getresponse().read()
    took = time.monotonic() - t0
    time.sleep(2)  # the stream's last events reach the agent
    print(json.dumps({"bursts": count, "events": count * 2 * len(names), "seconds": took,
                      "before": first, "half": half, "after": memory(pid)}))  # fmt: skip


def agent() -> None:
    """The agent's CPU seconds so far and its memory now."""
    pid = agent_pid()
    print(json.dumps({"cpu_s": cpu_seconds(pid), **memory(pid)}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "idle":
        idle(float(args[0]))
    elif cmd == "start":
        start(args[0].split(","))
    elif cmd == "kill":
        kill(args[0].split(","), int(args[1]))
    elif cmd == "hang":
        hang(args[0].split(","))
    elif cmd == "latency":
        latency(int(args[0]))
    elif cmd == "bursts":
        bursts(int(args[0]), args[1].split(","))
    elif cmd == "agent":
        agent()
    else:
        raise SystemExit(f"unknown command {cmd!r}")
