"""The shipped alert rules (etc/prometheus/aistack.rules.yml) are valid, each fires and
stays quiet in tests/prometheus/rules_test.yml, and they read only what the agent exports:
a misspelt metric, label or label value would be an alert that never fires."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, get_args

import yaml

from agent.config import GpuConfig
from agent.gpu.model import GpuSample
from agent.heal import xid
from agent.heal.healer import SOURCE as HEAL_SOURCE
from agent.heal.policy import ReasonCode
from agent.metrics import build_registry
from agent.snapshot import SnapshotStore, SourceSnapshot, SourceState
from agent.stack.actuator import ActionName
from agent.status import AgentInfo
from agent.views import (
    ActionCount,
    BackendsView,
    BackendView,
    HealServiceView,
    HealView,
    ProbesView,
    ProbeView,
    ServiceView,
    StackView,
)
from agent.watchers.base import Watcher
from tests.conftest import REPO
from tests.promtool import check_rules, run_rule_tests

RULES = REPO / "etc/prometheus/aistack.rules.yml"
BACKUP_RULES = REPO / "etc/prometheus/aistack-backups.rules.yml"
TESTS = REPO / "tests/prometheus/rules_test.yml"
DOC = REPO / "docs/prometheus.md"
TARGET_LABELS = {"instance", "job"}  # added by Prometheus to every scraped series
PROMETHEUS_METRICS = {"up": TARGET_LABELS}  # Prometheus' own series for the scrape
PROMQL_WORDS = {"and", "or", "unless", "offset", "bool"}
CLOSED_LABELS = {"state", "action", "reason", "source", "type"}  # values from a fixed set


def _alerts(path: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def _alert(name: str) -> dict[str, Any]:
    [rule] = [r for r in _alerts(RULES) if r["alert"] == name]
    return rule


def _polled_sources() -> set[str]:
    """The sources a watcher loop publishes every interval (the daemon imports them all)."""
    import agent.daemon  # noqa: F401  (imports every watcher)

    found: set[str] = set()
    todo = Watcher.__subclasses__()
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("agent."):
            found.add(cls.source)
    return found


def _exported() -> dict[str, dict[str, set[str]]]:
    """Sample name -> label -> values seen, from the agent's real registry fed a snapshot
    of every source, every heal state, action and reason code, and one GPU."""
    store = SnapshotStore()
    for source in sorted(_polled_sources() | {HEAL_SOURCE}):
        store.publish(SourceSnapshot(source, SourceState.OK))
    svc = ServiceView(unit="ollama.service", active_state="active", health="healthy",
                      memory_bytes=1, cpu_seconds=1.0)  # fmt: skip
    store.publish(SourceSnapshot("stack", SourceState.OK, data=StackView({"ollama": svc})))
    store.publish(
        SourceSnapshot("probes", SourceState.OK, data=ProbesView({"ollama": ProbeView(ok=True)}))
    )
    codes = (*get_args(ReasonCode), xid.CODE)
    actions = tuple(ActionCount("ollama", a, r, 1) for a in get_args(ActionName) for r in codes)
    heal = HealView(services={"ollama": HealServiceView(state="ok")}, actions=actions)
    store.publish(SourceSnapshot(HEAL_SOURCE, SourceState.OK, data=heal))
    sample = GpuSample(0, "GPU-0", "NVIDIA H200", "nvidia", "00000000:01:00.0", 40.0, 1, 2,
                       0.5, 100.0, 700.0, 0.3, 0, 0, False, False)  # fmt: skip
    gpu = {**sample.as_dict(), "healthy": True, "xid_errors": {"79": 1}}
    models = [{"name": "llama3", "vram_bytes": 1, "size_bytes": 1}]
    store.publish(SourceSnapshot("gpu", SourceState.OK,
                                 data={"gpus": [gpu], "ollama": {"models": models}}))  # fmt: skip
    store.publish(SourceSnapshot("backups", SourceState.OK,
                                 data={"enabled": True, "retained": {}, "runs": {}}))  # fmt: skip
    up = BackendView(up=True, models=("llama3",), missing=("qwen",), latency_seconds=0.01)
    backends = BackendsView({"http://gpu1:11434": up})
    store.publish(SourceSnapshot("backends", SourceState.OK, data=backends))
    registry = build_registry(AgentInfo("/etc/aistack/agent.yaml"), store.latest)
    out: dict[str, dict[str, set[str]]] = {}
    for family in registry.collect():
        for s in family.samples:
            labels = out.setdefault(s.name, {})
            for key, value in s.labels.items():
                labels.setdefault(key, set()).add(value)
    return out


def _metric_names(expr: str) -> set[str]:
    """Every series name an expression reads: what is left once strings, label lists,
    selectors' braces, ranges and function calls are taken out."""
    s = re.sub(r'"[^"]*"', '""', expr)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\[[^\]]*\]|\{[^}]*\}", " ", s)
    return set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", s)) - PROMQL_WORDS


def _selectors(expr: str) -> list[tuple[str, str, str, str]]:
    """(metric, label, operator, value) of every label matcher in the expression."""
    out = []
    for metric, body in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}", expr):
        for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', body):
            out.append((metric, label, op, value))
    return out


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens,
    a repeated one suffixed -1, -2, ..."""
    seen: Counter[str] = Counter()
    anchors = set()
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)  # no headings in code
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M):
        base = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return anchors


def test_rules_are_valid() -> None:
    assert "SUCCESS: 21 rules found" in check_rules(RULES)


def test_rules_unit_tests_pass() -> None:
    run_rule_tests(TESTS)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    doc = yaml.safe_load(TESTS.read_text())
    assert [(TESTS.parent / f).resolve() for f in doc["rule_files"]] == [RULES.resolve()]
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in doc["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {r["alert"] for r in _alerts(RULES)}
    assert len(names) == len(_alerts(RULES)), "an alert name is used twice"
    assert (firing | quiet) <= names, (firing | quiet) - names  # a typo passes quietly
    assert names - firing == set(), "never seen firing"
    assert names - quiet == set(), "never seen quiet"


def test_rules_read_only_metrics_labels_and_values_the_agent_exports() -> None:
    exported = _exported()
    known = {**{m: set(labels) | TARGET_LABELS for m, labels in exported.items()},
             **PROMETHEUS_METRICS}  # fmt: skip
    for rule in _alerts(RULES):
        expr, name = rule["expr"], rule["alert"]
        used = _metric_names(expr)
        assert used and used <= known.keys(), (name, used - known.keys())
        labels = set().union(*(known[m] for m in used))
        for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
            listed = {x.strip() for x in group.split(",") if x.strip()}
            assert listed <= labels, (name, listed - labels)
        for metric, label, op, value in _selectors(expr):
            assert label in known[metric], (name, metric, label)
            if label in CLOSED_LABELS:
                values = set(value.split("|")) if op in ("=~", "!~") else {value}
                allowed = exported[metric][label]
                assert values <= allowed, (name, metric, label, values - allowed)


def test_annotations_severity_and_runbooks() -> None:
    homepage = yaml.safe_load((REPO / "packaging/nfpm.yaml").read_text())["homepage"]
    anchors = _anchors(DOC.read_text())
    for rule in _alerts(RULES):
        name, ann = rule["alert"], rule["annotations"]
        assert name.startswith("Aistack"), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert "{{ $labels.instance }}" in ann["summary"], name
        assert "aistack " in ann["description"] or "journalctl" in ann["description"], name
        url = f"{homepage}docs/prometheus.md#{name.lower()}"
        assert ann["runbook_url"] == url, (name, ann["runbook_url"])
        assert name.lower() in anchors, f"docs/prometheus.md has no section {name}"
    for rule in _alerts(BACKUP_RULES):  # their runbooks are in the same page
        assert rule["alert"].lower() in anchors, rule["alert"]


def test_critical_only_where_a_person_must_act_now() -> None:
    critical = {r["alert"] for r in _alerts(RULES) if r["labels"]["severity"] == "critical"}
    assert critical == {
        "AistackAgentDown", "AistackHealGaveUp", "AistackGpuNeedsReset",
        "AistackGpuEccUncorrectable", "AistackGpuTemperatureCritical", "AistackGpuUnhealthy",
    }  # fmt: skip


def test_gpu_thresholds_are_the_agents_defaults() -> None:
    """The agent does not export its thresholds: the rules repeat gpu.*'s defaults."""
    cfg = GpuConfig()
    for rule in _alerts(RULES):
        for _, label, _, value in _selectors(rule["expr"]):
            if label == "xid":
                assert {int(x) for x in value.split("|")} == set(cfg.reset_xids), rule["alert"]
    for name in ("AistackGpuTemperatureCritical", "AistackGpuUnhealthy"):
        assert f">= {cfg.temperature_critical}" in _alert(name)["expr"], name
    for name in ("AistackGpuTemperatureHigh", "AistackGpuThermalThrottling"):
        assert f">= {cfg.temperature_warn}" in _alert(name)["expr"], name
    assert f">= {cfg.memory_full_percent / 100:g}" in _alert("AistackGpuMemoryNearlyFull")["expr"]
    listed = ", ".join(str(x) for x in cfg.application_xids)
    assert f"({listed})" in _alert("AistackGpuXidErrors")["annotations"]["description"]


def test_flapping_counts_every_agent_restart_and_no_persons() -> None:
    [(_, _, _, actions)] = [
        m for m in _selectors(_alert("AistackServiceFlapping")["expr"]) if m[1] == "action"
    ]
    [(_, _, _, reasons)] = [
        m for m in _selectors(_alert("AistackServiceFlapping")["expr"]) if m[1] == "reason"
    ]
    assert set(actions.split("|")) == {"restart", "reset-failed"}
    # every restart's reason; "steady" goes only with reset-restarts (a counter, not a restart)
    assert set(reasons.split("|")) == {*get_args(ReasonCode), xid.CODE} - {"steady"}


def test_staleness_covers_every_polled_source_and_not_heal() -> None:
    """heal publishes only on a change: its age grows on a healthy host."""
    [(_, _, _, sources)] = _selectors(_alert("AistackSnapshotStale")["expr"])
    assert set(sources.split("|")) == _polled_sources()
    assert HEAL_SOURCE not in _polled_sources()
