"""The stack applied by the agent itself, for real: Podman quadlet units under systemd 257,
started in order and healthy, on one network, re-applied without change, changed one
service at a time, stopped and started again, and its secrets kept out of sight.

The images are the testbed's stand-ins (and the real PostgreSQL 17 image): no registry is
reachable here. Everything else is what users get: the deb, the shipped templates, the
agent's unit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import testbed
from tests.e2e.testbed import Guest

pytestmark = pytest.mark.e2e

AGENT = testbed.AGENT_UNIT
SERVICES = list(testbed.STACK_SERVICES)


def _config(images: dict[str, str], postgres: str, ollama_env: str = "") -> str:
    return testbed.stack_config(images, postgres, ollama_extra=ollama_env)


@pytest.fixture
def stack(
    guest: Guest, agent_deb: Path, standin_images: dict[str, str], postgres_image: str
) -> Iterator[Guest]:
    testbed.start_stack(guest, agent_deb, _config(standin_images, postgres_image), up=False)
    yield guest
    testbed.remove_stack(guest)


def _up(guest: Guest) -> dict:  # type: ignore[type-arg]
    res = guest.run(["aistack", "up", "--json"], check=False, timeout=900)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_apply_runs_the_stack_healthy_and_reapply_changes_nothing(
    stack: Guest, standin_images: dict[str, str], postgres_image: str
) -> None:
    guest = stack
    report = _up(guest)
    assert report["ok"] and report["started"] == SERVICES, report
    for name in SERVICES:
        props = guest.unit_properties(f"{name}.service", "ActiveState", "SubState")
        assert props["ActiveState"] == "active", (name, props)

    # /status right after `aistack up` answered, without waiting for a poll: the agent
    # looked again before answering, so every service is active and healthy already
    code, body = guest.http("GET", "http://127.0.0.1:9200/status")
    assert code == 200, body
    services = json.loads(body)["services"]
    assert set(services) == set(SERVICES)
    for name, svc in services.items():
        assert svc["active_state"] == "active" and svc["health"] == "healthy", (name, svc)
        assert svc["container_id"] and svc["last_error"] is None

    # sampled podman stats as metrics
    metrics = guest.http("GET", "http://127.0.0.1:9200/metrics")[1]
    for name in SERVICES:
        assert f'aistack_service_up{{service="{name}"}} 1.0' in metrics
        assert f'aistack_service_memory_bytes{{service="{name}"}}' in metrics, name

    # one network, names resolve: Open WebUI -> Ollama and LiteLLM; LiteLLM -> Postgres
    for url in ("http://ollama:11434/api/version", "http://litellm:4000/health/liveliness"):
        guest.podman("exec", "open-webui", "wget", "-q", "-O", "/dev/null", url)
    ready = guest.podman(
        "exec", "litellm", "wget", "-q", "-O-", "http://127.0.0.1:4000/health/readiness"
    )
    assert json.loads(ready)["db"] == "connected"

    # the same config again: nothing written, nothing restarted
    pids = {n: guest.unit_properties(f"{n}.service", "MainPID")["MainPID"] for n in SERVICES}
    again = _up(guest)
    assert again["written"] == [] and again["restarted"] == [] and again["started"] == []
    assert sorted(again["unchanged"]) == sorted(SERVICES)
    assert pids == {
        n: guest.unit_properties(f"{n}.service", "MainPID")["MainPID"] for n in SERVICES
    }

    # one service's environment changes: only that service restarts
    guest.write_file(
        "/etc/aistack/agent.yaml",
        _config(standin_images, postgres_image, "    env: {OLLAMA_NUM_PARALLEL: 2}\n"),
    )
    changed = _up(guest)
    assert changed["restarted"] == ["ollama"], changed
    assert changed["written"] == ["/etc/containers/systemd/aistack/ollama.container"]
    env = guest.podman("inspect", "ollama", "--format", "{{range .Config.Env}}{{println .}}{{end}}")
    assert "OLLAMA_NUM_PARALLEL=2" in env.split()
    for name in ("postgres", "litellm", "open-webui"):
        assert guest.unit_properties(f"{name}.service", "MainPID")["MainPID"] == pids[name]


def test_down_and_up_again(stack: Guest) -> None:
    guest = stack
    _up(guest)
    res = guest.run(["aistack", "down"], timeout=300)
    assert res.returncode == 0, res.stderr
    for name in SERVICES:
        assert guest.unit_properties(f"{name}.service", "ActiveState")["ActiveState"] == "inactive"
    report = _up(guest)
    assert report["started"] == SERVICES and report["written"] == []
    res = guest.run(["aistack", "restart", "litellm"], timeout=300)
    assert "litellm     done" in res.stdout


def test_secrets_stay_out_of_units_logs_status_and_other_users(stack: Guest) -> None:
    guest = stack
    _up(guest)
    names = guest.run(["ls", "/etc/aistack/secrets"]).stdout.split()
    assert {"postgres-password", "litellm-master-key", "webui-secret-key",
            "litellm-database-url"} <= set(names)  # fmt: skip
    values = [guest.run(["cat", f"/etc/aistack/secrets/{n}"]).stdout.strip() for n in names]
    assert all(len(v) >= 32 for v in values)
    paths = ["/etc/aistack/secrets", *(f"/etc/aistack/secrets/{n}" for n in names)]
    modes = guest.run(["stat", "-c", "%a %U %n", *paths]).stdout.splitlines()
    assert modes[0].startswith("700 root") and all(m.startswith("600 root") for m in modes[1:])
    refused = guest.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                         "cat", "/etc/aistack/secrets/postgres-password"], check=False)  # fmt: skip
    assert refused.returncode != 0

    places = {
        "unit files": guest.run(["sh", "-c", "cat /etc/containers/systemd/aistack/*"]).stdout,
        "systemctl cat": guest.run(
            ["systemctl", "cat", *(f"{s}.service" for s in SERVICES)]
        ).stdout,
        "agent journal": guest.run(
            ["journalctl", "-u", AGENT, "--no-pager", "-o", "verbose"]
        ).stdout,
        "status": guest.http("GET", "http://127.0.0.1:9200/status")[1],
        "litellm config": guest.run(["cat", "/etc/aistack/litellm/config.yaml"]).stdout,
    }
    for where, text in places.items():
        for value in values:
            assert value not in text, f"a secret value appears in {where}"
    # ...and the containers got them where the images expect them
    env = guest.podman("exec", "postgres", "printenv", "POSTGRES_PASSWORD").strip()
    assert env == guest.run(["cat", "/etc/aistack/secrets/postgres-password"]).stdout.strip()


def test_models_pull_with_progress_list_rm_and_declared_models(
    stack: Guest, standin_images: dict[str, str], postgres_image: str
) -> None:
    guest = stack
    _up(guest)
    res = guest.run(["aistack", "models", "pull", "llama3.2"], timeout=120)
    assert "pulled llama3.2" in res.stdout
    steps = res.stderr.splitlines()  # not a TTY: one line per step
    assert steps[0].startswith("pulling manifest") and steps[-1].startswith("success"), steps
    assert any(line.endswith("%") for line in steps), steps
    listed = guest.run(["aistack", "models", "list", "--json"]).stdout
    assert "llama3.2" in {m["name"].removesuffix(":latest") for m in json.loads(listed)}
    guest.run(["aistack", "models", "rm", "llama3.2"])
    listed = guest.run(["aistack", "models", "list", "--json"]).stdout
    assert "llama3.2" not in {m["name"].removesuffix(":latest") for m in json.loads(listed)}
    # declared in the config: apply pulls what is missing, and only that
    guest.write_file(
        "/etc/aistack/agent.yaml",
        _config(standin_images, postgres_image, "    models: [mistral]\n"),
    )
    report = _up(guest)
    assert report["pulled"] == ["mistral"] and report["restarted"] == [], report
    assert _up(guest)["pulled"] == []


def test_rotate_a_secret_restarts_its_users(stack: Guest) -> None:
    guest = stack
    _up(guest)
    before = guest.run(["cat", "/etc/aistack/secrets/webui-secret-key"]).stdout
    pid = guest.unit_properties("open-webui.service", "MainPID")["MainPID"]
    res = guest.run(["aistack", "secrets", "rotate", "webui-secret-key"], timeout=300)
    assert "restarted open-webui" in res.stdout, res.stdout + res.stderr
    after = guest.run(["cat", "/etc/aistack/secrets/webui-secret-key"]).stdout
    assert after != before
    assert guest.unit_properties("open-webui.service", "MainPID")["MainPID"] != pid
    seen = guest.podman("exec", "open-webui", "sh", "-c", 'echo "$WEBUI_SECRET_KEY"').strip()
    assert seen == after.strip()


def test_removing_a_service_stops_it_and_keeps_its_volume(
    stack: Guest, standin_images: dict[str, str], postgres_image: str
) -> None:
    guest = stack
    _up(guest)
    config = _config(standin_images, postgres_image).replace(
        f"  open_webui:\n    image: {standin_images['open-webui']}\n",
        "  open_webui:\n    enabled: false\n",
    )
    guest.write_file("/etc/aistack/agent.yaml", config)
    report = _up(guest)
    assert report["stopped"] == ["open-webui"], report
    assert "/etc/containers/systemd/aistack/open-webui.container" in report["removed"]
    assert guest.unit_properties("open-webui.service", "ActiveState")["ActiveState"] != "active"
    volumes = guest.podman("volume", "ls", "--format", "{{.Name}}").split()
    assert "aistack-open-webui-data" in volumes  # data stays without --purge-data


def test_update_restarts_on_a_new_image_and_rolls_back_a_broken_one(
    stack: Guest, standin_images: dict[str, str]
) -> None:
    """No registry here: the 'newer image' is committed locally under the same name and
    `aistack update --no-pull` takes local storage as it is (the offline-host mode)."""
    guest = stack
    _up(guest)
    ref = standin_images["ollama"]
    original = guest.podman("image", "inspect", ref, "--format", "{{.Id}}").strip()

    # nothing new: nothing restarts
    res = guest.run(["aistack", "update", "--no-pull", "--json"], timeout=600)
    doc = json.loads(res.stdout)
    assert doc["updated"] == {} and "ollama" in doc["unchanged"], doc

    # a good new image: ollama restarts on it
    guest.podman("commit", "--change", "LABEL io.aistack.test.generation=2", "ollama", ref)
    good = guest.podman("image", "inspect", ref, "--format", "{{.Id}}").strip()
    doc = json.loads(guest.run(["aistack", "update", "--no-pull", "--json"], timeout=600).stdout)
    assert doc["updated"] == {"ollama": good} and doc["ok"], doc
    running = guest.podman("inspect", "ollama", "--format", "{{.Image}}").strip()
    assert running == good

    # a broken new image (crashes at start): rolled back to the previous one, healthy again
    guest.podman("commit", "--change", "ENV AISTACK_FAULT_CRASH_AT_START=1", "ollama", ref)
    res = guest.run(["aistack", "update", "--no-pull", "--json"], check=False, timeout=900)
    doc = json.loads(res.stdout)
    assert res.returncode == 1 and "ollama" in doc["rolled_back"], doc
    guest.wait_unit("ollama.service", "active", timeout=120)
    assert guest.podman("inspect", "ollama", "--format", "{{.Image}}").strip() == good
    assert guest.podman("image", "inspect", ref, "--format", "{{.Id}}").strip() == good
    # put the test image back as it was for the other tests
    guest.podman("tag", original, ref)


def test_a_config_that_cannot_be_applied_changes_nothing(
    stack: Guest, standin_images: dict[str, str], postgres_image: str
) -> None:
    guest = stack
    _up(guest)
    before = guest.run(["sh", "-c", "cat /etc/containers/systemd/aistack/*"]).stdout
    pids = {n: guest.unit_properties(f"{n}.service", "MainPID")["MainPID"] for n in SERVICES}
    # nvidia asked for, but the guest has no CDI spec: refused by name, before any change
    bad = _config(standin_images, postgres_image).replace("gpu: none", "gpu: nvidia")
    guest.write_file("/etc/aistack/agent.yaml", bad)
    res = guest.run(["aistack", "up"], check=False, timeout=300)
    assert res.returncode == 65, res.stdout + res.stderr
    assert "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" in res.stderr
    assert guest.run(["sh", "-c", "cat /etc/containers/systemd/aistack/*"]).stdout == before
    assert pids == {
        n: guest.unit_properties(f"{n}.service", "MainPID")["MainPID"] for n in SERVICES
    }


def _backups(guest: Guest) -> dict:  # type: ignore[type-arg]
    code, body = guest.http("GET", "http://127.0.0.1:9200/status")
    assert code == 200, body
    return json.loads(body)["backups"]  # type: ignore[no-any-return]


def test_backups_turn_on_with_the_applied_stack_out_of_the_box(stack: Guest) -> None:
    """The default config (`backups.enabled: auto`): off with why before the stack is
    applied, not degrading the agent; on after `aistack up` with no restart of the agent;
    the first backup comes by itself on the default schedule's catch-up, and `aistack
    backup now` works."""
    guest = stack
    section = guest.wait_for("the backups section", lambda: _backups(guest).get("reason"))
    section = _backups(guest)
    assert section["state"] == "disabled", section
    assert "not applied yet" in section["reason"] and "aistack up" in section["reason"]
    refused = guest.run(["aistack", "backup", "now"], check=False, timeout=120)
    assert refused.returncode != 0 and "not applied yet" in refused.stderr, refused.stderr
    agent_pid = guest.unit_properties(AGENT, "MainPID")["MainPID"]

    _up(guest)

    def first_backup() -> dict | None:  # type: ignore[type-arg]
        section = _backups(guest)
        return section if section.get("last_success_id") else None

    # catch_up_delay (1 min) after backups turn on, then dump + full-read verify
    section = guest.wait_for("the first backup, taken by itself", first_backup, timeout=600)
    assert section["state"] in ("ok", "running"), section
    assert guest.unit_properties(AGENT, "MainPID")["MainPID"] == agent_pid  # no restart
    listed = json.loads(guest.run(["aistack", "backup", "list", "--json"]).stdout)["backups"]
    assert [b["id"] for b in listed] == [section["last_success_id"]]

    now = guest.run(["aistack", "backup", "now", "--json"], check=False, timeout=900)
    assert now.returncode == 0, f"{now.stdout}\n{now.stderr}"
    result = json.loads(now.stdout)
    assert result["result"] == "success" and result["id"] != section["last_success_id"]
    listed = json.loads(guest.run(["aistack", "backup", "list", "--json"]).stdout)["backups"]
    assert len(listed) == 2 and all(b["verified"] for b in listed), listed
    metrics = guest.http("GET", "http://127.0.0.1:9200/metrics")[1]
    assert "aistack_backup_enabled 1.0" in metrics
