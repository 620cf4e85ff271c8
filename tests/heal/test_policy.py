"""The healing policy, scenario by scenario, in simulated time (no clock, no systemd)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import get_args

import pytest

from agent.config import ConfigError, parse_config
from agent.heal import state as heal_state
from agent.heal.policy import (
    Action,
    HealPolicyConfig,
    Observation,
    ReasonCode,
    ServiceHealState,
    decide,
    manual_reset,
    reload_reset,
)

OK = Observation("active", "running", "success", "healthy")
NO_CHECK = Observation("active", "running", "success", "unknown")
STARTING = Observation("active", "running", "success", "starting")
UNHEALTHY = Observation("active", "running", "success", "unhealthy")
RESTARTS = ("restart", "reset-failed")
FAILED = Observation("failed", "failed", "exit-code")
INACTIVE = Observation("inactive", "dead", "success")
STOPPED = Observation("inactive", "dead", "success", should_run=False)  # a clean stop
AUTO_RESTART = Observation("activating", "auto-restart", "exit-code")
ACTIVATING = Observation("activating", "start", "success")
START_LIMIT = Observation("failed", "failed", "start-limit-hit")
ALL_OK = {"postgres": OK, "ollama": OK, "litellm": OK, "open-webui": OK}


def probe(failures: int) -> Observation:
    return Observation("active", "running", "success", "healthy", probe_failures=failures)


@dataclass
class Sim:
    """The agent's loop, with simulated time: observe, decide, keep the state."""

    config: HealPolicyConfig = field(default_factory=HealPolicyConfig)
    now: float = 1_000_000.0
    rng: Callable[[], float] = lambda: 0.5  # no jitter: delays are exact
    state: dict[str, ServiceHealState] = field(default_factory=dict)
    log: list[tuple[float, Action]] = field(default_factory=list)

    def step(
        self, observations: Mapping[str, Observation], at: float | None = None
    ) -> list[Action]:
        if at is not None:
            self.now = at
        actions, self.state = decide(self.config, observations, self.state, self.now, self.rng)
        self.log.extend((self.now, a) for a in actions)
        return actions

    def run(
        self, observations: Mapping[str, Observation], until: float, every: float = 1.0
    ) -> None:
        while self.now < until:
            self.now += every
            self.step(observations)

    def times(self, service: str, actions: tuple[str, ...] = RESTARTS) -> list[float]:
        """When `service` got one of `actions` (default: a restart, with or without a
        reset-failed before it), in seconds since T0."""
        return [t - T0 for t, a in self.log if a.service == service and a.action in actions]

    def st(self, service: str) -> ServiceHealState:
        return self.state[service]


T0 = 1_000_000.0


def labels(actions: list[Action]) -> list[tuple[str, str, str]]:
    return [(a.service, a.action, a.code) for a in actions]


def test_all_healthy_nothing_to_do() -> None:
    sim = Sim()
    assert sim.step(ALL_OK) == []
    assert {st.status for st in sim.state.values()} == {"ok"}


def test_failed_service_restarted_with_an_actionable_reason() -> None:
    sim = Sim()
    [action] = sim.step({**ALL_OK, "ollama": FAILED})
    assert (action.service, action.action, action.code) == ("ollama", "reset-failed", "failed")
    assert action.unit == "ollama.service"
    assert "ollama.service failed (exit-code)" in action.reason
    assert "1 of 5 within 30m" in action.reason
    assert sim.st("ollama").status == "backing-off"
    assert sim.st("ollama").restarts == (T0,)


def test_inactive_restarted_only_when_it_should_run() -> None:
    sim = Sim()
    assert labels(sim.step({"ollama": INACTIVE})) == [("ollama", "restart", "inactive")]
    sim = Sim()
    stopped = Observation("inactive", "dead", "success", should_run=False)
    assert sim.step({"ollama": stopped}) == []
    assert sim.st("ollama").reason == "not meant to run"


def test_unhealthy_within_grace_no_action_beyond_grace_restart() -> None:
    sim = Sim()
    assert sim.step({"ollama": UNHEALTHY}) == []
    assert sim.st("ollama").unhealthy_since == T0
    assert sim.step({"ollama": UNHEALTHY}, at=T0 + 29) == []
    [action] = sim.step({"ollama": UNHEALTHY}, at=T0 + 30)
    assert (action.action, action.code) == ("restart", "unhealthy")
    assert "health check failing for 30s (grace 30s)" in action.reason
    assert sim.st("ollama").unhealthy_since is None  # the grace starts again after a restart


def test_health_recovering_within_grace_resets_the_grace() -> None:
    sim = Sim()
    sim.step({"ollama": UNHEALTHY})
    sim.step({"ollama": OK}, at=T0 + 20)
    assert sim.st("ollama").unhealthy_since is None
    assert sim.step({"ollama": UNHEALTHY}, at=T0 + 40) == []
    assert sim.step({"ollama": UNHEALTHY}, at=T0 + 69) == []
    assert labels(sim.step({"ollama": UNHEALTHY}, at=T0 + 70)) == [
        ("ollama", "restart", "unhealthy")
    ]


def test_probe_failures_n_minus_one_waits_n_restarts() -> None:
    sim = Sim()
    assert sim.step({"litellm": probe(1)}) == []
    [action] = sim.step({"litellm": probe(2)}, at=T0 + 10)
    assert (action.action, action.code) == ("restart", "probe")
    assert "probe failed 2 times in a row" in action.reason


# systemd >= 254 passes through these on its way to auto-restart: failed (or inactive) for
# a moment, with its own restart already decided (seen in the testbed: the agent's
# reset-failed raced systemd's restart of a killed LiteLLM)
ON_THE_WAY = [
    Observation("failed", "failed-before-auto-restart", "exit-code"),
    Observation("inactive", "dead-before-auto-restart", "success"),
    Observation("activating", "auto-restart-queued", "exit-code"),
]


@pytest.mark.parametrize(
    "busy", [AUTO_RESTART, ACTIVATING, Observation("deactivating", "stop"), *ON_THE_WAY]
)
def test_systemd_already_restarting_we_wait(busy: Observation) -> None:
    sim = Sim()
    sim.run({"ollama": busy}, until=T0 + 600)
    assert sim.log == []
    assert "waiting for systemd" in sim.st("ollama").reason
    assert sim.st("ollama").restarts == ()


def test_start_limit_hit_reset_failed_then_restart() -> None:
    sim = Sim()
    [action] = sim.step({"postgres": START_LIMIT})
    assert (action.action, action.code) == ("reset-failed", "start-limit")
    assert "start-limit-hit" in action.reason
    assert "reset-failed and restart" in action.reason


def test_exponential_backoff_then_give_up_after_m_in_w() -> None:
    sim = Sim()
    sim.step({"ollama": FAILED})
    sim.run({"ollama": FAILED}, until=T0 + 400)
    # delays 5, 10, 20, 40 between the five restarts; the sixth is refused 80s later
    assert sim.times("ollama") == [0, 5, 15, 35, 75]
    assert sim.times("ollama", ("give-up",)) == [155]
    st = sim.st("ollama")
    assert st.status == "gave-up"
    assert "gave up after 5 restarts within 30m" in st.reason
    assert "aistack restart ollama" in st.reason
    assert "journalctl -u ollama.service" in st.reason


def test_backing_off_state_says_when_the_next_attempt_is() -> None:
    sim = Sim()
    sim.step({"ollama": FAILED})
    sim.step({"ollama": FAILED}, at=T0 + 2)
    st = sim.st("ollama")
    assert st.status == "backing-off"
    assert st.next_attempt == T0 + 5
    assert "next restart no sooner than in 3s" in st.reason


def test_flapping_service_still_backs_off_and_gives_up() -> None:
    """Up for a moment after each restart, then down again: recovery between restarts
    does not reset the backoff, the restarts in the window count."""
    sim = Sim()
    for _ in range(60):
        sim.step({"ollama": FAILED})
        sim.now += 1
        sim.step({"ollama": ACTIVATING})
        sim.now += 1
        sim.step({"ollama": OK})
        sim.now += 1
    restarts = sim.times("ollama")
    assert len(restarts) == 5
    gaps = [b - a for a, b in pairwise(restarts)]
    assert gaps == sorted(gaps) and gaps[-1] >= 40
    # each time it fails again it is given up on again: its restarts are still in the window
    assert sim.times("ollama", ("give-up",))[0] > restarts[-1]
    assert sim.st("ollama").status == "ok"  # it is up right now


def test_gave_up_no_more_restarts_even_after_the_window() -> None:
    sim = Sim()
    sim.run({"ollama": FAILED}, until=T0 + 200)
    assert sim.st("ollama").status == "gave-up"
    before = len(sim.log)
    sim.run({"ollama": FAILED}, until=T0 + 4 * 3600, every=60)
    assert len(sim.log) == before  # no restart, and give-up is reported once
    assert sim.st("ollama").status == "gave-up"


def test_manual_restart_resets_gave_up() -> None:
    sim = Sim()
    sim.run({"ollama": FAILED}, until=T0 + 200)
    sim.state = manual_reset(sim.state, "ollama")
    assert sim.st("ollama") == ServiceHealState(reason="reset by a manual start, stop or restart")
    assert labels(sim.step({"ollama": FAILED})) == [("ollama", "reset-failed", "failed")]


def test_reload_resets_every_service() -> None:
    sim = Sim()
    sim.run({"ollama": FAILED, "postgres": FAILED}, until=T0 + 200)
    assert {sim.st("ollama").status, sim.st("postgres").status} == {"gave-up"}
    sim.state = reload_reset(sim.state)
    assert {st.status for st in sim.state.values()} == {"ok"}
    assert labels(sim.step({"ollama": FAILED, "postgres": FAILED})) == [
        ("postgres", "reset-failed", "failed"),
        ("ollama", "reset-failed", "failed"),
    ]


def test_recovering_by_itself_clears_gave_up() -> None:
    sim = Sim()
    sim.run({"ollama": FAILED}, until=T0 + 200)
    sim.step({"ollama": OK}, at=T0 + 300)
    st = sim.st("ollama")
    assert st.status == "ok" and "recovered by itself" in st.reason
    # its restarts stay in the window: failing again at once means giving up at once...
    assert labels(sim.step({"ollama": FAILED}, at=T0 + 400)) == [("ollama", "give-up", "failed")]
    # ...but once they have slid out, healing works again
    sim.step({"ollama": OK}, at=T0 + 500)
    assert labels(sim.step({"ollama": FAILED}, at=T0 + 2000)) == [
        ("ollama", "reset-failed", "failed")
    ]


def test_window_slides_old_restarts_fall_out() -> None:
    sim = Sim()
    for i in range(10):  # a failure every 20 minutes: at most 2 restarts in 30m
        sim.step({"ollama": FAILED}, at=T0 + i * 1200)
        sim.step({"ollama": OK}, at=T0 + i * 1200 + 60)
        assert len(sim.st("ollama").restarts) <= 2
    assert len(sim.times("ollama")) == 10
    assert sim.times("ollama", ("give-up",)) == []
    assert sim.st("ollama").restarts == (T0 + 8 * 1200, T0 + 9 * 1200)  # 20m ago: still in


@pytest.mark.parametrize(("draw", "delay"), [(0.0, 4.0), (0.25, 4.5), (0.5, 5.0), (1.0, 6.0)])
def test_jitter_bounds(draw: float, delay: float) -> None:
    sim = Sim(rng=lambda: draw)
    sim.step({"ollama": FAILED})
    assert sim.st("ollama").next_attempt - T0 == pytest.approx(delay)


def test_jitter_stays_within_ratio_for_any_draw() -> None:
    import random

    rng = random.Random(7)
    config = HealPolicyConfig()
    for _ in range(200):
        _, state = decide(config, {"ollama": FAILED}, {}, T0, rng.random)
        assert 4.0 <= state["ollama"].next_attempt - T0 <= 6.0


def test_backoff_capped_even_with_jitter() -> None:
    config = HealPolicyConfig(give_up_after=50, give_up_window=86400.0)
    sim = Sim(config=config, rng=lambda: 1.0)  # the largest jitter
    sim.step({"ollama": FAILED})
    delays = []
    for _ in range(20):
        sim.step({"ollama": FAILED}, at=sim.st("ollama").next_attempt)
        delays.append(sim.st("ollama").next_attempt - sim.now)
    assert max(delays) == config.backoff_max
    assert delays[-5:] == [300.0] * 5
    assert "next no sooner than in 5m" in sim.st("ollama").reason


def test_dependency_down_dependent_waits() -> None:
    sim = Sim()
    actions = sim.step({**ALL_OK, "postgres": FAILED, "litellm": FAILED})
    assert labels(actions) == [("postgres", "reset-failed", "failed")]
    st = sim.st("litellm")
    assert st.status == "waiting-for-dependency"
    assert st.waiting_for == ("postgres",)
    assert "postgres: postgres.service failed (exit-code)" in st.reason
    assert st.restarts == ()
    # while postgres is restarting (systemd's or ours) litellm keeps waiting
    sim.run({**ALL_OK, "postgres": ACTIVATING, "litellm": FAILED}, until=T0 + 60)
    sim.run({**ALL_OK, "postgres": STARTING, "litellm": FAILED}, until=T0 + 120)
    assert sim.times("litellm") == []
    assert sim.st("litellm").waiting_for == ("postgres",)


def test_dependency_recovers_then_failing_dependent_restarted_at_once() -> None:
    sim = Sim()
    sim.step({"litellm": FAILED, "postgres": OK})  # restarted at T0, backoff until T0+5
    sim.step({"litellm": FAILED, "postgres": FAILED}, at=T0 + 1)
    assert sim.st("litellm").status == "waiting-for-dependency"
    [action] = sim.step({"litellm": FAILED, "postgres": OK}, at=T0 + 2)  # inside the backoff
    assert (action.service, action.action, action.code) == (
        "litellm",
        "reset-failed",  # it is failed: reset-failed clears systemd's start limit too
        "dependency-recovered",
    )
    assert "still after postgres recovered" in action.reason


def test_misses_while_the_dependency_was_down_are_the_dependency_s() -> None:
    """PostgreSQL killed and healthy again within a second: LiteLLM's probe that ran
    during the outage failed, and its result arrives after PostgreSQL is back. The
    dependent waits (no restart); a good probe after it is the end of it."""
    sim = Sim()
    sim.step({**ALL_OK, "litellm": probe(1)})  # below the threshold, postgres up
    during = replace(probe(3), deps_down=("postgres",))
    assert sim.step({**ALL_OK, "litellm": during}, at=T0 + 1) == []
    st = sim.st("litellm")
    assert (st.status, st.waiting_for) == ("waiting-for-dependency", ("postgres",))
    assert "postgres: down while probed" in st.reason
    assert sim.step({**ALL_OK}, at=T0 + 5) == []
    assert sim.st("litellm").status == "ok"
    # the same misses without the dependency's outage: the dependent's own, restarted
    sim.step({**ALL_OK, "litellm": probe(3)}, at=T0 + 9)
    assert sim.times("litellm") == [9]


def test_after_an_outage_seen_in_a_probe_a_fresh_miss_restarts_at_once() -> None:
    sim = Sim()
    sim.step({**ALL_OK, "litellm": replace(probe(3), deps_down=("postgres",))})
    actions = sim.step({**ALL_OK, "litellm": probe(4)}, at=T0 + 4)
    assert labels(actions) == [("litellm", "restart", "dependency-recovered")]


def test_dependency_recovers_dependent_probe_still_failing_restarted() -> None:
    """LiteLLM after PostgreSQL: its probe still fails, even below the threshold."""
    sim = Sim()
    sim.step({"postgres": FAILED, "litellm": probe(3)})
    assert sim.st("litellm").status == "waiting-for-dependency"
    actions = sim.step({"postgres": OK, "litellm": probe(1)}, at=T0 + 30)
    assert labels(actions) == [("litellm", "restart", "dependency-recovered")]


def test_dependency_recovers_dependent_fine_no_restart() -> None:
    sim = Sim()
    sim.step({"postgres": FAILED, "litellm": FAILED})
    assert sim.step({"postgres": NO_CHECK, "litellm": OK}, at=T0 + 30) == []
    assert sim.st("litellm").status == "ok"


def test_open_webui_does_not_wait_for_its_backends() -> None:
    sim = Sim()
    actions = sim.step({**ALL_OK, "ollama": FAILED, "litellm": FAILED, "open-webui": FAILED})
    assert labels(actions) == [
        ("ollama", "reset-failed", "failed"),
        ("litellm", "reset-failed", "failed"),
        ("open-webui", "reset-failed", "failed"),
    ]


def test_dependency_not_deployed_does_not_block() -> None:
    sim = Sim()
    assert labels(sim.step({"litellm": FAILED})) == [("litellm", "reset-failed", "failed")]


def test_actions_in_dependency_order_unknown_services_last() -> None:
    sim = Sim()
    observed = {"zz-extra": FAILED, "open-webui": FAILED, "ollama": FAILED, "postgres": FAILED}
    assert [a.service for a in sim.step(observed)] == [
        "postgres",
        "ollama",
        "open-webui",
        "zz-extra",
    ]


def test_agent_restart_mid_backoff_continues_the_backoff(tmp_path: Path) -> None:
    path = tmp_path / "heal-state.json"
    sim = Sim()
    sim.step({"ollama": FAILED})
    sim.step({"ollama": FAILED}, at=T0 + 5)  # second restart: next attempt at T0+15
    heal_state.save(path, sim.state)

    restarted = Sim(state=heal_state.load(path).states)  # a new agent process
    assert restarted.step({"ollama": FAILED}, at=T0 + 8) == []  # no immediate restart
    assert restarted.st("ollama").status == "backing-off"
    assert restarted.step({"ollama": FAILED}, at=T0 + 14) == []
    assert labels(restarted.step({"ollama": FAILED}, at=T0 + 15)) == [
        ("ollama", "reset-failed", "failed")
    ]
    assert restarted.st("ollama").restarts == (T0, T0 + 5, T0 + 15)
    assert "3 of 5" in restarted.log[0][1].reason


def test_gave_up_survives_an_agent_restart(tmp_path: Path) -> None:
    path = tmp_path / "heal-state.json"
    sim = Sim()
    sim.run({"ollama": FAILED}, until=T0 + 200)
    heal_state.save(path, sim.state)
    restarted = Sim(state=heal_state.load(path).states, now=sim.now)
    restarted.run({"ollama": FAILED}, until=T0 + 3600, every=30)
    assert restarted.log == []
    assert restarted.st("ollama").status == "gave-up"


def test_clock_stepped_back_does_not_stretch_the_backoff() -> None:
    sim = Sim()
    sim.step({"ollama": FAILED})
    sim.step({"ollama": FAILED}, at=T0 - 86400)  # the clock went back a day
    assert sim.st("ollama").next_attempt <= T0 - 86400 + 300


def test_disabled_policy_does_nothing() -> None:
    sim = Sim(config=HealPolicyConfig(enabled=False))
    assert sim.step({"ollama": FAILED}) == []


def test_reason_codes_are_the_low_cardinality_set() -> None:
    sim = Sim()
    sim.run(
        {"postgres": START_LIMIT, "ollama": UNHEALTHY, "litellm": probe(5), "open-webui": INACTIVE},
        until=T0 + 3600,
    )
    codes = {a.code for _, a in sim.log}
    assert codes <= set(get_args(ReasonCode))
    assert {a.action for _, a in sim.log} == {"restart", "reset-failed", "give-up"}


def test_start_limited_dependent_still_reset_failed_after_dependency_recovers() -> None:
    sim = Sim()
    sim.step({"postgres": FAILED, "litellm": START_LIMIT})
    assert sim.st("litellm").status == "waiting-for-dependency"
    actions = sim.step({"postgres": OK, "litellm": START_LIMIT}, at=T0 + 10)
    assert labels(actions) == [("litellm", "reset-failed", "dependency-recovered")]


def test_dependency_meant_to_be_off_does_not_block() -> None:
    sim = Sim()
    off = Observation("inactive", "dead", "success", should_run=False)
    assert labels(sim.step({"postgres": off, "litellm": FAILED})) == [
        ("litellm", "reset-failed", "failed")
    ]


def test_config_defaults_are_consistent_and_mistakes_named() -> None:
    assert HealPolicyConfig().problems() == []
    with pytest.raises(ConfigError) as err:
        parse_config(
            "heal:\n  probe_failures: 0\n  backoff_initial: 10s\n  backoff_max: 1s\n"
            "  jitter: 1.5\n  backoff_factor: 0.5\n"
        )
    keys = [p.split(":")[0] for p in err.value.problems]
    assert keys == ["heal.probe_failures", "heal.jitter", "heal.backoff_factor"]
    with pytest.raises(ConfigError) as err:
        parse_config("heal:\n  backoff_initial: 10s\n  backoff_max: 1s\n")
    assert err.value.problems == ["heal.backoff_max: must not be shorter than heal.backoff_initial"]
    assert parse_config("heal:\n  backoff_factor: 3\n  jitter: 0\n").heal.backoff_factor == 3.0


def test_dependent_stopped_by_systemd_with_its_dependency_is_started_after_it() -> None:
    """Seen in the testbed: postgres at its start limit made systemd stop LiteLLM
    (Requires=); restarting postgres does not start a stopped dependent. The policy
    remembers why LiteLLM stopped and starts it once postgres is back."""
    sim = Sim()
    first = sim.step({"postgres": FAILED, "litellm": STOPPED})
    assert labels(first) == [("postgres", "reset-failed", "failed")]
    st = sim.st("litellm")
    assert st.status == "waiting-for-dependency" and st.waiting_for == ("postgres",)
    assert "stopped by systemd with postgres" in st.reason
    assert sim.step({"postgres": ACTIVATING, "litellm": STOPPED}, at=T0 + 1) == []
    # back: first a moment for systemd, which may start it itself
    assert sim.step({"postgres": OK, "litellm": STOPPED}, at=T0 + 30) == []
    assert "postgres is back; starting it in 5s unless systemd does" in sim.st("litellm").reason
    assert sim.step({"postgres": OK, "litellm": STOPPED}, at=T0 + 33) == []
    started = sim.step({"postgres": OK, "litellm": STOPPED}, at=T0 + 35)
    assert labels(started) == [("litellm", "restart", "dependency-recovered")]
    assert sim.step({"postgres": OK, "litellm": OK}, at=T0 + 60) == []
    assert sim.st("litellm").status == "ok"


def test_dependent_started_by_systemd_meanwhile_is_not_started_again() -> None:
    sim = Sim()
    sim.step({"postgres": FAILED, "litellm": STOPPED})
    assert sim.step({"postgres": OK, "litellm": STOPPED}, at=T0 + 30) == []
    assert sim.step({"postgres": OK, "litellm": ACTIVATING}, at=T0 + 31) == []
    assert sim.step({"postgres": OK, "litellm": OK}, at=T0 + 40) == []
    assert sim.st("litellm").status == "ok" and sim.times("litellm") == []


def test_a_clean_stop_of_both_is_left_alone() -> None:
    """aistack down, systemctl stop postgres: nothing failed, nothing is started again."""
    sim = Sim()
    assert sim.step({"postgres": STOPPED, "litellm": STOPPED}) == []
    assert sim.step({"postgres": STOPPED, "litellm": STOPPED}, at=T0 + 600) == []
    assert sim.st("litellm").status == "ok"


def test_a_person_stopping_the_dependency_does_not_get_it_started_again() -> None:
    """Seen in the testbed: `systemctl stop postgres` makes systemd stop LiteLLM first
    (Requires=) while postgres is still deactivating. LiteLLM then looks stopped with a
    dependency down; when postgres ends cleanly stopped, that was a person's stop, not a
    recovery: starting LiteLLM would start postgres again (Requires=) and undo it."""
    sim = Sim()
    deactivating = Observation("deactivating", "stop", "success")
    assert sim.step({"postgres": deactivating, "litellm": STOPPED}) == []
    assert sim.st("litellm").status == "waiting-for-dependency"
    assert sim.step({"postgres": STOPPED, "litellm": STOPPED}, at=T0 + 1) == []
    st = sim.st("litellm")
    assert st.status == "ok" and "postgres was stopped on purpose" in st.reason
    sim.run({"postgres": STOPPED, "litellm": STOPPED}, until=T0 + 120)
    assert sim.times("litellm") == [] and sim.times("postgres") == []


def crashed_before(n: int, base: Observation = OK) -> Observation:
    return replace(base, restarts=n)


def test_restarts_are_forgotten_after_running_well_for_the_window() -> None:
    """systemd's counter (NRestarts) only grows, and RestartSteps grow the delay with
    it: after forget_restarts_after of running well it is reset, once."""
    sim = Sim()
    window = sim.config.forget_restarts_after
    assert window == 900.0  # 15 min: the units' StartLimitIntervalSec
    assert sim.step({**ALL_OK, "postgres": crashed_before(3)}) == []
    assert sim.step({**ALL_OK, "postgres": crashed_before(3)}, at=T0 + window - 1) == []
    actions = sim.step({**ALL_OK, "postgres": crashed_before(3)}, at=T0 + window)
    assert labels(actions) == [("postgres", "reset-restarts", "steady")]
    assert "after 3 restarts by systemd" in actions[0].reason
    assert sim.times("postgres") == []  # not a restart: none counted toward give-up
    # systemd reset it: nothing more to do, however long it runs
    assert sim.step({**ALL_OK}, at=T0 + 3 * window) == []


@pytest.mark.parametrize(
    "between", [STARTING, UNHEALTHY, ACTIVATING, AUTO_RESTART, probe(1)], ids=str
)
def test_any_trouble_starts_the_window_again(between: Observation) -> None:
    sim = Sim()
    window = sim.config.forget_restarts_after
    sim.step({**ALL_OK, "postgres": crashed_before(1)})
    sim.step({**ALL_OK, "postgres": crashed_before(1, between)}, at=T0 + window / 2)
    assert sim.step({**ALL_OK, "postgres": crashed_before(1)}, at=T0 + window) == []  # anew
    assert sim.step({**ALL_OK, "postgres": crashed_before(1)}, at=T0 + 2 * window - 1) == []
    actions = sim.step({**ALL_OK, "postgres": crashed_before(1)}, at=T0 + 2 * window)
    assert labels(actions) == [("postgres", "reset-restarts", "steady")]


def test_restarts_are_kept_when_forgetting_is_off_or_healing_is() -> None:
    for config in (HealPolicyConfig(forget_restarts_after=0), HealPolicyConfig(enabled=False)):
        sim = Sim(config=config)
        sim.step({**ALL_OK, "ollama": crashed_before(2)})
        assert sim.step({**ALL_OK, "ollama": crashed_before(2)}, at=T0 + 86400) == []
