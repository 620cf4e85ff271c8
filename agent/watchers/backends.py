"""The backends source: the front's remote Ollamas (stack.litellm.ollama_backends), each
asked GET /api/tags every `watch.interval`: up, the declared models present, latency.

Its own source, not the probes': a GPU host is not a service of this host, so it never
counts toward a restart here; it only degrades the state (agent/status.py) with a reason
a person can act on, and feeds /status, /metrics and doctor. /status and /metrics read
the snapshot; nothing here runs on a request.
"""

from __future__ import annotations

from ..config import AgentConfig
from ..snapshot import SourceState
from ..stack.backends import none_serving, probe_backends, problems
from ..views import BackendsView
from .base import Watcher

SOURCE = "backends"


class BackendWatcher(Watcher):
    source = SOURCE

    urls: tuple[str, ...] = ()
    wanted: tuple[str, ...] = ()
    local = False

    def configure(self, config: AgentConfig) -> None:
        stack = config.stack
        self.urls = stack.litellm.backend_urls if stack.litellm.enabled else ()
        self.wanted = stack.ollama.models
        self.local = stack.ollama.enabled
        self.reconfigure(config.watch)

    @property
    def within(self) -> float:
        """Each backend's bound: within the poll's own timeout, with room to publish."""
        return max(0.1, self.config.timeout * 0.8)

    async def poll(self) -> tuple[SourceState, str | None, BackendsView]:
        if not self.urls:
            return SourceState.OK, None, BackendsView(local=self.local)
        view = await probe_backends(self.urls, self.wanted, self.within, self.local)
        found = problems(view)
        if none_serving(view):
            found.insert(0, "no Ollama backend answers: LiteLLM has nowhere to send requests")
        if found:
            return SourceState.DEGRADED, "; ".join(found), view
        return SourceState.OK, None, view
