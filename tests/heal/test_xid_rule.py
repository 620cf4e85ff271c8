"""The GPU rule (heal/xid.py): an application XID restarts Ollama through the one
actuator, at most once per cooldown; the GPU watcher only observes. The watcher reads a
fake NVML (the hardware boundary); the restart goes to the real systemd gateway, which
fails here (no system D-Bus) and says so."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.config import GpuConfig, parse_config
from agent.gpu.xid import XidEvent
from agent.heal.healer import Healer
from agent.heal.xid import RestartPolicy, XidRule, restart_view
from agent.snapshot import SnapshotStore, SourceSnapshot, SourceState
from agent.stack.actuator import Actuator
from agent.views import to_json

from ..fixtures.gpu.fake_nvml import FakeNvml
from ..fixtures.gpu.support import Clock, closed_url, make_watcher
from ..fixtures.wait import until


def xid(n: int, at: float) -> XidEvent:
    return XidEvent(n, at, 0.0, "nvml", "GPU-a")


def test_restart_policy_never_loops() -> None:
    cfg = GpuConfig(restart_ollama_on_xid=True, restart_cooldown=1800.0)
    policy = RestartPolicy()
    assert policy.decide([xid(43, 0)], False, GpuConfig(), 0) is None  # off by default
    assert policy.decide([], False, cfg, 0) is None
    assert policy.decide([xid(48, 0)], False, cfg, 0) is None  # not an application XID
    first = policy.decide([xid(43, 0)], False, cfg, now=100)
    assert first is not None and first.restart
    assert first.message == "XID 43 (GPU stopped processing): restarting Ollama"
    again = policy.decide([xid(43, 0)], False, cfg, now=160)
    assert again is not None and not again.restart
    assert again.message == (
        "XID 43 again 1m after restarting Ollama: not restarting again within "
        "gpu.restart_cooldown (30m)"
    )
    later = policy.decide([xid(13, 0)], False, cfg, now=100 + 1800)
    assert later is not None and later.restart
    reset = policy.decide([xid(13, 0)], True, cfg, now=10_000)
    assert reset is not None and not reset.restart and "needs a reset" in reset.message


async def test_an_xid_restarts_ollama_once_per_cooldown_through_the_actuator(
    tmp_path: Path,
) -> None:
    clock = Clock()
    fake = FakeNvml()
    cfg = GpuConfig(ollama_url=closed_url(), kernel_log=False, restart_ollama_on_xid=True)
    actuator = Actuator()
    rule = XidRule(actuator, clock)
    watcher = make_watcher(
        tmp_path, fake, gpu=cfg, clock=clock,
        last_restart=lambda: restart_view(actuator, cfg.ollama_unit),
    )  # fmt: skip
    assert rule.observe(await watcher.poll_once(), cfg) is None  # no XID yet
    uuid = fake.gpus[0].uuid
    fake.emit_xid(0, 43)
    await until(lambda: watcher.sampler.tracker.counts(uuid) == {43: 1})  # type: ignore[union-attr]
    decision = rule.observe(await watcher.poll_once(), cfg)
    assert decision is not None and decision.restart
    await rule.settle()
    snap = await watcher.poll_once()
    restart = snap.data["ollama"]["restart"]
    assert restart["enabled"] is True and restart["unit"] == "ollama.service"
    assert restart["reason"] == "XID 43 (GPU stopped processing): restarting Ollama"
    assert str(restart["result"]).startswith("failed:")  # no system D-Bus on this host
    first_at = restart["last_at"]
    assert rule.observe(snap, cfg) is None  # the same events again: nothing new

    clock.advance(60)
    fake.emit_xid(0, 43)
    await until(lambda: watcher.sampler.tracker.counts(uuid) == {43: 2})  # type: ignore[union-attr]
    again = rule.observe(await watcher.poll_once(), cfg)
    assert again is not None and not again.restart  # no second restart inside the cooldown
    await rule.settle()
    snap = await watcher.poll_once()
    watcher.close()
    assert snap.data["ollama"]["restart"]["last_at"] == first_at
    assert [(a.service, a.by, a.code) for a in actuator.recent] == [("ollama", "gpu", "xid")]
    assert actuator.counts == {("ollama", "restart", "xid"): 1}
    assert snap.state is SourceState.OK


def _gpu_snapshot(*seqs: int) -> SourceSnapshot:
    log = [{"seq": s, "xid": 43, "uuid": "GPU-a", "source": "nvml"} for s in seqs]
    gpus = [{"uuid": "GPU-a", "healthy": True}]
    return SourceSnapshot("gpu", SourceState.OK, data={"gpus": gpus, "xid": {"log": log}})


async def test_the_healer_runs_the_rule_and_counts_its_restart_in_the_give_up_window(
    tmp_path: Path,
) -> None:
    config = parse_config(
        f"heal:\n  state_file: {tmp_path / 'heal-state.json'}\n"
        "gpu:\n  restart_ollama_on_xid: true\n"
    )
    store = SnapshotStore()
    store.publish(_gpu_snapshot(1))
    now = 1_800_000_000.0
    healer = Healer(store, config, clock=lambda: now)
    await healer.load()
    await healer.round()
    await asyncio.wait_for(healer.settle(), timeout=60)
    assert healer.states["ollama"].restarts == (now,)  # the GPU rule's, in the one window
    await healer.round()  # the run loop's next round (the action's end woke it)
    heal = store.get("heal")
    assert heal is not None
    recent = to_json(heal.data)["recent"]
    assert [(r["service"], r["by"], r["reason_code"]) for r in recent] == [("ollama", "gpu", "xid")]
    assert {"service": "ollama", "action": "restart", "reason": "xid", "count": 1} in to_json(
        heal.data
    )["actions"]
