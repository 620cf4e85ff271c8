"""The front's remote Ollama backends (stack.litellm.ollama_backends, docs/fleet.md):
each one up, with the declared models, and how long it took to answer.

Doctor asks them itself (the agent's /status says the same, but doctor must work when
the agent does not), each at once in its own thread, each call bounded by CALL_TIMEOUT_S:
the check as a whole stays within CHECK_LIMIT_S however many GPU hosts are gone.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from ..ollama_api import OllamaClient, OllamaError, OllamaTags
from ..stack.backends import backend_host, backend_name, judge, pull_hint
from .context import CALL_TIMEOUT_S, Context, Finding, ok, problem

CHECK = "backends"


def _tags(url: str) -> OllamaTags:
    """/api/tags through the blocking client, timed; a failure is the answer's error."""
    started = time.monotonic()
    try:
        models = tuple(m.name for m in OllamaClient(url, CALL_TIMEOUT_S).tags())
    except OllamaError as exc:
        return OllamaTags(False, str(exc))
    return OllamaTags(True, models=models, latency_seconds=time.monotonic() - started)


def check_backends(ctx: Context) -> list[Finding]:
    litellm = ctx.config.stack.litellm
    urls = litellm.backend_urls if litellm.enabled else ()
    if not urls:
        return [ok(CHECK, "no remote Ollama backends configured (stack.litellm.ollama_backends)")]
    wanted = ctx.config.stack.ollama.models
    with ThreadPoolExecutor(max_workers=min(8, len(urls))) as pool:
        answers = list(pool.map(_tags, urls))
    findings = []
    for url, tags in zip(urls, answers, strict=True):
        view = judge(url, tags, wanted)
        name, host = backend_name(url), backend_host(url)
        if not view.up:
            findings.append(
                problem(
                    CHECK,
                    f"{name}: down ({tags.error})",
                    f"on {host}: systemctl status ollama.service; aistack doctor there; that "
                    "it publishes Ollama on an address this host reaches (stack.ollama.ports "
                    "with stack.ollama.allow_remote) and its firewall lets this host in "
                    "(docs/fleet.md)",
                )
            )
        elif view.missing:
            findings.append(
                problem(
                    CHECK,
                    f"{name}: missing {', '.join(view.missing)}",
                    pull_hint(url, view.missing),
                )
            )
        else:
            count = len(view.models)
            ms = round((view.latency_seconds or 0.0) * 1000)
            findings.append(
                ok(CHECK, f"{name}: up, {count} model{'' if count == 1 else 's'}, {ms} ms")
            )
    return findings
