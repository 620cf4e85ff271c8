"""A starting container's startup health check, run early: healthy within one
`watch.startup_check_interval` of answering, not in Podman's timer steps.

Why: Podman runs a startup check from a transient systemd timer with `AccuracySec=1s`,
so its runs land about a second apart whatever `HealthStartupInterval` says (250 ms is
accepted and still runs about every 1.1 s). PostgreSQL killed in the testbed answered
1.08 s after the kill and turned healthy at 3.1 s; with `Notify=healthy` its unit, and
LiteLLM behind it, waited that long. So after a stack container's `start` event the agent
asks Podman to run the check now (`GET /containers/{name}/healthcheck`, what `podman
healthcheck run` does), every interval, until it has passed.

Podman keeps the books: each run is recorded as its own timer's would be (health log,
`health_status` event, the startup budget), and the first success starts the regular
check's timer, as a timer's run does. The agent never restarts or stops anything here,
and it spends at most a quarter of the container's `HealthStartupRetries` (each miss
counts there, and a container that spends it is restarted by Podman), at most
`MAX_TRIES` runs. Only containers that have a startup check and still say `starting`
are checked; a new start of the same container replaces the run before it; `died`,
`stop`, `remove` or a `healthy` event end it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from .. import podman_api

log = structlog.get_logger(component="startup-checks")

MAX_TRIES = 20  # 5 s at the default 250 ms; Podman's own timer goes on after that
BUDGET_SHARE = 4  # at most 1/4 of HealthStartupRetries: Podman keeps most of its budget
CALL_TIMEOUT = 40.0  # a run waits for the check itself (HealthStartupTimeout, <= 30 s)
_ENDS = frozenset({"died", "stop", "remove", "cleanup"})

Inspect = Callable[[Path, str, float], podman_api.Container | None]
RunCheck = Callable[[Path, str, float], str | None]


def tries_for(retries: int | None) -> int:
    """How many early runs a container's startup budget allows (0: none, no check)."""
    if retries is None:
        return 0
    if retries == 0:  # no limit: Podman never restarts it for misses
        return MAX_TRIES
    return min(MAX_TRIES, retries // BUDGET_SHARE)


class StartupChecks:
    """One early-check task per starting container of the stack (called on the loop)."""

    def __init__(
        self,
        socket: Path,
        interval: float,
        inspect: Inspect = podman_api.inspect_container,
        run_check: RunCheck = podman_api.container_healthcheck,
    ) -> None:
        self.socket = Path(socket)
        self.interval = interval  # 0: off
        self._inspect = inspect
        self._run_check = run_check
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def on_event(self, name: str, action: str, health: str | None = None) -> None:
        """A stack container's event: a start begins early checks, an end stops them."""
        if action == "start":
            self.cancel(name)
            if self.interval > 0:
                task = asyncio.get_running_loop().create_task(
                    self._hasten(name), name=f"startup-check.{name}"
                )
                self._tasks[name] = task
                task.add_done_callback(functools.partial(self._done, name))
        elif action in _ENDS or (action == "health_status" and health == "healthy"):
            self.cancel(name)

    def cancel(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()

    def close(self) -> None:
        for name in list(self._tasks):
            self.cancel(name)

    @property
    def running(self) -> frozenset[str]:
        return frozenset(self._tasks)

    def _done(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]
        if not task.cancelled() and task.exception() is not None:
            log.error("startup check failed", container=name, error=repr(task.exception()))

    async def _hasten(self, name: str) -> None:
        began = time.monotonic()
        runs, outcome = 0, "cancelled"  # by a healthy event, an end or a new start
        try:
            try:
                ctr = await asyncio.to_thread(self._inspect, self.socket, name, CALL_TIMEOUT)
            except podman_api.PodmanApiError as exc:
                outcome = f"refused: {exc}"
                return
            if ctr is None or not ctr.running or ctr.health != "starting":
                outcome = "not starting"  # gone, no health check, or passed already
                return
            tries = tries_for(ctr.startup_retries)
            if not tries:
                outcome = "no budget"
                return
            outcome = "cancelled"
            for _ in range(tries):
                await asyncio.sleep(self.interval)
                try:
                    status = await asyncio.to_thread(
                        self._run_check, self.socket, name, CALL_TIMEOUT
                    )
                except podman_api.PodmanApiError as exc:
                    outcome = f"refused: {exc}"
                    return
                runs += 1
                if status is None:
                    outcome = "gone"  # stopped or removed meanwhile
                    return
                if status != "starting":
                    outcome = status  # healthy; unhealthy: the regular check's say now
                    return
            outcome = "window spent"  # Podman's own timer goes on
        finally:
            log.info(
                "early startup checks",
                container=name,
                outcome=outcome,
                runs=runs,
                after_s=round(time.monotonic() - began, 3),
            )
