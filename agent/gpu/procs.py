"""Which container a GPU process belongs to, from its cgroup.

NVML and nvidia-smi report host PIDs; /proc/<pid>/cgroup names the container for
processes that Podman (`libpod-<id>.scope`, its monitor `libpod-conmon-<id>.scope`, the
cgroupfs manager's `libpod-<id>`) or Docker (`docker-<id>.scope`) started.
"""

from __future__ import annotations

import re
from pathlib import Path

_CONTAINER_RE = re.compile(r"(?:libpod|docker)-(?:conmon-)?([0-9a-f]{64})(?:\.scope)?(?:/|$)")


def container_id_from_cgroup(text: str) -> str | None:
    """The 64-hex container id named in a /proc/<pid>/cgroup file, if any."""
    for line in text.splitlines():
        # cgroup v2: "0::/machine.slice/libpod-<id>.scope/container"; v1: "N:ctrl:/path".
        path = line.split(":", 2)[-1]
        match = _CONTAINER_RE.search(path)
        if match:
            return match.group(1)
    return None


def container_of(pid: int, proc_root: Path = Path("/proc")) -> str | None:
    try:
        text = (proc_root / str(pid) / "cgroup").read_text()
    except OSError:  # gone already, or another PID namespace
        return None
    return container_id_from_cgroup(text)


def process_name(pid: int, proc_root: Path = Path("/proc")) -> str | None:
    try:
        return (proc_root / str(pid) / "comm").read_text().strip() or None
    except OSError:
        return None
