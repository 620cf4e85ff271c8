"""The Grafana dashboard (etc/grafana/aistack.json): well formed, every query valid PromQL
(promtool), every metric and label one the agent exports, and every query answered by a
real Prometheus that scraped a real agent, so a renamed metric breaks a test, not a
dashboard an operator finds empty."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import build_registry
from agent.snapshot import SnapshotStore, SourceSnapshot, SourceState
from agent.status import AgentInfo
from agent.views import (
    ActionCount,
    HealServiceView,
    HealView,
    ProbesView,
    ProbeView,
    ServiceView,
    StackView,
)

from .conftest import HANG_S, REPO, AgentProcess, free_port, http
from .fixtures.gpu.support import FIXTURES
from .promtool import check_rules

DASHBOARD = REPO / "etc/grafana/aistack.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's own variables, as a panel over one hour at a one-minute step would have them.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
# Labels Prometheus adds to every series it scrapes, and the series it makes itself for
# every target (the dashboard's "Agent" row reads them for the agent's target).
TARGET_LABELS = frozenset({"instance", "job"})
PROMETHEUS_MADE = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
# Targets that are empty until the first backup run however well the agent works: the
# ages of the last success and the last failure hide a timestamp of 0 ("never").
EMPTY_BEFORE_FIRST_RUN = frozenset({("Last success", "A"), ("Last failure", "A")})

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset"}
)


def load() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too; rows themselves excluded."""
    out: list[dict[str, Any]] = []
    for panel in dash["panels"]:
        out.extend(panel.get("panels", []) if panel["type"] == "row" else [panel])
    return out


def variable(dash: dict[str, Any], name: str) -> dict[str, Any]:
    found = [v for v in dash["templating"]["list"] if v["name"] == name]
    assert len(found) == 1, f"templating needs exactly one variable {name!r}"
    return dict(found[0])


def variable_query(var: dict[str, Any]) -> str:
    query = var["query"]
    return str(query["query"] if isinstance(query, dict) else query)


@dataclass(frozen=True)
class Query:
    where: str  # panel title / refId, or variable name, for the failure message
    title: str
    ref: str
    expr: str
    legend: str = ""


def queries(dash: dict[str, Any]) -> list[Query]:
    """Every target's expr, and the selector inside each label_values() variable."""
    out = [
        Query(
            f"{p['title']} / {t['refId']}",
            p["title"],
            t["refId"],
            t["expr"],
            t.get("legendFormat", ""),
        )
        for p in panels(dash)
        for t in p["targets"]
    ]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            found = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable_query(var))
            assert found, f"variable {var['name']}: not label_values(SELECTOR, LABEL)"
            out.append(Query(f"variable {var['name']}", var["name"], "", found.group(1)))
    return out


def concrete(expr: str, instance: str = ".*", service: str = ".*") -> str:
    """The expr as Grafana sends it: its own variables and ours substituted."""
    for var, value in {**GRAFANA_VARS, "$instance": instance, "$service": service}.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"an unknown variable is left in {expr!r}"
    return expr


@dataclass
class Parsed:
    selectors: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # name, matchers
    grouping: set[str] = field(default_factory=set)  # by/without/on/ignoring/group_x labels


def parse(expr: str) -> Parsed:
    """The vector selectors of a PromQL expression and the labels it groups by: enough
    PromQL for the dashboard's queries (promtool checks the syntax itself)."""
    parsed = Parsed()
    rest = re.sub(r"\[[^\]]*\]", " ", expr)  # range durations: [1m], [1d]

    def group(m: re.Match[str]) -> str:
        parsed.grouping |= {label.strip() for label in m.group(2).split(",") if label.strip()}
        return " "

    rest = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", group, rest)

    def selector(m: re.Match[str]) -> str:
        name, after = m.group(1), m.string[m.end() :].lstrip()
        if name in KEYWORDS or (m.group(2) is None and after.startswith("(")):
            return m.group(0)  # a keyword or a function's name
        pairs = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', m.group(2) or "")
        parsed.selectors.append((name, {label: op + value for label, op, value in pairs}))
        return " "

    re.sub(rf"(?<![\w:.])({NAME})\s*(\{{[^}}]*\}})?", selector, rest)
    return parsed


def full_snapshots() -> SnapshotStore:
    """A store with every source the collectors read, each with data for every family, so
    rendering it lists every name and label the agent can export."""
    store = SnapshotStore()
    svc = ServiceView(unit="ollama.service", active_state="active", health="healthy",
                      restarts=1, memory_bytes=1 << 30, cpu_seconds=2.5)  # fmt: skip
    store.publish(SourceSnapshot("stack", SourceState.OK, None, StackView({"ollama": svc})))
    probe = ProbeView(ok=True, failures=0)
    store.publish(SourceSnapshot("probes", SourceState.OK, None, ProbesView({"ollama": probe})))
    heal = HealView(
        services={"ollama": HealServiceView(state="ok")},
        actions=(ActionCount("ollama", "restart", "probe-failed", 1),),
    )
    store.publish(SourceSnapshot("heal", SourceState.OK, None, heal))
    gpu = {
        "index": 0, "uuid": "GPU-0", "name": "NVIDIA H100", "vendor": "nvidia",
        "pci_bus_id": "00000000:01:00.0", "temperature_celsius": 40, "memory_used_bytes": 1,
        "memory_total_bytes": 2, "utilization_ratio": 0.5, "power_watts": 100,
        "power_limit_watts": 700, "fan_ratio": 0.3, "ecc_errors": {"corrected": 0},
        "xid_errors": {"13": 1}, "healthy": True, "throttled": {"thermal": False},
    }  # fmt: skip
    models = [{"name": "llama3.1:8b", "vram_bytes": 1, "size_bytes": 2}]
    gpu_data = {"gpus": [gpu], "ollama": {"models": models}}
    store.publish(SourceSnapshot("gpu", SourceState.OK, None, gpu_data))
    backups = {
        "enabled": True, "retained": {"all": 1}, "runs": {"success": 1},
        "last_success_at": 1.0, "last_failure_at": 0, "last_duration_seconds": 1.0,
        "last_size_bytes": 1, "free_bytes": 1, "required_free_bytes": 1,
        "stale_after_seconds": 1.0, "next_run_at": 2.0, "running": None,
    }  # fmt: skip
    store.publish(SourceSnapshot("backups", SourceState.OK, None, backups))
    return store


def exported() -> dict[str, frozenset[str]]:
    """Series name -> label names, rendered by the agent's own registry."""
    text = generate_latest(build_registry(AgentInfo("/x"), full_snapshots().latest)).decode()
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(names) for name, names in labels.items()}


def test_dashboard_structure() -> None:
    """Importable by Grafana, one datasource variable for every panel, and every query
    kept to the hosts (and services) picked."""
    dash = load()
    assert dash["schemaVersion"] >= 36 and dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]] + [
        p["id"] for row in dash["panels"] for p in row.get("panels", [])
    ]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert [i["pluginId"] for i in dash["__inputs"]] == ["prometheus"]

    ds = variable(dash, "datasource")
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    instance, service = variable(dash, "instance"), variable(dash, "service")
    for var in (instance, service):
        assert var["type"] == "query" and var["multi"] and var["includeAll"], var["name"]
        assert var["datasource"] == DATASOURCE, var["name"]
    assert variable_query(instance).startswith("label_values(aistack_")
    assert 'instance=~"$instance"' in variable_query(service)

    spans: set[tuple[int, int]] = set()
    for panel in panels(dash) + [p for p in dash["panels"] if p["type"] == "row"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        x, y = pos["x"], pos["y"]
        cells = {(x + dx, y + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & spans, f"{panel['title']} overlaps another panel"
        spans |= cells

    for panel in panels(dash):
        assert panel["title"] and panel.get("description"), panel["id"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
    metric_labels = exported()
    for query in queries(dash):
        if query.where == "variable instance":
            continue  # it lists the instances, so it cannot be kept to them
        for name, matchers in parse(query.expr).selectors:
            assert matchers.get("instance") == "=~$instance", f"{query.where}: {name}"
            if "service" in metric_labels.get(name, ()) and query.where != "variable service":
                assert matchers.get("service") == "=~$service", f"{query.where}: {name}"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query, as one recording rule, with the variables filled in."""
    found = queries(load())
    rules = [{"record": f"aistack_dashboard:query_{i}", "expr": concrete(q.expr)}
             for i, q in enumerate(found)]  # fmt: skip
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(found)} rules found" in check_rules(path)


def test_every_metric_and_label_is_exported_by_the_agent() -> None:
    """Names, matchers, grouping and legends use only what the collectors render (or what
    Prometheus adds to a target), so no panel stays empty for a typo."""
    metric_labels = exported()
    for name in PROMETHEUS_MADE:
        metric_labels[name] = frozenset()
    used: set[str] = set()
    for query in queries(load()):
        parsed = parse(query.expr)
        assert parsed.selectors, f"{query.where}: no metric in {query.expr!r}"
        known: set[str] = set(TARGET_LABELS)
        for name, matchers in parsed.selectors:
            assert name in metric_labels, f"{query.where}: the agent exports no {name}"
            labels = metric_labels[name] | TARGET_LABELS
            assert set(matchers) <= labels, f"{query.where}: {name} has no {set(matchers) - labels}"
            known |= labels
            used.add(name)
        assert parsed.grouping <= known, f"{query.where}: no label {parsed.grouping - known}"
        legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", query.legend))
        assert legend <= known, f"{query.where}: legend label {legend - known}"
    assert used >= {"aistack_service_up", "aistack_gpu_healthy", "aistack_backup_enabled"}


# ---------------------------------------------------------------- a real Prometheus

FAKE_SMI = """#!/bin/sh
# A fake of nvidia-smi for the dashboard test (there is no GPU here): it prints the
# answers recorded on a real GeForce RTX 4080 SUPER under load (tests/fixtures/gpu).
case "$1" in
  --query-gpu=*) exec cat {smi}/rtx4080super-595.71.05-load-query-gpu.csv ;;
  --query-compute-apps=*) exec cat {smi}/rtx4080super-595.71.05-load-compute-apps.csv ;;
esac
exit 2
"""


@pytest.fixture
def recorded_ollama() -> Iterator[str]:
    """Ollama's /api/ps answered with the recorded fixture, for the model panels."""
    body = (FIXTURES / "ollama-ps.json").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/api/ps" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(HANG_S)


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    assert found, "prometheus is required (Debian package 'prometheus'); make deps installs it"
    return found


def wait_for(what: str, probe: Callable[[], Any], log: Callable[[], str]) -> Any:
    """Poll until `probe` gives something; HANG_S only catches a hang."""
    deadline = time.monotonic() + HANG_S
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {HANG_S}s; log:\n{log()}")
        time.sleep(0.2)
    return value


class Prometheus:
    """Debian's Prometheus, scraping one target every second, on a free loopback port."""

    def __init__(self, tmp: Path, target: str) -> None:
        self.port = free_port()
        self.log_path = tmp / "prometheus.log"
        config = tmp / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                    "scrape_configs": [
                        {"job_name": "aistack", "static_configs": [{"targets": [target]}]}
                    ],
                }
            )
        )
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    prometheus_binary(),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def query(self, expr: str) -> dict[str, Any]:
        """/api/v1/query's answer, an error status included (Prometheus sends it as 400)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr}
        )
        try:
            with urllib.request.urlopen(url, timeout=HANG_S) as resp:
                return dict(json.load(resp))
        except urllib.error.HTTPError as exc:
            return dict(json.load(exc))

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/-/ready", timeout=HANG_S
            ) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, ConnectionError):
            assert self.proc.poll() is None, f"prometheus exited; log:\n{self.log()}"
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(HANG_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def live_samples(agent: AgentProcess) -> set[str]:
    """The names of the series the running agent exports now."""
    status, _, body = http("GET", f"{agent.base}/metrics")
    assert status == 200
    return {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def test_every_query_answers_from_a_real_prometheus_scraping_a_real_agent(
    start_agent: Callable[..., AgentProcess], recorded_ollama: str, tmp_path: Path
) -> None:
    """The real agent (GPU and Ollama read from recorded answers, backups on) scraped by a
    real Prometheus: every query succeeds, and every query over series the agent exports
    here returns them."""
    bin_dir = tmp_path / "fake-gpu-bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI.format(smi=FIXTURES / "smi"))
    smi.chmod(0o755)
    agent = start_agent(
        f"gpu:\n  ollama_url: {recorded_ollama}\n  kernel_log: false\n"
        f"heal:\n  state_file: {tmp_path / 'heal-state.json'}\n"
        f"backups:\n  enabled: true\n  directory: {tmp_path / 'backups'}\n  source: local\n"
        f"  port: {free_port()}\n  catch_up_delay: 1h\n  dependents: none\n  min_free: 1KiB\n",
        PATH=f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    )
    wanted = {"aistack_gpu_info", "aistack_ollama_model_size_bytes", "aistack_backup_retained"}
    wait_for("GPU, model and backup series", lambda: wanted <= live_samples(agent), agent.log)
    # What the agent could export but does not here (no stack, no XID, no ECC on this
    # GeForce) excuses an empty answer; nothing else does, a misspelt name included.
    absent = set(exported()) - live_samples(agent)

    instance = f"127.0.0.1:{agent.port}"
    prom = Prometheus(tmp_path, instance)
    try:
        wait_for("ready Prometheus", prom.ready, prom.log)

        def series(expr: str) -> Callable[[], list[Any]]:
            return lambda: list(prom.query(expr)["data"]["result"])

        wait_for("scrape of the agent", series(f'up{{instance="{instance}"}} == 1'), prom.log)
        for query in queries(load()):
            expr = concrete(query.expr, instance=instance)
            answer = prom.query(expr)
            assert answer["status"] == "success", f"{query.where}: {expr}\n{answer}"
            names = {name for name, _ in parse(query.expr).selectors}
            if not names & absent and (query.title, query.ref) not in EMPTY_BEFORE_FIRST_RUN:
                wait_for(f"series for {query.where}: {expr}", series(expr), prom.log)
    finally:
        prom.stop()
