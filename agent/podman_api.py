"""The libpod REST API over Podman's unix socket: JSON calls and `podman exec`.

Why not podman-py: it is synchronous like this module, but its client reads the invoking
user's ~/.config/containers on creation (refused under the agent's ProtectHome=yes), and
its exec cannot stream output together with an exit code. The API itself is small.

The agent runs without capabilities, so it cannot run the podman CLI (which needs to
join namespaces); the API socket is enough. An exec is three calls:

1. `POST /containers/{name}/exec` creates the session (command, env, which streams).
2. `POST /exec/{id}/start` with `{"Detach": false, "Tty": false}`: podman hijacks the
   connection, answers `HTTP/1.1 200 OK` and then sends stdout and stderr multiplexed in
   frames (`[stream, 0, 0, 0, size:uint32 big-endian]` + payload; 1 stdout, 2 stderr).
   With stdin attached, what the client writes on the connection is the process's stdin;
   a half-close (shutdown SHUT_WR) is its end of file. The stream ends when the process
   exits and podman closes the connection.
3. `GET /exec/{id}/json` gives ExitCode (once Running is false).

podman-py's `exec_run` cannot do this: streamed output comes without an exit code and
without stdin, and the non-streamed form buffers everything in memory. So this module
speaks HTTP itself: `http.client` for the small JSON calls, a raw socket for the stream,
all blocking (callers run it in a thread).

It is the one place that reads Podman's JSON: `inspect_container` gives a typed
`Container`, and `run_exec` is the one short command with a deadline (doctor, the service
probes); a backup streams through ExecStream itself.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

API = "/v4.0.0/libpod"  # understood by Podman 4.x and 5.x
STDOUT, STDERR = 1, 2
_HEADER = struct.Struct(">BxxxI")


class PodmanApiError(Exception):
    pass


class ContainerNotFound(PodmanApiError):
    """An exec asked for a container that does not exist (404): callers word it their way."""


class ExecStreamError(PodmanApiError):
    """An exec's output stream broke before the command ended (not at the deadline)."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _connect_error(path: Path, exc: OSError) -> PodmanApiError:
    return PodmanApiError(
        f"cannot reach the Podman API at {path}: {exc.strerror or exc} "
        "(is podman.socket enabled? systemctl enable --now podman.socket)"
    )


def request_json(
    path: Path, method: str, url: str, body: Any = None, timeout: float = 30.0
) -> tuple[int, Any]:
    conn = _UnixHTTPConnection(path, timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            conn.request(method, url, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as exc:
            raise _connect_error(path, exc) from None
        try:
            data = json.loads(raw) if raw.strip() else None
        except ValueError:
            data = raw.decode(errors="replace")
        return resp.status, data
    finally:
        conn.close()


def _message(data: Any) -> str:
    if isinstance(data, dict):
        return str(data.get("message") or data.get("cause") or data)
    return str(data)


def exec_create(
    path: Path,
    container: str,
    cmd: Sequence[str],
    env: Sequence[str] = (),
    stdin: bool = False,
    stdout: bool = True,
    timeout: float = 30.0,
) -> str:
    body = {
        "Cmd": list(cmd),
        "Env": list(env),
        "AttachStdin": stdin,
        "AttachStdout": stdout,
        "AttachStderr": True,
        "Tty": False,  # never a TTY: it would mangle binary output and merge stderr
    }
    status, data = request_json(
        path, "POST", f"{API}/containers/{quote(container, safe='')}/exec", body, timeout
    )
    if status == 404:
        raise ContainerNotFound(f"no container {container!r} (is the PostgreSQL unit running?)")
    if status == 409:
        raise PodmanApiError(f"container {container!r} is not running: {_message(data)}")
    if status != 201 or not isinstance(data, dict) or "Id" not in data:
        raise PodmanApiError(f"exec create in {container!r} failed ({status}): {_message(data)}")
    return str(data["Id"])


def exec_inspect(path: Path, exec_id: str, timeout: float = 30.0) -> dict[str, Any]:
    status, data = request_json(path, "GET", f"{API}/exec/{exec_id}/json", timeout=timeout)
    if status != 200 or not isinstance(data, dict):
        raise PodmanApiError(f"exec inspect {exec_id[:12]} failed ({status}): {_message(data)}")
    return data


def exec_exit_code(path: Path, exec_id: str, wait: float = 10.0) -> int:
    """The exit code, waiting briefly for podman to record it after the stream ended."""
    deadline = time.monotonic() + wait
    while True:
        data = exec_inspect(path, exec_id)
        code = data.get("ExitCode")
        if not data.get("Running") and isinstance(code, int):
            return code
        if time.monotonic() > deadline:
            raise PodmanApiError(f"exec {exec_id[:12]} still running after its output ended")
        time.sleep(0.05)


class Demuxer:
    """Split podman's multiplexed stream into (stream, payload) frames.

    `read_exact(n)` returns n bytes, or fewer only at the end of the stream. A stream
    that ends inside a frame is an error: the output would be silently truncated.
    """

    def __init__(self, read_exact: Callable[[int], bytes]) -> None:
        self._read = read_exact

    def frame(self) -> tuple[int, bytes] | None:
        head = self._read(_HEADER.size)
        if not head:
            return None
        if len(head) < _HEADER.size:
            raise PodmanApiError(f"exec stream ended inside a frame header ({len(head)} of 8)")
        stream, size = _HEADER.unpack(head)
        if stream not in (0, STDOUT, STDERR):
            raise PodmanApiError(f"exec stream out of step: frame for stream {stream}")
        payload = self._read(size) if size else b""
        if len(payload) < size:
            raise PodmanApiError(f"exec stream ended inside a frame ({len(payload)} of {size})")
        return stream, payload


def encode_frame(stream: int, payload: bytes) -> bytes:
    """The inverse of Demuxer.frame (for tests and fault injection)."""
    return _HEADER.pack(stream, len(payload)) + payload


class ExecStream:
    """The hijacked connection of one started exec: frames out, stdin in."""

    def __init__(self, path: Path, exec_id: str, connect_timeout: float = 30.0) -> None:
        self.exec_id = exec_id
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(connect_timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            sock.close()
            raise _connect_error(path, exc) from None
        self._sock = sock
        self._file: BinaryIO = sock.makefile("rb", buffering=1 << 20)  # type: ignore[assignment]
        body = json.dumps({"Detach": False, "Tty": False}).encode()
        request = (
            f"POST {API}/exec/{exec_id}/start HTTP/1.1\r\n"
            "Host: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        try:
            sock.sendall(request)
            status_line = self._file.readline(65536)
            parts = status_line.split(None, 2)
            status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
            headers = {}
            while (line := self._file.readline(65536)) not in (b"\r\n", b"\n", b""):
                key, _, value = line.decode("latin-1").partition(":")
                headers[key.strip().lower()] = value.strip()
            if status != 200:
                length = int(headers.get("content-length", "0") or 0)
                detail = self._file.read(min(length, 65536)) if length else b""
                raise PodmanApiError(
                    f"exec start {exec_id[:12]} failed ({status or status_line!r}): "
                    f"{detail.decode(errors='replace').strip()}"
                )
        except OSError as exc:
            self.close()
            raise PodmanApiError(f"exec start {exec_id[:12]}: {exc}") from None
        except PodmanApiError:
            self.close()
            raise
        sock.settimeout(None)  # output may pause for long (pg_dump waiting for a lock)
        self.demux = Demuxer(self._read_exact)

    def _read_exact(self, n: int) -> bytes:
        data = self._file.read(n)
        return data or b""

    def send(self, data: bytes | memoryview) -> None:
        self._sock.sendall(data)

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        """Unblock any reader or writer, from any thread."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._sock.close()


@dataclass(frozen=True)
class ExecResult:
    """What one command in a container did, its output cut to the first few KiB."""

    exit_code: int | None  # None: it did not finish (no exit code) within the timeout
    stdout: str
    stderr: str
    output: str  # stdout and stderr interleaved as they arrived (what a terminal shows)

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None


def run_exec(
    path: Path,
    container: str,
    cmd: Sequence[str],
    timeout: float,
    *,
    env: Sequence[str] = (),
    cap: int = 4096,
    exit_grace: float = 1.0,
) -> ExecResult:
    """Run cmd in a running container and wait at most `timeout` seconds (blocking).

    ExecStream reads without a timeout (a backup's pg_dump may pause for long); here a
    timer aborts the stream at the deadline, so a command that hangs costs `timeout`.
    Podman records the exit code just after the stream ends: it is awaited until
    `exit_grace` past the deadline, else the result has none (timed out).

    Raises ContainerNotFound or PodmanApiError when the command could not be started or
    its exit code read, ExecStreamError when the stream broke before the deadline.
    """
    deadline = time.monotonic() + timeout

    def left(until: float = deadline) -> float:
        return max(0.1, until - time.monotonic())

    exec_id = exec_create(path, container, cmd, env=env, timeout=left())
    stream = ExecStream(path, exec_id, connect_timeout=left())
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        stream.abort()

    timer = threading.Timer(left(), expire)
    timer.daemon = True
    timer.start()
    out, err, both = bytearray(), bytearray(), bytearray()
    try:
        while (frame := stream.demux.frame()) is not None:
            kind, payload = frame
            target = err if kind == STDERR else out
            target += payload[: max(0, cap - len(target))]
            both += payload[: max(0, cap - len(both))]
    except (OSError, ValueError, PodmanApiError) as exc:
        if not fired.is_set():
            raise ExecStreamError(str(exc)) from exc
    finally:
        timer.cancel()
        stream.close()

    def result(code: int | None) -> ExecResult:
        text = [b.decode(errors="replace") for b in (out, err, both)]
        return ExecResult(code, *text)

    if fired.is_set():
        return result(None)
    grace = deadline + exit_grace
    while True:
        info = exec_inspect(path, exec_id, timeout=max(0.5, left(grace)))
        code = info.get("ExitCode")
        if not info.get("Running") and isinstance(code, int):
            return result(code)
        if time.monotonic() > grace:
            return result(None)
        time.sleep(0.05)


# --------------------------------------------------------------------------- secrets, inspect
#
# Podman secrets hold the stack's credentials (PostgreSQL password, LiteLLM master key).
# A secret's value is only ever a request body here: it never enters a URL, an exception
# message or a log line, and podman's own error text is scrubbed of it just in case.


def _request_raw(
    path: Path, method: str, url: str, data: bytes, timeout: float = 30.0
) -> tuple[int, Any]:
    """Like request_json, with a raw (octet-stream) body."""
    conn = _UnixHTTPConnection(path, timeout)
    try:
        headers = {"Content-Type": "application/octet-stream"}
        try:
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as exc:
            raise _connect_error(path, exc) from None
        try:
            parsed = json.loads(raw) if raw.strip() else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, parsed
    finally:
        conn.close()


def _scrubbed(text: str, secret: bytes) -> str:
    value = secret.decode(errors="replace").strip()
    return text.replace(value, "<redacted>") if value else text


def secret_exists(path: Path, name: str, timeout: float = 30.0) -> bool:
    status, data = request_json(
        path, "GET", f"{API}/secrets/{quote(name, safe='')}/exists", timeout=timeout
    )
    if status in (200, 204):
        return True
    if status == 404:
        return False
    raise PodmanApiError(f"cannot check podman secret {name!r} ({status}): {_message(data)}")


def secret_delete(path: Path, name: str, timeout: float = 30.0) -> bool:
    """Remove a secret; False when there was none."""
    status, data = request_json(
        path, "DELETE", f"{API}/secrets/{quote(name, safe='')}", timeout=timeout
    )
    if status in (200, 204):
        return True
    if status == 404:
        return False
    raise PodmanApiError(f"cannot remove podman secret {name!r} ({status}): {_message(data)}")


def _secret_post(
    path: Path, name: str, data: bytes, replace: bool, timeout: float
) -> tuple[int, Any]:
    query = f"name={quote(name, safe='')}" + ("&replace=true" if replace else "")
    return _request_raw(path, "POST", f"{API}/secrets/create?{query}", data, timeout)


def _replace_refused(status: int, body: Any) -> bool:
    """The server did not replace: it ignored `replace` (name in use) or refused it. Any
    other error (a bad name, a value too large) must not cost the existing secret."""
    text = _message(body).lower()
    return status == 409 or (status in (400, 500) and ("in use" in text or "replace" in text))


def secret_create(
    path: Path, name: str, data: bytes, replace: bool = True, timeout: float = 30.0
) -> str:
    """Create (or with replace, overwrite) the secret `name`; returns its ID.

    Podman >= 4.7 replaces in place (`replace=true`). When a server rejects that (an older
    one answers that the name is in use, or refuses the parameter), the secret is deleted
    and created again: containers already running keep the value they were started with.
    """
    if not data:
        raise PodmanApiError(f"podman secret {name!r}: refusing to store an empty value")
    status, body = _secret_post(path, name, data, replace, timeout)
    if replace and status not in (200, 201) and _replace_refused(status, body):
        secret_delete(path, name, timeout)
        status, body = _secret_post(path, name, data, False, timeout)
    if status not in (200, 201) or not isinstance(body, dict) or "ID" not in body:
        detail = _scrubbed(_message(body), data)
        in_use = status == 409 or "in use" in detail
        hint = " (use replace=True to overwrite it)" if in_use and not replace else ""
        raise PodmanApiError(f"cannot create podman secret {name!r} ({status}): {detail}{hint}")
    return str(body["ID"])


def container_inspect(path: Path, name: str, timeout: float = 30.0) -> dict[str, Any] | None:
    """`podman container inspect` as a dict; None when there is no such container."""
    status, data = request_json(
        path, "GET", f"{API}/containers/{quote(name, safe='')}/json", timeout=timeout
    )
    if status == 404:
        return None
    if status != 200 or not isinstance(data, dict):
        raise PodmanApiError(f"cannot inspect container {name!r} ({status}): {_message(data)}")
    return data


@dataclass(frozen=True)
class Network:
    """A container's addresses on one network ("" when it has none of that family)."""

    ip_address: str = ""
    ipv6_address: str = ""


HEALTH_STATES = ("healthy", "unhealthy", "starting")


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _health_status(state: Mapping[str, Any]) -> str:
    """State.Health (Podman >= 4.x, Docker's name) or State.Healthcheck (older Podman)."""
    health = state.get("Health") or state.get("Healthcheck") or {}
    status = health.get("Status") if isinstance(health, dict) else None
    return status if status in HEALTH_STATES else ""


def _startup_retries(config: Mapping[str, Any]) -> int | None:
    check = config.get("StartupHealthCheck")
    if not isinstance(check, dict):
        return None
    retries = check.get("Retries", 0)
    return max(retries, 0) if isinstance(retries, int) and not isinstance(retries, bool) else 0


def _env_of(config: Mapping[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in config.get("Env") or ():
        if isinstance(item, str) and "=" in item:
            key, _, value = item.partition("=")
            env[key] = value
    return env


def _networks_of(settings: Mapping[str, Any]) -> dict[str, Network]:
    networks: dict[str, Network] = {}
    for name, net in _dict(settings.get("Networks")).items():
        if isinstance(net, dict):
            networks[str(name)] = Network(
                _text(net.get("IPAddress")), _text(net.get("GlobalIPv6Address"))
            )
    return networks


@dataclass(frozen=True)
class Container:
    """The parts of `podman container inspect` (libpod) the agent decides on, typed.

    Env holds the unit's secrets too: read it for decisions, never print it.
    """

    id: str
    name: str
    image: str  # the image's id
    image_name: str  # the reference it was created from, e.g. docker.io/ollama/ollama:0.6
    image_digest: str | None
    status: str  # State.Status: created, running, exited, ... ("" when podman gave none)
    running: bool
    pid: int
    exit_code: int | None
    oom_killed: bool
    started_at: str | None
    health: str  # healthy, unhealthy, starting; "" without a health check
    # Misses its startup health check may have before Podman restarts it
    # (HealthStartupRetries; 0: no limit); None without a startup check.
    startup_retries: int | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    networks: Mapping[str, Network] = field(default_factory=dict)

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any]) -> Container:
        """From libpod's inspect document; what is missing or mistyped reads as absent."""
        state = _dict(data.get("State"))
        pid, code = state.get("Pid"), state.get("ExitCode")
        digest, started = data.get("ImageDigest"), state.get("StartedAt")
        config = _dict(data.get("Config"))
        return cls(
            id=_text(data.get("Id")),
            name=_text(data.get("Name")),
            image=_text(data.get("Image")),
            image_name=_text(data.get("ImageName")),
            image_digest=digest if isinstance(digest, str) else None,
            status=_text(state.get("Status")),
            running=bool(state.get("Running")),
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else 0,
            exit_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            oom_killed=bool(state.get("OOMKilled")),
            started_at=started if isinstance(started, str) else None,
            health=_health_status(state),
            startup_retries=_startup_retries(config),
            env=_env_of(config),
            networks=_networks_of(_dict(data.get("NetworkSettings"))),
        )

    def address(self, prefer: str) -> str | None:
        """The container's IP on network `prefer` (any network's if not on that one);
        IPv4 before IPv6 on each."""
        ordered = [self.networks.get(prefer)]
        ordered += [net for name, net in self.networks.items() if name != prefer]
        for net in ordered:
            if net is not None and (net.ip_address or net.ipv6_address):
                return net.ip_address or net.ipv6_address
        return None


def inspect_container(path: Path, name: str, timeout: float = 30.0) -> Container | None:
    """`podman container inspect`, typed; None when there is no such container."""
    data = container_inspect(path, name, timeout)
    return None if data is None else Container.from_inspect(data)


def container_healthcheck(path: Path, name: str, timeout: float = 30.0) -> str | None:
    """Run the container's health check now (`podman healthcheck run`): its startup check
    until that has passed, then the regular one. Podman records the result as its own
    timer's run would (health log, failing streak, startup budget, `health_status` event,
    Notify=healthy). Returns the health status after it (healthy, unhealthy, starting);
    None when the container is gone, not running or has no health check."""
    status, data = request_json(
        path, "GET", f"{API}/containers/{quote(name, safe='')}/healthcheck", timeout=timeout
    )
    if status in (404, 409):
        return None
    if status != 200 or not isinstance(data, dict):
        raise PodmanApiError(
            f"cannot run the health check of {name!r} ({status}): {_message(data)}"
        )
    result = data.get("Status")
    return result if result in HEALTH_STATES else None


def image_exists(path: Path, ref: str, timeout: float = 30.0) -> bool:
    """Whether the image is in local storage (no pull): `podman image exists`."""
    status, data = request_json(
        path, "GET", f"{API}/images/{quote(ref, safe='/:@')}/exists", timeout=timeout
    )
    if status in (200, 204):
        return True
    if status == 404:
        return False
    raise PodmanApiError(f"cannot check image {ref!r} ({status}): {_message(data)}")


def volume_delete(path: Path, name: str, timeout: float = 30.0) -> bool:
    """Remove a volume (its data is gone); False when there was none."""
    status, data = request_json(
        path, "DELETE", f"{API}/volumes/{quote(name, safe='')}", timeout=timeout
    )
    if status == 404:
        return False
    if status not in (200, 204):
        raise PodmanApiError(f"cannot remove volume {name!r} ({status}): {_message(data)}")
    return True


def container_stats(path: Path, names: Sequence[str], timeout: float = 30.0) -> dict[str, Any]:
    """One sample of podman stats for the named (running) containers: name -> stats."""
    if not names:
        return {}
    query = "&".join(f"containers={quote(n, safe='')}" for n in names)
    status, data = request_json(
        path, "GET", f"{API}/containers/stats?stream=false&{query}", timeout=timeout
    )
    if status != 200 or not isinstance(data, dict):
        raise PodmanApiError(f"container stats failed ({status}): {_message(data)}")
    return {str(s.get("Name")): s for s in data.get("Stats") or []}


def _image_inspect(path: Path, ref: str, timeout: float) -> dict[str, Any] | None:
    """`podman image inspect` of a local image; None when it is not here."""
    status, data = request_json(
        path, "GET", f"{API}/images/{quote(ref, safe='')}/json", None, timeout
    )
    if status == 404:
        return None
    if status != 200 or not isinstance(data, dict):
        raise PodmanApiError(f"image inspect {ref!r} failed ({status}): {_message(data)}")
    return data


def image_id(path: Path, ref: str, timeout: float = 30.0) -> str | None:
    """The id of the image `ref` names locally, or None."""
    data = _image_inspect(path, ref, timeout)
    return None if data is None else str(data.get("Id"))


def image_pull(path: Path, ref: str, timeout: float = 1800.0) -> str:
    """Pull `ref` from its registry; the resulting image id. Podman streams JSON progress
    objects and ends with one that has "id" (or "error")."""
    status, data = request_json(
        path, "POST", f"{API}/images/pull?reference={quote(ref, safe='')}&quiet=true",
        None, timeout,
    )  # fmt: skip
    text = data if isinstance(data, str) else json.dumps(data)
    last: dict[str, Any] = {}
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict):
                last = item if ("id" in item or "error" in item) else last
    if isinstance(data, dict):
        last = data
    if status != 200 or "error" in last or "id" not in last:
        why = last.get("error") or _message(data)
        raise PodmanApiError(f"cannot pull {ref}: {why}")
    return str(last["id"])


def image_tag(path: Path, image: str, ref: str, timeout: float = 30.0) -> None:
    """Point `ref` (repo:tag) at `image` again (the roll-back of an update)."""
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        repo, tag = ref, "latest"
    query = f"repo={quote(repo, safe='')}&tag={quote(tag, safe='')}"
    status, data = request_json(
        path, "POST", f"{API}/images/{quote(image, safe='')}/tag?{query}", None, timeout
    )
    if status not in (200, 201):
        raise PodmanApiError(f"cannot tag {image[:12]} as {ref} ({status}): {_message(data)}")


@dataclass(frozen=True)
class ContainerSummary:
    """One row of `podman ps -a` with what `aistack migrate` needs of a container: the
    compose labels that say which project and service it is, and its bind mounts."""

    id: str
    name: str
    running: bool
    labels: Mapping[str, str]
    mounts: tuple[tuple[str, str], ...]  # (host source, container destination)
    ports: tuple[str, ...] = ()  # host ports it publishes
    restart_policy: str = ""  # no, always, unless-stopped, on-failure ("" when none)


def containers(path: Path, timeout: float = 30.0) -> list[ContainerSummary]:
    """Every container (running or not), with its mounts (each inspected)."""
    status, data = request_json(path, "GET", f"{API}/containers/json?all=true", None, timeout)
    if status != 200 or not isinstance(data, list):
        raise PodmanApiError(f"cannot list containers ({status}): {_message(data)}")
    out = []
    for row in data:
        if not isinstance(row, dict):
            continue
        names = row.get("Names") or []
        name = _text(names[0]) if names else _text(row.get("Id"))
        inspected = container_inspect(path, name, timeout) or {}
        mounts = tuple(
            (_text(m.get("Source")), _text(m.get("Destination")))
            for m in inspected.get("Mounts") or []
            if isinstance(m, dict)
        )
        labels = row.get("Labels") if isinstance(row.get("Labels"), dict) else {}
        ports = tuple(str(p.get("host_port")) for p in row.get("Ports") or []
                      if isinstance(p, dict) and p.get("host_port"))  # fmt: skip
        policy = _dict(_dict(inspected.get("HostConfig")).get("RestartPolicy")).get("Name")
        out.append(ContainerSummary(
            _text(row.get("Id")), name, _text(row.get("State")) == "running",
            {str(k): _text(v) for k, v in (labels or {}).items()}, mounts, ports,
            _text(policy),
        ))  # fmt: skip
    return out


def _container_post(path: Path, name: str, action: str, timeout: float) -> int:
    status, data = request_json(
        path, "POST", f"{API}/containers/{quote(name, safe='')}/{action}", None, timeout
    )
    if status == 404:
        raise ContainerNotFound(f"no container {name!r}")
    if status not in (200, 204, 304):
        raise PodmanApiError(f"cannot {action.split('?')[0]} {name!r} ({status}): {_message(data)}")
    return status


def container_stop(path: Path, name: str, stop_timeout: int = 30) -> None:
    """Stop a container (SIGTERM, then SIGKILL after `stop_timeout`); a stopped one is left."""
    _container_post(path, name, f"stop?timeout={stop_timeout}", stop_timeout + 30.0)


def container_start(path: Path, name: str, timeout: float = 120.0) -> None:
    """Start a container; a running one is left."""
    _container_post(path, name, "start", timeout)


def container_restart_policy(path: Path, name: str, policy: str, timeout: float = 30.0) -> None:
    """Change a container's restart policy (`podman update --restart`, Podman 5.1): an old
    container must not come back by itself (podman-restart.service at boot)."""
    query = f"update?restartPolicy={quote(policy, safe='')}"
    status, data = request_json(
        path, "POST", f"{API}/containers/{quote(name, safe='')}/{query}", {}, timeout
    )
    if status == 404:
        raise ContainerNotFound(f"no container {name!r}")
    if status not in (200, 201, 204):
        raise PodmanApiError(
            f"cannot set the restart policy of {name!r} to {policy} ({status}): {_message(data)}"
        )


def container_rename(path: Path, name: str, new: str, timeout: float = 30.0) -> None:
    _container_post(path, name, f"rename?name={quote(new, safe='')}", timeout)


def volume_mountpoint(
    path: Path, name: str, create: bool = False, timeout: float = 30.0
) -> Path | None:
    """Where a named volume's data lies on this host; None when there is no such volume
    (created first, empty, with `create`)."""
    status, data = request_json(path, "GET", f"{API}/volumes/{quote(name, safe='')}/json",
                                None, timeout)  # fmt: skip
    if status == 404 and create:
        status, data = request_json(path, "POST", f"{API}/volumes/create", {"Name": name}, timeout)
    if status == 404:
        return None
    if status not in (200, 201) or not isinstance(data, dict) or not data.get("Mountpoint"):
        raise PodmanApiError(f"cannot inspect volume {name!r} ({status}): {_message(data)}")
    return Path(str(data["Mountpoint"]))


def image_env(path: Path, ref: str, timeout: float = 30.0) -> dict[str, str] | None:
    """The environment an image sets (its ENV lines), or None when it is not here."""
    data = _image_inspect(path, ref, timeout)
    if data is None:
        return None
    return _env_of(_dict(data.get("Config")))
