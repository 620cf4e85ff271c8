"""Ollama's view of its models: `GET /api/ps` (loaded models, `size` and `size_vram`).

Ollama being down is not a GPU problem: the poll reports `reachable: false` with the
reason and the GPU state does not change. The stack's service watcher judges Ollama.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass(frozen=True)
class OllamaPs:
    reachable: bool
    error: str | None = None
    models: list[dict[str, Any]] = field(default_factory=list)


Fetch = Callable[[str, float], Awaitable[OllamaPs]]


def _size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"not a size in bytes: {value!r}")
    return int(value)


def parse_ps(payload: object) -> list[dict[str, Any]]:
    """The models of an /api/ps answer; ValueError when it is not one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("models"), list):
        raise ValueError("not an /api/ps answer (no 'models' list)")
    models = []
    for entry in payload["models"]:
        if not isinstance(entry, dict):
            raise ValueError(f"not a model entry: {entry!r}")
        name = entry.get("name") or entry.get("model")
        if not isinstance(name, str) or not name:
            raise ValueError(f"model entry without a name: {entry!r}")
        size = _size(entry.get("size"))
        vram = _size(entry.get("size_vram", 0))
        models.append(
            {
                "name": name,
                "size_bytes": size,
                "vram_bytes": vram,
                "cpu_bytes": max(0, size - vram),
                "expires_at": entry.get("expires_at"),
            }
        )
    return sorted(models, key=lambda m: str(m["name"]))


async def fetch_ps(base_url: str, within: float) -> OllamaPs:
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
        return OllamaPs(True, models=parse_ps(payload))
    except ValueError as exc:
        return OllamaPs(False, f"{url}: {exc}")
