"""Snapshots and watchers: immutable state, and 'unavailable' with a reason, never a crash.

Podman and systemd are really absent on this development host, so these tests see the
real 'unavailable' paths; the testbed e2e suite covers the available ones. The GPU
watcher has its own tests (tests/gpu/, with the fake NVML module).
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from pathlib import Path

import pytest

from agent.config import WatchConfig
from agent.snapshot import SnapshotStore, SourceSnapshot, SourceState
from agent.watchers import PodmanWatcher, SystemdWatcher, Watcher


def test_snapshot_is_deeply_immutable() -> None:
    snap = SourceSnapshot("x", SourceState.OK, data={"gpus": [{"index": 0}]})
    with pytest.raises(AttributeError):
        snap.state = SourceState.UNAVAILABLE  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.data["gpus"] = []  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.data["gpus"][0]["index"] = 1
    assert isinstance(snap.data["gpus"], tuple)


async def test_store_views_are_stable_and_wait_for_times_out() -> None:
    store = SnapshotStore()
    view = store.latest()
    store.publish(SourceSnapshot("a", SourceState.OK))
    assert "a" not in view and "a" in store.latest()  # an old view never changes under a reader
    assert await store.wait_for(["a"], within=0.1)
    assert not await store.wait_for(["a", "b"], within=0.1)

    async def later() -> None:
        await asyncio.sleep(0.05)
        store.publish(SourceSnapshot("b", SourceState.UNAVAILABLE, reason="r"))

    task = asyncio.create_task(later())
    assert await store.wait_for(["a", "b"], within=2)
    await task


def _config(**kw: object) -> WatchConfig:
    return WatchConfig(**{"interval": 2.0, "timeout": 0.5, **kw})  # type: ignore[arg-type]


async def test_podman_socket_missing_names_the_path(tmp_path: Path) -> None:
    sock = tmp_path / "podman.sock"
    snap = await PodmanWatcher(SnapshotStore(), _config(podman_socket=sock)).poll_once()
    assert snap.state is SourceState.UNAVAILABLE
    assert snap.reason is not None and str(sock) in snap.reason and "podman.socket" in snap.reason


async def test_podman_path_that_is_not_a_socket(tmp_path: Path) -> None:
    sock = tmp_path / "podman.sock"
    sock.write_text("")
    snap = await PodmanWatcher(SnapshotStore(), _config(podman_socket=sock)).poll_once()
    assert snap.reason == f"{sock} exists but is not a socket"


async def test_podman_socket_that_does_not_speak_the_api(tmp_path: Path) -> None:
    """Fault injection: a socket that accepts and closes, as a crashing podman would."""
    path = Path(tempfile.mkdtemp(prefix="pd")) / "podman.sock"
    server = await asyncio.start_unix_server(lambda r, w: w.close(), path=str(path))
    try:
        snap = await PodmanWatcher(SnapshotStore(), _config(podman_socket=path)).poll_once()
    finally:
        server.close()
    assert snap.state is SourceState.UNAVAILABLE
    assert snap.reason is not None and snap.reason.startswith(
        f"Podman API at {path} did not answer"
    )


async def test_podman_socket_that_hangs_times_out(tmp_path: Path) -> None:
    """Fault injection: a socket that accepts and never answers."""
    path = Path(tempfile.mkdtemp(prefix="pd")) / "podman.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    try:
        snap = await PodmanWatcher(SnapshotStore(), _config(podman_socket=path)).poll_once()
    finally:
        listener.close()
    assert snap.state is SourceState.UNAVAILABLE
    assert snap.reason is not None
    assert "no answer within 500ms" in snap.reason or "did not answer" in snap.reason


async def test_systemd_without_dbus_is_unavailable_with_reason() -> None:
    snap = await SystemdWatcher(SnapshotStore(), _config(timeout=1.5)).poll_once()
    assert snap.state is SourceState.UNAVAILABLE
    assert snap.reason is not None and "D-Bus" in snap.reason


class _Raising(Watcher):
    source = "raising"

    async def poll(self):  # type: ignore[no-untyped-def]
        raise KeyError("surprise")


class _Hanging(Watcher):
    source = "hanging"

    async def poll(self):  # type: ignore[no-untyped-def]
        await asyncio.sleep(3600)


async def test_a_poll_that_raises_or_hangs_becomes_unavailable_and_the_loop_goes_on() -> None:
    store = SnapshotStore()
    raising, hanging = (
        _Raising(store, _config(interval=0.2, timeout=0.1)),
        _Hanging(store, _config(interval=0.2, timeout=0.1)),
    )
    tasks = [asyncio.create_task(raising.run()), asyncio.create_task(hanging.run())]
    await asyncio.sleep(0.5)
    first = store.get("raising")
    await asyncio.sleep(0.3)
    for task in tasks:
        task.cancel()
    assert first is not None and first.reason == "KeyError: 'surprise'"
    again = store.get("raising")
    assert again is not None and again.taken_monotonic > first.taken_monotonic  # still polling
    hung = store.get("hanging")
    assert hung is not None and hung.reason == "no answer within 100ms"


async def test_reconfigure_polls_at_once() -> None:
    store = SnapshotStore()
    watcher = _Raising(store, _config(interval=60.0, timeout=0.1))
    task = asyncio.create_task(watcher.run())
    await asyncio.sleep(0.1)
    first = store.get("raising")
    watcher.reconfigure(_config(interval=30.0, timeout=0.1))
    await asyncio.sleep(0.1)
    task.cancel()
    second = store.get("raising")
    assert first is not None and second is not None
    assert second.taken_monotonic > first.taken_monotonic
    assert watcher.config.interval == 30.0


class _WokenWhilePolling(Watcher):
    """Its first poll is interrupted by a wake-up (an event arriving mid-poll)."""

    source = "woken"
    polls = 0

    async def poll(self):  # type: ignore[no-untyped-def]
        self.polls += 1
        if self.polls == 1:
            self._wake.set()  # e.g. systemd's JobRemoved while D-Bus is being read
            await asyncio.sleep(0.05)
        return SourceState.OK, None, {"poll": self.polls}


async def test_a_wake_up_during_a_poll_causes_another_poll() -> None:
    """Seen in the testbed: the snapshot kept a unit's job from the middle of a restart
    for a whole interval because the wake-up arrived during the poll and was cleared."""
    store = SnapshotStore()
    watcher = _WokenWhilePolling(store, _config(interval=60.0, timeout=1.0))
    task = asyncio.create_task(watcher.run())
    await asyncio.sleep(0.3)
    task.cancel()
    snap = store.get("woken")
    assert snap is not None and snap.data["poll"] == 2
