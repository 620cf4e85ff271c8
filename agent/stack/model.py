"""The stack's catalogue: what a service of the stack is, in one place.

Names, units, templates, ports, volumes, start order, hard dependencies and the job
timeouts live here, with `enabled(stack)`, the one filter for "the services this config
runs". Everything else imports this module; it imports only the config types, so it can
sit under every other module of the agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..config import LitellmConfig, OllamaConfig, OpenWebuiConfig, PostgresConfig, StackConfig

ServiceSettings = OllamaConfig | OpenWebuiConfig | LitellmConfig | PostgresConfig

START_TIMEOUT = 900.0  # seconds a start job may take: the first start may pull large images
STOP_TIMEOUT = 120.0


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the stack: its template, config section and container port."""

    name: str
    config_key: str
    template: str
    port: int
    volume: str | None
    proxied: bool  # gets Traefik labels in proxy mode

    @property
    def unit(self) -> str:
        return unit_of(self.name)

    def settings(self, stack: StackConfig) -> ServiceSettings:
        """This service's section of `stack:` (stack.ollama, stack.open_webui, ...)."""
        section: ServiceSettings = getattr(stack, self.config_key)
        return section


# In start order: a service comes after what it needs (stop order is the reverse).
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("postgres", "postgres", "postgres.container", 5432, "postgres-data.volume", False),
    ServiceSpec("ollama", "ollama", "ollama.container", 11434, "ollama-models.volume", False),
    ServiceSpec("litellm", "litellm", "litellm.container", 4000, None, True),
    ServiceSpec("open-webui", "open_webui", "open-webui.container", 8080,
                "open-webui-data.volume", True),
)  # fmt: skip
ORDER: tuple[str, ...] = tuple(s.name for s in SERVICES)
# Hard dependencies only: the units' Requires= (litellm.container). Wants= is not one.
DEPENDENCIES: Mapping[str, tuple[str, ...]] = {"litellm": ("postgres",)}
VOLUMES: Mapping[str, str] = {s.name: s.volume for s in SERVICES if s.volume}
NETWORK = "aistack.network"


def unit_of(service: str) -> str:
    return f"{service}.service"


def spec_of(name: str) -> ServiceSpec:
    """The service called `name`; KeyError for a name that is not the stack's."""
    for spec in SERVICES:
        if spec.name == name:
            return spec
    raise KeyError(name)


def enabled(stack: StackConfig) -> tuple[ServiceSpec, ...]:
    """The services this config runs, in start order."""
    return tuple(s for s in SERVICES if s.settings(stack).enabled)


def enabled_names(stack: StackConfig) -> tuple[str, ...]:
    return tuple(s.name for s in enabled(stack))


@dataclass(frozen=True)
class Member:
    """One service of the managed stack at run time: a core service, or an extra one from
    a compose project in `stack.extra` (agent/stack/extra.py builds those). The watcher,
    the healer, the control API, the CLI and doctor read this, never SERVICES alone."""

    name: str  # the unit's stem: postgres, tools-web
    container: str  # the container's name (a compose service's container_name)
    project: str | None = None  # the compose project; None for a core service
    requires: tuple[str, ...] = ()  # members it needs (Requires=): the healer waits for them
    wants: tuple[str, ...] = ()  # members it is ordered after without needing them
    oneshot: bool = False  # runs once to completion (service_completed_successfully)
    ports: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()  # the compose files it comes from (extras)

    @property
    def unit(self) -> str:
        return unit_of(self.name)


def core_members(stack: StackConfig) -> tuple[Member, ...]:
    """The enabled core services as members, in start order."""
    names = enabled_names(stack)
    return tuple(
        Member(
            s.name,
            s.name,
            requires=tuple(d for d in DEPENDENCIES.get(s.name, ()) if d in names),
            ports=tuple(s.settings(stack).ports),
        )
        for s in enabled(stack)
    )
