"""The stack's models: what `aistack models`, apply and the API's pull ask of Ollama.

Speaking Ollama's API is agent.ollama_api's job; this module is the stack's use of it at
one base URL (gpu.ollama_url), and its one rule: a pull counts only when it ends in
`success`. Blocking: the agent calls it from a worker thread. OllamaError is the
ollama_api one, named here too because the CLI and the API report it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..ollama_api import Model, OllamaClient, OllamaError, Progress

__all__ = [
    "Model",
    "OllamaError",
    "Progress",
    "list_models",
    "missing",
    "pull",
    "pull_all",
    "remove",
]


def list_models(base: str) -> list[Model]:
    return OllamaClient(base).tags()


def pull(base: str, name: str, timeout: float = 3600) -> Iterator[Progress]:
    """Stream /api/pull's progress; raises OllamaError on an `error` line."""
    return OllamaClient(base).pull(name, timeout)


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
    OllamaClient(base).delete(name)


def missing(base: str, wanted: tuple[str, ...]) -> list[str]:
    """Declared models Ollama does not have (a name without a tag means :latest)."""
    return OllamaClient(base).missing(wanted)
