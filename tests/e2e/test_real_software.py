"""The real Open WebUI and the real LiteLLM proxy under the shipped units, in the testbed.

Every other e2e test runs busybox stand-ins for them. Here the agent renders and starts
the stack exactly as for users, only the two images swapped for the real software built
from Debian + PyPI (tests/e2e/testbed.py REAL_IMAGES; Ollama stays a stand-in: no package
ships its server). The stack has no PostgreSQL (`stack.postgres.enabled: false`): the
real LiteLLM cannot start with a database here (its Prisma engines are downloaded at
start), and LiteLLM without a database is a real configuration (no spend tracking).

What it shows: the shipped health commands pass on the real images, Notify=healthy
orders the starts, the start fits HealthStartPeriod (no health-check kill, no restart),
the agent's probes are ok and name the cause when a service is broken, the rendered
LiteLLM config is what the real proxy serves, Open WebUI reaches Ollama and LiteLLM by
the stack's names and keeps its data across a restart and an update, and kill -9 and a
hang of each real service are healed (the recovery times are printed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import testbed
from tests.e2e.gauntlet import healthy, status
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

REAL = ("litellm", "open-webui")
SERVICES = ("ollama", "litellm", "open-webui")
MODEL = testbed.NO_DB_MODEL
REPLY = "Hello from the Ollama stand-in."
HEAL = (
    "heal:\n  probe_interval: 5s\n  probe_timeout: 4s\n  probe_failures: 2\n"
    "  backoff_initial: 2s\n  backoff_max: 10s\n  unhealthy_grace: 5s\n"
)
ADMIN = {"name": "Ada Admin", "email": "ada@example.com", "password": "correct-horse-9"}
WEBUI = "http://127.0.0.1:8080"
LITELLM = "http://127.0.0.1:4000"


@pytest.fixture(scope="module")
def real_images(session_guest: Guest) -> dict[str, str]:
    return {
        "open-webui": testbed.ensure_image(session_guest, "open-webui-real"),
        "litellm": testbed.ensure_image(session_guest, "litellm-real"),
    }


@pytest.fixture(scope="module")
def real_stack(
    session_guest: Guest,
    agent_deb: Path,
    standin_images: dict[str, str],
    real_images: dict[str, str],
) -> Iterator[tuple[Guest, dict[str, Any]]]:
    guest = session_guest
    config = testbed.no_database_config({**standin_images, **real_images}, head=HEAL)
    report = testbed.start_stack(guest, agent_deb, config)
    assert report is not None
    yield guest, report
    testbed.remove_stack(guest)
    guest.reset()


def wait_healthy(guest: Guest, timeout: float = 300) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        code, doc = status(guest)
        services = doc.get("services") or {}
        good = code == 200 and set(services) == set(SERVICES)
        return doc if good and all(healthy(s) for s in services.values()) else None

    return guest.wait_for("every service healthy in /status", ready, timeout=timeout)  # type: ignore[no-any-return]


@pytest.fixture
def say(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a figure to the run's output even when the test passes (the CI log)."""

    def out(line: str) -> None:
        with capsys.disabled():
            print(line, flush=True)

    return out


def master_key(guest: Guest) -> str:
    return guest.read_file("/etc/aistack/secrets/litellm-master-key").decode().strip()


def start_seconds(guest: Guest, name: str) -> float:
    """From the unit leaving inactive to active: with Notify=healthy, to the first
    passing health check of the container."""
    props = guest.unit_properties(
        f"{name}.service", "InactiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic"
    )
    start, active = (int(props[k]) for k in props)
    return (active - start) / 1e6


def test_the_shipped_units_start_the_real_services_healthy_in_order(
    real_stack: tuple[Guest, dict[str, Any]], say: Callable[[str], None]
) -> None:
    guest, report = real_stack
    assert report["ok"] and report["started"] == list(SERVICES), report
    doc = wait_healthy(guest)
    for name in REAL:
        props = guest.unit_properties(f"{name}.service", "ActiveState", "NRestarts")
        # the start fitted HealthStartPeriod: no health-check kill, no restart by systemd
        assert props == {"ActiveState": "active", "NRestarts": "0"}, (name, props)
        health = guest.podman("healthcheck", "run", name, check=False)
        assert health.strip() in ("", "healthy"), (name, health)  # the shipped HealthCmd
        svc = doc["services"][name]
        assert svc["probe"]["ok"] is True, svc
        say(f"\n{name}: real start to healthy {start_seconds(guest, name):.1f} s")
    # Notify=healthy: open-webui (After=litellm) began starting only once LiteLLM was healthy
    webui = guest.unit_properties("open-webui.service", "InactiveExitTimestampMonotonic")
    llm = guest.unit_properties("litellm.service", "ActiveEnterTimestampMonotonic")
    assert int(webui["InactiveExitTimestampMonotonic"]) >= int(llm["ActiveEnterTimestampMonotonic"])
    # no database: no postgres unit, no DATABASE_URL, nothing pulling postgres in
    env = json.loads(guest.podman("inspect", "litellm", "--format", "{{json .Config.Env}}"))
    assert not [e for e in env if e.startswith(("DATABASE_URL=", "STORE_MODEL_IN_DB="))]
    assert "postgres" not in guest.run(["systemctl", "show", "-P", "Requires", "litellm"]).stdout
    assert doc["backups"]["state"] == "disabled", doc["backups"]


def test_the_real_litellm_serves_the_rendered_config(
    real_stack: tuple[Guest, dict[str, Any]],
) -> None:
    guest, _ = real_stack
    wait_healthy(guest)
    auth = {"Authorization": f"Bearer {master_key(guest)}"}
    code, body = guest.http("GET", f"{LITELLM}/v1/models", headers=auth)
    assert code == 200, body
    assert [m["id"] for m in json.loads(body)["data"]] == [MODEL]
    code, body = guest.http("GET", f"{LITELLM}/v1/models")
    assert code == 401, body
    code, body = guest.http("GET", f"{LITELLM}/v1/models", headers={"Authorization": "Bearer x"})
    assert code in (400, 401), body
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    code, body = guest.http("POST", f"{LITELLM}/v1/chat/completions", json.dumps(chat), 60,
                            {**auth, "Content-Type": "application/json"})  # fmt: skip
    assert code == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"].strip() == REPLY


def _signin(guest: Guest, path: str, payload: dict[str, str]) -> dict[str, Any]:
    code, body = guest.http("POST", f"{WEBUI}{path}", json.dumps(payload), 30,
                            {"Content-Type": "application/json"})  # fmt: skip
    assert code == 200, (path, code, body)
    return json.loads(body)  # type: ignore[no-any-return]


def _webui_chat(guest: Guest, token: str, model: str) -> str:
    chat = {"model": model, "stream": False, "messages": [{"role": "user", "content": "hi"}]}
    code, body = guest.http("POST", f"{WEBUI}/api/chat/completions", json.dumps(chat), 90,
                            {"Authorization": f"Bearer {token}",
                             "Content-Type": "application/json"})  # fmt: skip
    assert code == 200, body
    return str(json.loads(body)["choices"][0]["message"]["content"]).strip()


def test_open_webui_reaches_ollama_and_litellm_and_keeps_its_data(
    real_stack: tuple[Guest, dict[str, Any]],
) -> None:
    guest, _ = real_stack
    wait_healthy(guest)
    res = guest.run(["aistack", "doctor", "--json"], check=False, timeout=120)
    findings = {f["check"]: f for f in json.loads(res.stdout)["findings"]}
    ollama, litellm = findings["webui-ollama"], findings["webui-litellm"]
    assert ollama["severity"] == "ok" and "http://ollama:11434" in ollama["summary"], ollama
    assert litellm["severity"] == "ok" and "http://litellm:4000/v1" in litellm["summary"]
    assert "1 model," in litellm["summary"], litellm

    user = _signin(guest, "/api/v1/auths/signup", ADMIN)
    assert user["role"] == "admin", user  # the first account is the admin
    code, body = guest.http("GET", f"{WEBUI}/api/models", timeout=60,
                            headers={"Authorization": f"Bearer {user['token']}"})  # fmt: skip
    assert code == 200, body
    models = {m["id"] for m in json.loads(body)["data"]}
    assert {"llama3.2:1b", MODEL} <= models, models  # from Ollama and from LiteLLM
    assert _webui_chat(guest, user["token"], MODEL) == REPLY  # through LiteLLM
    assert _webui_chat(guest, user["token"], "llama3.2:1b") == REPLY  # straight to Ollama

    login = {"email": ADMIN["email"], "password": ADMIN["password"]}
    # a restart: the same container volume, the account still there
    res = guest.run(["aistack", "restart", "open-webui"], check=False, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    wait_healthy(guest)
    assert _signin(guest, "/api/v1/auths/signin", login)["id"] == user["id"]

    # an update: a new image under the same name, so a new container on the same volume
    old = guest.podman("inspect", "open-webui", "--format", "{{.Id}}").strip()
    image = guest.podman("inspect", "open-webui", "--format", "{{.ImageName}}").strip()
    recipe = "/var/tmp/Containerfile"
    guest.write_file(recipe, f"FROM {image}\nLABEL io.aistack.test.update=2\n")
    guest.podman("build", "-q", "-t", image, "-f", recipe, "/var/tmp", timeout=300)
    res = guest.run(["aistack", "update", "--no-pull", "--json"], check=False, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "open-webui" in json.loads(res.stdout)["updated"], res.stdout
    wait_healthy(guest)
    assert guest.podman("inspect", "open-webui", "--format", "{{.Id}}").strip() != old
    assert _signin(guest, "/api/v1/auths/signin", login)["id"] == user["id"]


def _recover(guest: Guest, name: str, act: str) -> float:
    """Inject `act` into the real service, then the seconds until it is healthy again in
    a new container (healed by systemd, Podman's health check or the agent)."""
    before = wait_healthy(guest)["services"][name]["container_id"]
    t0 = time.monotonic()
    if act == "kill -9":
        pid = guest.podman("inspect", name, "--format", "{{.State.Pid}}").strip()
        guest.run(["kill", "-9", pid])
    else:  # a hang: every process stopped, alive and answering nothing
        pids = [p for p in guest.podman("top", name, "hpid").split()[1:] if p.isdigit()]
        guest.run(["kill", "-STOP", *pids])

    def back() -> bool:
        code, doc = status(guest)
        svc = (doc.get("services") or {}).get(name)
        return code == 200 and svc is not None and healthy(svc) and svc["container_id"] != before

    guest.wait_for(f"{name} healed after {act}", back, timeout=600, interval=0.5)
    return time.monotonic() - t0


@pytest.mark.parametrize("name", REAL)
def test_kill_9_and_a_hang_of_each_real_service_are_healed(
    real_stack: tuple[Guest, dict[str, Any]], name: str, say: Callable[[str], None]
) -> None:
    guest, _ = real_stack
    for act in ("kill -9", "hang"):
        took = _recover(guest, name, act)
        start = start_seconds(guest, name)
        say(f"\n{name} {act}: healthy again in {took:.1f} s (its real start {start:.1f} s)")


def test_the_probes_name_the_cause_when_a_real_service_is_broken(
    real_stack: tuple[Guest, dict[str, Any]], say: Callable[[str], None]
) -> None:
    guest, _ = real_stack
    wait_healthy(guest)
    # LiteLLM refuses a config it cannot read: the agent says so, with LiteLLM's words
    path = "/etc/aistack/litellm/config.yaml"
    good = guest.read_file(path)
    guest.write_file(path, "model_list: [unclosed\n")
    try:
        guest.run(["systemctl", "restart", "--no-block", "litellm.service"])
        reason = _reason_until(guest, "litellm", "yaml")
        assert "it said: yaml.parser.ParserError" in reason, reason
    finally:
        guest.write_file(path, good)
        guest.run(["systemctl", "reset-failed", "litellm.service"], check=False)
        guest.run(["systemctl", "restart", "litellm.service"], check=False, timeout=600)
    wait_healthy(guest)

    # Open WebUI's data dir unwritable: it cannot create its database
    fmt = '{{range .Mounts}}{{if eq .Destination "/app/backend/data"}}{{.Source}}{{end}}{{end}}'
    data = guest.podman("inspect", "open-webui", "--format", fmt).strip()
    assert data, "open-webui has no data volume"
    # a read-only filesystem over it (a read-only bind mount would not carry into the
    # container's own bind mount of the volume; a read-only superblock does)
    guest.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "aistack-e2e-ro", data])
    try:
        guest.run(["systemctl", "restart", "--no-block", "open-webui.service"])
        reason = _reason_until(guest, "open-webui", "database")
        say(f"\nopen-webui with its data read-only: {reason}")
        assert "it said:" in reason and "database" in reason.split("it said:")[1], reason
    finally:
        guest.run(["umount", data], check=False)
        guest.run(["systemctl", "reset-failed", "open-webui.service"], check=False)
        guest.run(["systemctl", "restart", "open-webui.service"], check=False, timeout=600)
    wait_healthy(guest)


def _reason_until(guest: Guest, name: str, word: str) -> str:
    """The service's reason in /status once it contains `word` (case-insensitive)."""

    def probe() -> str | None:
        _, doc = status(guest)
        svc = (doc.get("services") or {}).get(name) or {}
        reason = str(svc.get("reason") or "")
        return reason if word in reason.lower() else None

    try:
        return guest.wait_for(f"/status naming the cause for {name}", probe, timeout=300)  # type: ignore[no-any-return]
    except TimeoutError:
        _, doc = status(guest)
        svc = (doc.get("services") or {}).get(name)
        out = guest.run(["journalctl", "-o", "cat", "-n", "40", f"_SYSTEMD_UNIT={name}.service",
                         f"SYSLOG_IDENTIFIER={name}"], check=False).stdout  # fmt: skip
        raise AssertionError(f"no {word!r} in {name}'s reason: {svc}\n{out}") from None
