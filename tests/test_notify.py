"""sd_notify messages, received on a real AF_UNIX datagram socket (NOTIFY_SOCKET)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from agent import notify

from .conftest import NotifySocket


def test_ready_carries_status(notify_socket: NotifySocket) -> None:
    notify.ready("ok: podman ok; API on 127.0.0.1:9200")
    assert notify_socket.receive(2) == {
        "READY": "1",
        "STATUS": "ok: podman ok; API on 127.0.0.1:9200",
    }


def test_status(notify_socket: NotifySocket) -> None:
    notify.status("degraded: podman unavailable")
    assert notify_socket.receive(2) == {"STATUS": "degraded: podman unavailable"}


def test_reloading_has_monotonic_usec(notify_socket: NotifySocket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notify.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    msg = notify_socket.receive(2)
    assert msg is not None and msg["RELOADING"] == "1"
    assert before <= int(msg["MONOTONIC_USEC"]) <= after


def test_stopping(notify_socket: NotifySocket) -> None:
    notify.stopping()
    msg = notify_socket.receive(2)
    assert msg is not None and msg["STOPPING"] == "1"


def test_no_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notify.ready("x")  # must not raise
    notify.status("x")


def test_watchdog_interval_is_half_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert notify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert notify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert notify.watchdog_interval() is None


async def test_watchdog_pings_stop_while_the_loop_is_blocked(notify_socket: NotifySocket) -> None:
    """Fault injection: block the event loop; no WATCHDOG=1 may be sent meanwhile."""
    task = asyncio.create_task(notify.watchdog_loop(0.1))
    await asyncio.sleep(0.35)
    before = _drain(notify_socket)
    assert before >= 3
    time.sleep(1.0)  # noqa: ASYNC251 - blocking the loop is the fault under test: the ping task cannot run
    blocked = _drain(notify_socket)
    await asyncio.sleep(0.35)
    after = _drain(notify_socket)
    task.cancel()
    assert blocked == 0, f"{blocked} pings while the loop was blocked"
    assert after >= 3


def _drain(ns: NotifySocket) -> int:
    count = 0
    ns.sock.setblocking(False)
    try:
        while True:
            try:
                if b"WATCHDOG=1" in ns.sock.recv(4096):
                    count += 1
            except BlockingIOError:
                return count
    finally:
        ns.sock.settimeout(0.2)
