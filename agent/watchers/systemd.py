"""systemd source: is the system manager reachable over D-Bus, and in what state.

Unit states come from the stack watcher and the D-Bus signals (unit_signals.py); this
reports systemd's version and SystemState, through the systemd gateway (systemd_ctl).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from .. import systemd_ctl
from ..snapshot import SourceState
from .base import SourceUnavailable, Watcher


class SystemdWatcher(Watcher):
    source = "systemd"

    async def poll(self) -> tuple[SourceState, str | None, dict[str, Any]]:
        try:
            state = await asyncio.to_thread(systemd_ctl.manager_state)
        except systemd_ctl.SystemdError as exc:
            raise SourceUnavailable(f"systemd not reachable over the system D-Bus: {exc}") from None
        # The source is ok when systemd answers; the host's own SystemState (often
        # "degraded" for one unrelated failed unit) is reported as data, not judged here.
        return SourceState.OK, None, dataclasses.asdict(state)
