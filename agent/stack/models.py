"""Ollama's models through its API: list, pull (streamed progress), remove.

Used by `aistack models` (directly, no agent needed) and by apply, which pulls the models
`stack.ollama.models` declares once Ollama is healthy. Blocking (urllib): the agent calls
it from a worker thread.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


class OllamaError(Exception):
    pass


@dataclass(frozen=True)
class Model:
    name: str
    size: int
    modified_at: str


@dataclass(frozen=True)
class Progress:
    status: str
    completed: int | None
    total: int | None


def _request(url: str, method: str = "GET", body: Any = None, timeout: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace").strip()
        raise OllamaError(f"{method} {url}: {exc.code} {detail}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise OllamaError(f"Ollama is not answering at {url}: {exc}") from None


def list_models(base: str) -> list[Model]:
    with _request(f"{base}/api/tags") as resp:
        doc = json.load(resp)
    return [
        Model(str(m.get("name")), int(m.get("size") or 0), str(m.get("modified_at") or ""))
        for m in doc.get("models") or []
    ]


def pull(base: str, name: str, timeout: float = 3600) -> Iterator[Progress]:
    """Stream /api/pull's JSON lines; raises OllamaError on an `error` line."""
    with _request(f"{base}/api/pull", "POST", {"model": name, "stream": True}, timeout) as resp:
        for raw in resp:
            line = raw.strip()
            if not line:
                continue
            doc = json.loads(line)
            if "error" in doc:
                raise OllamaError(f"pull {name}: {doc['error']}")
            yield Progress(str(doc.get("status", "")), doc.get("completed"), doc.get("total"))


def pull_all(base: str, name: str, on_progress: Callable[[Progress], None]) -> str:
    """Pull to the end; the last status (`success`)."""
    last = ""
    for step in pull(base, name):
        on_progress(step)
        last = step.status
    if last != "success":
        raise OllamaError(f"pull {name} ended with {last!r}, not success")
    return last


def remove(base: str, name: str) -> None:
    with _request(f"{base}/api/delete", "DELETE", {"model": name}):
        pass


def missing(base: str, wanted: tuple[str, ...]) -> list[str]:
    """Declared models Ollama does not have (a name without a tag means :latest)."""
    have = {m.name for m in list_models(base)}
    have |= {n.removesuffix(":latest") for n in have}
    return [w for w in wanted if w not in have and f"{w}:latest" not in have]
