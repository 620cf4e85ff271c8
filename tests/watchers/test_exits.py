"""Process exits from the kernel (pidfds), with real processes: a killed one is reported
at once and once, a replaced one is no longer watched, one already gone is reported."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from agent.watchers.exits import ExitWatch

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no pidfd_open here")


class Exits:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.event = asyncio.Event()

    def __call__(self, service: str, cid: str) -> None:
        self.seen.append((service, cid))
        self.event.set()

    async def next(self, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            await self.event.wait()
        self.event.clear()


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "600"])


async def test_a_killed_process_is_reported_once() -> None:
    exits = Exits()
    watch = ExitWatch(exits)
    proc, other = sleeper(), sleeper()
    try:
        watch.follow({"ollama": ("c1", proc.pid), "litellm": ("c2", other.pid)})
        proc.kill()
        await exits.next()
        assert exits.seen == [("ollama", "c1")]
        assert set(watch.followed) == {"litellm"}  # done with the one that ended
        watch.follow({"ollama": ("c1", proc.pid), "litellm": ("c2", other.pid)})
        await asyncio.sleep(0.05)  # a stale poll's PID of a process already gone:
        assert exits.seen[-1] == ("ollama", "c1")  # reported (it is an exit), not watched
    finally:
        for p in (proc, other):
            p.kill()
            p.wait()
        watch.close()


async def test_a_new_container_replaces_the_watch_and_dropped_ones_are_closed() -> None:
    exits = Exits()
    watch = ExitWatch(exits)
    old, new = sleeper(), sleeper()
    try:
        watch.follow({"ollama": ("c1", old.pid)})
        watch.follow({"ollama": ("c2", new.pid)})
        assert watch.followed == {"ollama": ("c2", new.pid)}
        old.kill()
        old.wait()
        await asyncio.sleep(0.1)
        assert exits.seen == []  # the old process is not followed any more
        fds = len(os.listdir("/proc/self/fd"))
        watch.follow({})
        assert watch.followed == {}
        assert len(os.listdir("/proc/self/fd")) == fds - 1  # its pidfd closed
    finally:
        new.kill()
        new.wait()
        watch.close()
