"""The front's remote Ollama backends as the readers show them (docs/fleet.md): the
`backends` section of /status, its place in the overall state, and the metrics (promtool
clean). All from a snapshot: nothing here asks a backend."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import jsonschema
from prometheus_client import generate_latest

from agent.metrics import build_registry
from agent.openapi import openapi_document
from agent.snapshot import SnapshotStore, SourceSnapshot, SourceState
from agent.status import AgentInfo, status_document
from agent.views import BackendsView, BackendView, freeze_map

UP = BackendView(
    up=True, models=("llama3.2:1b", "qwen2.5:0.5b"), latency_seconds=0.038, reason=None
)
MISSING = BackendView(
    up=True,
    models=("qwen2.5:0.5b",),
    missing=("llama3.2:1b",),
    latency_seconds=0.012,
    reason="gpu2:11434: missing llama3.2:1b: run `aistack models pull llama3.2:1b` on gpu2",
)
DOWN = BackendView(up=False, reason="gpu3:11434: down (cannot connect)")


def _store(backends: dict[str, BackendView], local: bool = False) -> SnapshotStore:
    store = SnapshotStore()
    for name in ("podman", "systemd"):
        store.publish(SourceSnapshot(name, SourceState.OK))
    reasons = [b.reason for b in backends.values() if b.reason]
    state = SourceState.DEGRADED if reasons else SourceState.OK
    view = BackendsView(freeze_map(backends), local=local)
    store.publish(SourceSnapshot("backends", state, "; ".join(reasons) or None, view))
    return store


def _doc(store: SnapshotStore) -> dict[str, Any]:
    return status_document(AgentInfo("/etc/aistack/agent.yaml"), store.latest())


def test_status_shows_each_backend_and_degrades_with_the_reasons() -> None:
    store = _store({"http://gpu1:11434": UP, "http://gpu2:11434": MISSING,
                    "http://gpu3:11434": DOWN})  # fmt: skip
    doc = _doc(store)
    assert doc["backends"]["http://gpu1:11434"] == {
        "up": True,
        "models": ["llama3.2:1b", "qwen2.5:0.5b"],
        "missing": [],
        "latency_seconds": 0.038,
        "reason": None,
    }
    assert doc["backends"]["http://gpu2:11434"]["missing"] == ["llama3.2:1b"]
    assert doc["backends"]["http://gpu3:11434"]["up"] is False
    assert "backends" not in doc["sources"]  # its own section, like the stack's
    assert doc["state"] == "degraded"
    assert doc["state_reasons"] == [f"backends: {MISSING.reason}; {DOWN.reason}"]
    schema = openapi_document("x")["components"]["schemas"]["Status"]
    jsonschema.validate(doc, {**schema, "components": openapi_document("x")["components"]})


def test_no_backend_up_is_failed_and_a_local_ollama_keeps_it_degraded() -> None:
    assert _doc(_store({"http://gpu3:11434": DOWN}))["state"] == "failed"
    assert _doc(_store({"http://gpu3:11434": DOWN}, local=True))["state"] == "degraded"


def test_a_host_without_backends_has_an_empty_section_and_is_ok() -> None:
    store = _store({})
    assert _doc(store)["backends"] == {}
    assert _doc(store)["state"] == "ok"
    bare = SnapshotStore()
    assert _doc(bare)["backends"] == {}


def test_metrics_per_backend_and_promtool_clean() -> None:
    store = _store({"http://gpu1:11434": UP, "http://gpu2:11434": MISSING,
                    "http://gpu3:11434": DOWN})  # fmt: skip
    text = generate_latest(build_registry(AgentInfo("x"), store.latest)).decode()
    assert 'aistack_backend_up{backend="http://gpu1:11434"} 1.0' in text
    assert 'aistack_backend_up{backend="http://gpu3:11434"} 0.0' in text
    assert 'aistack_backend_latency_seconds{backend="http://gpu1:11434"} 0.038' in text
    assert 'aistack_backend_models{backend="http://gpu1:11434"} 2.0' in text
    assert 'aistack_backend_models_missing{backend="http://gpu2:11434"} 1.0' in text
    assert 'aistack_backend_models_missing{backend="http://gpu1:11434"} 0.0' in text
    # a backend that is down has no latency and no model count: not a 0 that reads as one
    assert 'aistack_backend_latency_seconds{backend="http://gpu3:11434"}' not in text
    assert 'aistack_backend_models{backend="http://gpu3:11434"}' not in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package prometheus)"
    proc = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert proc.returncode == 0 and not proc.stdout + proc.stderr, proc.stdout + proc.stderr
