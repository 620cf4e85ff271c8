"""The healer between the snapshots and systemd: what it observes, when it refuses to act
(blind), what it publishes for /status and the metrics, what it stores, and its resets.

Restarts that really happen are tested in the testbed (tests/e2e/test_heal.py). Here the
host has no system D-Bus, which is itself a fault the healer must survive: an action
whose D-Bus call fails is logged, counted, and leaves the service free for the next round.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import generate_latest

from agent.api import ApiContext, ReloadResult, create_app
from agent.config import AgentConfig, HealConfig, parse_config
from agent.heal import state as heal_state
from agent.heal.healer import Healer, blindness, observations
from agent.heal.policy import ServiceHealState
from agent.metrics import build_registry
from agent.snapshot import SnapshotStore, SourceSnapshot, SourceState
from agent.status import AgentInfo, status_document
from agent.views import ProbesView, ProbeView, ServiceView, StackView, to_json

from ..conftest import free_port, http

NOW = 1_800_000_000.0


def svc(
    active: str = "active",
    sub: str = "running",
    result: str = "success",
    health: str = "healthy",
    error: str | None = None,
    installed: bool = True,
) -> ServiceView:
    return ServiceView(
        unit="x.service",
        active_state=active,
        sub_state=sub,
        result=result,
        health=health,
        last_error=error,
        installed=installed,
    )


def store_with(
    services: dict[str, ServiceView],
    probes: dict[str, dict[str, Any]] | None = None,
    podman: SourceState = SourceState.OK,
) -> SnapshotStore:
    store = SnapshotStore()
    store.publish(SourceSnapshot("systemd", SourceState.OK))
    reason = None if podman is SourceState.OK else "no Podman API socket at /run/podman/podman.sock"
    store.publish(SourceSnapshot("podman", podman, reason))
    store.publish(SourceSnapshot("stack", SourceState.OK, data=StackView(services)))
    if probes is not None:
        views = {name: ProbeView(**probe) for name, probe in probes.items()}
        store.publish(SourceSnapshot("probes", SourceState.OK, data=ProbesView(views)))
    return store


def heal_json(store: SnapshotStore) -> dict[str, Any]:
    """The heal snapshot as /status shows it (the JSON edge)."""
    heal = store.get("heal")
    assert heal is not None
    data: dict[str, Any] = to_json(heal.data)
    return data


def config(tmp_path: Path, **heal: Any) -> AgentConfig:
    lines = "".join(f"  {k}: {v}\n" for k, v in heal.items())
    return parse_config(f"heal:\n  state_file: {tmp_path / 'heal-state.json'}\n{lines}")


def test_observations_from_the_stack_and_probe_snapshots() -> None:
    store = store_with(
        {
            "postgres": svc(),
            "ollama": svc("inactive", "dead", "success"),  # stopped by a person
            "litellm": svc("failed", "failed", "start-limit-hit"),
            "open-webui": svc(health="unhealthy"),
        },
        probes={"postgres": {"failures": 2, "ok": False}},
    )
    obs = observations(store.latest(), busy=frozenset({"open-webui"}))
    assert obs["postgres"].probe_failures == 2 and obs["postgres"].should_run
    assert not obs["ollama"].should_run  # a clean stop is respected
    assert obs["litellm"].should_run and obs["litellm"].result == "start-limit-hit"
    # Our own restart job is running: observed like systemd restarting it, so we wait.
    assert obs["open-webui"].active_state == "activating"


def test_probe_failures_of_an_earlier_container_do_not_count() -> None:
    """Seen in the testbed: right after our restart the probes snapshot still held the
    old container's failures, and the new, healthy container was restarted again."""
    service = replace(svc(), container_id="new")
    store = store_with(
        {"ollama": service}, probes={"ollama": {"failures": 2, "ok": False, "container_id": "old"}}
    )
    assert observations(store.latest(), frozenset())["ollama"].probe_failures == 0
    store = store_with(
        {"ollama": service}, probes={"ollama": {"failures": 2, "ok": False, "container_id": "new"}}
    )
    assert observations(store.latest(), frozenset())["ollama"].probe_failures == 2


def test_a_queued_systemd_job_is_waited_for() -> None:
    """Seen in the testbed: systemd's restart of postgres queued a restart of LiteLLM
    (Requires=); between its stop and its start LiteLLM is inactive with a job queued,
    and the healer started it on top of systemd."""
    store = store_with({"litellm": replace(svc("inactive", "dead"), pending_job=True)})
    obs = observations(store.latest(), frozenset())["litellm"]
    assert (obs.active_state, obs.sub_state) == ("activating", "job-queued")


def test_not_installed_is_not_meant_to_run() -> None:
    store = store_with(
        {"ollama": svc("inactive", "dead", "", "unknown", "not installed: run up", installed=False)}
    )
    assert not observations(store.latest(), frozenset())["ollama"].should_run


def test_blind_without_podman_or_with_a_stale_stack() -> None:
    assert blindness(store_with({}).latest(), stale_after=30).reason is None
    down = blindness(store_with({}, podman=SourceState.UNAVAILABLE).latest(), 30).reason
    assert down is not None and down.startswith("podman unavailable (no Podman API socket")
    store = SnapshotStore()
    store.publish(SourceSnapshot("systemd", SourceState.OK))
    store.publish(SourceSnapshot("podman", SourceState.OK))
    store.publish(
        SourceSnapshot("stack", SourceState.OK, taken_monotonic=0.0)  # published long ago
    )
    stale = blindness(store.latest(), stale_after=30).reason
    assert stale is not None and "old; not healing blind" in stale


async def test_blind_healer_takes_no_action_and_says_why(tmp_path: Path) -> None:
    store = store_with(
        {"ollama": svc("failed", "failed", "exit-code")}, podman=SourceState.UNAVAILABLE
    )
    healer = Healer(store, config(tmp_path), clock=lambda: NOW)
    await healer.load()
    assert await healer.round() == []
    heal = store.get("heal")
    assert heal is not None and heal.state is SourceState.DEGRADED
    doc = status_document(AgentInfo("/x"), store.latest())
    assert doc["state"] == "degraded"
    assert any(r.startswith("heal: podman unavailable") for r in doc["state_reasons"])
    assert not (tmp_path / "heal-state.json").exists()  # nothing decided, nothing written


async def test_no_action_while_a_persons_apply_or_service_action_runs(tmp_path: Path) -> None:
    """Seen in the testbed: `aistack up` restarting a failed service while the healer
    restarted it too; the healer now holds off while StackControl is busy."""
    store = store_with({"ollama": svc("failed", "failed", "exit-code", "unknown")})
    busy = [True]
    healer = Healer(store, config(tmp_path), clock=lambda: NOW, hold=lambda: busy[0])
    await healer.load()
    assert await healer.round() == []
    heal = store.get("heal")
    assert (
        heal is not None and "an apply or a service action is running" in heal_json(store)["paused"]
    )
    busy[0] = False
    assert [a.service for a in await healer.round()] == ["ollama"]
    await asyncio.wait_for(healer.settle(), timeout=30)


async def test_failed_action_is_counted_logged_and_leaves_the_service_free(
    tmp_path: Path,
) -> None:
    """No system D-Bus on this host: the reset-failed call fails for real."""
    store = store_with({"litellm": svc("failed", "failed", "start-limit-hit", "unknown")})
    healer = Healer(store, config(tmp_path), clock=lambda: NOW, rng=lambda: 0.5)
    await healer.load()
    actions = await healer.round()
    assert [(a.service, a.action, a.code) for a in actions] == [
        ("litellm", "reset-failed", "start-limit")
    ]
    await asyncio.wait_for(healer.settle(), timeout=30)
    assert healer.busy == frozenset()
    saved = heal_state.load(tmp_path / "heal-state.json").states["litellm"]
    assert saved.status == "backing-off" and saved.restarts == (NOW,)
    assert saved.next_attempt == NOW + 5.0  # backoff_initial, jitter 0 at rng 0.5
    heal = store.get("heal")
    assert heal is not None
    assert {
        "service": "litellm",
        "action": "reset-failed",
        "reason": "start-limit",
        "count": 1,
    } in heal_json(store)["actions"]
    text = generate_latest(build_registry(AgentInfo("/x"), store.latest)).decode()
    assert (
        'aistack_heal_actions_total{action="reset-failed",reason="start-limit",'
        'service="litellm"} 1.0' in text
    )
    assert 'aistack_heal_state{service="litellm",state="backing-off"} 1.0' in text


async def test_state_survives_an_agent_restart_in_the_middle_of_a_backoff(
    tmp_path: Path,
) -> None:
    path = tmp_path / "heal-state.json"
    heal_state.save(
        path,
        {
            "ollama": ServiceHealState(
                status="backing-off", restarts=(NOW - 10,), next_attempt=NOW + 50, reason="r"
            )
        },
    )
    store = store_with({"ollama": svc("failed", "failed", "exit-code", "unknown")})
    healer = Healer(store, config(tmp_path), clock=lambda: NOW)
    task = asyncio.create_task(healer.run())
    try:
        for _ in range(100):
            if store.get("heal") is not None:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    heal = store.get("heal")
    assert heal is not None
    ollama = heal_json(store)["services"]["ollama"]
    assert ollama["state"] == "backing-off" and ollama["restarts"] == 1
    assert "backing off, next restart no sooner than in 50s" in ollama["reason"]
    assert heal_json(store)["actions"] == []  # it did not restart at once after the agent restart


async def test_gave_up_makes_status_failed_and_503_until_a_manual_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "heal-state.json"
    heal_state.save(
        path,
        {
            "ollama": ServiceHealState(
                status="gave-up", restarts=(NOW - 30, NOW - 20), reason="gave up after 2 restarts"
            )
        },
    )
    store = store_with({"ollama": svc("failed", "failed", "exit-code", "unknown")})
    cfg = config(tmp_path)
    healer = Healer(store, cfg, clock=lambda: NOW)
    await healer.load()  # the state file above
    await healer.round()
    doc = status_document(AgentInfo("/x"), store.latest())
    assert doc["state"] == "failed"
    assert doc["services"]["ollama"]["heal"]["state"] == "gave-up"
    assert doc["services"]["ollama"]["reason"] == "gave up after 2 restarts"
    assert doc["heal"]["enabled"] is True

    status, _, body = await _get_status(store, failed_code=cfg.api.failed_status_code)
    assert status == 503 and json.loads(body)["state"] == "failed"
    status, _, _ = await _get_status(store, failed_code=200)  # api.failed_status_code: 200
    assert status == 200

    healer.manual_reset("ollama")  # aistack restart ollama
    await healer.round()
    heal = store.get("heal")
    assert heal is not None and heal_json(store)["services"]["ollama"]["state"] != "gave-up"


async def test_a_config_reload_forgets_every_give_up(tmp_path: Path) -> None:
    store = store_with({"ollama": svc()})
    cfg = config(tmp_path)
    healer = Healer(store, cfg, clock=lambda: NOW)
    heal_state.save(
        cfg.heal.state_file, {"ollama": ServiceHealState(status="gave-up", restarts=(NOW,))}
    )
    await healer.load()
    healer.configure(cfg, reloaded=True)
    assert healer.states["ollama"] == ServiceHealState(reason="reset by a config reload")


async def test_disabled_healing_reports_and_never_acts(tmp_path: Path) -> None:
    store = store_with({"ollama": svc("failed", "failed", "exit-code", "unknown")})
    healer = Healer(store, config(tmp_path, enabled="false"), clock=lambda: NOW)
    await healer.load()
    assert await healer.round() == []
    heal = store.get("heal")
    assert heal is not None and heal_json(store)["services"]["ollama"]["state"] == "disabled"


def test_heal_metrics_pass_promtool(tmp_path: Path) -> None:
    store = store_with(
        {"ollama": svc(), "litellm": svc()},
        probes={"ollama": {"ok": True, "failures": 0}, "litellm": {"ok": False, "failures": 3}},
    )
    healer = Healer(store, config(tmp_path), clock=lambda: NOW)
    asyncio.run(healer.load())
    asyncio.run(healer.round())
    text = generate_latest(build_registry(AgentInfo("/x"), store.latest))
    assert b'aistack_service_probe_failures{service="litellm"} 3.0' in text
    assert b'aistack_service_probe_ok{service="ollama"} 1.0' in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package 'prometheus')"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert check.returncode == 0, check.stderr.decode() + check.stdout.decode()


def test_heal_config_defaults_match_the_policy_defaults() -> None:
    assert AgentConfig().heal == HealConfig()
    assert HealConfig().give_up_after == 5 and HealConfig().backoff_factor == 2.0


async def _get_status(store: SnapshotStore, failed_code: int) -> tuple[int, Any, bytes]:
    info = AgentInfo(config_path="/x")

    async def reload() -> ReloadResult:
        return ReloadResult(True, "/x")

    context = ApiContext(
        info,
        store,
        build_registry(info, store.latest),
        lambda: "t" * 32,
        reload,
        failed_status=lambda: failed_code,
    )
    runner = web.AppRunner(create_app(context))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await asyncio.to_thread(http, "GET", f"http://127.0.0.1:{port}/status")
    finally:
        await runner.cleanup()


@pytest.fixture(autouse=True)
def _no_real_state_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every healer here writes under tmp_path (config()), never /var/lib/aistack."""
    monkeypatch.setattr(heal_state, "DEFAULT_STATE_PATH", Path("/nonexistent/heal-state.json"))
