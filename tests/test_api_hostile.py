"""Hostile requests against the real daemon on 127.0.0.1 (issue 15's API findings): each
is refused with a JSON error in bounded time, never a 500, and the agent keeps serving.
Raw sockets send what no well-behaved client would."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import HANG_S, AgentProcess, http, running_daemon


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with running_daemon(
        tmp_path_factory.mktemp("hostile"), "  allowed_hosts: [ai-box.lan]\n", ""
    ) as proc:
        yield proc


def raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_S) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def error(body: bytes) -> dict[str, object]:
    doc = json.loads(body)
    assert set(doc) == {"error"}, doc
    return doc["error"]  # type: ignore[no-any-return]


def test_a_non_utf8_bearer_is_401_not_500(agent: AgentProcess) -> None:
    status, headers, body = raw(
        agent.port,
        b"POST /v1/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \xff\xfe\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert status == 401 and headers["content-type"].startswith("application/json")
    assert "Authorization: Bearer" in str(error(body)["message"])
    assert "unhandled error" not in agent.log()


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_a_compressed_body_is_refused_without_inflating_it(agent: AgentProcess) -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in about 64 KiB
    before = rss_kib(agent.proc.pid)
    request = (
        f"POST /v1/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {agent.token}\r\n"
        f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\nConnection: close\r\n\r\n"
    ).encode() + bomb
    status, _, body = raw(agent.port, request)
    assert status == 415 and "compressed request bodies" in str(error(body)["message"])
    grown = rss_kib(agent.proc.pid) - before
    assert grown < 32 << 10, f"RSS grew {grown} KiB: the body was inflated"  # memory, not speed


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost", 200), ("127.0.0.1", 200), ("[::1]", 200), ("app.localhost", 200),
        ("AI-BOX.lan", 200),  # api.allowed_hosts, any case
        ("attacker.example", 421), ("127.0.0.1.nip.io", 421),
    ],
)  # fmt: skip
def test_only_loopback_names_ip_literals_and_configured_hosts(
    agent: AgentProcess, host: str, status: int
) -> None:
    got, _, body = raw(
        agent.port,
        f"GET /status HTTP/1.1\r\nHost: {host}:{agent.port}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert got == status if status != 200 else got in (200, 503), (host, got, body[:200])
    if status == 421:
        assert "not one the agent answers to" in str(error(body)["message"])


@pytest.mark.parametrize(
    "body",
    [b"null", b"{}", b"[1,2]", b'{"model": null}', b'{"model": ""}', b'{"model": "../x y"}',
     b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe not utf-8", b"not json"],
    ids=["null", "empty", "list", "model-null", "model-empty", "model-bad-name", "deep",
         "not-utf8", "not-json"],
)  # fmt: skip
def test_model_pull_refuses_what_is_not_a_model_name(agent: AgentProcess, body: bytes) -> None:
    status, _, answer = http(
        "POST",
        f"{agent.base}/v1/models/pull",
        {"Authorization": f"Bearer {agent.token}", "Content-Type": "application/json"},
        body,
    )
    assert status == 400, (status, answer[:200])
    assert "llama3.2" in str(error(answer)["message"])


def test_an_unknown_charset_is_not_a_500(agent: AgentProcess) -> None:
    status, _, answer = http(
        "POST",
        f"{agent.base}/v1/models/pull",
        {"Authorization": f"Bearer {agent.token}",
         "Content-Type": "application/json; charset=x-no-such-charset"},
        b'{"model": "llama3.2"}',
    )  # fmt: skip
    # the charset is ignored (JSON is UTF-8): the name is read, Ollama is not there
    assert status == 502, (status, answer[:200])


def test_a_service_action_with_systemd_gone_is_503_saying_so(agent: AgentProcess) -> None:
    """This host has no system D-Bus: the restart cannot be done, and the answer says why."""
    status, _, answer = http(
        "POST", f"{agent.base}/v1/services/ollama/restart",
        {"Authorization": f"Bearer {agent.token}"},
    )  # fmt: skip
    assert status == 503, (status, answer[:300])
    assert "D-Bus" in str(error(answer)["message"])
    assert http("GET", f"{agent.base}/healthz")[0] == 200  # still serving
