"""systemd source: is the system manager reachable over D-Bus, and in what state.

The stack and healing issues add unit states (PropertiesChanged subscriptions); this
establishes the D-Bus connection and reports systemd's version and SystemState.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..snapshot import SourceState
from .base import SourceUnavailable, Watcher


def _manager_state() -> dict[str, Any]:
    from pystemd.systemd1 import Manager

    with Manager() as manager:
        version = manager.Manager.Version
        state = manager.Manager.SystemState
    return {
        "version": version.decode() if isinstance(version, bytes) else str(version),
        "system_state": state.decode() if isinstance(state, bytes) else str(state),
    }


class SystemdWatcher(Watcher):
    source = "systemd"

    async def poll(self) -> tuple[SourceState, str | None, dict[str, Any]]:
        try:
            data = await asyncio.to_thread(_manager_state)
        except ImportError as exc:
            raise SourceUnavailable(f"pystemd is not installed ({exc})") from None
        except Exception as exc:
            raise SourceUnavailable(f"systemd not reachable over the system D-Bus: {exc}") from None
        # The source is ok when systemd answers; the host's own SystemState (often
        # "degraded" for one unrelated failed unit) is reported as data, not judged here.
        return SourceState.OK, None, data
