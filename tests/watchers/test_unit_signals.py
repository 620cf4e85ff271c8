"""systemd's unit signals over D-Bus: matching, filtering, losing the bus and coming back.

The bus here is real: a private dbus-daemon, reached the way the agent reaches the system
bus (sd-bus honours DBUS_SYSTEM_BUS_ADDRESS). systemd itself cannot run on this host, so
the one fake is `FakeSystemd`, a fault-injection stand-in in its own process (plain
libsystemd through ctypes) that owns org.freedesktop.systemd1, answers Subscribe() and
emits the signals a test asks for; the bus is killed under it to inject the loss. Real
systemd 257 is in tests/e2e/test_event_sources.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import pytest

from agent.watchers.unit_signals import UnitSignals, unit_object_path

needs_dbus = pytest.mark.skipif(
    shutil.which("dbus-daemon") is None or ctypes.util.find_library("systemd") is None,
    reason="needs dbus-daemon and libsystemd (apt-get install dbus-daemon libsystemd0)",
)

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
"""

# Fault injection: a stand-in for systemd's bus side, in its own process (pystemd holds
# the GIL while it waits for a reply, so it cannot be answered from this process).
# stdin: "props <object path>" or "job <unit>"; stdout: "ready", "subscribed", "sent".
FAKE_SYSTEMD = r"""
import ctypes, os, select, sys
from ctypes import CFUNCTYPE, byref, c_char_p, c_int, c_uint32, c_void_p

lib = ctypes.CDLL(sys.argv[2])
for name in ("sd_bus_new", "sd_bus_set_address", "sd_bus_set_bus_client", "sd_bus_start",
             "sd_bus_request_name", "sd_bus_add_filter", "sd_bus_process", "sd_bus_get_fd",
             "sd_bus_flush", "sd_bus_message_is_method_call", "sd_bus_reply_method_return",
             "sd_bus_emit_signal"):
    getattr(lib, name).restype = c_int

def check(r, what):
    if r < 0:
        sys.exit(f"fake systemd: {what}: {os.strerror(-r)}")
    return r

def on_message(m, userdata, err):
    msg = c_void_p(m)
    if lib.sd_bus_message_is_method_call(
            msg, b"org.freedesktop.systemd1.Manager", b"Subscribe") > 0:
        check(lib.sd_bus_reply_method_return(msg, None), "reply")
        print("subscribed", flush=True)
        return 1
    return 0

handler = CFUNCTYPE(c_int, c_void_p, c_void_p, c_void_p)(on_message)
bus = c_void_p()
check(lib.sd_bus_new(byref(bus)), "new")
check(lib.sd_bus_set_address(bus, sys.argv[1].encode()), "address")
check(lib.sd_bus_set_bus_client(bus, 1), "client")
check(lib.sd_bus_start(bus), "start")
check(lib.sd_bus_add_filter(bus, None, handler, None), "filter")
check(lib.sd_bus_request_name(bus, b"org.freedesktop.systemd1", 0), "name")
print("ready", flush=True)
fd = lib.sd_bus_get_fd(bus)
while True:
    while check(lib.sd_bus_process(bus, None), "process") > 0:
        pass
    ready, _, _ = select.select([0, fd], [], [], 1.0)
    if 0 not in ready:
        continue
    data = os.read(0, 65536)
    if not data:
        break
    for line in data.decode().splitlines():
        kind, arg = line.split()
        if kind == "props":  # as systemd sends it: the unit's new state, by value
            check(lib.sd_bus_emit_signal(
                bus, arg.encode(), b"org.freedesktop.DBus.Properties", b"PropertiesChanged",
                b"sa{sv}as", c_char_p(b"org.freedesktop.systemd1.Unit"), c_uint32(3),
                c_char_p(b"ActiveState"), c_char_p(b"s"), c_char_p(b"failed"),
                c_char_p(b"SubState"), c_char_p(b"s"), c_char_p(b"failed"),
                c_char_p(b"NRestarts"), c_char_p(b"u"), c_uint32(3),
                c_uint32(0)), "emit")
        else:
            check(lib.sd_bus_emit_signal(
                bus, b"/org/freedesktop/systemd1", b"org.freedesktop.systemd1.Manager",
                b"JobRemoved", b"uoss", c_uint32(7), c_char_p(b"/org/freedesktop/systemd1/job/7"),
                c_char_p(arg.encode()), c_char_p(b"done")), "emit")
        check(lib.sd_bus_flush(bus), "flush")
        print("sent", flush=True)
"""


class PrivateBus:
    """A real dbus-daemon on a socket of its own, as the "system" bus of this test."""

    def __init__(self, folder: Path) -> None:
        self.socket = folder / "bus.sock"
        self.address = f"unix:path={self.socket}"
        self.config = folder / "bus.conf"
        self.config.write_text(BUS_CONFIG.format(path=self.socket))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={self.config}", "--nofork", "--print-address"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        if not self.proc.stdout.readline():  # printed once it listens
            raise RuntimeError("dbus-daemon did not start")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        self.proc = None


class FakeSystemd:
    """Fault injection (see FAKE_SYSTEMD): owns org.freedesktop.systemd1 on the bus."""

    def __init__(self, bus: PrivateBus) -> None:
        lib = ctypes.util.find_library("systemd") or "libsystemd.so.0"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FAKE_SYSTEMD, bus.address, lib],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.expect_sync() == "ready"

    def expect_sync(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    async def expect(self, line: str, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            got = await asyncio.to_thread(self.expect_sync)
        assert got == line

    async def send(self, kind: str, arg: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{kind} {arg}\n")
        self.proc.stdin.flush()
        await self.expect("sent")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def private_bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBus]:
    folder = Path(tempfile.mkdtemp(prefix="bus"))  # short: AF_UNIX paths are <= 108 bytes
    bus = PrivateBus(folder)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
    bus.start()
    yield bus
    bus.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def fake_systemd(private_bus: PrivateBus) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(private_bus)
    yield fake
    fake.stop()


class Recorder:
    def __init__(self) -> None:
        self.changes: list[str] = []
        self.props: list[dict[str, str]] = []
        self.states: list[tuple[bool, str | None]] = []
        self._changed = asyncio.Event()

    def on_change(self, unit: str, props: Mapping[str, str]) -> None:
        self.changes.append(unit)
        self.props.append(dict(props))
        self._changed.set()

    def on_state(self, connected: bool, reason: str | None) -> None:
        self.states.append((connected, reason))
        self._changed.set()

    async def until(self, probe: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not probe():
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def running(signals: UnitSignals) -> AsyncIterator[None]:
    task = asyncio.create_task(signals.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not signals.connected


def test_unit_object_path_is_sd_bus_escaping() -> None:
    from pystemd.dbuslib import path_encode

    for unit in ("ollama.service", "open-webui.service", "9lives.service", "a@b_c:d.service", ""):
        expected = path_encode(b"/org/freedesktop/systemd1/unit", unit.encode()).decode()
        assert unit_object_path(unit) == expected
    assert unit_object_path("ollama.service") == "/org/freedesktop/systemd1/unit/ollama_2eservice"


async def test_no_bus_is_reported_and_retried_with_bounded_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = Path(tempfile.mkdtemp(prefix="bus")) / "none.sock"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={missing}")
    rec, tries = Recorder(), []

    def units() -> set[str]:
        tries.append(1)  # read once per attempt
        return {"ollama.service"}

    signals = UnitSignals(units, rec.on_change, rec.on_state, 0.05, 0.2)
    async with running(signals):
        await asyncio.sleep(1.2)
    missing.parent.rmdir()
    assert len(rec.states) == 1  # reported once, not at every retry
    connected, reason = rec.states[0]
    assert not connected and reason is not None
    assert reason.startswith(
        f"systemd signals: cannot reach the system D-Bus at unix:path={missing}"
    )
    assert "No such file or directory" in reason and "systemctl status dbus.socket" in reason
    assert 4 <= len(tries) <= 12  # 0.05 + 0.1 + 0.2 + 0.2 ...: neither a tight loop nor stuck


@needs_dbus
async def test_a_bus_without_systemd_says_so(private_bus: PrivateBus) -> None:
    rec = Recorder()
    async with running(UnitSignals(lambda: {"a.service"}, rec.on_change, rec.on_state, 0.05, 0.2)):
        await rec.until(lambda: bool(rec.states))
    connected, reason = rec.states[0]
    assert not connected and reason is not None
    assert reason.startswith("systemd signals: cannot subscribe to systemd over D-Bus")
    assert "org.freedesktop.systemd1" in reason


@needs_dbus
async def test_signals_of_watched_units_reach_on_change(fake_systemd: FakeSystemd) -> None:
    rec = Recorder()
    signals = UnitSignals(lambda: {"a.service"}, rec.on_change, rec.on_state, 0.05, 0.2)
    async with running(signals):
        await fake_systemd.expect("subscribed")
        await rec.until(lambda: bool(rec.states))
        assert signals.connected
        await fake_systemd.send("props", unit_object_path("b.service"))  # not matched
        await fake_systemd.send("job", "c.service")  # matched, filtered out here
        await fake_systemd.send("props", unit_object_path("a.service"))
        await fake_systemd.send("job", "a.service")
        await rec.until(lambda: len(rec.changes) >= 2)
    assert rec.changes == ["a.service", "a.service"]
    # PropertiesChanged carries the new state (NRestarts is not one the stack reads);
    # JobRemoved carries none: the poll it wakes reads it
    assert rec.props == [{"ActiveState": "failed", "SubState": "failed"}, {}]
    assert rec.states == [(True, None)]


@needs_dbus
async def test_losing_the_bus_reconnects_and_subscribes_again(
    private_bus: PrivateBus, fake_systemd: FakeSystemd
) -> None:
    rec = Recorder()
    signals = UnitSignals(lambda: {"a.service"}, rec.on_change, rec.on_state, 0.05, 0.2)
    async with running(signals):
        await fake_systemd.expect("subscribed")
        await rec.until(lambda: rec.states == [(True, None)])
        private_bus.stop()  # `systemctl restart dbus`, first half
        fake_systemd.stop()
        await rec.until(lambda: len(rec.states) >= 2)
        assert not signals.connected
        private_bus.start()
        fake = FakeSystemd(private_bus)  # systemd is back on the new bus
        try:
            await fake.expect("subscribed")
            await rec.until(lambda: rec.states[-1] == (True, None))
            await fake.send("props", unit_object_path("a.service"))
            await rec.until(lambda: bool(rec.changes))
        finally:
            fake.stop()
    lost = rec.states[1]
    assert lost[0] is False and lost[1] is not None
    assert "D-Bus connection was lost" in lost[1] or "reading the system D-Bus failed" in lost[1]
    assert rec.changes == ["a.service"]


@needs_dbus
async def test_a_new_unit_subscribes_again_without_a_state_change(
    fake_systemd: FakeSystemd,
) -> None:
    rec, units = Recorder(), {"a.service"}
    signals = UnitSignals(lambda: units, rec.on_change, rec.on_state, 0.05, 0.2)
    async with running(signals):
        await fake_systemd.expect("subscribed")
        await rec.until(lambda: bool(rec.states))
        units.add("b.service")  # a reload enabled a service
        signals.refresh()
        await fake_systemd.expect("subscribed")
        # a wake-up for every unit: a change in the gap between the matches must not be lost
        await rec.until(lambda: sorted(rec.changes) == ["a.service", "b.service"])
        await fake_systemd.send("props", unit_object_path("b.service"))
        await rec.until(lambda: len(rec.changes) == 3)
    assert rec.changes[-1] == "b.service"
    assert rec.states == [(True, None)]


@needs_dbus
async def test_consumer_exceptions_do_not_stop_the_signals(fake_systemd: FakeSystemd) -> None:
    calls: list[str] = []
    got = asyncio.Event()

    def on_change(unit: str, props: Mapping[str, str]) -> None:
        calls.append(unit)
        if len(calls) == 2:
            got.set()
        raise RuntimeError("consumer bug")

    def on_state(connected: bool, reason: str | None) -> None:
        raise RuntimeError("consumer bug")

    signals = UnitSignals(lambda: {"a.service"}, on_change, on_state, 0.05, 0.2)
    async with running(signals):
        await fake_systemd.expect("subscribed")
        await fake_systemd.send("job", "a.service")
        await fake_systemd.send("props", unit_object_path("a.service"))
        async with asyncio.timeout(5):
            await got.wait()
        assert signals.connected
    assert calls == ["a.service", "a.service"]
    assert os.environ["DBUS_SYSTEM_BUS_ADDRESS"].startswith("unix:path=")
