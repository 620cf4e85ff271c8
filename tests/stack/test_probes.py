"""Service probes against real HTTP servers on 127.0.0.1.

The servers are fault-injection stand-ins (FaultServer): each answers the paths a test
gives it, with a 500, a hang, malformed JSON or a readiness whose database is gone, so
every failure text is checked as a person would read it. Inspected containers point the
probes at 127.0.0.1 (the real ones carry the container's bridge address). The checks that run
inside containers (pg_isready, Open WebUI's view of Ollama) run for real in
tests/e2e/test_probes.py; here they meet a Podman socket that does not exist, which must
be reported and never count toward a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.config import OllamaConfig, PostgresConfig, StackConfig
from agent.podman_api import Container
from agent.stack import probes
from agent.stack.probes import ProbeResult, probe_all, probe_service
from tests.backup.conftest import PgServer

Route = tuple[int, Any] | str  # (status, JSON body) or "hang" or "garbage"


class FaultServer:
    """A real aiohttp server answering each path as told; "hang" never answers (until the
    test ends or the client gives up), "garbage" answers 200 with a body that is not JSON.

    Servers given one `hanging` set share it: it holds (name, path) of every hung request
    whose client is still waiting, and `together` records it each time one starts, so a
    test sees which hangs were waited on at the same time (concurrency, not speed)."""

    def __init__(self, name: str = "", hanging: set[tuple[str, str]] | None = None) -> None:
        self.name = name
        self.routes: dict[str, Route] = {}
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.hanging = hanging if hanging is not None else set()
        self.together: list[frozenset[tuple[str, str]]] = []

    async def _hang(self, request: web.Request) -> None:
        key = (self.name, request.path)
        self.hanging.add(key)
        self.together.append(frozenset(self.hanging))
        try:
            while not self.release.is_set():
                if request.transport is None or request.transport.is_closing():
                    return  # the client gave up (its timeout)
                await asyncio.sleep(0.01)
        finally:
            self.hanging.discard(key)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        route = self.routes.get(request.path, (404, {"detail": "Not Found"}))
        if route == "hang":
            await self._hang(request)
            return web.Response(status=599)
        if route == "garbage":
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        assert not isinstance(route, str)
        status, body = route
        return web.json_response(body, status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[FaultServer]:
    srv = FaultServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def closed_port() -> int:
    """A port where nothing listens: connection refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_inspect(env: tuple[str, ...] = (), address: str = "127.0.0.1") -> dict[str, Any]:
    """The parts of a libpod container inspect the probes read."""
    return {
        "State": {"Running": True, "Status": "running"},
        "NetworkSettings": {"Networks": {"aistack": {"IPAddress": address}}},
        "Config": {"Env": list(env)},
    }


def inspect(env: tuple[str, ...] = (), address: str = "127.0.0.1") -> Container:
    return Container.from_inspect(raw_inspect(env, address))


NO_PODMAN = Path("/nonexistent/podman.sock")  # the exec-based checks cannot run
OLLAMA_OK: dict[str, Route] = {
    "/api/version": (200, {"version": "0.6.8"}),
    "/api/ps": (200, {"models": [{"name": "a:1b", "size": 10}, {"name": "b:7b", "size": 20}]}),
}
WEBUI_OK: dict[str, Route] = {
    "/health": (200, {"status": True}),
    "/health/db": (200, {"status": True}),
}
LITELLM_OK: dict[str, Route] = {
    "/health/liveliness": (200, "I'm alive!"),
    "/health/readiness": (200, {"status": "connected", "db": "connected", "cache": None}),
}

Probe = Callable[..., Any]


@pytest.fixture
def probe(server: FaultServer, session: aiohttp.ClientSession) -> Probe:
    async def run(
        service: str,
        routes: Mapping[str, Route],
        stack: StackConfig | None = None,
        within: float = 2.0,
        info: Container | None = None,
    ) -> ProbeResult:
        server.routes = dict(routes)
        return await probe_service(
            service,
            inspect() if info is None else info,
            stack or StackConfig(),
            NO_PODMAN,
            within,
            session,
            ports={service: server.port},
        )

    return run


# --------------------------------------------------------------------------- Ollama


async def test_ollama_healthy_reports_loaded_models(probe: Probe) -> None:
    result = await probe("ollama", OLLAMA_OK)
    assert result.ok and result.reason is None and result.warnings == ()
    checks = {c.name: c for c in result.checks}
    assert checks["api/version"] == probes.Check("api/version", True, "ok", True)
    assert checks["api/ps"] == probes.Check("api/ps", True, "2 models loaded", False)


async def test_ollama_500_is_a_reason_with_the_body(probe: Probe) -> None:
    routes = {**OLLAMA_OK, "/api/version": (500, {"error": "injected fault: 500"})}
    result = await probe("ollama", routes)
    assert not result.ok
    assert result.reason == 'ollama: /api/version answered 500: {"error": "injected fault: 500"}'


async def test_hung_server_is_cut_at_the_timeout(probe: Probe) -> None:
    result = await probe("ollama", {**OLLAMA_OK, "/api/version": "hang"}, within=0.3)
    assert result.reason == "ollama: /api/version did not answer within 0.3s"


async def test_refused_names_the_address(session: aiohttp.ClientSession) -> None:
    port = closed_port()
    result = await probe_service(
        "ollama", inspect(), StackConfig(), NO_PODMAN, 1.0, session, ports={"ollama": port}
    )
    assert result.reason == f"ollama: /api/version: connection refused on 127.0.0.1:{port}"
    # /api/ps fails too, but only as a warning: it does not heal
    assert result.warnings == (f"ollama: /api/ps: connection refused on 127.0.0.1:{port}.",)


async def test_malformed_json_is_not_an_answer(probe: Probe) -> None:
    result = await probe("ollama", {**OLLAMA_OK, "/api/version": "garbage"})
    assert result.reason is not None
    assert result.reason.startswith("ollama: /api/version answered 200 but not JSON: ")
    assert "502 Bad Gateway" in result.reason


async def test_ps_failure_is_reported_not_healed(probe: Probe) -> None:
    result = await probe("ollama", {**OLLAMA_OK, "/api/ps": (200, {"models": "none"})})
    assert result.ok and result.reason is None
    assert result.warnings == ("ollama: /api/ps: not an /api/ps answer (no 'models' list).",)


# --------------------------------------------------------------------------- LiteLLM


async def test_litellm_healthy(probe: Probe) -> None:
    result = await probe("litellm", LITELLM_OK)
    assert result.ok and [c.name for c in result.checks] == ["liveliness", "readiness"]
    assert all(c.heals for c in result.checks)


async def test_litellm_database_disconnected(probe: Probe) -> None:
    body = {"status": "unhealthy", "db": "disconnected", "cache": None}
    result = await probe("litellm", {**LITELLM_OK, "/health/readiness": (503, body)})
    assert not result.ok
    assert result.reason == "litellm: database not connected (readiness: db=disconnected)"


async def test_litellm_not_connected_matters_only_with_the_stack_database(probe: Probe) -> None:
    routes = {
        **LITELLM_OK,
        "/health/readiness": (200, {"status": "healthy", "db": "Not connected"}),
    }
    result = await probe("litellm", routes)
    assert result.reason == "litellm: database not connected (readiness: db=Not connected)"
    without = StackConfig(postgres=PostgresConfig(enabled=False))
    assert (await probe("litellm", routes, stack=without)).ok


async def test_litellm_database_error_text_keeps_no_password(probe: Probe) -> None:
    db = "error: cannot connect to postgresql://llmproxy:s3cr3t-pass@postgres:5432/litellm"
    result = await probe("litellm", {**LITELLM_OK, "/health/readiness": (200, {"db": db})})
    assert result.reason is not None and "s3cr3t" not in result.reason
    assert "postgresql://llmproxy:<redacted>@postgres:5432/litellm" in result.reason


async def test_litellm_liveliness_500(probe: Probe) -> None:
    routes = {**LITELLM_OK, "/health/liveliness": (500, {"error": "boom"})}
    result = await probe("litellm", routes)
    assert result.reason == 'litellm: /health/liveliness answered 500: {"error": "boom"}'


# --------------------------------------------------------------------------- Open WebUI


async def test_webui_healthy_and_unreachable_podman_is_only_a_warning(probe: Probe) -> None:
    result = await probe("open-webui", WEBUI_OK)
    assert result.ok and result.reason is None
    reach = {c.name: c for c in result.checks}["reach-ollama"]
    assert not reach.ok and not reach.heals
    (warning,) = result.warnings
    assert warning.startswith("open-webui: could not check whether it reaches Ollama: ")
    assert "cannot reach the Podman API" in warning and warning.endswith(".")


async def test_webui_without_ollama_has_no_reach_check(probe: Probe) -> None:
    stack = StackConfig(ollama=OllamaConfig(enabled=False))
    result = await probe("open-webui", WEBUI_OK, stack=stack)
    assert [c.name for c in result.checks] == ["health", "health/db"]
    assert result.ok and result.warnings == ()
    off = inspect(env=("ENABLE_OLLAMA_API=false",))
    result = await probe("open-webui", WEBUI_OK, info=off)
    assert [c.name for c in result.checks] == ["health", "health/db"]


async def test_webui_own_database_failure_heals(probe: Probe) -> None:
    routes = {**WEBUI_OK, "/health/db": (500, {"detail": "database is locked"})}
    result = await probe(
        "open-webui", routes, stack=StackConfig(ollama=OllamaConfig(enabled=False))
    )
    assert result.reason == 'open-webui: /health/db answered 500: {"detail": "database is locked"}'


async def test_webui_on_the_stack_postgres_leaves_healing_to_postgres(probe: Probe) -> None:
    routes = {**WEBUI_OK, "/health/db": (500, {"detail": "connection refused"})}
    info = inspect(env=("DATABASE_URL=postgresql://webui:pw@postgres:5432/webui",))
    stack = StackConfig(ollama=OllamaConfig(enabled=False))
    result = await probe("open-webui", routes, stack=stack, info=info)
    assert result.ok
    assert result.warnings == (
        'open-webui: /health/db answered 500: {"detail": "connection refused"}.',
    )
    assert all("pw" not in w for w in result.warnings)


async def test_webui_health_false(probe: Probe) -> None:
    routes = {**WEBUI_OK, "/health": (200, {"status": False})}
    result = await probe(
        "open-webui", routes, stack=StackConfig(ollama=OllamaConfig(enabled=False))
    )
    assert result.reason == 'open-webui: /health does not report status true: {"status": false}'


# --------------------------------------------------------------------------- containers


async def test_no_container(probe: Probe, session: aiohttp.ClientSession) -> None:
    result = await probe_service("litellm", None, StackConfig(), NO_PODMAN, 1.0, session)
    assert not result.ok
    assert result.reason == "litellm: no container (is litellm.service running?)"


async def test_stopped_container_and_no_address(probe: Probe) -> None:
    exited = Container.from_inspect(
        {**raw_inspect(), "State": {"Running": False, "Status": "exited", "ExitCode": 1}}
    )
    result = await probe("ollama", OLLAMA_OK, info=exited)
    assert result.reason == (
        "ollama: container is not running (exited, exit code 1); see journalctl -u ollama.service"
    )
    detached = Container.from_inspect({**raw_inspect(), "NetworkSettings": {"Networks": {}}})
    result = await probe("ollama", OLLAMA_OK, info=detached)
    assert result.reason == (
        "ollama: container has no IP address on the aistack network; "
        "check `podman network inspect aistack`"
    )


async def test_postgres_without_podman_api_is_inconclusive(probe: Probe) -> None:
    result = await probe("postgres", {})
    assert result.ok and result.reason is None
    (warning,) = result.warnings
    assert warning.startswith("postgres: could not run pg_isready in the container: ")


async def pg_quick(port: int, session: aiohttp.ClientSession, within: float = 1.0) -> ProbeResult:
    """The probe rounds between pg_isready's: a protocol answer over the network."""
    return await probe_service("postgres", inspect(), StackConfig(), NO_PODMAN, within,
                               session, ports={"postgres": port}, deep=False)  # fmt: skip


async def test_postgres_quick_check_gets_an_answer_from_a_real_server(
    pg_server: PgServer, session: aiohttp.ClientSession
) -> None:
    result = await pg_quick(pg_server.port, session)
    assert result.ok, result
    assert [c.name for c in result.checks] == ["protocol"]


async def test_postgres_quick_check_catches_a_hang(session: aiohttp.ClientSession) -> None:
    """A listening socket nobody accepts on: the kernel completes the handshake, nothing
    answers, as with a SIGSTOPped postmaster."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        result = await pg_quick(sock.getsockname()[1], session, within=0.5)
    assert not result.ok
    assert result.reason is not None and "no protocol answer" in result.reason
    assert result.checks[0].heals


async def test_postgres_quick_check_refused(session: aiohttp.ClientSession) -> None:
    result = await pg_quick(closed_port(), session)
    assert not result.ok and result.reason is not None
    assert "cannot connect to 127.0.0.1:" in result.reason


def test_carried_checks_are_reported_never_counted() -> None:
    quick = ProbeResult("open-webui", True, None, (probes.Check("health", True, "ok", True),), ())
    carried = (
        probes.Check("reach-ollama", False, "could not connect", False),
        probes.Check("pg_isready", False, "stale failure", True),  # heals: not carried
    )
    merged = probes.with_carried(quick, carried)
    assert merged.ok
    assert [c.name for c in merged.checks] == ["health", "reach-ollama"]
    assert merged.warnings and "could not connect" in merged.warnings[0]


def test_container_address_prefers_the_stack_network() -> None:
    info = {"NetworkSettings": {"Networks": {
        "proxy": {"IPAddress": "10.0.0.9"}, "aistack": {"IPAddress": "10.89.0.5"}}}}  # fmt: skip
    assert Container.from_inspect(info).address(probes.STACK_NETWORK) == "10.89.0.5"
    info["NetworkSettings"]["Networks"].pop("aistack")
    assert Container.from_inspect(info).address(probes.STACK_NETWORK) == "10.0.0.9"


def test_ollama_url_from_open_webui_env() -> None:
    assert probes.webui_ollama_url({}) == "http://ollama:11434"
    assert (
        probes.webui_ollama_url({"OLLAMA_BASE_URL": "http://gpu-box:11434/"})
        == "http://gpu-box:11434"
    )
    urls = {"OLLAMA_BASE_URLS": "http://a:11434;http://b:11434"}
    assert probes.webui_ollama_url(urls) == "http://a:11434"
    assert probes.webui_ollama_url({"ENABLE_OLLAMA_API": "False"}) is None


def test_curl_failures_read_as_reasons() -> None:
    refused = "curl: (7) Failed to connect to ollama port 11434: Connection refused\n"
    assert probes.curl_failure(7, refused) == "curl exit 7: connection refused"
    assert probes.curl_failure(6, "") == "curl exit 6: could not resolve the host name"
    http = "curl: (22) The requested URL returned error: 500\n"
    assert probes.curl_failure(22, http) == "curl exit 22: The requested URL returned error: 500"
    shim = "wget: bad address 'ollama:11434'\n"
    assert probes.curl_failure(1, shim) == "curl exit 1: bad address 'ollama:11434'"


# --------------------------------------------------------------------------- probe_all


async def test_probe_all_runs_enabled_services_concurrently() -> None:
    hanging: set[tuple[str, str]] = set()
    servers = {name: FaultServer(name, hanging) for name in ("ollama", "litellm", "open-webui")}
    for srv in servers.values():
        await srv.start()
    try:
        servers["ollama"].routes = {"/api/version": "hang", "/api/ps": "hang"}
        servers["litellm"].routes = {"/health/liveliness": "hang", "/health/readiness": "hang"}
        servers["open-webui"].routes = dict(WEBUI_OK)
        stack = StackConfig(postgres=PostgresConfig(enabled=False))
        ports = {name: srv.port for name, srv in servers.items()}
        info = inspect()
        results = await probe_all(
            stack, NO_PODMAN, 0.5, {"ollama": info, "open-webui": info, "litellm": info},
            ports=ports,
        )  # fmt: skip
    finally:
        for srv in servers.values():
            await srv.stop()
    assert list(results) == ["ollama", "litellm", "open-webui"]  # no postgres: disabled
    # every hang waited on at once, not one after another
    together = [s for srv in servers.values() for s in srv.together]
    assert any({"ollama", "litellm"} <= {name for name, _ in s} for s in together), together
    assert results["ollama"].reason == "ollama: /api/version did not answer within 0.5s"
    assert results["litellm"].reason == (
        "litellm: /health/liveliness did not answer within 0.5s; "
        "/health/readiness did not answer within 0.5s"
    )
    assert results["open-webui"].ok
    json.dumps({k: dataclasses.asdict(v) for k, v in results.items()})  # serialisable


async def test_probe_all_missing_inspect_is_no_container() -> None:
    stack = StackConfig()
    results = await probe_all(stack, NO_PODMAN, 0.5, {})
    assert set(results) == {"postgres", "ollama", "litellm", "open-webui"}
    assert all(not r.ok and "no container" in (r.reason or "") for r in results.values())
