"""The fault gauntlet: a seeded run of faults against the whole stack, in the testbed.

What users need to trust is the system under a long run of mixed faults, not each fault
alone. In the testbed (systemd 257, Podman 5.4; root), with the agent installed from this
checkout's deb and the stack up (stand-ins and PostgreSQL 17), this injects faults drawn
from a catalogue with a seeded RNG, and after each one checks:

- every service is healthy again (systemd active, container running and healthy, the
  agent's probe ok) within the fault's bound, and the agent is up;
- /status agrees with systemd (ActiveState) and Podman (the container's id);
- no restart storm: the agent's own restarts for one fault are at most 2.

At the end: every backup verifies (`aistack backup verify --all`), none was lost, and no
generated secret appears in any log. It prints faults injected and recovered, time to
recover p50/p99 per fault and overall, backups lost, storms, and the machine's conditions.
It exits non-zero when a fault did not recover or a check failed (that is the finding),
or when it could not run.

    make gauntlet                     # 100 faults (benchmarks/gauntlet.py)
    tests/e2e/test_gauntlet.py        # every kind once, in `make test`
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e import testbed
from tests.e2e.testbed import Guest

SERVICES = ("postgres", "ollama", "litellm", "open-webui")
HTTP_SERVICES = ("ollama", "litellm", "open-webui")
AGENT = "aistack-agent.service"
STATUS = "http://127.0.0.1:9200/status"
BOUND_S = 240.0  # a fault not recovered by then is a failure
HEAL = (
    "heal:\n  probe_interval: 3s\n  probe_timeout: 2s\n  probe_failures: 2\n"
    "  backoff_initial: 2s\n  backoff_max: 10s\n  give_up_after: 1000\n  unhealthy_grace: 5s\n"
)
# The backups live on a filesystem of their own, small enough to fill: a tmpfs mounted
# before the agent starts (the agent's mount namespace is a copy of the guest's then).
BACKUPS = "/var/lib/aistack/backups"
BACKUPS_FS_SIZE = "64m"
BACKUP_CONFIG = "backups:\n  min_free: 4MiB\n"
# The agent's wall clock, and only the agent's: libfaketime preloaded into it, reading its
# offset from this file (re-read every second). CLOCK_MONOTONIC is left alone, as a real
# clock step (NTP, an operator's `date -s`) leaves it alone. An nspawn guest shares the
# host's clock and a time namespace does not move CLOCK_REALTIME, hence the preload.
CLOCK_FILE = "/run/aistack-gauntlet-clock"
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
CLOCK_DROPIN = (
    "[Service]\n"
    f"Environment=LD_PRELOAD={LIBFAKETIME} FAKETIME_TIMESTAMP_FILE={CLOCK_FILE}\n"
    "Environment=FAKETIME_CACHE_DURATION=1 FAKETIME_DONT_FAKE_MONOTONIC=1\n"
)
CLOCK_STEP_S = 6 * 3600


class CheckFailed(AssertionError):
    """A fault's own check failed (a backup written to a full disk...): the finding."""


def status(guest: Guest) -> tuple[int, dict[str, Any]]:
    code, body = guest.http("GET", STATUS)
    return code, json.loads(body)


def healthy(svc: dict[str, Any]) -> bool:
    return (
        svc["active_state"] == "active"
        and svc["health"] == "healthy"
        and svc["container_state"] == "running"
        and (svc.get("probe") or {}).get("ok") is True
    )


def agent_restarts(doc: dict[str, Any]) -> int:
    """The agent's own restarts so far (the healer's; not a person's, not the GPU rule's)."""
    return sum(
        a["count"]
        for a in (doc.get("heal") or {}).get("actions") or ()
        if a["action"] in ("restart", "reset-failed") and a["reason"] not in ("manual", "xid")
    )


def main_pid(guest: Guest, name: str) -> int:
    return int(guest.podman("inspect", name, "--format", "{{.State.Pid}}").strip())


# --- the catalogue -------------------------------------------------------------------


# A fault's mark: what /status must show once it has been dealt with (a new container, a
# new agent process), so a recovery is not taken from a document of before the fault.
Mark = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[Guest], Mark | None]


def _new_container(g: Guest, name: str, act: Callable[[], object]) -> Mark:
    old = g.podman("inspect", name, "--format", "{{.Id}}").strip()
    act()
    return lambda doc: doc["services"][name]["container_id"] not in (old, None)


def _kill9(name: str) -> Fault:
    return Fault(f"kill -9 {name}", lambda g: _new_container(
        g, name, lambda: g.run(["kill", "-9", str(main_pid(g, name))])))  # fmt: skip


def stop_every_process(g: Guest, name: str) -> None:
    """SIGSTOP to every process of the container (a stand-in's server is a child of its
    main process): alive, holding connections, answering nothing."""
    pids = [p for p in g.podman("top", name, "hpid").split()[1:] if p.isdigit()]
    g.run(["kill", "-STOP", *pids])


def _sigstop(name: str) -> Fault:
    """Alive but not answering: only the agent's probes (or the health check) can tell."""
    return Fault(f"SIGSTOP {name}", lambda g: _new_container(
        g, name, lambda: stop_every_process(g, name)))  # fmt: skip


def _answers_500(name: str) -> Fault:
    return Fault(f"{name} answers 500", lambda g: _new_container(
        g, name, lambda: g.podman("exec", name, "touch", "/run/fault/500")))  # fmt: skip


def _podman_socket_down(g: Guest) -> Mark | None:
    g.run(["systemctl", "stop", "podman.socket", "podman.service"], timeout=60)
    time.sleep(10)
    g.run(["systemctl", "start", "podman.socket"], timeout=60)
    return None


def _dbus_restart(g: Guest) -> Mark | None:
    g.run(["systemctl", "restart", "dbus"], timeout=60)
    return None


def _postgres_restart(g: Guest) -> Mark | None:
    return _new_container(
        g, "postgres", lambda: g.run(["systemctl", "restart", "postgres.service"], timeout=300)
    )


def _agent_kill(g: Guest) -> Mark | None:
    pid = g.unit_properties(AGENT, "MainPID")["MainPID"]
    g.run(["kill", "-9", pid])
    return lambda doc: str(doc["pid"]) != pid


def _agent_kill_mid_backup(g: Guest) -> Mark | None:
    g.run(["aistack", "backup", "now", "--no-wait"], check=False, timeout=60)
    time.sleep(0.3)
    return _agent_kill(g)


def _broken_reload(g: Guest) -> Mark | None:
    good = g.run(["cat", "/etc/aistack/agent.yaml"]).stdout
    g.write_file("/etc/aistack/agent.yaml", good + "api: {prot: 1}\n")
    g.run(["systemctl", "reload", AGENT], check=False, timeout=60)
    g.write_file("/etc/aistack/agent.yaml", good)
    return None


def _backup_disk_full(g: Guest) -> Mark | None:
    """The backups' filesystem filled to the last byte: a backup is refused with a reason
    that says so, nothing half-written is left, the stack is untouched, and once space is
    freed the next backup succeeds."""
    filler = f"{BACKUPS}/.gauntlet-filler"
    g.run(["sh", "-c", f"dd if=/dev/zero of={filler} bs=1M >/dev/null 2>&1; true"], timeout=120)
    free = int(g.run(["stat", "-f", "-c", "%a*%S", BACKUPS]).stdout.split("*")[0])
    try:
        full = g.run(["aistack", "backup", "now"], check=False, timeout=300)
        partials = g.run(["sh", "-c", f"ls -A {BACKUPS} | grep '^.partial-' || true"]).stdout
    finally:
        g.run(["rm", "-f", filler])
    if free != 0:
        raise CheckFailed(f"the filler left {free} blocks free")
    if full.returncode == 0:
        raise CheckFailed(f"a backup succeeded on a full disk: {full.stdout}")
    if "free" not in full.stdout + full.stderr:
        raise CheckFailed(f"a refused backup does not say why: {full.stdout}{full.stderr}")
    if partials.strip():
        raise CheckFailed(f"a refused backup left {partials.split()}")
    again = g.run(["aistack", "backup", "now"], check=False, timeout=900)
    if again.returncode != 0:
        raise CheckFailed(f"no backup once space was freed: {again.stdout}{again.stderr}")
    return None


def _clock_offset(g: Guest) -> int:
    return int(g.read_file(CLOCK_FILE).decode().strip() or 0)


def _clock_jump(step: int) -> Callable[[Guest], Mark | None]:
    """The agent's wall clock steps by `step` seconds; its mark: the agent's next poll is
    stamped with the new time (so the jump was seen, not slept through)."""

    def inject(g: Guest) -> Mark | None:
        offset = _clock_offset(g) + step
        g.write_file(CLOCK_FILE, f"{offset:+d}\n")

        def seen(doc: dict[str, Any]) -> bool:
            real = float(g.run(["date", "+%s"]).stdout)
            stamp = datetime.fromisoformat(doc["sources"]["systemd"]["checked_at"])
            return abs(stamp.timestamp() - (real + offset)) < 120

        return seen

    return inject


BURST = r"""
import concurrent.futures, urllib.request
def get(path):
    with urllib.request.urlopen("http://127.0.0.1:9200" + path, timeout=30) as r:
        return r.status
with concurrent.futures.ThreadPoolExecutor(20) as pool:
    codes = list(pool.map(get, ["/status", "/metrics", "/healthz"] * 70))
assert all(c in (200, 503) for c in codes), codes
"""


def _api_burst(g: Guest) -> Mark | None:
    g.run(["python3", "-c", BURST], timeout=120)
    return None


CATALOGUE: tuple[Fault, ...] = (
    *(_kill9(s) for s in SERVICES),
    *(_sigstop(s) for s in HTTP_SERVICES),
    *(_answers_500(s) for s in HTTP_SERVICES),
    Fault("podman.socket stopped for 10 s", _podman_socket_down),
    Fault("systemctl restart dbus", _dbus_restart),
    Fault("PostgreSQL restarted", _postgres_restart),
    Fault("the agent kill -9'd", _agent_kill),
    Fault("the agent kill -9'd mid-backup", _agent_kill_mid_backup),
    Fault("a config reload with a broken file", _broken_reload),
    Fault("a burst of 210 API requests", _api_burst),
    Fault("the backup disk full", _backup_disk_full),
    Fault("the agent's wall clock jumps 6 h forward", _clock_jump(CLOCK_STEP_S)),
    Fault("the agent's wall clock jumps 6 h back", _clock_jump(-CLOCK_STEP_S)),
)


def plan(n: int, seed: int) -> list[Fault]:
    """Every kind once (in a seeded order) when n allows, the rest drawn at random."""
    rng = random.Random(seed)
    first = list(CATALOGUE)
    rng.shuffle(first)
    return (first + [rng.choice(CATALOGUE) for _ in range(max(0, n - len(first)))])[:n]


# --- checks --------------------------------------------------------------------------


def recovered(guest: Guest) -> dict[str, Any] | None:
    """The /status document once every service is healthy and the agent is up."""
    try:
        code, doc = status(guest)
    except (testbed.GuestCommandError, ValueError):
        return None  # the agent is restarting
    services = doc.get("services") or {}
    ok = (
        code == 200
        and set(services) == set(SERVICES)
        and all(healthy(s) for s in services.values())
        and doc["sources"]["podman"]["state"] == "ok"
        and doc["sources"]["systemd"]["state"] == "ok"
    )
    return doc if ok else None


def consistent(guest: Guest, doc: dict[str, Any]) -> list[str]:
    """Where /status disagrees with systemd or Podman (empty: it agrees)."""
    problems = []
    for name, svc in doc["services"].items():
        active = guest.unit_properties(f"{name}.service", "ActiveState")["ActiveState"]
        if active != svc["active_state"]:
            problems.append(f"{name}: /status {svc['active_state']}, systemd {active}")
        cid = guest.podman("inspect", name, "--format", "{{.Id}}", check=False).strip()
        if cid != svc["container_id"]:
            problems.append(f"{name}: /status container {svc['container_id']}, Podman {cid}")
    return problems


def settled(guest: Guest, mark: Mark | None = None) -> dict[str, Any]:
    """Recovered (past the fault's mark), and /status agrees with systemd and Podman (a
    poll may lag a moment)."""

    def probe() -> dict[str, Any] | None:
        doc = recovered(guest)
        if doc is None or (mark is not None and not mark(doc)):
            return None
        return doc if not consistent(guest, doc) else None

    return guest.wait_for("the stack recovered and /status consistent", probe,  # type: ignore[no-any-return]
                          timeout=BOUND_S, interval=0.5)  # fmt: skip


def secrets_in_logs(guest: Guest) -> list[str]:
    names = guest.run(["sh", "-c", "ls /etc/aistack/secrets"]).stdout.split()
    logs = guest.run(["journalctl", "--no-pager", "-o", "cat"], timeout=120).stdout
    leaked = []
    for name in names:
        if name.startswith("."):
            continue
        value = guest.run(["cat", f"/etc/aistack/secrets/{name}"]).stdout.strip()
        if len(value) >= 12 and value in logs:
            leaked.append(name)
    return leaked


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- the run ---------------------------------------------------------------------------


def prepare(guest: Guest) -> None:
    """What the disk and clock faults need before the agent starts: the backups on a
    filesystem of their own, and the agent's clock behind an offset (0 to begin with)."""
    guest.run(["mkdir", "-p", BACKUPS])
    guest.run(["mount", "-t", "tmpfs", "-o", f"size={BACKUPS_FS_SIZE},mode=0700",
               "aistack-backups", BACKUPS])  # fmt: skip
    guest.write_file(CLOCK_FILE, "+0\n")
    guest.write_file("/etc/systemd/system/aistack-agent.service.d/gauntlet-clock.conf",
                     CLOCK_DROPIN)  # fmt: skip


def run(
    guest: Guest, deb: Path, faults: list[Fault], budget_s: float | None = None
) -> dict[str, Any]:
    """Inject `faults` in order; with budget_s, stop drawing new ones once that many
    seconds have passed (the figures then say how many of the planned ran)."""
    started = time.monotonic()
    images = {n: testbed.ensure_image(guest, n) for n in testbed.STANDIN_NAMES}
    postgres = testbed.ensure_image(guest, "postgres")
    config = testbed.stack_config(images, postgres, head=HEAL + BACKUP_CONFIG)
    prepare(guest)
    for name in SERVICES:  # keep every trial's recovery comparable (as detection.py)
        guest.write_file(f"/etc/systemd/system/{name}.service.d/gauntlet.conf",
                         "[Unit]\nStartLimitBurst=1000\n[Service]\nRestartSteps=0\n")  # fmt: skip
    report = testbed.start_stack(guest, deb, config)
    assert report is not None and report["ok"], report
    before = settled(guest)

    def backed_up() -> bool:  # backups turn on once the stack is applied (auto)
        return guest.run(["aistack", "backup", "now"], check=False, timeout=900).returncode == 0

    guest.wait_for("a first backup", backed_up, timeout=300, interval=2)
    rows: list[dict[str, Any]] = []
    for i, fault in enumerate(faults, 1):
        if budget_s is not None and time.monotonic() - started > budget_s:
            print(f"  time budget of {budget_s:.0f} s spent: stopping after {i - 1} faults")
            break
        restarts = agent_restarts(settled(guest))
        t0 = time.monotonic()
        why = ""
        try:
            doc = settled(guest, fault.inject(guest))
            took, ok = time.monotonic() - t0, True
        except (TimeoutError, CheckFailed) as exc:
            doc, took, ok = status(guest)[1], time.monotonic() - t0, False
            why = str(exc)
        storm = agent_restarts(doc) - restarts > 2
        rows.append({"fault": fault.name, "recovered": ok, "seconds": took, "storm": storm,
                     "why": why})  # fmt: skip
        print(f"  {i:3d}/{len(faults)} {fault.name:<44} "
              f"{'recovered' if ok else 'NOT RECOVERED'} in {took:6.1f} s"
              f"{'  STORM' if storm else ''}{'  ' + why if why else ''}", flush=True)  # fmt: skip
        if not ok:
            break
    guest.run(["aistack", "backup", "now"], check=False, timeout=900)
    verify = guest.run(["aistack", "backup", "verify", "--all", "--json"], check=False,
                       timeout=1800)  # fmt: skip
    results = json.loads(verify.stdout or "[]")
    return {
        "planned": len(faults),
        "rows": rows,
        "backups": len(results),
        "backups_failed": [r["id"] for r in results if not r["ok"]],
        "leaked": secrets_in_logs(guest),
        "restarts_total": agent_restarts(status(guest)[1]) - agent_restarts(before),
    }


def summary(result: dict[str, Any]) -> list[str]:
    """The figures, one line each: injected, recovered, time to recover, backups, leaks."""
    rows = result["rows"]
    times = [r["seconds"] for r in rows if r["recovered"]]
    lines = [
        f"faults injected {len(rows)} (of {result.get('planned', len(rows))} planned), "
        f"recovered {len(times)}, "
        f"storms {sum(r['storm'] for r in rows)}, agent restarts {result['restarts_total']}"
    ]
    if times:
        p50, p99 = statistics.median(times), pct(times, 0.99)
        lines.append(f"time to recover: p50 {p50:.1f} s, p99 {p99:.1f} s")
    for name in sorted({r["fault"] for r in rows}):
        mine = [r["seconds"] for r in rows if r["fault"] == name and r["recovered"]]
        if mine:
            lines.append(f"  {name:<44} n={len(mine):3d}  p50 {statistics.median(mine):6.1f} s"
                         f"  max {max(mine):6.1f} s")  # fmt: skip
    failed_n = len(result["backups_failed"])
    lines.append(f"backups: {result['backups']} verified at the end (verify --all), "
                 f"failed {failed_n}, lost {failed_n}")  # fmt: skip
    lines.append(f"secrets in logs: {len(result['leaked'])} {result['leaked'] or ''}".rstrip())
    return lines


def failed(result: dict[str, Any]) -> bool:
    rows = result["rows"]
    return (
        not all(r["recovered"] for r in rows) or any(r["storm"] for r in rows)
        or bool(result["backups_failed"]) or bool(result["leaked"]) or not result["backups"]
    )  # fmt: skip
