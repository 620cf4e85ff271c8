"""agent.podman_api's secrets, inspect and image calls against a fake libpod socket: the
URLs and bodies sent, the replace fallback for servers that ignore `replace`, and that a
secret's value never reaches an exception. (Real Podman: tests/e2e/test_systemd_ctl.py.)"""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from agent import podman_api as pa

VALUE = b"hunter2-the-actual-secret"


class FakeLibpod:
    """Secrets in a dict; `honours_replace=False` acts like a server that ignores it."""

    def __init__(self, honours_replace: bool = True) -> None:
        self.honours_replace = honours_replace
        self.secrets: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, bytes]] = []
        self.echo_body_in_errors = False

    def handle(self, method: str, url: str, body: bytes) -> tuple[int, Any]:
        self.requests.append((method, url, body))
        parts = urlsplit(url)
        path, query = unquote(parts.path), parse_qs(parts.query)
        if method == "POST" and path == f"{pa.API}/secrets/create":
            name = query["name"][0]
            replace = self.honours_replace and query.get("replace") == ["true"]
            if len(body) > 1000:
                return 500, {"cause": "too big", "message": f"too big: {body.decode()}"}
            if name in self.secrets and not replace:
                text = f"{name}: secret name in use"
                if self.echo_body_in_errors:
                    text += f" ({body.decode()})"
                return 500, {"cause": "secret name in use", "message": text}
            self.secrets[name] = body
            return 200, {"ID": f"id-{len(self.requests)}"}
        head, _, tail = path.removeprefix(f"{pa.API}/").partition("/")
        if head == "secrets" and tail.endswith("/exists"):
            return (204, None) if tail[: -len("/exists")] in self.secrets else (404, None)
        if head == "secrets" and method == "DELETE":
            return (204, None) if self.secrets.pop(tail, None) else (404, {"message": "no"})
        if head == "containers" and tail == "web/json":
            return 200, {"Name": "web", "State": {"Status": "running"}}
        if head == "containers":
            return 404, {"message": "no such container"}
        if head == "images":
            return (204, None) if tail == "localhost/x/ollama:1/exists" else (404, None)
        return 400, {"message": f"unexpected {method} {url}"}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[FakeLibpod], Path]]:
    servers: list[socketserver.UnixStreamServer] = []

    def start(fake: FakeLibpod) -> Path:
        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, data = fake.handle(self.command, self.path, body)
                raw = b"" if data is None else json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = _any

            def address_string(self) -> str:
                return "fake"

            def log_message(self, *args: Any) -> None:
                pass

        sock = tmp_path / f"podman{len(servers)}.sock"
        server = socketserver.ThreadingUnixStreamServer(str(sock), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return sock

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("honours_replace", [True, False])
def test_secret_round_trip_and_replace(
    serve: Callable[[FakeLibpod], Path], honours_replace: bool
) -> None:
    fake = FakeLibpod(honours_replace)
    sock = serve(fake)
    assert not pa.secret_exists(sock, "pg-password")
    assert pa.secret_create(sock, "pg-password", VALUE)
    method, url, body = fake.requests[-1]
    assert (method, body) == ("POST", VALUE)
    assert url == f"{pa.API}/secrets/create?name=pg-password&replace=true"
    assert pa.secret_exists(sock, "pg-password")
    assert pa.secret_create(sock, "pg-password", b"new-value")  # replaced either way
    assert fake.secrets["pg-password"] == b"new-value"
    deletes = [r for r in fake.requests if r[0] == "DELETE"]
    assert len(deletes) == (0 if honours_replace else 1)  # the fallback: delete + create
    assert pa.secret_delete(sock, "pg-password") is True
    assert pa.secret_delete(sock, "pg-password") is False


def test_create_without_replace_fails_and_never_shows_the_value(
    serve: Callable[[FakeLibpod], Path],
) -> None:
    fake = FakeLibpod()
    fake.echo_body_in_errors = True  # even a server that echoes the value is scrubbed
    sock = serve(fake)
    pa.secret_create(sock, "key", b"old")
    with pytest.raises(pa.PodmanApiError) as info:
        pa.secret_create(sock, "key", VALUE, replace=False)
    text = str(info.value)
    assert "'key'" in text and "secret name in use" in text and "replace=True" in text
    assert VALUE.decode() not in text and "<redacted>" in text
    assert fake.secrets["key"] == b"old"


def test_a_failed_replace_keeps_the_existing_secret(serve: Callable[[FakeLibpod], Path]) -> None:
    fake = FakeLibpod(honours_replace=False)
    sock = serve(fake)
    pa.secret_create(sock, "key", b"old")
    big = VALUE * 100
    with pytest.raises(pa.PodmanApiError) as info:
        pa.secret_create(sock, "key", big)  # "too big" is no reason to delete first
    assert VALUE.decode() not in str(info.value)
    assert fake.secrets["key"] == b"old"
    with pytest.raises(pa.PodmanApiError, match="empty value"):
        pa.secret_create(sock, "key", b"")


def test_inspect_and_image_exists(serve: Callable[[FakeLibpod], Path]) -> None:
    sock = serve(FakeLibpod())
    assert pa.container_inspect(sock, "web") == {"Name": "web", "State": {"Status": "running"}}
    assert pa.container_inspect(sock, "nope") is None
    assert pa.image_exists(sock, "localhost/x/ollama:1") is True
    assert pa.image_exists(sock, "localhost/x/other:1") is False


def test_missing_socket_names_it(tmp_path: Path) -> None:
    sock = tmp_path / "absent.sock"
    with pytest.raises(pa.PodmanApiError, match=r"absent\.sock.*podman\.socket"):
        pa.secret_create(sock, "key", VALUE)


def test_rotating_with_podman_down_says_the_store_is_unavailable(tmp_path: Path) -> None:
    """The API answers this 503 (not the caller's mistake); the folder is created 0700."""
    from agent.config import StackConfig
    from agent.stack import secrets

    directory = tmp_path / "secrets"
    with pytest.raises(secrets.SecretStoreUnavailable, match="cannot store secret aistack-"):
        secrets.rotate("webui-secret-key", StackConfig(), tmp_path / "no.sock", directory)
    assert (directory / "webui-secret-key").stat().st_mode & 0o777 == 0o600
    assert directory.stat().st_mode & 0o777 == 0o700


def test_rotating_into_a_folder_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    from agent.config import StackConfig
    from agent.stack import secrets

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(secrets.SecretsError, match="cannot write"):
        secrets.rotate("webui-secret-key", StackConfig(), tmp_path / "no.sock", blocker / "s")
