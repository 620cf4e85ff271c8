"""The GPU rule: an application XID restarts Ollama, through the one actuator.

The GPU watcher only observes: each poll it publishes the XID events it drained, each
with a sequence number (`sources.gpu.data.xid.log`). This rule, run by the healer on
every round, takes the events it has not seen yet, asks RestartPolicy, and restarts
Ollama through the Actuator, so the restart is in the same record, metric and give-up
window as the healer's own (`by: gpu`, reason code `xid`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from .. import systemd_ctl
from ..config import GpuConfig, format_duration
from ..gpu.xid import XidEvent, xid_name
from ..snapshot import SourceSnapshot
from ..stack.actuator import Actuator

log = structlog.get_logger(component="heal.xid")
CODE = "xid"


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    message: str


class RestartPolicy:
    """Restart Ollama after a recoverable (application) XID: at most once per cooldown.

    Never a loop: a restart needs a new XID seen after the previous restart, and a second
    restart waits out gpu.restart_cooldown whatever happens. An XID that needs a GPU reset
    is not helped by restarting Ollama, so it never triggers one.
    """

    def __init__(self) -> None:
        self.last_restart: float | None = None

    def decide(
        self,
        new_events: Sequence[XidEvent],
        gpu_needs_reset: bool,
        config: GpuConfig,
        now: float,
    ) -> RestartDecision | None:
        if not config.restart_ollama_on_xid:
            return None
        recoverable = [e for e in new_events if e.xid in config.application_xid_set]
        if not recoverable:
            return None
        xids = ",".join(str(x) for x in sorted({e.xid for e in recoverable}))
        if gpu_needs_reset:
            return RestartDecision(
                False, f"XID {xids} seen, but the GPU needs a reset: not restarting Ollama"
            )
        if self.last_restart is not None and now - self.last_restart < config.restart_cooldown:
            since = format_duration(round(now - self.last_restart))
            return RestartDecision(
                False,
                f"XID {xids} again {since} after restarting Ollama: not restarting again "
                f"within gpu.restart_cooldown ({format_duration(config.restart_cooldown)})",
            )
        self.last_restart = now
        return RestartDecision(True, f"XID {xids} ({xid_name(recoverable[-1].xid)}): "
                               "restarting Ollama")  # fmt: skip


def _events(entries: Iterable[Mapping[str, Any]], after: int) -> tuple[list[XidEvent], int]:
    """The published log entries newer than `after`, as events; the highest seq seen."""
    events, seen = [], after
    for entry in entries:
        seq = int(entry.get("seq") or 0)
        if seq <= after:
            continue
        seen = max(seen, seq)
        xid, uuid = int(entry.get("xid") or 0), entry.get("uuid")
        source = str(entry.get("source") or "")
        events.append(XidEvent(xid, at=0.0, wall=0.0, source=source, uuid=uuid))
    return events, seen


def restart_view(actuator: Actuator, unit: str) -> dict[str, Any] | None:
    """The rule's last restart of `unit` as /status shows it under gpu.data.ollama.restart
    (last_at, reason, result): the GPU watcher reads it from the one record."""
    act = actuator.last(unit.removesuffix(".service"), "gpu")
    if act is None:
        return None
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(act.at))
    return {"last_at": when, "reason": act.reason, "result": act.result or "pending"}


class XidRule:
    """Decides on each new gpu snapshot; restarts run as tasks through the actuator."""

    def __init__(self, actuator: Actuator, clock: Callable[[], float] = time.monotonic) -> None:
        self.actuator = actuator
        self.policy = RestartPolicy()
        self._clock = clock
        self._seen = 0
        self._task: asyncio.Task[None] | None = None

    def observe(self, gpu: SourceSnapshot[Any] | None, config: GpuConfig) -> RestartDecision | None:
        if gpu is None:
            return None
        xid = gpu.data.get("xid") or {}
        new, self._seen = _events(xid.get("log") or (), self._seen)
        if not new:
            return None
        needs_reset = any(not g.get("healthy", True) for g in gpu.data.get("gpus") or ())
        decision = self.policy.decide(new, needs_reset, config, self._clock())
        if decision is None:
            return None
        log.warning("ollama restart on xid", restart=decision.restart, message=decision.message)
        if decision.restart:
            service = config.ollama_unit.removesuffix(".service")
            self._task = asyncio.create_task(self._restart(service, decision.message))
        return decision

    async def _restart(self, service: str, reason: str) -> None:
        with contextlib.suppress(systemd_ctl.SystemdError):  # recorded by the actuator
            await self.actuator.act(service, "restart", "gpu", CODE, reason)

    async def settle(self) -> None:
        """Wait for a restart this rule started (tests; the agent's stop)."""
        if self._task is not None:
            await asyncio.shield(self._task)
