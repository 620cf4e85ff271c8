"""The backends source (docs/fleet.md) against real HTTP servers on 127.0.0.1 standing in
for the GPU hosts' Ollamas (tests/fixtures/ollama.py): up, the declared models present or
missing with the command that fixes it, down (nothing listens, a hang, an answer that is
not Ollama's), and what the front's state makes of it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from agent.config import parse_config
from agent.snapshot import SnapshotStore, SourceSnapshot, SourceState
from agent.status import overall
from agent.views import EMPTY_BACKENDS, BackendsView
from agent.watchers.backends import BackendWatcher

from ..fixtures.gpu.support import closed_url
from ..fixtures.ollama import FakeOllama, serve_ollama

WANTED = ("llama3.2:1b", "qwen2.5:0.5b")


@pytest.fixture
def gpus() -> Iterator[tuple[tuple[FakeOllama, str], tuple[FakeOllama, str]]]:
    """Two GPU hosts: the first has every declared model, the second lacks llama3.2:1b."""
    with ExitStack() as stack:
        full = stack.enter_context(serve_ollama())
        full[0].installed = ["llama3.2:1b", "qwen2.5:0.5b", "mistral:latest"]
        partial = stack.enter_context(serve_ollama())
        partial[0].installed = ["qwen2.5:0.5b"]
        yield full, partial


def _watcher(backends: list[str], *, local: bool = False, timeout: str = "2s") -> BackendWatcher:
    models = ", ".join(WANTED)
    text = (
        f"watch: {{interval: 15s, timeout: {timeout}}}\n"
        "stack:\n"
        f"  ollama: {{enabled: {str(local).lower()}, models: [{models}]}}\n"
        f"  litellm: {{ollama_backends: [{', '.join(backends)}]}}\n"
    )
    watcher = BackendWatcher(SnapshotStore(), parse_config(text).watch)
    watcher.configure(parse_config(text))
    return watcher


def _poll(watcher: BackendWatcher) -> SourceSnapshot[BackendsView]:
    return asyncio.run(watcher.poll_once())


def _state(snap: SourceSnapshot[BackendsView]) -> tuple[str, list[str]]:
    """The front's overall state with this snapshot and healthy required sources."""
    ok = {name: SourceSnapshot(name, SourceState.OK) for name in ("podman", "systemd")}
    return overall({**ok, "backends": snap})


def test_every_backend_up_with_every_model(gpus: tuple[tuple[FakeOllama, str], ...]) -> None:
    (full, url) = gpus[0]
    snap = _poll(_watcher([url, url.replace("127.0.0.1", "localhost") + "/"]))
    assert snap.state is SourceState.OK and snap.reason is None
    view = snap.view(BackendsView, EMPTY_BACKENDS)
    first = view.backends[url]
    assert first.up and first.missing == () and first.reason is None
    assert first.models == ("llama3.2:1b", "qwen2.5:0.5b", "mistral:latest")
    assert first.latency_seconds is not None and first.latency_seconds >= 0
    # a trailing slash is dropped: one name per backend in /status and the metrics
    assert set(view.backends) == {url, url.replace("127.0.0.1", "localhost")}
    assert ("GET", "/api/tags", None) in full.requests
    assert _state(snap) == ("ok", [])


def test_a_missing_model_is_a_reason_with_its_fix(
    gpus: tuple[tuple[FakeOllama, str], ...],
) -> None:
    (_, full), (_, partial) = gpus
    snap = _poll(_watcher([full, partial]))
    assert snap.state is SourceState.DEGRADED
    backend = snap.view(BackendsView, EMPTY_BACKENDS).backends[partial]
    assert backend.up and backend.missing == ("llama3.2:1b",)
    name, host = partial.removeprefix("http://"), "127.0.0.1"
    assert backend.reason == (
        f"{name}: missing llama3.2:1b: run `aistack models pull llama3.2:1b` on {host} "
        "(or add the model to its stack.ollama.models)"
    )
    assert snap.reason == backend.reason
    state, reasons = _state(snap)
    assert (state, reasons) == ("degraded", [f"backends: {backend.reason}"])


def test_a_backend_down_degrades_while_another_serves(
    gpus: tuple[tuple[FakeOllama, str], ...],
) -> None:
    (_, full) = gpus[0]
    gone = closed_url()
    snap = _poll(_watcher([full, gone]))
    backend = snap.view(BackendsView, EMPTY_BACKENDS).backends[gone]
    assert not backend.up and backend.latency_seconds is None and backend.models == ()
    assert backend.reason is not None
    assert backend.reason.startswith(f"{gone.removeprefix('http://')}: down (cannot connect to ")
    assert snap.state is SourceState.DEGRADED
    assert _state(snap)[0] == "degraded"


def test_no_backend_left_fails_the_front_unless_it_has_its_own_ollama() -> None:
    gone = [closed_url(), closed_url()]
    snap = _poll(_watcher(gone))
    assert snap.state is SourceState.DEGRADED
    assert snap.reason is not None
    assert snap.reason.startswith("no Ollama backend answers: LiteLLM has nowhere to send")
    assert _state(snap)[0] == "failed"
    with_local = _poll(_watcher(gone, local=True))
    assert with_local.view(BackendsView, EMPTY_BACKENDS).local
    assert _state(with_local)[0] == "degraded"


def test_a_hung_backend_is_down_within_the_bound(
    gpus: tuple[tuple[FakeOllama, str], ...],
) -> None:
    (fake, url) = gpus[0]
    fake.stalled.add("/api/tags")
    watcher = _watcher([url], timeout="1s")
    snap = _poll(watcher)
    backend = snap.view(BackendsView, EMPTY_BACKENDS).backends[url]
    assert not backend.up
    assert backend.reason == (
        f"{url.removeprefix('http://')}: down ({url}/api/tags did not answer within "
        f"{watcher.within:g}s)"
    )


@pytest.mark.parametrize(
    ("status", "body", "why"),
    [
        (404, b"404 page not found", "answered HTTP 404"),
        (200, b"<html>a proxy's page</html>", "/api/tags: "),
        (200, b'{"models": "none"}', "not an /api/tags answer"),
    ],
)
def test_an_answer_that_is_not_ollamas_is_down(
    gpus: tuple[tuple[FakeOllama, str], ...], status: int, body: bytes, why: str
) -> None:
    (fake, url) = gpus[0]
    fake.faults["/api/tags"] = (status, body)
    snap = _poll(_watcher([url]))
    backend = snap.view(BackendsView, EMPTY_BACKENDS).backends[url]
    assert not backend.up and backend.reason is not None and why in backend.reason


def test_without_backends_the_source_is_ok_and_empty() -> None:
    config = parse_config("")
    watcher = BackendWatcher(SnapshotStore(), config.watch)
    watcher.configure(config)
    snap = _poll(watcher)
    assert snap.state is SourceState.OK
    assert snap.view(BackendsView, EMPTY_BACKENDS).backends == {}
    assert _state(snap) == ("ok", [])


def test_a_reload_follows_the_config(gpus: tuple[tuple[FakeOllama, str], ...]) -> None:
    (_, full), (_, partial) = gpus
    watcher = _watcher([full])
    assert _poll(watcher).state is SourceState.OK
    watcher.configure(parse_config(f"stack: {{litellm: {{ollama_backends: [{partial}]}}, "
                                   "ollama: {models: [llama3.2:1b]}}"))  # fmt: skip
    snap = _poll(watcher)
    assert set(snap.view(BackendsView, EMPTY_BACKENDS).backends) == {partial}
    assert snap.state is SourceState.DEGRADED
