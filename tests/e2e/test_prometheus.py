"""A real Prometheus and a real Alertmanager (Debian's binaries, the host's, copied into
the guest) beside the agent installed from the deb: Prometheus scrapes the agent with the
rule files the package ships loaded, every dashboard query evaluates against what it
scraped, and a service crashing at every start until the agent gives up reaches
Alertmanager as AistackHealGaveUp, which resolves once the fix is applied.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import testbed
from tests.e2e.test_heal import heal_config, ollama_crashing_at_every_start, wait_all_healthy
from tests.e2e.testbed import Guest
from tests.test_dashboard import concrete, load, queries

pytestmark = pytest.mark.e2e

PROM = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
AM_TEMPLATES = Path("/usr/share/prometheus/alertmanager")
RULES_GLOB = "/usr/share/aistack/prometheus/*.rules.yml"
# Dashboard panels that must show series for a running stack (the rest need a GPU,
# a backup run, or loaded models).
STACK_PANELS = (
    "Services up", "Probes passing", "Container health check", "Heal state",
    "Restarts by systemd", "Memory", "Agent scraped", "Version", "Sources up", "Snapshot age",
)  # fmt: skip
PROMETHEUS_YML = f"""\
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files: ["{RULES_GLOB}"]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ["127.0.0.1:9093"]}}]
scrape_configs:
  - job_name: aistack
    static_configs: [{{targets: ["127.0.0.1:9200"]}}]
"""
# Notifications go nowhere (a receiver with no integration): the API shows the alerts.
ALERTMANAGER_YML = """\
route:
  receiver: nowhere
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: nowhere
"""


def binary(*names: str) -> Path:
    """A Prometheus or Alertmanager binary of the host's (copied into guests: none there)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise AssertionError(f"{names[0]} is required (make deps installs Debian's package)")


@pytest.fixture(scope="module")
def monitored(
    session_guest: Guest, agent_deb: Path, standin_images: dict[str, str], postgres_image: str
) -> Iterator[Guest]:
    """The stack applied and healthy, Prometheus and Alertmanager running in the guest as
    transient units (systemd-run), so they go when stopped."""
    guest = session_guest
    testbed.start_stack(guest, agent_deb, heal_config(standin_images, postgres_image))
    guest.copy_in(binary("prometheus"), "/usr/local/bin/prometheus")
    guest.copy_in(binary("prometheus-alertmanager", "alertmanager"), "/usr/local/bin/alertmanager")
    # Debian's Alertmanager reads its notification templates from this folder.
    for template in sorted(AM_TEMPLATES.glob("*.tmpl")):
        guest.copy_in(template, f"{AM_TEMPLATES}/{template.name}")
    guest.write_file("/etc/e2e-prometheus/prometheus.yml", PROMETHEUS_YML)
    guest.write_file("/etc/e2e-prometheus/alertmanager.yml", ALERTMANAGER_YML)
    guest.run(["rm", "-rf", "/var/lib/e2e-prometheus"])
    units = ("e2e-prometheus.service", "e2e-alertmanager.service")
    guest.run(
        ["systemd-run", "--unit", units[1], "--", "/usr/local/bin/alertmanager",
         "--config.file=/etc/e2e-prometheus/alertmanager.yml",
         "--storage.path=/var/lib/e2e-prometheus/alertmanager",
         "--web.listen-address=127.0.0.1:9093", "--cluster.listen-address="]
    )  # fmt: skip
    guest.run(
        ["systemd-run", "--unit", units[0], "--", "/usr/local/bin/prometheus",
         "--config.file=/etc/e2e-prometheus/prometheus.yml",
         "--storage.tsdb.path=/var/lib/e2e-prometheus/data",
         "--web.listen-address=127.0.0.1:9090"]
    )  # fmt: skip
    guest.units_of_interest.update(units)
    try:
        for name, url in (("Alertmanager", ALERTMANAGER), ("Prometheus", PROM)):
            guest.wait_for(f"{name} ready", lambda u=url: _ready(guest, u), timeout=120)
        yield guest
    finally:
        guest.run(["systemctl", "stop", *units], check=False, timeout=120)
        guest.run(["rm", "-rf", "/var/lib/e2e-prometheus", "/etc/e2e-prometheus",
                   "/usr/share/prometheus", "/usr/local/bin/prometheus",
                   "/usr/local/bin/alertmanager"])  # fmt: skip
        testbed.remove_stack(guest, "/etc/systemd/system/ollama.service.d")
        guest.reset()


def _ready(guest: Guest, base: str) -> bool:
    """/-/ready answers 200; a unit that died says why at once instead of a long wait."""
    for unit in ("e2e-prometheus.service", "e2e-alertmanager.service"):
        state = guest.unit_properties(unit, "ActiveState")["ActiveState"]
        assert state in ("active", "activating"), f"{unit} {state}:\n{guest.journal(unit)}"
    try:
        code, _ = guest.http("GET", f"{base}/-/ready")
    except testbed.GuestCommandError:
        return False
    return code == 200


def get_json(guest: Guest, url: str) -> Any:
    """GET a JSON document from inside the guest; None while nothing answers or not 200."""
    try:
        code, body = guest.http("GET", url)
    except testbed.GuestCommandError:
        return None  # not listening yet
    return json.loads(body) if code == 200 else None


def _query(guest: Guest, expr: str) -> dict[str, Any]:
    doc = get_json(guest, f"{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert doc is not None and doc["status"] == "success", (expr, doc)
    data: dict[str, Any] = doc["data"]
    return data


def _alerts(guest: Guest, name: str) -> list[dict[str, Any]]:
    """Alertmanager's active alerts of that name (API v2)."""
    doc = get_json(guest, f"{ALERTMANAGER}/api/v2/alerts?active=true&silenced=false")
    return [a for a in doc or [] if a["labels"].get("alertname") == name]


def test_prometheus_scrapes_the_agent_with_the_shipped_rules(monitored: Guest) -> None:
    guest = monitored
    guest.wait_for(
        "Prometheus scraping the agent",
        lambda: (d := get_json(guest, f"{PROM}/api/v1/query?query=up")) and d["data"]["result"]
        and d["data"]["result"][0]["value"][1] == "1",
        timeout=300,
    )  # fmt: skip
    # the rule files the deb ships, loaded (none failed to parse: Prometheus would not run)
    groups = get_json(guest, f"{PROM}/api/v1/rules")["data"]["groups"]
    files = {g["file"] for g in groups}
    assert files == {
        "/usr/share/aistack/prometheus/aistack.rules.yml",
        "/usr/share/aistack/prometheus/aistack-backups.rules.yml",
    }, files
    alerts = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
    assert "AistackHealGaveUp" in alerts and "AistackBackupTooOld" in alerts
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
    # a healthy stack fires nothing
    firing = [r["name"] for g in groups for r in g["rules"] if r.get("state") == "firing"]
    assert firing == [], firing

    # every dashboard query evaluates against what was scraped; the stack's return series
    instance = "127.0.0.1:9200"
    wait_all_healthy(guest)
    answered = {
        q.where: _query(guest, concrete(q.expr, instance=instance)) for q in queries(load())
    }
    overview = [w for w in answered if w.split(" / ")[0] in STACK_PANELS]
    assert len(overview) >= len(STACK_PANELS), overview
    assert all(answered[w]["result"] for w in overview), {w: answered[w] for w in overview}
    empty = sorted(w for w, data in answered.items() if not data["result"])
    print(f"dashboard queries without series here (no GPU, no backups yet): {empty}")


def test_gave_up_alert_reaches_alertmanager_and_resolves(
    monitored: Guest, standin_images: dict[str, str], postgres_image: str
) -> None:
    guest = monitored
    wait_all_healthy(guest)
    # Healing is shortened as in test_heal.py, so the give-up plays out in minutes.
    with ollama_crashing_at_every_start(guest, standin_images, postgres_image):
        # hang guard: a crash-looping unit on a loaded machine takes minutes to give up
        [alert] = guest.wait_for(
            "AistackHealGaveUp in Alertmanager",
            lambda: _alerts(guest, "AistackHealGaveUp"), timeout=900, interval=2,
        )  # fmt: skip
        assert alert["labels"]["service"] == "ollama", alert
        assert alert["labels"]["severity"] == "critical", alert
        assert "aistack restart ollama" in alert["annotations"]["description"], alert
        assert alert["annotations"]["runbook_url"].endswith("#aistackhealgaveup"), alert
    res = guest.run(["aistack", "up", "--json"], check=False, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    wait_all_healthy(guest)
    guest.wait_for(
        "AistackHealGaveUp resolved in Alertmanager",
        lambda: not _alerts(guest, "AistackHealGaveUp"), timeout=300, interval=2,
    )  # fmt: skip
