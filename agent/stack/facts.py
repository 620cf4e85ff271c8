"""What rendering needs to know about this host: Podman's and systemd's versions, the GPU.

The only module of the stack that reads the host for rendering (render.py is pure).

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
from .render import GpuKind, HostFacts, RenderError

CDI_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
CDI_HINT = "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"
DEFAULT_PODMAN = PodmanVersion(5, 0)  # the oldest Podman whose quadlet the templates target
DEFAULT_SYSTEMD = 254


def cdi_has_nvidia(dirs: tuple[Path, ...] = CDI_DIRS) -> bool:
    """True when a CDI spec for nvidia.com/gpu exists (what AddDevice=nvidia.com/gpu=all needs)."""
    for directory in dirs:
        for spec in sorted(directory.glob("*.y*ml")) + sorted(directory.glob("*.json")):
            try:
                if "nvidia.com/gpu" in spec.read_text(errors="replace"):
                    return True
            except OSError:
                continue
    return False


def resolve_gpu(
    wanted: str, cdi_dirs: tuple[Path, ...] = CDI_DIRS, kfd: Path = Path("/dev/kfd")
) -> GpuKind:
    """`stack.gpu` to what the host has; nvidia without a CDI spec is an error."""
    if wanted == "nvidia":
        if not cdi_has_nvidia(cdi_dirs):
            where = " or ".join(str(d) for d in cdi_dirs)
            raise RenderError(
                [
                    f"stack.gpu: nvidia needs a CDI spec for nvidia.com/gpu in {where}; "
                    f"create it with: {CDI_HINT}"
                ]
            )
        return "nvidia"
    if wanted == "amd":
        return "amd"
    if wanted == "auto":
        if cdi_has_nvidia(cdi_dirs):
            return "nvidia"
        return "amd" if kfd.exists() else "none"
    return "none"


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
