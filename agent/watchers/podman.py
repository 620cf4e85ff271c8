"""Podman source: is the libpod API socket there and answering, and which version.

The stack issue extends this watcher with containers (events + reconcile); for now it
establishes reachability, which the agent reports in /status and metrics.
"""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

from .. import podman_api
from ..snapshot import SourceState
from .base import SourceUnavailable, Watcher


def _version(socket: Path, timeout: float) -> dict[str, Any]:
    status, info = podman_api.request_json(
        socket, "GET", f"{podman_api.API}/version", None, timeout
    )
    if status != 200 or not isinstance(info, dict):
        raise podman_api.PodmanApiError(f"GET /version answered {status}: {info}")
    return {
        "version": info.get("Version"),
        "api_version": info.get("ApiVersion"),
        "socket": str(socket),
    }


class PodmanWatcher(Watcher):
    source = "podman"

    async def poll(self) -> tuple[SourceState, str | None, dict[str, Any]]:
        socket = self.config.podman_socket
        try:
            mode = socket.stat().st_mode
        except FileNotFoundError:
            raise SourceUnavailable(
                f"no Podman API socket at {socket} "
                "(enable it: systemctl enable --now podman.socket)"
            ) from None
        except OSError as exc:
            raise SourceUnavailable(f"cannot stat {socket}: {exc.strerror}") from None
        if not stat.S_ISSOCK(mode):
            raise SourceUnavailable(f"{socket} exists but is not a socket")
        try:
            data = await asyncio.to_thread(_version, socket, self.config.timeout)
        except Exception as exc:
            raise SourceUnavailable(f"Podman API at {socket} did not answer: {exc}") from None
        return SourceState.OK, None, data
