"""Ollama's HTTP API: the one module that speaks it, and the only one that parses it.

Two clients over the same parsing, because two kinds of callers need Ollama:

- `OllamaClient`, blocking (urllib): the CLI (`aistack models`), doctor and apply, which
  run in a worker thread or none. Every failure is an OllamaError worded for a person.
- `fetch_ps`, async (aiohttp): the GPU watcher's poll of /api/ps inside the agent's loop.
  Ollama being down is not a GPU problem, so it never raises: the answer says
  `reachable: false` and why. `fetch_tags` is the same for the backends watcher's poll
  of a remote Ollama's /api/tags (docs/fleet.md), with the round trip's latency.

The service probes (agent/stack/probes.py) send their own requests (to the container's
address, through their shared session, judged with their messages) but read the answers
with the parsers here.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from http.client import HTTPResponse
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")


class OllamaError(Exception):
    """Ollama did not answer, or answered with an error; the message says which."""


@dataclass(frozen=True)
class Version:
    """GET /api/version."""

    version: str


@dataclass(frozen=True)
class Model:
    """An installed model (GET /api/tags): `size` is on disk, in bytes."""

    name: str
    size: int
    modified_at: str


@dataclass(frozen=True)
class LoadedModel:
    """A model in memory (GET /api/ps): its size with its cache, and the part in VRAM."""

    name: str
    size_bytes: int
    vram_bytes: int
    expires_at: str | None = None

    @property
    def cpu_bytes(self) -> int:
        """What does not fit in VRAM: in system memory, run by the CPU (slow)."""
        return max(0, self.size_bytes - self.vram_bytes)

    def as_dict(self) -> dict[str, Any]:
        """The form /status publishes (gpu source, `ollama.models`)."""
        return {
            "name": self.name,
            "size_bytes": self.size_bytes,
            "vram_bytes": self.vram_bytes,
            "cpu_bytes": self.cpu_bytes,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True)
class Progress:
    """One line of POST /api/pull's stream ("pulling manifest", ..., "success")."""

    status: str
    completed: int | None
    total: int | None


# --------------------------------------------------------------------------- parsing


def _size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"not a size in bytes: {value!r}")
    return int(value)


def _count(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_version(payload: object) -> Version:
    """An /api/version answer; ValueError when it is not one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("version"), str):
        raise ValueError("not an /api/version answer (no 'version' string)")
    return Version(payload["version"])


def parse_ps(payload: object) -> list[LoadedModel]:
    """The models of an /api/ps answer, by name; ValueError when it is not one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("models"), list):
        raise ValueError("not an /api/ps answer (no 'models' list)")
    models = []
    for entry in payload["models"]:
        if not isinstance(entry, dict):
            raise ValueError(f"not a model entry: {entry!r}")
        name = entry.get("name") or entry.get("model")
        if not isinstance(name, str) or not name:
            raise ValueError(f"model entry without a name: {entry!r}")
        expires = entry.get("expires_at")
        models.append(
            LoadedModel(
                name,
                _size(entry.get("size")),
                _size(entry.get("size_vram", 0)),
                expires if isinstance(expires, str) else None,
            )
        )
    return sorted(models, key=lambda m: m.name)


def parse_tags(payload: object) -> list[Model]:
    """The models of an /api/tags answer, in Ollama's order; ValueError when it is not
    one. Lenient inside an entry (a missing size is 0): listing must not fail on it."""
    models = payload.get("models") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or not isinstance(models, list | None):
        raise ValueError("not an /api/tags answer (no 'models' list)")
    out = []
    for m in models or []:
        if not isinstance(m, dict):
            raise ValueError(f"not a model entry: {m!r}")
        out.append(
            Model(str(m.get("name")), int(m.get("size") or 0), str(m.get("modified_at") or ""))
        )
    return out


def parse_progress(payload: object) -> Progress:
    """One line of /api/pull's stream; ValueError when it is not a progress object."""
    if not isinstance(payload, dict):
        raise ValueError(f"not a pull progress line: {payload!r}")
    status = str(payload.get("status", ""))
    return Progress(status, _count(payload.get("completed")), _count(payload.get("total")))


# --------------------------------------------------------------------------- blocking


class OllamaClient:
    """Ollama's API at `base` (e.g. http://127.0.0.1:11434), blocking.

    Each call is bounded by `timeout` (a pull by its own, longer one); every failure is an
    OllamaError: unreachable, an HTTP error with Ollama's text, or an answer that is not
    Ollama's."""

    def __init__(self, base: str, timeout: float = 30.0) -> None:
        self.base = base
        self.timeout = timeout

    def _open(
        self, path: str, method: str = "GET", body: Any = None, timeout: float | None = None
    ) -> HTTPResponse:
        url = f"{self.base}{path}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            resp: HTTPResponse = urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            raise OllamaError(f"{method} {url}: {exc.code} {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise OllamaError(f"Ollama is not answering at {url}: {exc}") from None
        return resp

    def _get(self, path: str) -> Any:
        with self._open(path) as resp:
            try:
                return json.load(resp)
            except ValueError as exc:
                raise OllamaError(f"GET {self.base}{path}: not JSON ({exc})") from None
            except OSError as exc:  # the connection broke (or timed out) mid-body
                raise OllamaError(f"Ollama is not answering at {self.base}{path}: {exc}") from None

    def _parsed(self, path: str, parse: Callable[[object], T]) -> T:
        try:
            return parse(self._get(path))
        except ValueError as exc:
            raise OllamaError(f"GET {self.base}{path}: {exc}") from None

    def version(self) -> Version:
        return self._parsed("/api/version", parse_version)

    def tags(self) -> list[Model]:
        """The installed models."""
        return self._parsed("/api/tags", parse_tags)

    def ps(self) -> list[LoadedModel]:
        """The models loaded now."""
        return self._parsed("/api/ps", parse_ps)

    def pull(self, name: str, timeout: float = 3600) -> Iterator[Progress]:
        """Stream /api/pull's JSON lines; raises OllamaError on an `error` line."""
        body = {"model": name, "stream": True}
        with self._open("/api/pull", "POST", body, timeout) as resp:
            for line in self._lines(resp, f"pull {name}"):
                try:
                    doc = json.loads(line)
                    if isinstance(doc, dict) and "error" in doc:
                        raise OllamaError(f"pull {name}: {doc['error']}")
                    step = parse_progress(doc)
                except ValueError as exc:
                    raise OllamaError(f"pull {name}: not a progress line ({exc})") from None
                yield step

    @staticmethod
    def _lines(resp: HTTPResponse, what: str) -> Iterator[bytes]:
        """The stream's non-empty lines; a connection that breaks is an OllamaError."""
        try:
            for raw in resp:
                if line := raw.strip():
                    yield line
        except OSError as exc:
            raise OllamaError(f"{what}: the stream broke: {exc}") from None

    def delete(self, name: str) -> None:
        with self._open("/api/delete", "DELETE", {"model": name}):
            pass

    def missing(self, wanted: tuple[str, ...]) -> list[str]:
        """The names in `wanted` Ollama does not have (a name without a tag means :latest)."""
        return missing_models(wanted, [m.name for m in self.tags()])


def missing_models(wanted: Sequence[str], installed: Sequence[str]) -> list[str]:
    """The names in `wanted` not among `installed` (a name without a tag means :latest)."""
    have = set(installed)
    have |= {n.removesuffix(":latest") for n in have}
    return [w for w in wanted if w not in have and f"{w}:latest" not in have]


# --------------------------------------------------------------------------- async


@dataclass(frozen=True)
class OllamaPs:
    """The GPU watcher's poll of /api/ps: reachable, or why not."""

    reachable: bool
    error: str | None = None
    loaded: tuple[LoadedModel, ...] = ()

    @property
    def models(self) -> list[dict[str, Any]]:
        """The loaded models as /status publishes them."""
        return [m.as_dict() for m in self.loaded]


Fetch = Callable[[str, float], Awaitable[OllamaPs]]


async def fetch_ps(base_url: str, within: float) -> OllamaPs:
    """GET /api/ps within `within` seconds; a failure is the answer's `error`."""
    url = base_url.rstrip("/") + "/api/ps"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=within)) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                return OllamaPs(False, f"{url} answered HTTP {response.status}")
            payload = await response.json(content_type=None)
    except TimeoutError:
        return OllamaPs(False, f"{url} did not answer within {within:g}s")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return OllamaPs(False, f"{url}: {exc or type(exc).__name__}")
    try:
        return OllamaPs(True, loaded=tuple(parse_ps(payload)))
    except ValueError as exc:
        return OllamaPs(False, f"{url}: {exc}")


@dataclass(frozen=True)
class OllamaTags:
    """The backends watcher's poll of /api/tags: the installed models and the round
    trip's seconds, or why there is no answer."""

    reachable: bool
    error: str | None = None
    models: tuple[str, ...] = ()
    latency_seconds: float | None = None


async def fetch_tags(
    base_url: str, within: float, monotonic: Callable[[], float] = time.monotonic
) -> OllamaTags:
    """GET /api/tags within `within` seconds; a failure is the answer's `error`. The
    latency is the whole request (connect, answer, body): what LiteLLM would wait too."""
    url = base_url.rstrip("/") + "/api/tags"
    started = monotonic()
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=within)) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            if response.status != 200:
                return OllamaTags(False, f"{url} answered HTTP {response.status}")
            payload = await response.json(content_type=None)
    except TimeoutError:
        return OllamaTags(False, f"{url} did not answer within {within:g}s")
    except aiohttp.ClientConnectorError as exc:
        why = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
        return OllamaTags(False, f"cannot connect to {url}: {why}")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return OllamaTags(False, f"{url}: {exc or type(exc).__name__}")
    latency = max(0.0, monotonic() - started)
    try:
        models = tuple(m.name for m in parse_tags(payload))
    except ValueError as exc:
        return OllamaTags(False, f"{url}: {exc}")
    return OllamaTags(True, models=models, latency_seconds=latency)
