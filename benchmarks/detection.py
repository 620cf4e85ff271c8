"""Benchmark: detection and recovery at the physical limit, under load, at 200 containers.

In the testbed (systemd 257, Podman 5.4 under systemd-nspawn; root needed): the deb of
this checkout installed, the stack up with the stand-in images and PostgreSQL 17, the
shipped units and the shipped healing defaults. In one run, side by side:

1. idle: the agent's CPU, RSS (and its parts: anonymous vs file pages) and threads over
   `--idle` seconds with the stack running, and any restart it made then (a false one);
2. each service's own start-to-healthy (stopped, started, polled until healthy);
3. kill -9 of a service's main process, round-robin, `--trials` times quiet and again
   with a CPU hog (a bounded busy loop) on the other core: until /status shows it
   (detection), until healthy in a new container (recovery; systemd's first restart is
   at once, RestartSec=100ms). A drop-in (RestartSteps=0, StartLimitBurst=1000) keeps
   every trial's restart the shipped first one, however many trials;
4. a hang (every process of a container SIGSTOPped) of each service: until the agent
   restarts it (probes every 5 s, a miss confirmed after 1 s), until healthy again;
5. `/status` and `/metrics` latency with the stack alone, then with `--scale` other
   containers (busybox, not the stack's; a tenth of them exiting and restarted by Podman
   every 10-30 s), then during an event storm (`podman restart` of 50 of them over and
   over, a service of the guest's systemd; the client another, as a scraper would be);
   detection with them running; the agent's CPU and RSS through it, and RSS after
   `--bursts` event bursts (pause + unpause of 5 containers through Podman's API: 10
   events each); then, the other containers removed, the stack alone again: the ratios
   are printed against both baselines. The second answers the same documents as the
   samples between (the first comes before the trials that fill `heal.recent`; each
   sample prints its answer's size) and is minutes nearer them in time.

Prints each figure with its target and the ratio. What autoheal (polls every 5 s), monit
(a 30 s cycle) and Podman's health checks (30 s x 3 by default) would take is the
comparison the targets come from. The machine's conditions are printed at start and end.

Exits 0 whatever the ratios: a busy machine gives slower figures, not a failure. It exits
non-zero only when it could not measure: the testbed failed, a trial timed out.

    sudo .venv/bin/python benchmarks/detection.py [--trials 12] [--idle 60] [--scale 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conditions import print_conditions  # noqa: E402

from tests.e2e import testbed  # noqa: E402
from tests.e2e.testbed import Guest  # noqa: E402

SERVICES = ["ollama", "open-webui", "litellm", "postgres"]
TARGET_DETECTION_P99_MS = 50.0  # with the other core busy
TARGET_RECOVERY_OVER_START_S = 1.0  # kill -9 -> healthy <= start-to-healthy + 1 s
TARGET_HANG_S = 10.0
ALONE, ALONE_AFTER = "stack alone", "alone, after"  # the latency baselines, before and after
TARGET_RSS_MB = 45.0
TARGET_SCALE_RATIO = 1.2
GUEST_SCRIPT = "/root/limits_guest.py"
STORM_SIZE = 50
BACKUPS_OFF = "backups:\n  enabled: false\n"
# The default (auto: on once PostgreSQL is applied), its catch-up backup taken at once.
BACKUPS_DEFAULT = "backups:\n  catch_up_delay: 1s\n"
BURST_SIZE = 5  # containers paused and unpaused per burst: 10 events


@dataclass
class Figures:
    idle: dict[str, float] = field(default_factory=dict)
    idle_backups: dict[str, float] = field(default_factory=dict)
    start: dict[str, float] = field(default_factory=dict)
    kill_quiet: list[dict[str, Any]] = field(default_factory=list)
    kill_hog: list[dict[str, Any]] = field(default_factory=list)
    hang: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    kill_scale: list[dict[str, Any]] = field(default_factory=list)
    scale_idle: dict[str, float] = field(default_factory=dict)
    busy_cpu_pct: float = 0.0
    bursts: dict[str, Any] = field(default_factory=dict)
    created_s: float = 0.0
    took: dict[str, float] = field(default_factory=dict)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rows(guest: Guest, *args: str, timeout: float, unit: bool = False) -> list[dict[str, Any]]:
    """The guest script's JSON lines; `unit`: run as a service of the guest's systemd
    (its own cgroup, as a scraper such as Prometheus would be), not from this shell."""
    argv = ["python3", GUEST_SCRIPT, *args]
    run = guest.run_unit if unit else guest.run
    out = run(argv, timeout=timeout).stdout
    return [json.loads(line) for line in str(out).splitlines() if line.startswith("{")]


def one(guest: Guest, *args: str, timeout: float = 60) -> dict[str, Any]:
    return rows(guest, *args, timeout=timeout)[-1]


class Hog:
    """A bounded busy loop pinned to the last core: the 'other core busy' of the target."""

    def __init__(self, guest: Guest, seconds: int) -> None:
        self.guest = guest
        self.seconds = seconds

    def __enter__(self) -> Hog:
        core = str(max(0, (os.cpu_count() or 1) - 1))
        self.guest.run(["systemd-run", "--unit=bench-hog", "--collect", "taskset", "-c", core,
                        "timeout", str(self.seconds), "sh", "-c", "while :; do :; done"],
                       timeout=30)  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        self.guest.run(["systemctl", "stop", "bench-hog.service"], check=False, timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12, help="kill -9 trials, quiet and hog each")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    parser.add_argument("--scale", type=int, default=200, help="other containers (0: skip)")
    parser.add_argument("--bursts", type=int, default=1000, help="event bursts for RSS growth")
    parser.add_argument("--requests", type=int, default=1000, help="per latency sample")
    args = parser.parse_args()
    print_conditions("start")
    figures = Figures()
    try:
        measure(args, figures)
    except (testbed.TestbedError, subprocess.SubprocessError, OSError, ValueError) as exc:
        print(f"detection benchmark: could not measure: {exc}", file=sys.stderr)
        report(args, figures)  # what was measured before it
        return 2
    report(args, figures)
    print_conditions("end")
    return 0


def measure(args: argparse.Namespace, figures: Figures) -> None:
    deb = testbed.build_deb()
    guest = testbed.boot_guest()
    try:
        testbed.install_agent_from_deb(guest, deb)
        images = {n: testbed.ensure_image(guest, n) for n in testbed.STANDIN_NAMES}
        postgres = testbed.ensure_image(guest, "postgres")
        stack = (
            "stack:\n  gpu: none\n"
            f"  ollama:\n    image: {images['ollama']}\n"
            f"  open_webui:\n    image: {images['open-webui']}\n"
            f"  litellm:\n    image: {images['litellm']}\n"
            f"  postgres:\n    image: {postgres}\n"
        )
        # backups off: a run in the idle minute is not idle (the backups phase has them on)
        guest.write_file("/etc/aistack/agent.yaml", BACKUPS_OFF + stack)
        for name in SERVICES:
            guest.write_file(
                f"/etc/systemd/system/{name}.service.d/bench.conf",
                "[Unit]\nStartLimitBurst=1000\n[Service]\nRestartSteps=0\n",
            )
        guest.run(["systemctl", "start", "podman.socket"], timeout=60)
        guest.start("aistack-agent.service", timeout=90)
        guest.run(["aistack", "up"], timeout=900)
        guest.write_file(GUEST_SCRIPT, (REPO / "benchmarks/limits_guest.py").read_text())
        time.sleep(20)  # let the start settle: first probes, stats, health checks
        phases(guest, args, figures, images["ollama"])
    finally:
        guest.run(["aistack", "down"], check=False, timeout=300)
        guest.teardown(check=False)


def phases(guest: Guest, args: argparse.Namespace, figures: Figures, busybox: str) -> None:
    svc = ",".join(SERVICES)
    t0 = time.monotonic()
    figures.idle = one(guest, "idle", str(args.idle), timeout=args.idle + 360)
    figures.idle_backups = with_backups(guest, args.idle)
    figures.latency[ALONE] = latency(guest, args.requests)
    figures.start = {
        r["service"]: r["start_s"] for r in rows(guest, "start", svc, timeout=len(SERVICES) * 400)
    }
    figures.kill_quiet = rows(guest, "kill", svc, str(args.trials), timeout=args.trials * 360)
    with Hog(guest, seconds=args.trials * 60 + 60):
        figures.kill_hog = rows(guest, "kill", svc, str(args.trials), timeout=args.trials * 360)
    figures.hang = rows(guest, "hang", svc, timeout=len(SERVICES) * 500)
    figures.took["stack"] = time.monotonic() - t0
    if args.scale <= 0:
        return
    t0 = time.monotonic()
    others = [f"bench-{i}" for i in range(args.scale)]
    churn = max(1, args.scale // 10)
    create = ["set -e"]
    for i, name in enumerate(others):
        cmd = "sleep $((RANDOM % 20 + 10)); exit 1" if i < churn else "exec sleep 100000"
        policy = "--restart=always" if i < churn else "--restart=no"
        create.append(shlex.join(["podman", "create", "-q", "--name", name, policy,
                                  "--entrypoint", "/bin/sh", busybox, "-c", cmd]))  # fmt: skip
    create.append(shlex.join(["podman", "start", *others]) + " >/dev/null")
    guest.write_file("/root/create.sh", "\n".join(create) + "\n")
    started = time.monotonic()
    guest.run(["sh", "/root/create.sh"], timeout=args.scale * 10 + 300)
    figures.created_s = time.monotonic() - started
    figures.scale_idle = one(guest, "idle", str(args.idle), timeout=args.idle + 360)
    before = one(guest, "agent")
    t1 = time.monotonic()
    figures.latency[f"+{args.scale} containers"] = latency(guest, args.requests)
    figures.kill_scale = rows(guest, "kill", svc, str(len(SERVICES)), timeout=len(SERVICES) * 360)
    quiet = others[churn:]  # the ones that do not exit by themselves
    storm = " ".join(quiet[:STORM_SIZE])
    guest.write_file(
        "/root/storm.sh", f"while :; do podman restart -t 0 {storm} >/dev/null; done\n"
    )
    # The storm is a service of its own, as a restart storm on a real host comes from
    # units (Podman's restart policy, systemd's); the client is another (latency()).
    guest.run(["systemd-run", "--unit=bench-storm", "--collect", "sh", "/root/storm.sh"],
              timeout=30)  # fmt: skip
    try:
        time.sleep(5)  # the storm under way before the first request
        figures.latency["event storm"] = latency(guest, args.requests)
    finally:
        guest.run(["systemctl", "stop", "bench-storm.service"], check=False, timeout=300)
    after = one(guest, "agent")
    figures.busy_cpu_pct = (after["cpu_s"] - before["cpu_s"]) / (time.monotonic() - t1) * 100
    burst = ",".join(quiet[:BURST_SIZE])
    figures.bursts = one(guest, "bursts", str(args.bursts), burst, timeout=args.bursts * 10 + 300)
    guest.run(["sh", "-c", "podman rm -f -t 0 " + " ".join(others) + " >/dev/null"],
              check=False, timeout=600)  # fmt: skip
    # The stack alone again: a baseline on each side of the scale phase, this one with the
    # same /status as the samples before it (heal.recent filled by the trials) and near them
    # in time, so neither a larger answer nor the machine's drift reads as the phase's cost.
    figures.latency[ALONE_AFTER] = latency(guest, args.requests)
    figures.took["scale"] = time.monotonic() - t0


def with_backups(guest: Guest, seconds: float) -> dict[str, float]:
    """The idle figures with backups as shipped (on), after the agent's first backup (the
    scheduler and the backup path loaded and used); then off again, as before."""
    config = guest.read_file("/etc/aistack/agent.yaml").decode()
    guest.write_file("/etc/aistack/agent.yaml", config.replace(BACKUPS_OFF, BACKUPS_DEFAULT))
    guest.run(["systemctl", "reload", "aistack-agent.service"], timeout=120)

    def backed_up() -> bool:
        res = guest.run(["curl", "-sf", "localhost:9200/v1/backups"], check=False, timeout=30)
        return res.returncode == 0 and bool(json.loads(res.stdout)["backups"])

    guest.wait_for("the first backup", backed_up, timeout=600, interval=1)
    figures = one(guest, "idle", str(seconds), timeout=seconds + 360)
    guest.write_file("/etc/aistack/agent.yaml", config)
    guest.run(["systemctl", "reload", "aistack-agent.service"], timeout=120)
    return figures


def latency(guest: Guest, requests: int) -> dict[str, list[float]]:
    """Per path, the client's seconds; per "PATH agent", the agent's own (Server-Timing)."""
    sample = rows(guest, "latency", str(requests), timeout=900, unit=True)
    return {
        **{r["path"]: r["seconds"] for r in sample},
        **{f"{r['path']} agent": r["server_seconds"] for r in sample},
        # one number per sample: how often the agent was preempted while answering it
        **{f"{r['path']} preempted": [float(r["preempted"])] for r in sample},
        # and the answer's median size in bytes
        **{f"{r['path']} bytes": [float(r["bytes"])] for r in sample},
    }


def _ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"p50 {statistics.median(ms):7.2f} ms  p99 {pct(ms, 0.99):7.2f} ms"


def report(args: argparse.Namespace, f: Figures) -> None:
    print("detection and recovery at the physical limit (shipped units and healing defaults)")
    if f.idle:
        i = f.idle
        print(f"agent idle with the stack ({args.idle:.0f} s): CPU {i['cpu_pct']:.2f} %,"
              f" RSS {i['rss']:.1f} MB (anonymous {i['anonymous']:.1f} MB, file"
              f" {i['rss'] - i['anonymous']:.1f} MB), {i['threads']:.0f} threads")  # fmt: skip
        print(f"  RSS target <= {TARGET_RSS_MB:.0f} MB: ratio {i['rss'] / TARGET_RSS_MB:.3f}")
        print(f"  false restarts in the idle stretch: {i['false_restarts']:.0f} (target 0)")
    if f.idle_backups:
        b = f.idle_backups
        print(f"  with backups on (the default), after the first backup: CPU {b['cpu_pct']:.2f}"
              f" %, RSS {b['rss']:.1f} MB (anonymous {b['anonymous']:.1f} MB): ratio"
              f" {b['rss'] / TARGET_RSS_MB:.3f}; false restarts"
              f" {b['false_restarts']:.0f}")  # fmt: skip
    for label, trials in (("quiet", f.kill_quiet), ("other core busy", f.kill_hog),
                          (f"+{args.scale} containers", f.kill_scale)):  # fmt: skip
        if not trials:
            continue
        detected = [r["detected_s"] for r in trials]
        p99 = pct(detected, 0.99) * 1000
        print(f"kill -9 -> /status shows it, {label} ({len(trials)} trials): {_ms(detected)}")
        each = {n: [r["detected_s"] * 1000 for r in trials if r["service"] == n] for n in SERVICES}
        print("  " + ", ".join(f"{n} {statistics.median(v):.1f}" for n, v in each.items() if v)
              + " ms (p50 per service)")  # fmt: skip
        if label == "other core busy":
            print(f"  target p99 <= {TARGET_DETECTION_P99_MS:.0f} ms with the other core busy: "
                  f"ratio {p99 / TARGET_DETECTION_P99_MS:.3f}")  # fmt: skip
    if f.kill_quiet and f.start:
        print("kill -9 -> healthy again (quiet), p50 per service, against its own start:")
        for name in SERVICES:
            mine = [r["recovered_s"] for r in f.kill_quiet if r["service"] == name]
            if not mine or name not in f.start:
                continue
            back, own = statistics.median(mine), f.start[name]
            target = own + TARGET_RECOVERY_OVER_START_S
            print(f"  {name:<11} {back:5.2f} s; start-to-healthy {own:5.2f} s; target <= "
                  f"{target:5.2f} s: ratio {back / target:.3f}")  # fmt: skip
        print("  (postgres: its crash recovery included)")
    pg = [r for r in f.kill_quiet + f.kill_hog if "replaced" in r]
    if pg:
        replaced = sum(1 for r in pg if r["replaced"])
        acted = sum(r["agent_restarts"] for r in pg)
        names = sorted({n for r in pg for n in r["replaced"]})
        print(
            f"  PostgreSQL's kills ({len(pg)}): another service's container replaced in "
            f"{replaced} ({', '.join(names) or 'none'}); the agent's restarts meanwhile: "
            f"{acted} (target 0 and 0: LiteLLM reconnects, RestartMode=direct)"
        )
    if f.hang:
        took = [r["restart_s"] for r in f.hang]
        print(f"hang (SIGSTOP) -> restarted by the agent: p50 {statistics.median(took):.2f} s, "
              f"max {max(took):.2f} s; target <= {TARGET_HANG_S:.0f} s: "
              f"ratio {max(took) / TARGET_HANG_S:.3f} (max)")  # fmt: skip
        for r in f.hang:
            print(f"  {r['service']:<11} restarted after {r['restart_s']:5.2f} s, "
                  f"healthy after {r['healthy_s']:5.2f} s")  # fmt: skip
    base, after = f.latency.get(ALONE), f.latency.get(ALONE_AFTER)
    if base:
        print(f"API latency ({args.requests} requests each, one keep-alive connection; "
              "'agent': its own time, the Server-Timing header):")  # fmt: skip
        for label, sample in f.latency.items():
            for path in ("/status", "/metrics", "/status agent", "/metrics agent"):
                if path not in sample:
                    continue
                p99 = pct(sample[path], 0.99)
                extra = ""
                if label not in (ALONE, ALONE_AFTER):
                    extra = f"; ratio to alone {p99 / pct(base[path], 0.99):.3f}"
                    if after and path in after:
                        extra += f", to alone after {p99 / pct(after[path], 0.99):.3f}"
                    extra += f" (target <= {TARGET_SCALE_RATIO})"
                preempted = sample.get(f"{path} preempted")
                if preempted:  # the client's lines only: "/status agent" has none
                    extra += f"; agent preempted {preempted[0]:.0f} times"
                size = sample.get(f"{path} bytes")
                if size:
                    extra += f"; {size[0]:.0f} bytes"
                print(f"  {label:<18} {path:<15} {_ms(sample[path])}{extra}")
    if f.scale_idle and f.idle:
        s, i = f.scale_idle, f.idle
        print(
            f"with +{args.scale} containers (created in {f.created_s:.0f} s; a tenth exiting and"
            f" restarted by Podman every 10-30 s), the stack otherwise idle ({args.idle:.0f} s):"
        )
        print(
            f"  agent CPU {s['cpu_pct']:.2f} % (alone {i['cpu_pct']:.2f} %: ratio "
            f"{s['cpu_pct'] / max(i['cpu_pct'], 0.01):.3f}, target <= {TARGET_SCALE_RATIO})"
        )
        print(f"  agent RSS {s['rss']:.1f} MB (alone {i['rss']:.1f} MB: ratio "
              f"{s['rss'] / i['rss']:.3f}, target <= {TARGET_SCALE_RATIO}); false restarts "
              f"{s['false_restarts']:.0f}")  # fmt: skip
        print(
            f"  agent CPU through the latency samples, kill trials and storm: "
            f"{f.busy_cpu_pct:.2f} %"
        )
    if f.bursts:
        b, first, half, last = f.bursts, f.bursts["before"], f.bursts["half"], f.bursts["after"]
        print(f"RSS over {b['bursts']} event bursts ({b['events']} events in {b['seconds']:.0f} s,"
              f" pause + unpause of {BURST_SIZE} containers each): {first['rss']:.1f} -> "
              f"{half['rss']:.1f} (half way) -> {last['rss']:.1f} MB: first half "
              f"{half['rss'] - first['rss']:+.1f} MB, second half {last['rss'] - half['rss']:+.1f}"
              " MB")  # fmt: skip
    if f.took:
        print("phases took: " + ", ".join(f"{k} {v:.0f} s" for k, v in f.took.items()))


if __name__ == "__main__":
    sys.exit(main())
