"""`aistack update`: newer images, a restart, and a roll-back when the unit does not come
back healthy.

Per enabled service, in dependency order: pull the image its unit names (or, with
pull=False, take the image as it is now in local storage: images loaded with
`podman load` on an offline host), compare with the running container's image, restart
when it differs. Notify=healthy makes the restart job end only when the new container is
healthy; when it fails, the previous image is tagged back under the same name and the
service restarted on it. The report says what changed, what rolled back and why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from .. import podman_api, systemd_ctl
from ..config import AgentConfig
from .model import SERVICES, START_TIMEOUT, unit_of

log = structlog.get_logger(component="stack.update")


@dataclass
class UpdateReport:
    ok: bool = True
    updated: dict[str, str] = field(default_factory=dict)  # service -> new image id
    unchanged: list[str] = field(default_factory=list)
    rolled_back: dict[str, str] = field(default_factory=dict)  # service -> why
    failed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def update(
    config: AgentConfig, *, pull: bool = True, progress: Callable[[str], None] = lambda s: None
) -> UpdateReport:
    report = UpdateReport()
    socket = config.watch.podman_socket
    for spec in SERVICES:
        if not spec.settings(config.stack).enabled:
            continue
        name, unit = spec.name, unit_of(spec.name)
        try:
            container = podman_api.inspect_container(socket, name)
            if container is None:
                report.failed[name] = "no container: run aistack up first"
                report.ok = False
                continue
            ref, current = container.image_name, container.image
            if "@" in ref:
                report.unchanged.append(name)  # pinned by digest: nothing newer exists
                continue
            if pull:
                progress(f"pulling {ref}")
                podman_api.image_pull(socket, ref)
            latest = podman_api.image_id(socket, ref)
        except podman_api.PodmanApiError as exc:
            report.failed[name], report.ok = str(exc), False
            continue
        if latest is None or latest == current:
            report.unchanged.append(name)
            continue
        progress(f"restarting {name} on {latest[:12]} (waits until healthy)")
        outcome = systemd_ctl.restart(unit, START_TIMEOUT)
        if outcome.ok:
            report.updated[name] = latest
            continue
        why = f"did not come back healthy on {latest[:12]} ({outcome.result})"
        log.warning("update failed; rolling back", service=name, image=latest, why=why)
        progress(f"{name} {why}; rolling back to {current[:12]}")
        try:
            podman_api.image_tag(socket, current, ref)
        except podman_api.PodmanApiError as exc:
            report.failed[name], report.ok = f"{why}; roll-back failed: {exc}", False
            continue
        again = systemd_ctl.restart(unit, START_TIMEOUT)
        report.ok = False
        if again.ok:
            report.rolled_back[name] = why
        else:
            report.failed[name] = f"{why}; still failing on the previous image ({again.result})"
    return report
