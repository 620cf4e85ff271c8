"""The one client of the agent's own local API: every CLI module asks the agent through it.

It knows where the agent listens (the same config file the agent reads), how to read the
token, and how to turn any HTTP answer into (status, JSON): callers decide what an answer
means for their command. Nothing else in `agent/` speaks HTTP to the agent, so the CLI
modules import this one and never each other (no import cycle through `agent.cli`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from . import token
from .config import AgentConfig


class AgentUnreachable(Exception):
    """Nothing answered at the agent's address (or the token could not be read)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # the JSON document; the text when the body is not JSON

    def error_message(self, default: str = "") -> str:
        """The API's documented error message ({"error": {"message": ...}})."""
        if isinstance(self.body, dict):
            error = self.body.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                return str(error["message"])
        return default or (self.body if isinstance(self.body, str) else f"HTTP {self.status}")


def api_base(config: AgentConfig) -> str:
    """Where the agent listens, as a URL this host can reach."""
    host = config.api.listen
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{config.api.port}"


def read_token(config: AgentConfig) -> str:
    """The agent's token (never through a symlink); run as root on the agent's host."""
    try:
        return token.read_token(config.api.token_file)
    except token.TokenError as exc:
        raise AgentUnreachable(f"{exc}; run as root on the agent's host") from None


def request(url: str, timeout: float, method: str = "GET", token: str | None = None) -> Answer:
    """One request; any HTTP status is an Answer, no answer at all is AgentUnreachable."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = b"" if method == "POST" else None
    req = urllib.request.Request(url, method=method, headers=headers, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AgentUnreachable(f"the agent is not answering at {url} ({reason})") from None
    try:
        return Answer(status, json.loads(raw or b"{}"))
    except ValueError:
        return Answer(status, raw.decode(errors="replace"))


def post(config: AgentConfig, path: str, timeout: float, base: str | None = None) -> Answer:
    """POST with the token (state changes need it)."""
    return request(f"{base or api_base(config)}{path}", timeout, "POST", read_token(config))


def get(config: AgentConfig, path: str, timeout: float, base: str | None = None) -> Answer:
    return request(f"{base or api_base(config)}{path}", timeout)
