"""Service probes: ask each service of the stack whether it works, not only whether it runs.

A container's health check says "the process answers"; these probes say what a person
needs to fix when something does not: LiteLLM answering while its database is gone, Open
WebUI up but unable to reach Ollama from its own network namespace (the seed's "Open
WebUI can't connect to Ollama"), PostgreSQL rejecting connections.

Each probe is a set of checks. A check with `heals=True` counts toward restarting *this*
service when it fails; one with `heals=False` is only reported (a warning), because a
restart of this service would not fix it (Open WebUI is never restarted for Ollama's
sake), or because the check could not be carried out at all (the Podman API failing is
the agent's problem, not the service's).

HTTP checks go to the container's address on the stack network and its container port,
not the published host port: ports may be unpublished (behind Traefik), and the agent
runs rootful on the host, so bridge addresses are reachable. Checks that must run inside
a container (pg_isready, Open WebUI's view of Ollama) go through the libpod exec API,
in a thread (podman_api is blocking). Every check is bounded by the probe timeout.
"""

from __future__ import annotations

import asyncio
import errno
import json
import math
import re
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .. import podman_api
from ..config import StackConfig
from ..ollama_api import parse_ps, parse_version
from ..podman_api import Container
from .model import SERVICES, enabled_names

STACK_NETWORK = "aistack"  # units/aistack.network: NetworkName=aistack
# The port each service listens on inside its container (not the published one).
CONTAINER_PORTS: Mapping[str, int] = {s.name: s.port for s in SERVICES}
DEFAULT_OLLAMA_URL = "http://ollama:11434"
# A probe_service that overruns its timeout by this much is cut off (a safety net: every
# check is bounded on its own, but a wedged Podman API must not stall the watcher).
_GRACE = 2.0
_BODY_CAP = 64 * 1024
_EXCERPT = 120
_OUTPUT_CAP = 4096
_CREDENTIALS = re.compile(r"(://[^/@\s:]+:)[^@\s/]+@")


@dataclass(frozen=True)
class Check:
    """One question asked of a service, and its answer."""

    name: str  # e.g. "api/version", "health/db", "reach-ollama", "pg_isready", "readiness"
    ok: bool
    detail: str  # "ok" (or a short fact, e.g. "2 models loaded"), else the actionable failure
    heals: bool  # True: a failure counts toward restarting THIS service; False: reported only


@dataclass(frozen=True)
class ProbeResult:
    """All checks of one service; `reason` is the one line a person reads first."""

    service: str
    ok: bool  # every check with heals=True passed
    reason: str | None  # None when ok; else "<service>: <what failed>"
    checks: tuple[Check, ...]
    warnings: tuple[str, ...]  # failed heals=False checks, each "<service>: <sentence>."


def _result(service: str, checks: Sequence[Check]) -> ProbeResult:
    failing = [c for c in checks if c.heals and not c.ok]
    warnings = tuple(
        f"{service}: {c.detail.rstrip('.')}." for c in checks if not c.heals and not c.ok
    )
    reason = f"{service}: " + "; ".join(c.detail for c in failing) if failing else None
    return ProbeResult(service, not failing, reason, tuple(checks), warnings)


def _scrub(text: str) -> str:
    """Drop URL passwords (a database URL in an error message) and control characters."""
    text = _CREDENTIALS.sub(r"\1<redacted>@", text)
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _excerpt(body: bytes | str) -> str:
    text = _scrub(body.decode(errors="replace") if isinstance(body, bytes) else body)
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _inner_seconds(timeout: float) -> int:
    """Whole seconds for a tool inside a container (curl -m, pg_isready -t: 0 is "no
    limit" there), leaving about a second of the probe's timeout for the exec calls."""
    return max(1, math.floor(timeout) - 1)


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body)


_Judge = Callable[[_Answer], tuple[bool, str]]  # reads an answer that arrived: (ok, detail)


class _Failed(Exception):
    """An HTTP check failed before an answer: the message is the check's detail."""


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


async def _get(
    session: aiohttp.ClientSession,
    address: str,
    port: int,
    path: str,
    within: float,
    headers: Mapping[str, str] | None = None,
) -> _Answer:
    """GET http://address:port/path, any status; _Failed with an actionable text on no answer."""
    where = f"{address}:{port}"
    url = f"http://{_host(address)}:{port}{path}"
    try:
        async with session.get(
            url,
            timeout=aiohttp.ClientTimeout(total=within),
            allow_redirects=False,
            headers=dict(headers or {}),
        ) as resp:
            parts: list[bytes] = []
            size = 0
            while size < _BODY_CAP and (chunk := await resp.content.read(_BODY_CAP - size)):
                parts.append(chunk)
                size += len(chunk)
            return _Answer(resp.status, b"".join(parts))
    except TimeoutError:
        raise _Failed(f"{path} did not answer within {_seconds(within)}") from None
    except aiohttp.ClientConnectorError as exc:
        code = exc.os_error.errno
        if code == errno.ECONNREFUSED:
            raise _Failed(f"{path}: connection refused on {where}") from None
        if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            raise _Failed(f"{path}: no route to {where} (is the agent on the host?)") from None
        why = exc.os_error.strerror or str(exc.os_error)
        raise _Failed(f"{path}: cannot connect to {where}: {why}") from None
    except aiohttp.ServerDisconnectedError:
        raise _Failed(f"{path}: {where} closed the connection without answering") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise _Failed(f"{path}: request to {where} failed: {_scrub(str(exc)) or exc!r}") from None


def _status_problem(path: str, answer: _Answer) -> str | None:
    if 200 <= answer.status < 300:
        return None
    excerpt = _excerpt(answer.body)
    return f"{path} answered {answer.status}" + (f": {excerpt}" if excerpt else "")


def _json_or_problem(path: str, answer: _Answer) -> tuple[Any, str | None]:
    """A 2xx JSON body, or why the answer is not one."""
    problem = _status_problem(path, answer)
    if problem:
        return None, problem
    try:
        return answer.json(), None
    except ValueError:
        return None, f"{path} answered {answer.status} but not JSON: {_excerpt(answer.body)!r}"


async def _http_check(
    name: str,
    heals: bool,
    session: aiohttp.ClientSession,
    address: str,
    port: int,
    path: str,
    within: float,
    judge: _Judge,
) -> Check:
    """One GET, judged when an answer arrives; no answer is a failure of its own."""
    try:
        answer = await _get(session, address, port, path, within)
    except _Failed as exc:
        return Check(name, False, str(exc), heals)
    ok, detail = judge(answer)
    return Check(name, ok, detail, heals)


def _plain_ok(path: str) -> _Judge:
    """Any 2xx is fine (liveliness answers a bare JSON string)."""

    def judge(answer: _Answer) -> tuple[bool, str]:
        problem = _status_problem(path, answer)
        return (False, problem) if problem else (True, "ok")

    return judge


def _status_true(path: str) -> _Judge:
    """Open WebUI's /health and /health/db: 2xx with {"status": true}."""

    def judge(answer: _Answer) -> tuple[bool, str]:
        data, problem = _json_or_problem(path, answer)
        if problem:
            return False, problem
        if not isinstance(data, dict) or data.get("status") is not True:
            return False, f"{path} does not report status true: {_excerpt(json.dumps(data))}"
        return True, "ok"

    return judge


def _ollama_version(answer: _Answer) -> tuple[bool, str]:
    path = "/api/version"
    data, problem = _json_or_problem(path, answer)
    if problem:
        return False, problem
    try:
        parse_version(data)
    except ValueError:
        return False, f"{path} answered without a version: {_excerpt(json.dumps(data))}"
    return True, "ok"


def _ollama_ps(answer: _Answer) -> tuple[bool, str]:
    path = "/api/ps"
    data, problem = _json_or_problem(path, answer)
    if problem:
        return False, problem
    try:
        models = parse_ps(data)
    except ValueError as exc:
        return False, f"{path}: {exc}"
    return True, f"{len(models)} model{'' if len(models) == 1 else 's'} loaded"


def _litellm_readiness(with_database: bool) -> _Judge:
    """LiteLLM's /health/readiness: "db" is "connected", "Not connected" (no DATABASE_URL)
    or an error; it answers 503 when the database check raised. With the stack's
    PostgreSQL in use, anything but "connected" means LiteLLM cannot keep keys or spend."""
    path = "/health/readiness"

    def judge(answer: _Answer) -> tuple[bool, str]:
        try:
            data = answer.json()
        except ValueError:
            data = None
        db = data.get("db") if isinstance(data, dict) else None
        if with_database and db is not None and db != "connected":
            return False, f"database not connected (readiness: db={_excerpt(str(db))})"
        problem = _status_problem(path, answer)
        if problem:
            return False, problem
        if not isinstance(data, dict):
            return False, f"{path} answered {answer.status} but not a JSON object: " + repr(
                _excerpt(answer.body)
            )
        if with_database and db is None:
            return False, "database not connected (readiness: no db field)"
        return True, "ok"

    return judge


# --------------------------------------------------------------------------- exec


@dataclass(frozen=True)
class _ExecOutcome:
    code: int | None  # None: did not finish in time
    output: str  # stdout and stderr, the first few KiB


class _ExecUnavailable(Exception):
    """The command could not be run (Podman API error): the check is inconclusive."""


def _run_exec(socket: Path, container: str, cmd: Sequence[str], within: float) -> _ExecOutcome:
    """Run cmd in the container and wait at most `within` seconds (blocking: a thread);
    the tools run here carry their own time limit too, so none lingers."""
    try:
        result = podman_api.run_exec(
            socket, container, cmd, within, env=["LC_MESSAGES=C"], cap=_OUTPUT_CAP
        )
    except podman_api.ContainerNotFound:
        raise _ExecUnavailable(f"container {container!r} went away during the probe") from None
    except podman_api.ExecStreamError as exc:
        raise _ExecUnavailable(f"exec stream broke: {exc}") from None
    except podman_api.PodmanApiError as exc:
        raise _ExecUnavailable(str(exc)) from None
    return _ExecOutcome(result.exit_code, result.output)


def _last_line(text: str, prefixes: Sequence[str] = ()) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = re.sub(r"^curl: \(\d+\)\s*", "", lines[-1] if lines else "")
    for prefix in prefixes:
        if line.startswith(prefix):
            line = line[len(prefix) :].strip()
    return _excerpt(line)


_PG_ISREADY = {
    1: "server is rejecting connections (starting up, shutting down or in recovery?)",
    2: "no response from the server on 127.0.0.1:5432 (not running, or not listening?)",
    3: "no attempt was made (bad parameters: check stack.postgres.user and .database)",
}


async def _pg_isready(stack: StackConfig, socket: Path, within: float) -> Check:
    name = "pg_isready"
    pg = stack.postgres
    cmd = ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", pg.user, "-d", pg.database,
           "-t", str(_inner_seconds(within))]  # fmt: skip
    try:
        out = await asyncio.to_thread(_run_exec, socket, "postgres", cmd, within)
    except _ExecUnavailable as exc:
        return Check(name, False, f"could not run pg_isready in the container: {exc}", False)
    if out.code is None:
        return Check(name, False, f"pg_isready did not finish within {_seconds(within)}", True)
    if out.code == 0:
        return Check(name, True, "ok", True)
    if out.code in (126, 127):
        why = "pg_isready is not in the container's image; cannot check"
        return Check(name, False, why, False)
    meaning = _PG_ISREADY.get(out.code) or _last_line(out.output) or "no message"
    return Check(name, False, f"pg_isready: {meaning} (exit {out.code})", True)


# PostgreSQL's SSLRequest: length 8, code 80877103. The server answers one byte, S or N,
# from the backend it forks for the connection: an answer means the postmaster accepts
# and forks, which a hung (SIGSTOPped) or dead server does not. Closing after the byte is
# not logged by the server (no startup packet is "no data at all").
SSL_REQUEST = struct.pack("!ii", 8, 80877103)


async def _pg_answers(address: str, port: int, within: float) -> Check:
    """The cheap PostgreSQL check of the rounds between pg_isready's: a protocol answer
    over the network, no `podman exec`."""
    name = "protocol"
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(address, port)
            try:
                writer.write(SSL_REQUEST)
                await writer.drain()
                reply = await reader.read(1)
            finally:
                writer.close()
    except TimeoutError:
        return Check(name, False, f"no protocol answer from {address}:{port} within "
                     f"{_seconds(within)} (hung?)", True)  # fmt: skip
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        return Check(name, False, f"cannot connect to {address}:{port}: {why}", True)
    if reply in (b"S", b"N"):
        return Check(name, True, "answers", True)
    return Check(name, False, f"{address}:{port} answered {reply!r}, not PostgreSQL", True)


# The checks that run in a container (`podman exec`): only in deep probe rounds.
DEEP_ONLY = frozenset({"pg_isready", "reach-ollama"})


def with_carried(result: ProbeResult, carried: Sequence[Check]) -> ProbeResult:
    """`result` with checks carried over from the last deep round (reported, never
    counted: a stale answer must not restart anything)."""
    return _result(result.service, [*result.checks, *(c for c in carried if not c.heals)])


_CURL_EXITS = {
    6: "could not resolve the host name",
    7: "could not connect",
    28: "timed out",
    52: "empty reply from the server",
    56: "connection broke while receiving",
}


def curl_failure(code: int, output: str) -> str:
    meaning = _CURL_EXITS.get(code)
    if code == 7 and "refused" in output.lower():
        meaning = "connection refused"
    if meaning is None:
        meaning = _last_line(output, ("wget:", "curl:")) or "no message"
    return f"curl exit {code}: {meaning}"


def webui_ollama_url(env: Mapping[str, str]) -> str | None:
    """Where Open WebUI looks for Ollama (OLLAMA_BASE_URL, or the first of the newer
    ;-separated OLLAMA_BASE_URLS); None when its Ollama API is switched off."""
    if env.get("ENABLE_OLLAMA_API", "true").strip().lower() in ("false", "0", "no"):
        return None
    url = env.get("OLLAMA_BASE_URL") or env.get("OLLAMA_BASE_URLS", "").split(";")[0]
    return (url.strip() or DEFAULT_OLLAMA_URL).rstrip("/")


def _safe_url(url: str) -> str:
    """The URL without credentials, for messages."""
    return _CREDENTIALS.sub(r"\1<redacted>@", url)


async def _reach_ollama(url: str, socket: Path, within: float) -> Check:
    """Open WebUI's own view of Ollama: curl from inside its network namespace, where
    its DNS (aardvark) and network membership apply. Never heals: restarting Open WebUI
    does not bring Ollama back, and Open WebUI says so itself while it is gone."""
    name = "reach-ollama"
    inner = _inner_seconds(within)
    cmd = ["curl", "-fsS", "-m", str(inner), "-o", "/dev/null", f"{url}/api/version"]
    shown = _safe_url(url)
    try:
        out = await asyncio.to_thread(_run_exec, socket, "open-webui", cmd, within)
    except _ExecUnavailable as exc:
        return Check(name, False, f"could not check whether it reaches Ollama: {exc}", False)
    if out.code == 0:
        return Check(name, True, "ok", False)
    if out.code in (126, 127):
        why = "curl is not in the container's image; cannot check whether it reaches Ollama"
        return Check(name, False, why, False)
    why = f"did not finish within {_seconds(within)}" if out.code is None \
        else curl_failure(out.code, out.output)  # fmt: skip
    return Check(
        name,
        False,
        f"cannot reach Ollama at {shown} from its network namespace ({why}); check that "
        f"ollama.service is running, `podman network inspect {STACK_NETWORK}` and that "
        "both containers are on it",
        False,
    )


# --------------------------------------------------------------------------- services


def _own_database(env: Mapping[str, str]) -> bool:
    """Whether Open WebUI's database is its own (SQLite in its volume, or one the agent
    does not manage), rather than the stack's PostgreSQL (host postgres or its alias db)."""
    url = env.get("DATABASE_URL", "")
    if not url or url.startswith("sqlite"):
        return True
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return True
    return host not in ("postgres", "db")


def _down(service: str, name: str, detail: str) -> ProbeResult:
    return _result(service, [Check(name, False, detail, True)])


async def probe_service(
    service: str,
    container: Container | None,
    stack: StackConfig,
    socket: Path,
    timeout: float,  # noqa: ASYNC109 (bounds each check; asyncio.timeout cannot say which)
    session: aiohttp.ClientSession,
    ports: Mapping[str, int] = CONTAINER_PORTS,
    deep: bool = True,
) -> ProbeResult:
    """Probe one service; `container` is its container as Podman inspects it (None: no
    container). Its checks run concurrently, each bounded by `timeout`. Without `deep`,
    only what the agent asks over the network itself: the checks that run in a container
    (DEEP_ONLY, each a `podman exec`) are left out, and PostgreSQL is asked for a protocol
    answer instead of pg_isready."""
    if container is None:
        return _down(service, "container", f"no container (is {service}.service running?)")
    if not container.running:
        status = container.status or "not running"
        code = container.exit_code
        extra = f", exit code {code}" if code is not None and status == "exited" else ""
        return _down(
            service,
            "container",
            f"container is not running ({status}{extra}); see journalctl -u {service}.service",
        )
    if service == "postgres" and deep:
        return _result(service, [await _pg_isready(stack, socket, timeout)])
    address = container.address(STACK_NETWORK)
    if address is None:
        return _down(
            service,
            "container",
            f"container has no IP address on the {STACK_NETWORK} network; "
            f"check `podman network inspect {STACK_NETWORK}`",
        )
    port = ports[service]
    if service == "postgres":
        return _result(service, [await _pg_answers(address, port, timeout)])

    def http(name: str, heals: bool, path: str, judge: _Judge) -> Awaitable[Check]:
        return _http_check(name, heals, session, address, port, path, timeout, judge)

    checks: list[Awaitable[Check]] = []
    if service == "ollama":
        checks.append(http("api/version", True, "/api/version", _ollama_version))
        checks.append(http("api/ps", False, "/api/ps", _ollama_ps))
    elif service == "open-webui":
        env = container.env
        checks.append(http("health", True, "/health", _status_true("/health")))
        # Open WebUI's database is its own (SQLite in its volume): when /health/db fails,
        # the UI cannot log anyone in, and restarting it re-opens the database. Only when
        # it is pointed at the stack's PostgreSQL is that PostgreSQL's probe the one
        # that heals, and this check is reported only.
        checks.append(
            http("health/db", _own_database(env), "/health/db", _status_true("/health/db"))
        )
        url = webui_ollama_url(env)
        if deep and stack.ollama.enabled and url is not None:
            checks.append(_reach_ollama(url, socket, timeout))
    elif service == "litellm":
        checks.append(
            http("liveliness", True, "/health/liveliness", _plain_ok("/health/liveliness"))
        )
        readiness = _litellm_readiness(stack.postgres.enabled)
        checks.append(http("readiness", True, "/health/readiness", readiness))
    else:
        raise ValueError(f"no probe for service {service!r}")
    return _result(service, await asyncio.gather(*checks))


async def _bounded(
    service: str,
    container: Container | None,
    stack: StackConfig,
    socket: Path,
    within: float,
    session: aiohttp.ClientSession,
    ports: Mapping[str, int],
    deep: bool = True,
) -> ProbeResult:
    """probe_service with a safety net: an overrun or an unexpected error is the agent's
    trouble, reported but never counted toward a restart."""
    try:
        return await asyncio.wait_for(
            probe_service(service, container, stack, socket, within, session, ports, deep),
            within + _GRACE,
        )
    except TimeoutError:
        detail = f"probe did not finish within {_seconds(within + _GRACE)} (Podman API stuck?)"
    except Exception as exc:  # one service's probe must not take the others down
        detail = f"probe failed: {type(exc).__name__}: {_excerpt(str(exc))}"
    return _result(service, [Check("probe", False, detail, False)])


async def probe_all(
    stack: StackConfig,
    socket: Path,
    timeout: float,  # noqa: ASYNC109 (bounds each check, see probe_service)
    containers: Mapping[str, Container | None],
    ports: Mapping[str, int] = CONTAINER_PORTS,
    deep: bool = True,
) -> dict[str, ProbeResult]:
    """Probe every enabled service concurrently (one HTTP session); service -> result.
    A service missing from `containers` has no container. `deep`: see probe_service."""
    enabled = enabled_names(stack)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        results = await asyncio.gather(
            *(
                _bounded(name, containers.get(name), stack, socket, timeout, session, ports, deep)
                for name in enabled
            )
        )
    return dict(zip(enabled, results, strict=True))


async def litellm_key_status(address: str, port: int, key: str | None, within: float) -> int:
    """The HTTP status LiteLLM's API answers GET /v1/models with `key` as the bearer
    token (None: no token); 0 when it did not answer. `aistack migrate` checks that the
    old master key is accepted, and that a request without it is not."""
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with aiohttp.ClientSession() as session:
        try:
            return (await _get(session, address, port, "/v1/models", within, headers)).status
        except _Failed:
            return 0
