"""Connection bounds of the API (agent/api_guard.py) against the real daemon: a client
that sends nothing, or a request a byte at a time, is closed; connections beyond
api.max_connections are closed at once; a header with the token and a control byte is
refused without the token reaching the log. The guard's clock logic with a hand clock."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.api_guard import ConnectionGuard

from .conftest import HANG_S, AgentProcess, http, running_daemon


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with running_daemon(
        tmp_path_factory.mktemp("guard"), "  request_timeout: 1s\n  max_connections: 4\n", ""
    ) as proc:
        yield proc


def received(s: socket.socket) -> bytes:
    """What the server sent before it closed (or reset) the connection."""
    s.settimeout(HANG_S)
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def closed_by_server(s: socket.socket) -> bool:
    """True when the server closes the connection (recv sees EOF) before the hang guard."""
    s.settimeout(HANG_S)
    try:
        while s.recv(4096):
            pass
    except (TimeoutError, ConnectionResetError) as exc:
        return isinstance(exc, ConnectionResetError)
    return True


def test_a_silent_client_is_closed(agent: AgentProcess) -> None:
    with socket.create_connection(("127.0.0.1", agent.port)) as s:
        assert closed_by_server(s)


def test_a_request_sent_a_byte_at_a_time_is_cut_off(agent: AgentProcess) -> None:
    with socket.create_connection(("127.0.0.1", agent.port)) as s:
        s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert closed_by_server(s)  # the header never ends
    assert http("GET", f"{agent.base}/healthz")[0] == 200  # the agent serves on


def test_connections_beyond_the_limit_are_closed_at_once(agent: AgentProcess) -> None:
    held = [socket.create_connection(("127.0.0.1", agent.port)) for _ in range(4)]
    try:
        with socket.create_connection(("127.0.0.1", agent.port)) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert received(extra) == b""  # closed without an answer
        # one of the held ones is still served
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        held[0].settimeout(HANG_S)
        assert held[0].recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for s in held:
            s.close()


def test_the_token_with_a_control_byte_never_reaches_the_log(agent: AgentProcess) -> None:
    token = agent.token
    with socket.create_connection(("127.0.0.1", agent.port), timeout=HANG_S) as s:
        s.sendall(
            b"POST /v1/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + token.encode() + b"\x01\r\nContent-Length: 0\r\n\r\n"
        )  # fmt: skip
        answer = received(s)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split()[1] == b"400", answer[:200]
    assert b"application/json" in head and token.encode() not in answer  # nothing quoted
    assert json.loads(body)["error"] == {"status": 400, "message": "malformed HTTP request"}
    assert http("GET", f"{agent.base}/healthz")[0] == 200
    assert token not in agent.log()


def test_a_20000_character_url_gets_the_json_error(agent: AgentProcess) -> None:
    with socket.create_connection(("127.0.0.1", agent.port), timeout=HANG_S) as s:
        s.sendall(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = received(s)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head, answer[:300]
    assert json.loads(body)["error"]["status"] in (400, 414)


class HandClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_clock_stops_while_a_handler_runs() -> None:
    clock = HandClock()
    guard = ConnectionGuard(max_connections=10, request_timeout=20.0, clock=clock)

    class Transport:
        def close(self) -> None: ...

    waiting, handling = Transport(), Transport()
    conn_w = guard.wrap(type("Inner", (), {"connection_made": lambda self, t: None})())
    conn_h = guard.wrap(type("Inner", (), {"connection_made": lambda self, t: None})())
    conn_w.connection_made(waiting)  # type: ignore[arg-type]
    conn_h.connection_made(handling)  # type: ignore[arg-type]
    guard.handling(handling)  # an apply that takes 15 minutes
    clock.now += 900
    assert guard.overdue() == [waiting]
    guard.answered(handling)
    clock.now += 21
    assert set(guard.overdue()) == {waiting, handling}


def test_a_reload_changes_the_connection_limit_at_once(tmp_path: Path) -> None:
    with running_daemon(tmp_path, "  max_connections: 2\n") as agent:
        text = agent.config.read_text().replace("max_connections: 2", "max_connections: 8")
        agent.config.write_text(text)
        auth = {"Authorization": f"Bearer {agent.token}"}
        assert http("POST", f"{agent.base}/v1/reload", auth)[0] == 200
        held = [socket.create_connection(("127.0.0.1", agent.port)) for _ in range(3)]
        try:
            with socket.create_connection(("127.0.0.1", agent.port), timeout=HANG_S) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                assert received(s).startswith(b"HTTP/1.1 200")  # limit 2 would close it
        finally:
            for c in held:
                c.close()
