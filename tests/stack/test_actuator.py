"""The one actuator: every action recorded with who and why, counted, heard by every
part, and reported as failed when systemd cannot be reached (no system D-Bus here)."""

from __future__ import annotations

import pytest

from agent import systemd_ctl
from agent.stack.actuator import Act, Actuator


async def test_an_action_systemd_cannot_take_is_recorded_failed_and_raised() -> None:
    heard: list[Act] = []
    actuator = Actuator(clock=lambda: 100.0)
    actuator.listen(heard.append)
    with pytest.raises(systemd_ctl.SystemdError):
        await actuator.act("ollama", "restart", "person", "manual", "aistack restart ollama")
    assert actuator.busy == frozenset()  # free again after the failure
    (act,) = actuator.recent
    assert (act.service, act.action, act.by, act.code, act.at) == (
        "ollama", "restart", "person", "manual", 100.0,
    )  # fmt: skip
    assert act.result.startswith("failed: ") and "D-Bus" in act.result
    assert heard == [act]
    assert actuator.counts == {("ollama", "restart", "manual"): 1}
    assert actuator.last("ollama", "person") == act and actuator.last("ollama", "gpu") is None


def test_a_decision_without_a_job_is_recorded_too() -> None:
    actuator = Actuator(clock=lambda: 5.0)
    heard: list[Act] = []
    actuator.listen(heard.append)
    act = actuator.note("litellm", "give-up", "healer", "failed", "gave up after 5 restarts")
    assert act.result == "recorded" and heard == [act] and actuator.recent == (act,)
    assert actuator.counts == {("litellm", "give-up", "failed"): 1}


def test_a_listener_that_fails_does_not_lose_the_record() -> None:
    actuator = Actuator()

    def broken(act: Act) -> None:
        raise RuntimeError("injected fault: a listener's bug")

    actuator.listen(broken)
    actuator.note("ollama", "give-up", "healer", "probe", "r")
    assert len(actuator.recent) == 1


def test_recent_keeps_the_latest_and_counts_keep_everything() -> None:
    actuator = Actuator()
    for i in range(30):
        actuator.note("ollama", "give-up", "healer", "probe", f"r{i}")
    assert len(actuator.recent) == 20 and actuator.recent[-1].reason == "r29"
    assert actuator.counts == {("ollama", "give-up", "probe"): 30}


async def test_a_restart_counter_reset_without_systemd_is_recorded_failed() -> None:
    actuator = Actuator(clock=lambda: 7.0)
    with pytest.raises(systemd_ctl.SystemdError):
        await actuator.act("postgres", "reset-restarts", "healer", "steady", "running well")
    (act,) = actuator.recent
    assert act.action == "reset-restarts" and act.result.startswith("failed: ")
    assert actuator.busy == frozenset()
