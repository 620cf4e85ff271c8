"""Service metrics render from the stack snapshot and pass promtool."""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client import CollectorRegistry, generate_latest

from agent.snapshot import SnapshotStore, SourceSnapshot, SourceState
from agent.stack.metrics import ServiceCollector
from agent.views import ServiceView, StackView


def _svc(active: str, health: str, restarts: int) -> ServiceView:
    running = active == "active"
    return ServiceView(
        unit="x.service",
        active_state=active,
        health=health,
        restarts=restarts,
        memory_bytes=123456789 if running else None,
        cpu_seconds=1.5 if running else None,
    )


def test_service_metrics_and_promtool() -> None:
    store = SnapshotStore()
    store.publish(
        SourceSnapshot(
            "stack",
            SourceState.DEGRADED,
            reason="litellm: unit failed",
            data=StackView(
                {
                    "ollama": _svc("active", "healthy", 0),
                    "litellm": _svc("failed", "unknown", 3),
                }
            ),
        )
    )
    registry = CollectorRegistry()
    registry.register(ServiceCollector(store.latest))
    text = generate_latest(registry).decode()
    assert 'aistack_service_up{service="ollama"} 1.0' in text
    assert 'aistack_service_up{service="litellm"} 0.0' in text
    assert 'aistack_service_healthy{service="litellm"} 0.0' in text
    assert 'aistack_service_restarts_total{service="litellm"} 3.0' in text
    assert 'aistack_service_memory_bytes{service="ollama"} 1.23456789e+08' in text
    assert 'aistack_service_cpu_seconds_total{service="ollama"} 1.5' in text
    assert 'aistack_service_memory_bytes{service="litellm"}' not in text  # not running
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package prometheus)"
    proc = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert proc.returncode == 0 and not proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_no_stack_snapshot_means_no_samples() -> None:
    registry = CollectorRegistry()
    registry.register(ServiceCollector(SnapshotStore().latest))
    assert "aistack_service_up{" not in generate_latest(registry).decode()
