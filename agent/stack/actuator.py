"""The one part that acts on the stack's services: start, stop, restart, reset-failed.

The healer, a person's action (StackControl: `aistack restart SERVICE`, a secret
rotation) and the GPU rule (an XID restarts Ollama) all act through one Actuator, so:
- two parts never act on the same service at once (one lock per service: a restart of
  a slow service does not hold another's);
- there is one record of who did what to which service and why (`recent`), and one
  count of it (`aistack_heal_actions_total{service,action,reason}`, `counts`);
- every part sees every action: listeners hear each one when it ends (the healer counts
  the GPU rule's restarts in its give-up window, the daemon wakes the probes).

Deploying (aistack up / update) is not routed here: those run under StackControl's own
lock, and the healer holds off while they run.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

import structlog

from .. import systemd_ctl
from .model import START_TIMEOUT, STOP_TIMEOUT, unit_of

log = structlog.get_logger(component="actuator")
By = Literal["healer", "person", "gpu"]
ActionName = Literal["start", "stop", "restart", "reset-failed", "give-up", "reset-restarts"]
KEEP = 20  # actions kept in `recent`


@dataclass(frozen=True)
class Act:
    """One action: by whom, on what, why (`code` is the low-cardinality label)."""

    service: str
    action: ActionName
    by: By
    code: str
    reason: str
    at: float
    result: str = ""  # systemd's job result (done, failed, timeout...), "failed: <why>"


class Actuator:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._busy: set[str] = set()
        self._recent: deque[Act] = deque(maxlen=KEEP)
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._listeners: list[Callable[[Act], None]] = []

    def listen(self, listener: Callable[[Act], None]) -> None:
        """Called (in the event loop) with each action once it has ended."""
        self._listeners.append(listener)

    @property
    def busy(self) -> frozenset[str]:
        """Services with an action running now."""
        return frozenset(self._busy)

    @property
    def recent(self) -> tuple[Act, ...]:
        """The latest actions, oldest first."""
        return tuple(self._recent)

    @property
    def counts(self) -> Mapping[tuple[str, str, str], int]:
        """(service, action, code) -> how many since the agent started."""
        return dict(self._counts)

    def last(self, service: str, by: By) -> Act | None:
        return next((a for a in reversed(self._recent) if a.service == service and a.by == by),
                    None)  # fmt: skip

    def note(self, service: str, action: ActionName, by: By, code: str, reason: str) -> Act:
        """A decision that runs no job (the healer giving up): recorded and counted."""
        act = Act(service, action, by, code, reason, self._clock(), result="recorded")
        self._record(act)
        self._ended(act)
        return act

    async def act(
        self,
        service: str,
        action: ActionName,
        by: By,
        code: str,
        reason: str,
        limit: float | None = None,
    ) -> systemd_ctl.JobOutcome:
        """Run the action through systemd, its job followed to its end. reset-failed is
        followed by a restart (it clears systemd's start limit first); reset-restarts is
        reset-failed alone, on a running unit (its restart counter). SystemdError
        propagates to the caller, after it is recorded."""
        act = Act(service, action, by, code, reason, self._clock())
        self._record(act)
        lock = self._locks.setdefault(service, asyncio.Lock())
        unit = unit_of(service)
        limit = limit or (STOP_TIMEOUT if action == "stop" else START_TIMEOUT)
        self._busy.add(service)
        try:
            async with lock:
                if action in ("reset-failed", "reset-restarts"):
                    await asyncio.to_thread(systemd_ctl.reset_failed, unit)
                if action == "reset-restarts":  # its restart counter only: no job
                    state = await asyncio.to_thread(systemd_ctl.unit_state, unit)
                    outcome = systemd_ctl.JobOutcome(
                        unit, action, "done", state.active_state, state.sub_state
                    )
                    act = self._finish(act, outcome.result)
                    return outcome
                job = {"start": systemd_ctl.start, "stop": systemd_ctl.stop}.get(
                    action, systemd_ctl.restart
                )
                outcome = await asyncio.to_thread(job, unit, limit)
            act = self._finish(act, outcome.result)
            return outcome
        except systemd_ctl.SystemdError as exc:
            act = self._finish(act, f"failed: {exc}")
            raise
        finally:
            self._busy.discard(service)
            self._ended(act)

    def _record(self, act: Act) -> None:
        self._recent.append(act)
        self._counts[(act.service, act.action, act.code)] += 1

    def _finish(self, act: Act, result: str) -> Act:
        done = replace(act, result=result)
        for i in range(len(self._recent) - 1, -1, -1):  # the entry in `recent`, if still kept
            if self._recent[i] is act:
                self._recent[i] = done
                break
        level = log.info if result == "done" else log.warning
        level("action finished", service=act.service, action=act.action, by=act.by,
              reason=act.reason, result=result)  # fmt: skip
        return done

    def _ended(self, act: Act) -> None:
        for listener in self._listeners:
            try:
                listener(act)
            except Exception:  # a listener's bug must not undo the action's record
                log.exception("actuator listener failed", service=act.service)
