"""The libpod event stream: parsing, de-duplication, since=, backoff and reconnects.

The happy path against real Podman is tests/e2e/test_event_sources.py. Here the lines are
the ones Podman 5.4.2 sent in the testbed, and the only server is a fault-injection one
(`FaultPodman`): a unix socket that speaks just enough HTTP/1.1 to send chunks, drop the
connection, answer garbage or an error, as a crashing or restarting podman would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from agent import podman_api
from agent.watchers import events
from agent.watchers.events import (
    ContainerEvent,
    LineSplitter,
    PodmanEventStream,
    SeenEvents,
    parse_event,
    since_param,
)
from agent.watchers.reconnect import Backoff

CID = "ce1f1a8472801cf3a4227e8a267fc43e7485d7d9abeb21ef2c8bc4508db37ab2"
# Verbatim from Podman 5.4.2 (GET /v4.0.0/libpod/events?stream=true in the testbed).
DIED = (
    '{"status":"died","id":"' + CID + '","from":"localhost/aistack-test/ollama:1",'
    '"Type":"container","Action":"died","Actor":{"ID":"' + CID + '","Attributes":'
    '{"containerExitCode":"137","image":"localhost/aistack-test/ollama:1",'
    '"io.aistack.test.recipe":"83a19a414b4acb74","name":"c1","podId":""}},"scope":"local",'
    '"time":1795714742,"timeNano":1795714742124979023}'
)
HEALTH = (
    '{"status":"health_status","id":"' + CID + '","from":"localhost/aistack-test/ollama:1",'
    '"Type":"container","Action":"health_status","Actor":{"ID":"' + CID + '","Attributes":'
    '{"image":"localhost/aistack-test/ollama:1","io.aistack.test.recipe":"83a19a414b4acb74",'
    '"name":"c1","podId":""}},"scope":"local","time":1795714736,'
    '"timeNano":1795714736091297521,"HealthStatus":"healthy"}'
)
START = (
    '{"status":"start","id":"' + CID + '","from":"localhost/aistack-test/ollama:1",'
    '"Type":"container","Action":"start","Actor":{"ID":"' + CID + '","Attributes":'
    '{"image":"localhost/aistack-test/ollama:1","io.aistack.test.recipe":"83a19a414b4acb74",'
    '"name":"c1","podId":""}},"scope":"local","time":1795714736,'
    '"timeNano":1795714736017845211}'
)


# --------------------------------------------------------------------------- parsing


def test_parse_real_podman_lines() -> None:
    died = parse_event(DIED)
    assert died == ContainerEvent(CID, "c1", "died", 1795714742124979023, exit_code=137)
    health = parse_event(HEALTH.encode())
    assert health is not None and (health.action, health.health) == ("health_status", "healthy")
    assert health.exit_code is None
    start = parse_event(START)
    assert start is not None and (start.action, start.name, start.health) == ("start", "c1", None)


def test_parse_skips_blank_and_other_types_and_refuses_garbage() -> None:
    assert parse_event(b"") is None and parse_event("  \r") is None
    image = {"Type": "image", "Action": "pull", "Actor": {"ID": "x"}, "timeNano": 1}
    assert parse_event(json.dumps(image)) is None
    for garbage in ("not json", "[1, 2]", '{"Type":"container"}', '{"Type":"container",'):
        with pytest.raises(ValueError):
            parse_event(garbage)


def test_parse_without_timenano_uses_time_and_a_bad_exit_code_is_none() -> None:
    obj = json.loads(DIED)
    del obj["timeNano"]
    obj["Actor"]["Attributes"]["containerExitCode"] = "n/a"
    event = parse_event(json.dumps(obj))
    assert event is not None
    assert event.time_nano == 1795714742 * 10**9 and event.exit_code is None


def test_line_splitter_joins_chunks_and_splits_several_lines() -> None:
    lines = LineSplitter()
    data = f"{DIED}\n{HEALTH}\n{START}\n".encode()
    got: list[bytes] = []
    for i in range(0, len(data), 37):  # chunk borders fall anywhere, mid-line included
        got += lines.feed(data[i : i + 37])
    assert [parse_event(x) for x in got] == [
        parse_event(DIED),
        parse_event(HEALTH),
        parse_event(START),
    ]
    assert lines.pending == 0
    assert lines.feed(b"partial") == [] and lines.pending == 7


def test_line_splitter_drops_oversized_lines_and_keeps_the_next() -> None:
    lines = LineSplitter(limit=16)
    assert lines.feed(b"x" * 10) == []
    assert lines.feed(b"y" * 10) == []  # now over the limit: dropped up to its newline
    assert lines.pending == 0 and lines.oversized == 1
    assert lines.feed(b"zzz\nok\n") == [b"ok"]
    assert lines.feed(b"a" * 40 + b"\nb\n") == [b"b"] and lines.oversized == 2


def test_seen_events_drops_repeats_and_stays_bounded() -> None:
    seen = SeenEvents(keep=3)
    a, b = ContainerEvent("a", "n", "died", 1), ContainerEvent("a", "n", "died", 2)
    assert seen.add(a) and not seen.add(a) and seen.add(b)
    assert not seen.add(ContainerEvent("a", "other-name", "died", 1))  # same id+action+time
    assert seen.add(ContainerEvent("a", "n", "start", 1))
    for i in range(10):
        seen.add(ContainerEvent("z", "n", "x", i))
    assert len(seen) == 3 and seen.add(a)  # forgotten once out of the window


# --------------------------------------------------------------------------- since, backoff


def test_since_is_rfc3339_nanoseconds_in_utc_a_margin_before() -> None:
    assert since_param(1795714742124979023, margin_ns=0) == "2026-11-26T17:39:02.124979023Z"
    assert since_param(1795714742124979023) == "2026-11-26T17:39:01.124979023Z"
    assert since_param(5, margin_ns=10) == "1970-01-01T00:00:00.000000000Z"


def test_stream_since_starts_empty_and_never_lies_in_the_future(tmp_path: Path) -> None:
    stream = PodmanEventStream(tmp_path / "s", lambda e: None, lambda c, r: None)
    assert stream.since() is None  # no replay before the first connection
    stream.newest_ns = 1_700_000_000_123_456_789
    assert stream.since() == "2023-11-14T22:13:19.123456789Z"
    stream.newest_ns = time.time_ns() + 3600 * 10**9  # an event stamped before a clock step
    since = stream.since()
    assert since is not None and since <= since_param(time.time_ns())


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 10.0)
    assert [backoff.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.reset()
    assert backoff.next() == 0.5
    for bad in ((0, 1), (2, 1), (-1, 5)):
        with pytest.raises(ValueError):
            Backoff(*bad)


# --------------------------------------------------------------------------- fault injection


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class FaultPodman:
    """Fault injection, not a Podman: a unix socket whose each connection is served by the
    next handler in `script` (the last one repeats), recording every request's query."""

    def __init__(self, path: Path, script: list[Handler]) -> None:
        self.path = path
        self.script = script
        self.queries: list[dict[str, str]] = []
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> FaultPodman:
        self.server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:  # ends the handlers still holding a connection open
            writer.transport.abort()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        request = await reader.readuntil(b"\r\n\r\n")
        target = request.split(b" ", 2)[1].decode()
        url = urlsplit(target)
        assert url.path == f"{podman_api.API}/events"
        self.queries.append({k: unquote(v[0]) for k, v in parse_qs(url.query).items()})
        handler = self.script[min(len(self.queries) - 1, len(self.script) - 1)]
        try:
            await handler(reader, writer)
        finally:
            writer.close()


OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def send_then(lines: list[str], end: str, split: int = 0) -> Handler:
    """Stream lines (split into pieces of `split` bytes when set), then `end`: "drop" (close
    mid-body, as a killed podman), "close" (a clean end of the body) or "hold" (stay open)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK_HEAD)
        body = "".join(line + "\n" for line in lines).encode()
        step = split or len(body) or 1
        for i in range(0, len(body), step):
            writer.write(chunk(body[i : i + step]))
            await writer.drain()
        if end == "close":
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        elif end == "hold":
            await reader.read()  # until the client goes

    return handler


async def answer_500(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    body = b'{"cause":"boom","message":"internal error","response":500}'
    writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n" % len(body))
    writer.write(body)
    await writer.drain()


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # accept, read, never answer


@pytest.fixture
def sock_path() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    short = Path(tempfile.mkdtemp(prefix="ev"))
    yield short / "podman.sock"
    for child in short.iterdir():
        child.unlink()
    short.rmdir()


class Recorder:
    def __init__(self) -> None:
        self.events: list[ContainerEvent] = []
        self.states: list[tuple[bool, str | None]] = []
        self.changed = asyncio.Event()

    def on_event(self, event: ContainerEvent) -> None:
        self.events.append(event)
        self.changed.set()

    def on_state(self, connected: bool, reason: str | None) -> None:
        self.states.append((connected, reason))
        self.changed.set()

    async def until(self, what: str, probe: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not probe():
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def running(stream: PodmanEventStream) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(stream.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not stream.connected


def _stream(
    path: Path, rec: Recorder, initial: float = 0.05, cap: float = 0.2
) -> PodmanEventStream:
    return PodmanEventStream(path, rec.on_event, rec.on_state, initial, cap)


async def test_drop_reconnects_with_since_and_replays_without_duplicates(sock_path: Path) -> None:
    health2 = HEALTH.replace("1795714736091297521", "1795714738975685665")
    script = [
        send_then([START, HEALTH], "drop", split=50),  # dies mid-body
        send_then([START, HEALTH, health2, DIED], "hold", split=300),  # replay + new ones
    ]
    rec = Recorder()
    started = time.time_ns()
    async with FaultPodman(sock_path, script) as server:
        stream = _stream(sock_path, rec)
        async with running(stream):
            await rec.until("died", lambda: any(e.action == "died" for e in rec.events))
    assert [e.action for e in rec.events] == ["start", "health_status", "health_status", "died"]
    assert rec.events[-1].exit_code == 137
    assert rec.states[0] == (True, None) and rec.states[-1] == (True, None)
    dropped = [r for c, r in rec.states if not c]
    assert len(dropped) == 1 and dropped[0] is not None
    assert dropped[0] == (
        f"Podman events: the stream from {sock_path} ended (podman.service stopped or "
        "restarted?); reconnecting"
    )
    first, second = server.queries[:2]
    assert json.loads(first["filters"]) == {"type": ["container"]} and first["stream"] == "true"
    assert "since" not in first  # the first connection starts live
    # the newest moment known to be covered (here: when the first connection opened, the
    # sample events are older), less the margin
    assert since_param(started) <= second["since"] <= since_param(time.time_ns())


async def test_a_drop_during_the_replay_asks_again_from_the_last_event(
    sock_path: Path,
) -> None:
    """The replay has no end marker: a connection that drops before delivering anything
    must not move since= to its own opening time, or what it was about to replay is lost."""
    stamped: list[int] = []

    async def fresh_event_then_drop(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(OK_HEAD)
        await writer.drain()
        await asyncio.sleep(0.05)  # an event newer than the moment the stream went live
        stamped.append(time.time_ns())
        line = DIED.replace("1795714742124979023", str(stamped[-1]))
        writer.write(chunk(line.encode() + b"\n"))
        await writer.drain()  # then the connection drops

    script = [fresh_event_then_drop, send_then([], "drop"), send_then([], "hold")]
    rec = Recorder()
    async with FaultPodman(sock_path, script) as server, running(_stream(sock_path, rec)):
        await rec.until("third connection", lambda: len(server.queries) >= 3)
    assert [e.time_nano for e in rec.events] == stamped
    assert server.queries[1]["since"] == since_param(stamped[0])
    assert server.queries[2]["since"] == since_param(stamped[0])


async def test_a_clean_end_of_the_stream_reconnects_too(sock_path: Path) -> None:
    rec = Recorder()
    script = [send_then([START], "close"), send_then([DIED], "hold")]
    async with FaultPodman(sock_path, script) as server, running(_stream(sock_path, rec)):
        await rec.until("died", lambda: len(rec.events) == 2)
    reasons = [r for c, r in rec.states if not c]
    assert reasons and reasons[0] is not None and "ended" in reasons[0]
    assert len(server.queries) == 2


async def test_other_containers_are_dropped_before_anything_else(sock_path: Path) -> None:
    """200 other containers on the host: their events are parsed, then dropped: not
    delivered, not remembered for de-duplication (that memory is for the stack's)."""
    other = START.replace('"name":"c1"', '"name":"someone-elses"').replace(
        "1795714736", "1795714737"
    )
    rec = Recorder()
    stream = PodmanEventStream(sock_path, rec.on_event, rec.on_state, 0.05, 0.2,
                               wanted=lambda name: name == "c1")  # fmt: skip
    script = [send_then([other, START, other, DIED], "hold")]
    async with FaultPodman(sock_path, script), running(stream):
        await rec.until("died", lambda: any(e.action == "died" for e in rec.events))
    assert [(e.name, e.action) for e in rec.events] == [("c1", "start"), ("c1", "died")]
    assert len(stream.seen) == 2


async def test_garbage_lines_are_skipped_and_the_stream_goes_on(sock_path: Path) -> None:
    rec = Recorder()
    lines = ["<html>", START, '{"half": ', "[]", DIED]
    async with FaultPodman(sock_path, [send_then(lines, "hold")]), running(_stream(sock_path, rec)):
        await rec.until("died", lambda: len(rec.events) == 2)
    assert [e.action for e in rec.events] == ["start", "died"]
    assert rec.states == [(True, None)]


async def test_missing_socket_then_nobody_listening_name_the_fix(sock_path: Path) -> None:
    rec = Recorder()
    stream = _stream(sock_path, rec)
    async with running(stream):
        await rec.until("state", lambda: bool(rec.states))
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(sock_path))  # the file exists, nothing accepts: ECONNREFUSED
        listener.close()
        await rec.until("refused", lambda: len(rec.states) >= 2)
    missing, refused = rec.states[0][1], rec.states[1][1]
    assert missing == f"Podman events: no socket at {sock_path} (systemctl start podman.socket)"
    assert refused == (
        f"Podman events: nothing listens on {sock_path} (systemctl start podman.socket)"
    )
    assert not any(c for c, _ in rec.states)


async def test_an_error_answer_is_reported_and_retried_with_bounded_backoff(
    sock_path: Path,
) -> None:
    rec = Recorder()
    stream = _stream(sock_path, rec, initial=0.05, cap=0.2)
    async with FaultPodman(sock_path, [answer_500]) as server, running(stream):
        await asyncio.sleep(1.2)
    assert len(rec.states) == 1  # reported once, not at every retry
    reason = rec.states[0][1]
    assert reason is not None and "answered 500" in reason and "internal error" in reason
    # 0.05 + 0.1 + 0.2 + 0.2 ... : about 7 tries in 1.2 s, neither a tight loop nor stuck
    assert 4 <= len(server.queries) <= 12


async def test_a_server_that_never_answers_times_out(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "CONNECT_TIMEOUT", 0.3)
    rec = Recorder()
    async with FaultPodman(sock_path, [hang]), running(_stream(sock_path, rec)):
        await rec.until("timeout", lambda: bool(rec.states))
    reason = rec.states[0][1]
    assert reason is not None and "did not answer within" in reason


async def test_consumer_exceptions_do_not_stop_the_stream(sock_path: Path) -> None:
    seen: list[str] = []
    both = asyncio.Event()

    def on_event(event: ContainerEvent) -> None:
        seen.append(event.action)
        if len(seen) == 2:
            both.set()
        raise RuntimeError("consumer bug")

    def on_state(connected: bool, reason: str | None) -> None:
        raise RuntimeError("consumer bug")

    stream = PodmanEventStream(sock_path, on_event, on_state, 0.05, 0.2)
    async with FaultPodman(sock_path, [send_then([START, DIED], "hold")]), running(stream):
        async with asyncio.timeout(5):
            await both.wait()
        assert stream.connected
    assert seen == ["start", "died"]
