"""Container exits from the kernel: one pidfd per running container's main process.

Why besides Podman's `died` event: that event is written by the cleanup process conmon
starts after the exit, a whole `podman` process, 100-200 ms on a small machine and more
under load. A pidfd (pidfd_open(2), Linux >= 5.3) becomes readable the moment its
process exits, before anyone reaps it, and the event loop watches it like a socket
(`add_reader`): no thread, no polling. It says only "this process ended"; the stack
watcher shows that at once (a patched snapshot) and polls, as it does on an event.

The PIDs come from the stack watcher's own poll (the container's State.Pid, a host PID:
the agent runs in the host's PID namespace). A pidfd names one process, so a PID reused
later cannot be mistaken for it; a process already gone when its pidfd is opened is an
exit too. Where pidfds are not available (an old kernel, a seccomp filter), nothing is
watched and the Podman event stream alone does the job, as before.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger(component="watch.exits")


class ExitWatch:
    """Calls `on_exit(service, container_id)` once when a followed process ends."""

    def __init__(self, on_exit: Callable[[str, str], None]) -> None:
        self.on_exit = on_exit
        self._followed: dict[str, tuple[str, int, int]] = {}  # service -> (cid, pid, fd)
        self._unavailable: str | None = None

    @property
    def followed(self) -> Mapping[str, tuple[str, int]]:
        """service -> (container id, pid) of each process watched now."""
        return {name: (cid, pid) for name, (cid, pid, _) in self._followed.items()}

    def follow(self, running: Mapping[str, tuple[str, int]]) -> None:
        """Watch exactly these: service -> (container id, main PID) of each running
        container. Others are dropped; a new container or PID replaces the old watch.
        Call from the event loop."""
        for name, (cid, pid, _) in list(self._followed.items()):
            if running.get(name) != (cid, pid):
                self._drop(name)
        for name, (cid, pid) in running.items():
            if name in self._followed or pid <= 0 or self._unavailable:
                continue
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:  # it ended between the inspect and now
                asyncio.get_running_loop().call_soon(self._report, name, cid)
                continue
            except (OSError, AttributeError) as exc:  # no pidfds here: events only
                self._unavailable = str(exc)
                log.info("process exits not watched (no pidfd_open)", error=str(exc))
                return
            self._followed[name] = (cid, pid, fd)
            asyncio.get_running_loop().add_reader(fd, self._exited, name)

    def close(self) -> None:
        for name in list(self._followed):
            self._drop(name)

    def _exited(self, name: str) -> None:
        entry = self._followed.get(name)
        if entry is None:
            return
        self._drop(name)
        self._report(name, entry[0])

    def _report(self, name: str, cid: str) -> None:
        log.debug("process exited", service=name, container=cid[:12])
        try:
            self.on_exit(name, cid)
        except Exception:
            log.exception("exit consumer failed", service=name)

    def _drop(self, name: str) -> None:
        fd = self._followed.pop(name)[2]
        loop = asyncio.get_running_loop()
        loop.remove_reader(fd)
        os.close(fd)
