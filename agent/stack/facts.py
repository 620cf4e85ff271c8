"""What rendering needs to know about this host: Podman's and systemd's versions, the GPU.

Asked once per render/apply: Podman through its API socket (the agent cannot run the
podman CLI), falling back to `podman --version` for the CLI run by hand; systemd through
`systemctl --version`. `stack.podman_version` pins the target instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .. import podman_api
from ..config import AgentConfig
from ..quadlet.keys import PodmanVersion
from .render import HostFacts, resolve_gpu

DEFAULT_PODMAN = PodmanVersion(5, 0)  # the oldest Podman whose quadlet the templates target
DEFAULT_SYSTEMD = 254


def podman_version(socket: Path, pinned: str) -> PodmanVersion:
    if pinned != "auto":
        return PodmanVersion.parse(pinned)
    try:
        status, info = podman_api.request_json(socket, "GET", f"{podman_api.API}/version", None, 5)
        if status == 200 and isinstance(info, dict) and info.get("Version"):
            return PodmanVersion.parse(str(info["Version"]))
    except (podman_api.PodmanApiError, ValueError):
        pass
    podman = shutil.which("podman")
    if podman:
        try:
            out = subprocess.run([podman, "--version"], capture_output=True, text=True, timeout=10)
            found = PodmanVersion.from_podman_output(out.stdout)
            if found:
                return found
        except (OSError, subprocess.TimeoutExpired):
            pass
    return DEFAULT_PODMAN


def systemd_version() -> int:
    try:
        out = subprocess.run(
            ["systemctl", "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return DEFAULT_SYSTEMD
    match = re.match(r"systemd (\d+)", out)
    return int(match.group(1)) if match else DEFAULT_SYSTEMD


def host_facts(config: AgentConfig) -> HostFacts:
    """Raises RenderError when the config asks for what the host lacks (nvidia, no CDI)."""
    gpu = resolve_gpu(config.stack.gpu)
    return HostFacts(
        podman_version(config.watch.podman_socket, config.stack.podman_version),
        systemd_version(),
        gpu,
    )
