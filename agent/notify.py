"""sd_notify through pystemd.daemon: READY, STATUS, WATCHDOG, RELOADING, STOPPING.

Outside systemd (no NOTIFY_SOCKET) every call is a harmless no-op inside libsystemd.
The environment is never unset: the agent notifies for its whole life (watchdog, reload).
"""

from __future__ import annotations

import asyncio
import time

import structlog
from pystemd import daemon

log = structlog.get_logger(component="notify")


def _send(*states: str) -> None:
    try:
        daemon.notify(False, *states)
    except Exception as exc:  # a full or vanished socket must never stop the agent
        log.warning("sd_notify failed", error=str(exc), states=list(states))


def ready(status: str) -> None:
    _send("READY=1", f"STATUS={status}")


def status(text: str) -> None:
    _send(f"STATUS={text}")


def reloading() -> None:
    # systemd >= 253 (Type=notify-reload) wants MONOTONIC_USEC with RELOADING=1 to
    # tell this reload from an older one.
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    _send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading configuration")


def stopping() -> None:
    _send("STOPPING=1", "STATUS=stopping")


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when off."""
    usec = daemon.watchdog_enabled(False)
    return usec / 2 / 1_000_000 if usec > 0 else None


async def watchdog_loop(interval: float) -> None:
    """Ping the watchdog from the event loop itself.

    The ping is a coroutine on the loop, so it is sent only while the loop is running
    tasks: a blocked loop misses pings and systemd restarts the agent, as intended.
    """
    while True:
        _send("WATCHDOG=1")
        await asyncio.sleep(interval)
