"""Extra services in the managed stack (issue #18), for real: a compose project imported
with `aistack import-compose --into-stack` joins the stack the agent runs under systemd
257 and Podman 5.4, and is watched, healed and removed like the core services.

Project `tools` on the stand-in images (busybox inside) and the real PostgreSQL:
- `init`: a one-shot job that writes a file into a volume;
- `web`: busybox httpd with a health check, serving init's file, after init completed
  (service_completed_successfully); httpd as PID 1 ignores SIGTERM, so a stop kills it
  (exit 137): a person's stop must still be a stop;
- `worker`: depends on the managed postgres, checks it as `db` and `postgres` over
  aistack.network five times a second, and exits when it goes away (systemd restarts it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import testbed
from tests.e2e.gauntlet import status, stop_every_process
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

HEAL = (
    "heal:\n  probe_interval: 3s\n  probe_timeout: 2s\n  probe_failures: 2\n"
    "  backoff_initial: 10s\n  backoff_max: 30s\n  unhealthy_grace: 5s\n"
    "backups:\n  enabled: false\n"
)
COMPOSE = "/srv/tools/compose.yaml"
EXTRAS = ("tools-init", "tools-web", "tools-worker")
SLOW_FLOOR_S = 300.0  # hang guards only: a loaded CI machine is slow


def _compose(image: str) -> str:
    # -w 1 and 0.2 s apart: the check must see PostgreSQL's outage, however short. A longer
    # connect timeout lets a SYN retransmitted at +1 s reach the next container on the same
    # address, and PostgreSQL is back within about a second of its kill (its early startup
    # checks), so a 1 s loop with -w 2 slept through whole outages (a red CI run).
    check = "timeout 3 nc -w 1 {host} 5432 </dev/null >/dev/null 2>&1"
    alive = f"{check.format(host='db')} && {check.format(host='postgres')}"
    return f"""\
services:
  init:
    image: {image}
    entrypoint: ["/bin/sh", "-c", "echo hello-from-init > /data/index.html"]
    volumes: [data:/data]
  web:
    image: {image}
    entrypoint: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/data"]
    ports: ["127.0.0.1:18080:8080"]
    volumes: [data:/data]
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "/bin/busybox", "wget", "-q", "-T", "2", "-O", "/dev/null",
             "http://127.0.0.1:8080/index.html"]
      interval: 2s
      timeout: 3s
      retries: 2
    depends_on:
      init: {{condition: service_completed_successfully}}
  worker:
    image: {image}
    entrypoint: ["/bin/sh", "-c", "while {alive}; do sleep 0.2; done; echo gone; exit 1"]
    restart: unless-stopped
    depends_on: [postgres]
volumes:
  data: {{}}
"""


@pytest.fixture(scope="module")
def stack(
    session_guest: Guest, agent_deb: Path, standin_images: dict[str, str], postgres_image: str
) -> Iterator[Guest]:
    guest = session_guest
    config = testbed.stack_config(standin_images, postgres_image, head=HEAL)
    testbed.start_stack(guest, agent_deb, config, up=False)
    guest.units_of_interest.update(f"{n}.service" for n in EXTRAS)
    guest.write_file(COMPOSE, _compose(standin_images["litellm"]))
    res = guest.run(["aistack", "import-compose", "--into-stack", "-f", COMPOSE], check=False,
                    timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "next: aistack up" in res.stderr and "reloaded" in res.stderr, res.stderr
    up = guest.run(["aistack", "up", "--json"], check=False, timeout=900)
    assert up.returncode == 0, (up.stdout, up.stderr)
    report = json.loads(up.stdout)
    assert set(EXTRAS) <= set(report["started"]), report
    yield guest
    guest.run(["aistack", "down"], check=False, timeout=300)
    testbed.remove_stack(guest, "/srv/tools")
    guest.reset()


def _healthy(svc: dict[str, Any]) -> bool:
    if svc["oneshot"]:
        return svc["active_state"] == "active" and svc["sub_state"] == "exited"
    return (
        svc["active_state"] == "active"
        and svc["container_state"] == "running"
        and svc["health"] in ("healthy", "unknown")  # worker has no health check
        and svc["reason"] is None
    )


def wait_all_good(guest: Guest) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        _, doc = status(guest)
        services = doc["services"]
        wanted = set(testbed.STACK_SERVICES) | set(EXTRAS)
        good = set(services) == wanted and all(_healthy(s) for s in services.values())
        return doc if good and services["tools-web"]["health"] == "healthy" else None

    return guest.wait_for("every service good in /status", ready, timeout=SLOW_FLOOR_S)  # type: ignore[no-any-return]


def actions(doc: dict[str, Any], service: str) -> list[dict[str, Any]]:
    return [a for a in doc["heal"]["recent"] if a["service"] == service and a["by"] == "healer"]


def test_the_project_runs_as_part_of_the_stack(stack: Guest) -> None:
    guest = stack
    doc = wait_all_good(guest)
    init, web, worker = (doc["services"][n] for n in EXTRAS)
    assert (web["project"], init["oneshot"], web["oneshot"]) == ("tools", True, False)
    assert worker["requires"] == ["postgres"] and web["requires"] == ["tools-init"]
    assert web["container"] == "tools-web" and web["ports"] == ["127.0.0.1:18080:8080"]
    # the units through Podman 5.4's generator, ordered after what they need
    after = guest.unit_properties("tools-worker.service", "After", "Requires")
    assert "postgres.service" in after["After"] and "postgres.service" in after["Requires"]
    assert "tools-init.service" in guest.unit_properties("tools-web.service", "After")["After"]
    code, body = guest.http("GET", "http://127.0.0.1:18080/index.html")
    assert (code, body.strip()) == (200, "hello-from-init")
    # the worker reaches the managed PostgreSQL as `db` and `postgres` on aistack.network
    nets = guest.podman("inspect", "tools-worker", "--format", "{{json .NetworkSettings.Networks}}")
    assert "aistack" in json.loads(nets)
    _, metrics = guest.http("GET", "http://127.0.0.1:9200/metrics")
    assert 'aistack_service_up{service="tools-web"} 1.0' in metrics
    assert 'aistack_service_healthy{service="tools-web"} 1.0' in metrics
    res = guest.run(["aistack", "doctor", "--json"], check=False, timeout=300)
    lines = [f["summary"] for f in json.loads(res.stdout)["findings"] if f["check"] == "services"]
    assert "tools-init: ran to completion (a one-shot job)" in lines, lines
    assert "tools-web: active, healthy" in lines, lines
    table = guest.run(["aistack", "status"], check=False, timeout=60).stdout
    assert "tools-web" in table and "tools-worker" in table
    logs = guest.run(["aistack", "logs", "tools-web", "-n", "5"], check=False, timeout=60)
    assert logs.returncode == 0, logs.stderr
    unknown = guest.run(["aistack", "logs", "nope"], check=False, timeout=60)
    assert unknown.returncode == 64 and "tools-web" in unknown.stderr


def test_kill_9_is_healed_by_systemd(stack: Guest) -> None:
    guest = stack
    before = wait_all_good(guest)
    old = before["services"]["tools-web"]["container_id"]
    pid = guest.podman("inspect", "tools-web", "--format", "{{.State.Pid}}").strip()
    guest.run(["kill", "-9", pid])
    doc = guest.wait_for(
        "tools-web in a new container",
        lambda: (d := wait_all_good(guest))["services"]["tools-web"]["container_id"] != old and d,
        timeout=SLOW_FLOOR_S,
    )
    assert actions(doc, "tools-web") == actions(before, "tools-web")  # systemd's, not ours


def test_a_hung_extra_service_is_restarted_by_the_agent(stack: Guest) -> None:
    guest = stack
    before = wait_all_good(guest)
    old = before["services"]["tools-web"]["container_id"]
    earlier = len(actions(before, "tools-web"))
    stop_every_process(guest, "tools-web")

    def restarted() -> dict[str, Any] | None:
        _, d = status(guest)
        return d if len(actions(d, "tools-web")) > earlier else None

    doc = guest.wait_for("the agent restarting tools-web", restarted, timeout=SLOW_FLOOR_S)
    assert actions(doc, "tools-web")[-1]["reason_code"] == "unhealthy"
    after = wait_all_good(guest)
    assert after["services"]["tools-web"]["container_id"] != old


def test_the_worker_comes_back_after_postgres_is_killed(stack: Guest) -> None:
    guest = stack
    before = wait_all_good(guest)
    old = before["services"]["tools-worker"]["container_id"]
    pid = guest.podman("inspect", "postgres", "--format", "{{.State.Pid}}").strip()
    guest.run(["kill", "-9", pid])
    doc = guest.wait_for(
        "the worker in a new container after postgres",
        lambda: (
            (d := wait_all_good(guest))["services"]["tools-worker"]["container_id"] != old and d
        ),
        timeout=SLOW_FLOOR_S,
    )
    assert doc["services"]["postgres"]["health"] == "healthy"


def test_a_persons_stop_stays_a_stop_and_restart_brings_it_back(stack: Guest) -> None:
    guest = stack
    before = wait_all_good(guest)
    earlier = len(actions(before, "tools-web"))
    res = guest.run(["aistack", "down", "tools-web"], check=False, timeout=300)
    assert res.returncode == 0, (res.stdout, res.stderr)  # httpd ignored SIGTERM: killed
    state = guest.unit_properties("tools-web.service", "ActiveState")["ActiveState"]
    assert state == "inactive"  # not failed: reset inside the stop
    time.sleep(20)  # a few healer rounds: it must leave the person's stop alone
    _, doc = status(guest)
    assert doc["services"]["tools-web"]["active_state"] == "inactive"
    assert len(actions(doc, "tools-web")) == earlier, doc["heal"]["recent"]
    res = guest.run(["aistack", "restart", "tools-web"], check=False, timeout=300)
    assert res.returncode == 0, (res.stdout, res.stderr)
    wait_all_good(guest)


def test_dropped_from_the_config_the_project_is_removed(
    stack: Guest, standin_images: dict[str, str], postgres_image: str
) -> None:
    guest = stack
    wait_all_good(guest)
    guest.write_file("/etc/aistack/agent.yaml",
                     testbed.stack_config(standin_images, postgres_image, head=HEAL))  # fmt: skip
    guest.run(["systemctl", "reload", testbed.AGENT_UNIT], timeout=60)
    up = guest.run(["aistack", "up", "--json"], check=False, timeout=900)
    assert up.returncode == 0, (up.stdout, up.stderr)
    report = json.loads(up.stdout)
    assert set(report["stopped"]) == set(EXTRAS), report
    left = guest.run(["sh", "-c", "ls /etc/containers/systemd/aistack"]).stdout.split()
    assert not [f for f in left if f.startswith("tools")], left
    assert guest.podman("ps", "-a", "--filter", "name=tools-", "--format", "{{.Names}}") == ""
    for name in EXTRAS:
        state = guest.unit_properties(f"{name}.service", "LoadState", "ActiveState")
        assert state == {"LoadState": "not-found", "ActiveState": "inactive"}, (name, state)

    def core_alone() -> dict[str, Any] | None:
        _, d = status(guest)
        services = d["services"]
        ok = set(services) == set(testbed.STACK_SERVICES) and d["state"] == "ok"
        return d if ok else None

    guest.wait_for("the core stack alone and ok", core_alone, timeout=SLOW_FLOOR_S)
