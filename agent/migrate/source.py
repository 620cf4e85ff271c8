"""The old stack, as its compose project describes it: containers, data folders, secrets.

Everything here is read from the project (through agent.compose) and from Podman; nothing
is changed. Secret values live only in `OldStack.secrets`, in memory, until run.py writes
them into /etc/aistack/secrets (0600); they are never logged or printed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import podman_api
from ..compose.loader import Project
from ..compose.stackconfig import DATA_VOLUMES, ROLES, StackImport
from ..compose.values import scalar
from ..stack.model import SERVICES

# stack key -> (managed service name, container path of its data, managed volume name)
DATA_ROLES: Mapping[str, tuple[str, str, str]] = {
    r.key: (r.name, r.data, DATA_VOLUMES[r.key]) for r in ROLES if r.data is not None
}
# The order the old stack starts in (and stops in reverse), the managed stack's: the
# database first.
START_ORDER = tuple(spec.config_key for spec in SERVICES)
OLD_SUFFIX = "-pre-aistack"  # old containers are renamed, so the managed units' --replace
# of a same-named container (ollama, postgres...) cannot remove them: rollback starts them


class SourceError(Exception):
    """The project cannot be migrated as it is; the message names what and the fix."""


@dataclass(frozen=True)
class DataDir:
    role: str  # stack key
    service: str  # compose service
    path: Path  # the host folder the old container mounts
    volume: str  # the managed volume it goes into (copy mode)


@dataclass(frozen=True)
class OldContainer:
    role: str
    service: str  # compose service
    names: tuple[str, ...]  # what it may be called (container_name, project-service-1, ...)


@dataclass
class OldStack:
    project: str
    directory: Path
    files: list[Path]
    stack: dict[str, Any]  # {"stack": {...}} for agent.yaml
    data: dict[str, DataDir]
    containers: dict[str, OldContainer]
    secrets: dict[str, str] = field(repr=False)  # file in /etc/aistack/secrets -> value
    missing_secrets: list[str] = field(default_factory=list)
    postgres: tuple[str, str] | None = None  # (database, user)

    def secret_names(self) -> list[str]:
        return sorted(self.secrets)


_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def from_project(project: Project, imported: StackImport, socket: Path) -> OldStack:
    """What `migrate` moves; raises SourceError when the project is not the seed's stack."""
    if not imported.recognised:
        raise SourceError(f"not the AI stack aistack manages: {imported.why}")
    data: dict[str, DataDir] = {}
    containers: dict[str, OldContainer] = {}
    for role, service in imported.services.items():
        svc = project.services[service]
        name = scalar(svc.get("container_name") or "")
        names = tuple(
            n for n in (name, f"{project.name}-{service}-1", f"{project.name}_{service}_1") if n
        )
        containers[role] = OldContainer(role, service, names)
        if role not in DATA_ROLES:
            continue
        target = DATA_ROLES[role][1]
        for vol in svc.get("volumes") or []:
            if vol.get("target") != target or not vol.get("source"):
                continue
            source = str(vol["source"])
            if vol.get("type") == "volume":
                spec = project.volumes.get(source) or {}
                source = scalar(spec.get("name") or f"{project.name}_{source}")
                source = str(_volume_path(socket, source))
            elif vol.get("type") != "bind":
                continue
            data[role] = DataDir(role, service, Path(source), DATA_ROLES[role][2])
    stack = imported.data
    missing = []
    pg = None
    if "postgres" in imported.services:
        section = stack["stack"]["postgres"]
        pg = (str(section["database"]), str(section["user"]))
        if not imported.secret_values.get("postgres-password"):
            missing.append(
                f"POSTGRES_PASSWORD of service {imported.services['postgres']}: PostgreSQL "
                "opens its existing data only with it (set it in the project's .env or "
                "environment)"
            )
    for key in stack["stack"].get("litellm", {}).get("provider_keys", []):
        if not imported.secret_values.get(key):
            missing.append(f"{key} (a LiteLLM provider key): not set in the project")
    return OldStack(
        project.name,
        project.directory,
        list(project.files),
        stack,
        data,
        containers,
        dict(imported.secret_values),
        missing,
        pg,
    )


def _volume_path(socket: Path, name: str) -> Path:
    """A compose named volume is a Podman volume of the same name (podman-compose)."""
    found = podman_api.volume_mountpoint(socket, name)
    if found is None:
        raise SourceError(f"the data volume {name} does not exist in Podman")
    return found


def find_containers(
    old: OldStack, listing: list[podman_api.ContainerSummary]
) -> dict[str, podman_api.ContainerSummary]:
    """role -> the old stack's container in Podman (by compose labels, else by name, or
    by the name it got when migrate stopped it)."""
    found: dict[str, podman_api.ContainerSummary] = {}
    for role, want in old.containers.items():
        for c in listing:
            labels = c.labels
            by_label = (
                labels.get("com.docker.compose.project") == old.project
                and labels.get("com.docker.compose.service") == want.service
            )
            by_name = c.name in want.names or c.name in {n + OLD_SUFFIX for n in want.names}
            if by_label or by_name:
                found[role] = c
                break
    return found
