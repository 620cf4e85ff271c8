"""The local API through a real socket on 127.0.0.1, served by the real daemon."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from agent.api import ApiContext, ReloadResult, create_app
from agent.metrics import build_registry
from agent.openapi import openapi_document
from agent.snapshot import SnapshotStore
from agent.status import AgentInfo

from .conftest import AgentProcess, NotifySocket, free_port, http


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    import tempfile
    from pathlib import Path

    tmp = tmp_path_factory.mktemp("api")
    port = free_port()
    config = tmp / "agent.yaml"
    config.write_text(f"api:\n  port: {port}\n  token_file: {tmp / 'api-token'}\n")
    ns = NotifySocket(Path(tempfile.mkdtemp(prefix="ntf")) / "notify")
    proc = AgentProcess(config, ns, port)
    ns.wait_for("READY", "1", timeout=20)
    yield proc
    assert proc.stop() == 0
    ns.close()


def test_healthz(agent: AgentProcess) -> None:
    status, headers, body = http("GET", f"{agent.base}/healthz")
    assert status == 200
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(body) == {"status": "alive", "version": "0.1.0"}


def test_status_document_schema_1(agent: AgentProcess) -> None:
    status, _, body = http("GET", f"{agent.base}/status")
    assert status == 200
    doc = json.loads(body)
    assert doc["schema_version"] == 1
    assert doc["version"] == "0.1.0"
    assert doc["config_path"] == str(agent.config)
    assert doc["uptime_seconds"] >= 0
    assert doc["state"] in ("ok", "degraded")
    for key in ("services", "gpus", "backups", "sources", "state_reasons", "pid", "started_at"):
        assert key in doc
    for source in doc["sources"].values():
        assert {"state", "reason", "checked_at", "age_seconds", "data"} <= source.keys()


def test_status_never_contains_the_token(agent: AgentProcess) -> None:
    _, _, body = http("GET", f"{agent.base}/status")
    assert agent.token.encode() not in body


def test_metrics_prometheus_text(agent: AgentProcess) -> None:
    status, headers, body = http("GET", f"{agent.base}/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert 'aistack_agent_info{version="0.1.0"} 1.0' in text
    assert "aistack_agent_start_time_seconds " in text
    for source in ("podman", "systemd", "gpu"):
        assert f'aistack_snapshot_age_seconds{{source="{source}"}}' in text
        assert f'aistack_source_up{{source="{source}"}} 0.0' in text
    assert "process_resident_memory_bytes" in text


def test_metrics_openmetrics_when_asked(agent: AgentProcess) -> None:
    accept = "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"
    status, headers, body = http("GET", f"{agent.base}/metrics", {"Accept": accept})
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.decode().endswith("# EOF\n")
    assert "# TYPE aistack_agent info" in body.decode()


def test_promtool_check_metrics_is_clean(agent: AgentProcess) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package 'prometheus'); .ci/run installs it"
    _, _, body = http("GET", f"{agent.base}/metrics")
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout + proc.stderr == b"", proc.stdout + proc.stderr  # not even lint warnings


def test_openapi_document_is_valid_openapi_31(agent: AgentProcess) -> None:
    status, _, body = http("GET", f"{agent.base}/openapi.json")
    assert status == 200
    doc = json.loads(body)
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_openapi_matches_the_router_exactly() -> None:
    """Walk the router: every served route is documented, every documented one served."""
    app = create_app(_context())
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {
        (method, path)
        for path, item in openapi_document("x").get("paths", {}).items()
        for method in item
    }
    assert served == documented


def test_every_documented_get_endpoint_answers(agent: AgentProcess) -> None:
    for path, item in openapi_document("x")["paths"].items():
        if "get" in item:
            assert http("GET", f"{agent.base}{path}")[0] == 200, path


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wrong-token-wrong-token-wrong-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "bearer"},
    ],
    ids=["missing", "empty", "wrong", "basic", "scheme-only"],
)
def test_state_changing_call_without_valid_token_is_401(
    agent: AgentProcess, headers: dict[str, str]
) -> None:
    status, resp_headers, body = http("POST", f"{agent.base}/v1/reload", headers)
    assert status == 401
    assert resp_headers["www-authenticate"].startswith("Bearer")
    assert resp_headers["content-type"].startswith("application/json")
    assert "Authorization: Bearer" in json.loads(body)["error"]["message"]


def test_token_with_extra_characters_is_401(agent: AgentProcess) -> None:
    status, _, _ = http(
        "POST", f"{agent.base}/v1/reload", {"Authorization": f"Bearer {agent.token}x"}
    )
    assert status == 401


def test_valid_token_reloads(agent: AgentProcess) -> None:
    status, _, body = http(
        "POST", f"{agent.base}/v1/reload", {"Authorization": f"Bearer {agent.token}"}
    )
    assert status == 200
    assert json.loads(body) == {"reloaded": True, "config_path": str(agent.config)}


def test_every_answer_says_the_agents_own_time_in_server_timing(agent: AgentProcess) -> None:
    """What the detection benchmark reads to tell the agent's time from the client's wait."""
    asked = [("GET", "/status", 200), ("GET", "/metrics", 200), ("GET", "/no/such/thing", 404),
             ("POST", "/v1/reload", 401)]  # fmt: skip
    for method, path, want in asked:
        status, headers, _ = http(method, f"{agent.base}{path}")
        assert status == want
        timing = headers["server-timing"]
        assert re.fullmatch(r"app;dur=\d+\.\d{3}", timing), timing
        assert 0 < float(timing.split("=")[1]) < 60_000


def test_404_and_405_are_json(agent: AgentProcess) -> None:
    status, headers, body = http("GET", f"{agent.base}/no/such/thing")
    assert status == 404 and headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"error": {"status": 404, "message": "Not Found"}}
    status, headers, body = http("DELETE", f"{agent.base}/status")
    assert status == 405 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["status"] == 405
    assert "GET" in headers["allow"]


async def test_internal_errors_are_json_without_traceback() -> None:
    """Fault injection: a snapshot source that raises must give a bare JSON 500."""

    class BrokenStore(SnapshotStore):
        def latest(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("secret internal detail")

    store = BrokenStore()
    app = create_app(_context(store))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        import asyncio

        status, headers, body = await asyncio.to_thread(
            http, "GET", f"http://127.0.0.1:{port}/status"
        )
    finally:
        await runner.cleanup()
    assert status == 500
    assert headers["content-type"].startswith("application/json")
    assert b"secret internal detail" not in body and b"Traceback" not in body
    assert json.loads(body)["error"]["message"].startswith("internal error")


def _context(store: SnapshotStore | None = None) -> ApiContext:
    store = store or SnapshotStore()
    info = AgentInfo(config_path="/etc/aistack/agent.yaml")

    async def reload() -> ReloadResult:
        return ReloadResult(True, info.config_path)

    return ApiContext(info, store, build_registry(info, store.latest), lambda: "t" * 32, reload)
