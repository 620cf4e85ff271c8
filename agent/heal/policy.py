"""When to restart a stack service, and when to leave it alone: the healing policy.

Pure: the caller observes (systemd + Podman + probes), passes the wall-clock time and a
random source, executes the returned actions, and stores the returned state (see
agent/heal/state.py). Nothing here reads a clock, touches a file or talks to systemd, so
every scenario is a test with simulated time.

Decisions, per service, in dependency order (postgres before litellm, ...):

1. Not meant to run: nothing to heal.
2. systemd is already restarting it (sub_state auto-restart, or one of the states on the
   way to it such as failed-before-auto-restart: RESTARTING_SUB_STATES; or
   activating/deactivating): wait. Restarting on top of systemd's own restart would fight it.
3. A problem: failed (`reset-failed` first: it also resets systemd's start limit, or the
   restart is refused),
   inactive, unhealthy for longer than `unhealthy_grace`, or `probe_failures` failed
   probes in a row.
4. A hard dependency (systemd Requires=) is down: wait, `waiting-for: postgres`;
   restarting LiteLLM while PostgreSQL is down only burns restarts. When it is back,
   a dependent that still fails is restarted at once (`dependency-recovered`), without
   waiting for its backoff: its failures were the dependency's.
5. Backoff: the delay after the n-th restart inside `give_up_window` is
   backoff_initial * backoff_factor**(n-1), capped at backoff_max, +-jitter. The
   exponent comes from the restarts in the window, not from a counter reset on recovery,
   so a flapping service (up for a moment, down again) still backs off further.
6. `give_up_after` restarts inside the window and it needs another: give up. No more
   restarts until `manual_reset` (aistack restart SERVICE), `reload_reset` (config
   reload), or the service recovering by itself. Recovery keeps the window's restarts:
   failing again inside the window gives up again at once, so a service that flaps
   through systemd's own restarts earns no fresh round of ours.
7. Running well (active, healthy or without a check, no failing probe) for
   `forget_restarts_after` with systemd's restart counter above 0: reset it
   (`reset-restarts`, systemd's reset-failed on a running unit, which restarts nothing).
   systemd clears that counter only on a start a person asks for, and the units'
   RestartSteps grow the delay with it: without this, a service that crashed three
   times in a month would wait 7 s at its fourth crash, 2 min from its sixth.

Open WebUI only Wants= its backends (units/open-webui.container): it stays up and says
a backend is down, so it waits for nothing and is never restarted for a backend's sake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from ..config import HealConfig, format_duration
from ..stack.model import DEPENDENCIES, ORDER
from ..systemd_ctl import RESTARTING_SUB_STATES

Status = Literal["ok", "backing-off", "gave-up", "waiting-for-dependency"]
ActionKind = Literal["restart", "reset-failed", "give-up", "reset-restarts"]
# Low-cardinality reason codes, for aistack_heal_actions_total{service,action,reason}.
ReasonCode = Literal[
    "unhealthy", "failed", "inactive", "probe", "dependency-recovered", "start-limit", "steady"
]

SERVICE_ORDER: tuple[str, ...] = ORDER
_SYSTEMD_BUSY_STATES = ("activating", "deactivating", "reloading")
# A dependent systemd stopped with its dependency is started by the agent only if it is
# still stopped this long after the dependency is back: systemd's own restart of the
# dependency starts it too, and the two must not race (seen in the testbed).
DEPENDENT_SETTLE = 5.0


# The knobs live in the config schema (agent.yaml's `heal:` section); durations in seconds.
HealPolicyConfig = HealConfig


@dataclass(frozen=True)
class Observation:
    """One service as observed now (stack watcher: systemd unit + container + probe)."""

    active_state: str
    sub_state: str = ""
    result: str = ""  # the unit's Result: success, exit-code, start-limit-hit, ...
    health: str = "unknown"  # healthy | unhealthy | starting | unknown (no healthcheck)
    probe_failures: int = 0  # the agent's own probe: failures in a row
    # Hard dependencies that were down while the failing probe ran (its miss may be theirs)
    deps_down: tuple[str, ...] = ()
    restarts: int = 0  # systemd's NRestarts: its automatic restarts since the counter reset
    should_run: bool = True  # enabled in the config and not stopped on purpose


@dataclass(frozen=True)
class ServiceHealState:
    """What the policy remembers about one service between rounds and agent restarts.

    Timestamps are wall-clock seconds since the epoch, so they survive a reboot.
    """

    status: Status = "ok"
    waiting_for: tuple[str, ...] = ()  # the dependencies it waits for
    restarts: tuple[float, ...] = ()  # our restarts inside give_up_window, oldest first
    next_attempt: float = 0.0  # no restart before this time
    reason: str = ""  # the last decision, for a person
    unhealthy_since: float | None = None  # when its health check started failing
    steady_since: float | None = None  # running well since, with restarts to forget


@dataclass(frozen=True)
class Action:
    """Something the caller does (or, for give-up, records): log `reason`, count
    aistack_heal_actions_total{service, action, reason=code}, run it."""

    service: str
    action: ActionKind  # reset-failed: `systemctl reset-failed` then restart
    code: ReasonCode
    reason: str

    @property
    def unit(self) -> str:
        return f"{self.service}.service"


@dataclass(frozen=True)
class _Problem:
    code: ReasonCode
    text: str


@dataclass
class _Round:
    """What this round learnt about services already decided (their dependents ask)."""

    down: dict[str, str] = field(default_factory=dict)  # service -> why it is down
    # Cleanly stopped and not meant to run: a person's stop (`systemctl stop postgres`,
    # `aistack down`). Starting a dependent would start it again (Requires=).
    stopped: set[str] = field(default_factory=set)


def decide(
    config: HealPolicyConfig,
    observations: Mapping[str, Observation],
    state: Mapping[str, ServiceHealState],
    now: float,
    rng: Callable[[], float],
    dependencies: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[Action], dict[str, ServiceHealState]]:
    """One round: the actions to take, in dependency order, and the new state.

    `dependencies`: each service's hard dependencies (the stack snapshot's `requires`,
    extra services' included); the core stack's own by default. Services come in the
    core's start order, then the others in the order observed (the catalogue's start
    order: a dependency is decided before its dependents). Services in `state` but not
    observed (disabled, say) keep their state untouched.
    """
    new_state = dict(state)
    actions: list[Action] = []
    if not config.enabled:
        return actions, new_state
    deps = DEPENDENCIES if dependencies is None else dependencies
    known = [s for s in SERVICE_ORDER if s in observations]
    others = [s for s in observations if s not in SERVICE_ORDER]
    round_ = _Round()
    for name in known + others:
        action, new_state[name] = _decide_one(
            config, name, observations[name], state.get(name, ServiceHealState()),
            now, rng, round_, tuple(deps.get(name, ())),
        )  # fmt: skip
        if action is not None:
            actions.append(action)
    return actions, new_state


def manual_reset(
    state: Mapping[str, ServiceHealState], service: str
) -> dict[str, ServiceHealState]:
    """`aistack restart SERVICE`: a person took over; forget its give-up and its count."""
    new_state = dict(state)
    new_state[service] = ServiceHealState(reason="reset by a manual start, stop or restart")
    return new_state


def reload_reset(state: Mapping[str, ServiceHealState]) -> dict[str, ServiceHealState]:
    """A config reload may have fixed what made us give up: every service starts afresh."""
    return {name: ServiceHealState(reason="reset by a config reload") for name in state}


def _decide_one(
    config: HealPolicyConfig,
    name: str,
    obs: Observation,
    prev: ServiceHealState,
    now: float,
    rng: Callable[[], float],
    round_: _Round,
    needs: tuple[str, ...] = (),
) -> tuple[Action | None, ServiceHealState]:
    window_start = now - config.give_up_window
    # A clock stepped backwards must not leave a backoff longer than the cap.
    st = replace(
        prev,
        restarts=tuple(t for t in prev.restarts if t > window_start),
        next_attempt=min(prev.next_attempt, now + config.backoff_max),
        steady_since=None,  # kept only on the way through _steady: any trouble ends it
    )
    if not obs.should_run:
        # A clean stop is a person's decision, except when systemd stopped the service
        # because a hard dependency failed (Requires=): it then stays stopped after the
        # dependency is back (a restart of the dependency only restarts running
        # dependents), so the policy remembers it (waiting-for-dependency) and starts it.
        deps_down = [d for d in needs if d in round_.down]
        stopped = obs.active_state == "inactive"
        if stopped and deps_down:
            round_.down[name] = f"stopped with {', '.join(deps_down)}"
            return None, replace(
                st,
                status="waiting-for-dependency",
                waiting_for=tuple(deps_down),
                unhealthy_since=None,
                reason=f"stopped by systemd with {', '.join(deps_down)} (Requires=); "
                "started again once it is back",
            )
        # A dependency that ended cleanly stopped was stopped on purpose: systemd stopped
        # this one first (Requires=) while it was still deactivating. The dependent stays
        # stopped with it; starting it would start the dependency again.
        on_purpose = [d for d in needs if d in round_.stopped]
        if on_purpose or not (stopped and st.status == "waiting-for-dependency"):
            if stopped:
                round_.stopped.add(name)
            reason = "not meant to run"
            if on_purpose:
                reason = f"not meant to run: {', '.join(on_purpose)} was stopped on purpose"
            return None, replace(
                st, status="ok", waiting_for=(), unhealthy_since=None, reason=reason
            )
        if st.waiting_for:  # just back: systemd may be about to start it itself
            back = ", ".join(st.waiting_for)
            return None, replace(
                st,
                waiting_for=(),
                next_attempt=now + DEPENDENT_SETTLE,
                reason=f"{back} is back; starting it in {format_duration(DEPENDENT_SETTLE)} "
                "unless systemd does",
            )
        if now < st.next_attempt:
            return None, st
        obs = replace(obs, should_run=True)  # still stopped: start it (below)
    if obs.sub_state in RESTARTING_SUB_STATES or obs.active_state in _SYSTEMD_BUSY_STATES:
        round_.down[name] = f"systemd is restarting it ({obs.active_state}/{obs.sub_state})"
        return None, replace(st, reason=f"{round_.down[name]}; waiting for systemd")

    unhealthy_since = st.unhealthy_since if obs.health == "unhealthy" else None
    if obs.health == "unhealthy" and unhealthy_since is None:
        unhealthy_since = now
    st = replace(st, unhealthy_since=unhealthy_since)
    problem = _problem(config, name, obs, unhealthy_since, now)
    failing = problem is not None or unhealthy_since is not None or obs.probe_failures > 0
    if problem is not None or obs.health == "starting" or unhealthy_since is not None:
        round_.down[name] = problem.text if problem else f"health {obs.health}"

    if not failing:
        if st.status == "gave-up":
            reason = "recovered by itself; healing resumes"
        elif st.status == "waiting-for-dependency":
            reason = "recovered with its dependencies"
        else:
            reason = "healthy" if obs.health == "healthy" else f"{obs.active_state}/{obs.sub_state}"
        st = replace(st, status="ok", waiting_for=(), reason=reason)
        return _steady(config, name, obs, st, prev.steady_since, now)
    if st.status == "gave-up":
        return None, st  # until a manual restart, a reload, or recovery
    # down now, or down while the probe that failed ran (back since: its miss may be theirs)
    deps_down = [d for d in needs if d in round_.down or d in obs.deps_down]
    waiting = st.status == "waiting-for-dependency"
    if problem is None and (deps_down or not waiting):
        return None, st  # unhealthy within its grace, or probes failing below the threshold
    if problem is None:  # its dependencies are back and it still fails, if less than before
        if unhealthy_since is not None:
            problem = _Problem("unhealthy", "health check failing")
        else:
            problem = _Problem("probe", f"probe failed {obs.probe_failures} times in a row")
    if deps_down:
        why = "; ".join(f"{d}: {round_.down.get(d, 'down while probed')}" for d in deps_down)
        return None, replace(
            st,
            status="waiting-for-dependency",
            waiting_for=tuple(deps_down),
            reason=f"{problem.text}; not restarting while a dependency is down ({why})",
        )
    # A failed unit gets reset-failed before its restart: besides clearing `failed`, it
    # resets systemd's start-limit counter, without which systemd refuses the restart
    # ("Start request repeated too quickly"). systemd 257 leaves Result at the first
    # failure's (exit-code) when the limit is hit, so Result alone cannot tell.
    start_limited = obs.active_state == "failed"
    if waiting:  # its failures were the dependency's: no backoff
        recovered = ", ".join(st.waiting_for)
        problem = _Problem(
            "dependency-recovered", f"{problem.text}, still after {recovered} recovered"
        )
    elif now < st.next_attempt:
        return None, replace(
            st,
            status="backing-off",
            reason=f"{problem.text}; backing off, next restart no sooner than in "
            f"{format_duration(round(st.next_attempt - now))}",
        )

    window = format_duration(config.give_up_window)
    if len(st.restarts) >= config.give_up_after:
        reason = (
            f"{problem.text}; gave up after {len(st.restarts)} restarts within {window}: "
            f"see journalctl -u {name}.service, fix the cause, then run "
            f"`aistack restart {name}` (or reload the config)"
        )
        return Action(name, "give-up", problem.code, reason), replace(
            st, status="gave-up", reason=reason
        )

    restarts = (*st.restarts, now)
    delay = _backoff(config, len(restarts), rng)
    kind: ActionKind = "reset-failed" if start_limited else "restart"
    verb = "reset-failed and restart" if kind == "reset-failed" else "restart"
    reason = (
        f"{problem.text}; {verb} ({len(restarts)} of {config.give_up_after} within {window}, "
        f"next no sooner than in {format_duration(round(delay))})"
    )
    return Action(name, kind, problem.code, reason), ServiceHealState(
        status="backing-off", restarts=restarts, next_attempt=now + delay, reason=reason
    )


def _problem(
    config: HealPolicyConfig,
    name: str,
    obs: Observation,
    unhealthy_since: float | None,
    now: float,
) -> _Problem | None:
    """What is wrong enough to act on, or None (a grace or a threshold not reached yet)."""
    unit = f"{name}.service"
    if obs.result == "start-limit-hit" and obs.active_state in ("failed", "inactive"):
        return _Problem(
            "start-limit", f"systemd stopped {unit} at its start limit (start-limit-hit)"
        )
    if obs.active_state == "failed":
        return _Problem("failed", f"{unit} failed ({obs.result or 'no result'})")
    if obs.active_state == "inactive":
        return _Problem("inactive", f"{unit} is inactive but should run")
    if obs.active_state != "active":
        return None
    if unhealthy_since is not None and now - unhealthy_since >= config.unhealthy_grace:
        return _Problem(
            "unhealthy",
            f"health check failing for {format_duration(round(now - unhealthy_since))} "
            f"(grace {format_duration(config.unhealthy_grace)})",
        )
    if obs.probe_failures >= config.probe_failures:
        return _Problem("probe", f"probe failed {obs.probe_failures} times in a row")
    return None


def _steady(
    config: HealPolicyConfig,
    name: str,
    obs: Observation,
    st: ServiceHealState,
    steady_since: float | None,
    now: float,
) -> tuple[Action | None, ServiceHealState]:
    """A service not failing: once it has run well for `forget_restarts_after`, systemd's
    restart counter is reset, so its next crash is restarted at once again (rule 7)."""
    running = obs.active_state == "active" and obs.health in ("healthy", "unknown")
    if not running or obs.restarts <= 0 or config.forget_restarts_after <= 0:
        return None, st
    since = steady_since if steady_since is not None and steady_since <= now else now
    if now - since < config.forget_restarts_after:
        return None, replace(st, steady_since=since)
    reason = (
        f"running well for {format_duration(config.forget_restarts_after)} after "
        f"{obs.restarts} restart{'s' if obs.restarts != 1 else ''} by systemd: its restart "
        "counter reset, so a next crash is restarted at once (RestartSteps)"
    )
    return Action(name, "reset-restarts", "steady", reason), st


def _backoff(config: HealPolicyConfig, restarts: int, rng: Callable[[], float]) -> float:
    """The delay after the `restarts`-th restart in the window: exponential, jittered,
    capped (the cap holds after jitter, so backoff_max is a promise)."""
    base = config.backoff_initial * config.backoff_factor ** min(max(restarts - 1, 0), 64)
    jittered = min(base, config.backoff_max) * (1 + config.jitter * (2 * rng() - 1))
    return max(0.0, min(jittered, config.backoff_max))
