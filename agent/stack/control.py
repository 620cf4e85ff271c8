"""The agent's handle on the stack: one apply at a time, service actions, in threads.

The API and the CLI (through the API) use this; the blocking work (pystemd, the Podman
socket) runs in a worker thread so the event loop keeps serving and pinging the watchdog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import AgentConfig
from . import extra, models, secrets
from .actuator import ActionName, Actuator
from .apply import ApplyReport, apply
from .model import SERVICES

if TYPE_CHECKING:
    from .update import UpdateReport

ACTIONS = ("start", "stop", "restart")


class Busy(Exception):
    pass


class UnknownService(Exception):
    pass


@dataclass(frozen=True)
class ServiceResult:
    service: str
    action: str
    ok: bool
    result: str
    active_state: str


class StackControl:
    def __init__(
        self,
        config: Callable[[], AgentConfig],
        changed: Callable[[], Awaitable[None]],
        taken_over: Callable[[str], None] = lambda service: None,
        actuator: Actuator | None = None,
    ) -> None:
        self._config = config
        # A person's restarts go through the one actuator: recorded and counted with the
        # healer's and the GPU rule's, and never at the same time as theirs.
        self._actuator = actuator or Actuator()
        # After an action, before it returns: the stack is looked at again, so /status
        # read right after says what the action left (not the state from before it).
        self._changed = changed
        # A person started, stopped or restarted a service: the healer starts afresh.
        self._taken_over = taken_over
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        """An apply, update, secret rotation or service action is running: the healer
        holds off, so it neither races the person's action nor restarts on top of it."""
        return self._lock.locked()

    async def apply(self, purge_data: bool = False) -> ApplyReport:
        if self._lock.locked():
            raise Busy("an apply or service action is already running")
        async with self._lock:
            try:
                return await asyncio.to_thread(apply, self._config(), purge_data=purge_data)
            finally:
                await self._changed()

    async def update(self, pull: bool = True) -> UpdateReport:
        if self._lock.locked():
            raise Busy("an apply, update or service action is already running")
        from .update import update  # loaded on the first update: most agents never run one

        async with self._lock:
            try:
                return await asyncio.to_thread(update, self._config(), pull=pull)
            finally:
                await self._changed()

    async def pull_model(self, name: str) -> str:
        base = self._config().gpu.ollama_url
        return await asyncio.to_thread(models.pull_all, base, name, lambda step: None)

    async def rotate_secret(self, name: str) -> list[ServiceResult]:
        """New value, stored in Podman, then the services that use it restarted in order."""
        config = self._config()
        async with self._lock:
            try:
                users = await asyncio.to_thread(
                    secrets.rotate, name, config.stack, config.watch.podman_socket
                )
                results = []
                for spec in SERVICES:
                    if spec.name in users and spec.settings(config.stack).enabled:
                        outcome = await self._actuator.act(
                            spec.name, "restart", "person", "secret-rotated",
                            f"aistack secrets rotate {name}",
                        )  # fmt: skip
                        result = ServiceResult(
                            spec.name, "restart", outcome.ok, outcome.result, outcome.active_state
                        )
                        results.append(result)
                return results
            finally:
                await self._changed()

    async def service(self, name: str, action: str) -> ServiceResult:
        stack = self._config().stack
        names = await asyncio.to_thread(extra.member_names, stack)  # core + stack.extra
        if name not in names:
            core = {s.name for s in SERVICES}
            why = f"disabled in stack.{name.replace('-', '_')}; " if name in core else ""
            raise UnknownService(f"no service {name!r} ({why}the stack has {', '.join(names)})")
        if action not in ACTIONS:
            raise UnknownService(f"no action {action!r}; one of {', '.join(ACTIONS)}")
        verb: ActionName = "start" if action == "start" else "stop" if action == "stop" \
            else "restart"  # fmt: skip
        self._taken_over(name)  # the healer forgets a give-up or a wait for a dependency
        async with self._lock:
            try:
                outcome = await self._actuator.act(
                    name, verb, "person", "manual", f"aistack {action} {name}"
                )
            finally:
                await self._changed()
        return ServiceResult(name, action, outcome.ok, outcome.result, outcome.active_state)
