"""agent.ollama_api: its parsers on Ollama's answers, and the blocking client against a
real HTTP server on 127.0.0.1 standing in for Ollama (tags, ps, version, a streamed pull,
delete), with its faults: HTTP errors, an `error` line mid-pull, answers that are not
Ollama's, nothing listening. (/api/ps from the async side: tests/test_gpu_ollama.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from agent.ollama_api import (
    LoadedModel,
    Model,
    OllamaClient,
    OllamaError,
    OllamaPs,
    Progress,
    Version,
    parse_progress,
    parse_ps,
    parse_tags,
    parse_version,
)
from agent.stack import models

from .fixtures.gpu.support import FIXTURES, closed_url
from .fixtures.ollama import PULL, FakeOllama, serve_ollama

TAGS = {
    "models": [
        {"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 2019393189,
         "modified_at": "2025-03-01T10:00:00.000000000Z", "digest": "a80c4f17acd5"},
        {"name": "qwen2.5:0.5b", "size": 397821319, "modified_at": "2025-02-11T08:00:00Z"},
    ]
}  # fmt: skip


# --------------------------------------------------------------------------- parsing


def test_parse_version() -> None:
    assert parse_version({"version": "0.6.8"}) == Version("0.6.8")
    bad: object
    for bad in ({}, {"version": 6}, [], "0.6.8"):
        with pytest.raises(ValueError, match="/api/version"):
            parse_version(bad)


def test_parse_tags() -> None:
    assert parse_tags(TAGS) == [
        Model("llama3.2:latest", 2019393189, "2025-03-01T10:00:00.000000000Z"),
        Model("qwen2.5:0.5b", 397821319, "2025-02-11T08:00:00Z"),
    ]
    assert parse_tags({"models": None}) == parse_tags({}) == []  # nothing installed
    assert parse_tags({"models": [{"name": "x"}]}) == [Model("x", 0, "")]  # lenient inside
    bad: object
    for bad in ([], {"models": "none"}, {"models": [1]}):
        with pytest.raises(ValueError):
            parse_tags(bad)


def test_loaded_models_as_status_publishes_them() -> None:
    (small, big) = parse_ps(json.loads((FIXTURES / "ollama-ps.json").read_text()))
    assert big == LoadedModel(
        "qwen2.5:32b", 24373125120, 17179869184, "2026-11-26T15:40:02.000000000Z"
    )
    assert big.as_dict() == {
        "name": "qwen2.5:32b",
        "size_bytes": 24373125120,
        "vram_bytes": 17179869184,
        "cpu_bytes": 24373125120 - 17179869184,
        "expires_at": "2026-11-26T15:40:02.000000000Z",
    }
    answer = OllamaPs(True, loaded=(small, big))
    assert answer.models == [small.as_dict(), big.as_dict()]
    assert OllamaPs(False, "down").models == []


def test_parse_progress() -> None:
    assert parse_progress(PULL[1]) == Progress("pulling 74701a8c35f6", 250, 1000)
    assert parse_progress({"status": "success"}) == Progress("success", None, None)
    with pytest.raises(ValueError):
        parse_progress(["not", "a", "line"])


# --------------------------------------------------------------------------- a local Ollama


@pytest.fixture
def ollama() -> Iterator[tuple[FakeOllama, str]]:
    with serve_ollama() as served:
        yield served


def test_client_reads_version_tags_and_ps(ollama: tuple[FakeOllama, str]) -> None:
    _, base = ollama
    client = OllamaClient(base, timeout=5)
    assert client.version() == Version("0.6.8")
    assert [m.name for m in client.tags()] == ["llama3.2:latest", "qwen2.5:0.5b"]
    assert [(m.name, m.vram_bytes) for m in client.ps()] == [
        ("llama3.1:8b", 6654289920), ("qwen2.5:32b", 17179869184),
    ]  # fmt: skip


def test_client_pull_streams_progress(ollama: tuple[FakeOllama, str]) -> None:
    fake, base = ollama
    steps = list(OllamaClient(base).pull("llama3.2"))
    assert [s.status for s in steps] == [line["status"] for line in PULL]
    assert steps[1] == Progress("pulling 74701a8c35f6", 250, 1000)
    assert fake.requests[-1] == ("POST", "/api/pull", {"model": "llama3.2", "stream": True})
    seen: list[Progress] = []
    assert models.pull_all(base, "llama3.2", seen.append) == "success"
    assert seen == steps


def test_client_pull_error_line_and_unfinished_pull(ollama: tuple[FakeOllama, str]) -> None:
    fake, base = ollama
    fake.pull_lines = [{"status": "pulling manifest"},
                       {"error": "pull model manifest: file does not exist"}]  # fmt: skip
    with pytest.raises(OllamaError) as info:
        list(OllamaClient(base).pull("nosuch"))
    assert str(info.value) == "pull nosuch: pull model manifest: file does not exist"
    fake.pull_lines = [{"status": "pulling manifest"}]
    with pytest.raises(OllamaError, match="pull x ended with 'pulling manifest', not success"):
        models.pull_all(base, "x", lambda step: None)
    fake.pull_lines = ["<html>"]
    with pytest.raises(OllamaError, match="pull x: not a progress line"):
        list(OllamaClient(base).pull("x"))


def test_client_delete_and_missing(ollama: tuple[FakeOllama, str]) -> None:
    fake, base = ollama
    client = OllamaClient(base)
    # a name without a tag means :latest, both ways
    assert client.missing(("llama3.2", "llama3.2:latest", "qwen2.5:0.5b", "mistral")) == ["mistral"]
    client.delete("qwen2.5:0.5b")
    assert fake.requests[-1] == ("DELETE", "/api/delete", {"model": "qwen2.5:0.5b"})
    assert models.missing(base, ("qwen2.5:0.5b",)) == ["qwen2.5:0.5b"]
    with pytest.raises(OllamaError) as info:
        client.delete("qwen2.5:0.5b")
    assert str(info.value) == f'DELETE {base}/api/delete: 404 {{"error": "model not found"}}'


def test_client_answers_that_are_not_ollamas(ollama: tuple[FakeOllama, str]) -> None:
    fake, base = ollama
    client = OllamaClient(base)
    fake.faults["/api/tags"] = (200, b"<html>a proxy's page</html>")
    with pytest.raises(OllamaError, match=r"GET .*/api/tags: not JSON"):
        client.tags()
    fake.faults["/api/ps"] = (200, b'{"models": "none"}')
    with pytest.raises(OllamaError, match=r"/api/ps: not an /api/ps answer"):
        client.ps()
    fake.faults["/api/version"] = (500, b"boom")
    with pytest.raises(OllamaError, match=r"GET .*/api/version: 500 boom"):
        client.version()


def test_client_where_nothing_listens() -> None:
    url = closed_url()
    with pytest.raises(OllamaError, match=f"Ollama is not answering at {url}/api/tags: "):
        OllamaClient(url, timeout=2).tags()
    with pytest.raises(OllamaError, match="Ollama is not answering"):
        models.list_models(url)
