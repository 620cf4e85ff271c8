"""Checks of the host and its plumbing: the agent, Podman's socket, the stack network,
free disk."""

from __future__ import annotations

import os
from pathlib import Path

from .. import podman_api
from .context import (
    CALL_TIMEOUT_S,
    CONTAINERS_DIR,
    DISK_PROBLEM,
    DISK_WARN,
    NETWORK,
    Context,
    Finding,
    PodmanDown,
    human,
    ok,
    problem,
    warn,
)


def check_agent(ctx: Context) -> list[Finding]:
    """The agent's /status: whether it runs, and its own verdict."""
    doc = ctx.agent_status()
    if doc is None:
        return [
            problem("agent", f"the agent is not running (nothing answers at {ctx.api_base})",
                    "systemctl start aistack-agent; then: systemctl status aistack-agent")
        ]  # fmt: skip
    head = f"aistack-agent {doc.get('version', '?')} answers at {ctx.api_base}"
    if doc.get("state") == "ok":
        return [ok("agent", f"{head}, state ok")]
    reasons = "; ".join(map(str, doc.get("state_reasons") or [])) or "no reason given"
    if doc.get("state") == "failed":  # the agent gave up healing a service: a person acts
        fix = "fix the cause (journalctl -u SERVICE), then: aistack restart SERVICE"
        return [problem("agent", f"{head}, state failed: {reasons}", fix)]
    return [warn("agent", f"{head}, state {doc.get('state')}: {reasons}", "aistack status")]


def check_podman(ctx: Context) -> list[Finding]:
    """The libpod API socket answers: everything about containers goes through it."""
    sock = ctx.socket
    fix = "systemctl enable --now podman.socket"
    if not sock.exists():
        ctx.podman_error = f"no Podman API socket at {sock}"
        return [problem("podman", f"{ctx.podman_error} (podman.socket is not running)", fix)]
    try:
        status, data = podman_api.request_json(
            sock, "GET", f"{podman_api.API}/version", timeout=CALL_TIMEOUT_S
        )
    except podman_api.PodmanApiError as exc:
        ctx.podman_error = f"the Podman API at {sock} does not answer"
        text = str(exc)
        if "Permission denied" in text:
            fix = "run doctor as root: sudo aistack doctor"
        elif "timed out" in text:
            fix = "systemctl restart podman.socket; journalctl -u podman.service -n 50"
        return [problem("podman", text.split(" (is podman.socket", 1)[0], fix)]
    if status != 200 or not isinstance(data, dict):
        ctx.podman_error = f"the Podman API at {sock} answers {status}"
        fix = "systemctl restart podman.socket; journalctl -u podman.service -n 50"
        return [problem("podman", f"{ctx.podman_error}: {data}", fix)]
    version = data.get("Version") or (data.get("Components") or [{}])[0].get("Version") or "?"
    return [ok("podman", f"Podman {version} answers at {sock}")]


def check_network(ctx: Context) -> list[Finding]:
    """The stack's network exists, resolves names, and every running container is on it
    (the seed's `docker network inspect proxy`)."""
    enabled = ctx.enabled()
    if not enabled:
        return [ok("network", "no service enabled in stack: nothing to connect")]
    if ctx.podman_error is not None:
        raise PodmanDown(ctx.podman_error)
    status, data = podman_api.request_json(
        ctx.socket, "GET", f"{podman_api.API}/networks/{NETWORK}/json", timeout=CALL_TIMEOUT_S
    )
    inspect_it = f"podman network inspect {NETWORK}"
    if status == 404:
        return [
            problem("network", f"the network {NETWORK!r} does not exist: the containers "
                    "cannot reach each other by name",
                    f"aistack up (its aistack-network.service creates it); then: {inspect_it}")
        ]  # fmt: skip
    if status != 200 or not isinstance(data, dict):
        raise podman_api.PodmanApiError(f"network inspect {NETWORK} answered {status}: {data}")
    findings = []
    if not data.get("dns_enabled"):
        findings.append(
            problem("network", f"DNS is off on network {NETWORK!r}: containers cannot "
                    "resolve each other by name (ollama, litellm, postgres)",
                    f"aistack down; podman network rm {NETWORK}; aistack up (the stack's "
                    "network unit creates it with DNS on)")
        )  # fmt: skip
    attached = []
    for spec in enabled:
        container = ctx.inspect(spec.name)
        if container is None or not container.running:
            continue  # the services check reports it
        if NETWORK in container.networks:
            attached.append(spec.name)
            continue
        findings.append(
            problem("network", f"{spec.name} runs but is not attached to network {NETWORK!r}: "
                    "the others cannot reach it by name, nor it them",
                    f"aistack restart {spec.name} (its unit attaches it); check: {inspect_it}")
        )  # fmt: skip
    on = ", ".join(attached) or "no running container yet"
    return findings or [ok("network", f"{NETWORK}: DNS on; attached: {on}")]


def disk_finding(label: str, total: int, free: int, min_free: int = 0) -> Finding:
    """One filesystem: a warning under DISK_WARN free, a problem under DISK_PROBLEM or
    under `min_free` (backups refuse to start below it)."""
    share = free / total if total else 0.0
    head = f"{label}: {human(free)} free of {human(total)} ({share:.0%})"
    fix = "podman image prune; podman system df; old backups: aistack backup list"
    if share < DISK_PROBLEM or free < min_free:
        floor = f"; backups need {human(min_free)}" if free < min_free else ""
        return problem("disk", head + floor, fix)
    if share < DISK_WARN:
        return warn("disk", f"{head}: under {DISK_WARN:.0%}", fix)
    return ok("disk", head)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(ctx: Context, containers: Path = CONTAINERS_DIR) -> list[Finding]:
    """Free space where Podman keeps images and volumes, and where backups go: one finding
    per filesystem (a path not created yet counts on the filesystem that will hold it)."""
    backups = ctx.config.backups
    paths = [containers]
    if backups.enabled or backups.directory.exists():
        paths.append(backups.directory)
    groups: dict[int, list[Path]] = {}
    for path in paths:
        groups.setdefault(os.stat(_existing(path)).st_dev, []).append(path)
    findings = []
    for group in groups.values():
        st = os.statvfs(_existing(group[0]))
        min_free = backups.min_free if backups.enabled and backups.directory in group else 0
        label = " and ".join(map(str, group))
        total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        findings.append(disk_finding(label, total, free, min_free))
    return findings
