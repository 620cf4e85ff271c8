"""Ollama's /api/ps: parsing the recorded answer, and asking a real local HTTP server."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from agent.ollama_api import fetch_ps, parse_ps

from ..fixtures.gpu.support import FIXTURES, closed_url


def test_parse_recorded_ps() -> None:
    models = parse_ps(json.loads((FIXTURES / "ollama-ps.json").read_text()))
    assert [(m.name, m.size_bytes, m.vram_bytes, m.cpu_bytes) for m in models] == [
        ("llama3.1:8b", 6654289920, 6654289920, 0),
        ("qwen2.5:32b", 24373125120, 17179869184, 24373125120 - 17179869184),
    ]
    assert models[0].expires_at == "2026-11-26T15:41:47.123456789Z"


def test_parse_ps_without_size_vram_and_with_nothing_loaded() -> None:
    assert parse_ps({"models": []}) == []
    (model,) = parse_ps({"models": [{"model": "phi3:mini", "size": 10}]})
    assert (model.name, model.vram_bytes) == ("phi3:mini", 0)


@pytest.mark.parametrize(
    "payload",
    [[], {"models": None}, {"models": [1]}, {"models": [{"size": 1}]},
     {"models": [{"name": "x", "size": -1}]}, {"models": [{"name": "x", "size": "big"}]}],
)  # fmt: skip
def test_parse_ps_refuses_what_is_not_an_answer(payload: object) -> None:
    with pytest.raises(ValueError):
        parse_ps(payload)


async def _server(handler) -> tuple[web.AppRunner, str]:  # type: ignore[no-untyped-def]
    app = web.Application()
    app.router.add_get("/api/ps", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_fetch_from_a_real_server() -> None:
    body = (FIXTURES / "ollama-ps.json").read_bytes()

    async def ps(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    runner, url = await _server(ps)
    try:
        result = await fetch_ps(url + "/", 2.0)
    finally:
        await runner.cleanup()
    assert result.reachable and result.error is None and len(result.models) == 2


async def test_fetch_errors_are_reasons() -> None:
    refused = await fetch_ps(closed_url(), 1.0)
    assert not refused.reachable and refused.error is not None and "/api/ps" in refused.error

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="{}")

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="<html>not ollama</html>")

    for handler, expected in ((broken, "answered HTTP 500"), (slow, "did not answer within 0.2s"),
                              (garbage, "/api/ps: ")):  # fmt: skip
        runner, url = await _server(handler)
        try:
            result = await fetch_ps(url, 0.2)
        finally:
            await runner.cleanup()
        assert not result.reachable and result.error is not None and expected in result.error
