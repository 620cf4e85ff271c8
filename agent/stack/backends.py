"""The front's remote Ollama backends (stack.litellm.ollama_backends, docs/fleet.md):
ask each one what it has, and say what a person can do about what it lacks.

LiteLLM balances and fails over between the backends by itself; what it cannot do is
tell anyone that a GPU host is gone or never pulled a model. The backends watcher asks
each one GET /api/tags (through agent/ollama_api.py, the one gateway to Ollama's API)
and publishes one `BackendView` per backend, judged here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from urllib.parse import urlsplit

from ..ollama_api import OllamaTags, fetch_tags, missing_models
from ..views import BackendsView, BackendView, freeze_map


def backend_name(url: str) -> str:
    """How a person names a backend: `gpu1:11434`."""
    return urlsplit(url).netloc or url


def backend_host(url: str) -> str:
    """The host a person logs in to for a fix: `gpu1`."""
    return urlsplit(url).hostname or url


def pull_hint(url: str, models: Sequence[str]) -> str:
    """The command that fixes a missing model, and where to run it."""
    pulls = "; ".join(f"`aistack models pull {m}`" for m in models)
    return f"run {pulls} on {backend_host(url)} (or add the model to its stack.ollama.models)"


def judge(url: str, tags: OllamaTags, wanted: Sequence[str]) -> BackendView:
    """One backend's view from its /api/tags answer and the models the config declares."""
    name = backend_name(url)
    if not tags.reachable:
        return BackendView(up=False, reason=f"{name}: down ({tags.error})")
    missing = tuple(missing_models(wanted, tags.models))
    reason = None
    if missing:
        reason = f"{name}: missing {', '.join(missing)}: {pull_hint(url, missing)}"
    return BackendView(
        up=True,
        models=tags.models,
        missing=missing,
        latency_seconds=tags.latency_seconds,
        reason=reason,
    )


async def probe_backends(
    urls: Sequence[str], wanted: Sequence[str], within: float, local: bool
) -> BackendsView:
    """Ask every backend at once, each bounded by `within` seconds."""
    answers = await asyncio.gather(*(fetch_tags(url, within) for url in urls))
    views = {url: judge(url, tags, wanted) for url, tags in zip(urls, answers, strict=True)}
    return BackendsView(backends=freeze_map(views), local=local)


def problems(view: BackendsView) -> list[str]:
    """One line per backend that is down or lacks a model: the source's reason."""
    return [b.reason for b in view.backends.values() if b.reason]


def none_serving(view: BackendsView) -> bool:
    """No deployment left for LiteLLM: every remote backend down and no local Ollama."""
    return bool(view.backends) and not view.local and not any(b.up for b in view.backends.values())
