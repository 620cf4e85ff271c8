"""What every check shares: findings and their severities, the limits, helpers that
bound each call, and the Context (config, the Podman socket, what was seen so far)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .. import client, podman_api, systemd_ctl
from ..config import AgentConfig
from ..podman_api import Container
from ..stack import extra
from ..stack.model import Member, ServiceSpec, enabled, spec_of

Severity = Literal["ok", "warning", "problem"]
OK: Severity = "ok"
WARNING: Severity = "warning"
PROBLEM: Severity = "problem"

EX_OK = 0
EX_PROBLEMS = 1
NETWORK = "aistack"  # NetworkName= of units/aistack.network
DEFAULT_OLLAMA_URL = "http://ollama:11434"  # units/open-webui.container's OLLAMA_BASE_URL
CONTAINERS_DIR = Path("/var/lib/containers")
KFD = Path("/dev/kfd")
CHECK_LIMIT_S = 10.0  # a whole check; every single call inside one has a shorter timeout
CALL_TIMEOUT_S = 4.0  # one API or HTTP call
EXEC_TIMEOUT_S = 8.0  # one command in a container (the command's own timeout is shorter)
PROGRESS_AFTER_S = 2.0  # a check slower than this gets a "still checking" line on stderr
DISK_WARN = 0.10  # free fraction under which a filesystem is a warning
DISK_PROBLEM = 0.03  # ... and a problem
MEMORY_LOW = 0.05  # MemAvailable under this fraction of MemTotal is a warning
RESTARTS_WARN = 3  # systemd restarts (NRestarts) that suggest a crash loop

FIX_MODEL_SIZE = (
    "a smaller model or a lower quantization (a 7B/8B q4 instead of a 70B); in "
    "stack.ollama.env OLLAMA_MAX_LOADED_MODELS=1 and OLLAMA_KEEP_ALIVE=5m (idle models "
    "unload), OLLAMA_KV_CACHE_TYPE=q8_0 (a smaller cache); or more RAM"
)
FIX_PODMAN_FIRST = "fix Podman first (see podman)"


@dataclass(frozen=True)
class Finding:
    """One result: which check, how bad, what was seen, and what to do about it."""

    check: str
    severity: Severity
    summary: str
    fix: str | None = None


def ok(check: str, summary: str) -> Finding:
    return Finding(check, OK, summary)


def warn(check: str, summary: str, fix: str) -> Finding:
    return Finding(check, WARNING, summary, fix)


def problem(check: str, summary: str, fix: str) -> Finding:
    return Finding(check, PROBLEM, summary, fix)


def not_checked(check: str, why: str, fix: str = "fix the problems above first") -> Finding:
    """A check that could not look: a warning, since it may hide a problem."""
    return warn(check, f"not checked: {why}", fix)


# --------------------------------------------------------------------------- helpers


def human(n: float) -> str:
    """Bytes as people read disk and model sizes (decimal units, as Ollama prints them)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes per field (the kernel writes kB, meaning KiB)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or not parts[0].isdigit():
            continue
        scale = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
        out[key.strip()] = int(parts[0]) * scale
    return out


class ExecTimeout(Exception):
    pass


def exec_run(
    socket: Path, container: str, cmd: Sequence[str], timeout: float = EXEC_TIMEOUT_S
) -> tuple[int, str, str]:
    """Run cmd in a running container: (exit code, stdout, stderr), each cut to 4 KiB.
    A command that hangs costs `timeout`, no more (podman_api.run_exec)."""
    result = podman_api.run_exec(socket, container, cmd, timeout)
    if result.exit_code is None:
        raise ExecTimeout(f"`{' '.join(cmd)}` in {container}: no answer within {timeout:g} s")
    return result.exit_code, result.stdout.strip(), result.stderr.strip()


def http_json(url: str, timeout: float = CALL_TIMEOUT_S) -> tuple[int, Any]:
    """GET url: (status, JSON or text) for any HTTP status; OSError when nothing answers
    (urllib's URLError is one)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def running(container: Container | None) -> bool:
    return container is not None and container.running


# --------------------------------------------------------------------------- context


class PodmanDown(Exception):
    """Podman did not answer the podman check: the checks that need it are not run."""


@dataclass
class Context:
    """What the checks share: the config, and answers fetched once. The caches are locked:
    a check that ran past its deadline may still be running beside the next one."""

    config: AgentConfig
    api_base: str
    podman_error: str | None = None  # set by the podman check when Podman does not answer
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.config.watch.podman_socket

    def enabled(self) -> list[ServiceSpec]:
        return list(enabled(self.config.stack))

    def members(self) -> list[Member]:
        """Every service of the stack: the core ones and stack.extra's, in start order."""
        return list(self._cached("members", lambda: extra.members(self.config.stack)))

    def extra_problems(self) -> dict[str, str]:
        """Projects of stack.extra left out of the stack, and why."""
        return dict(self._cached("extra-problems", lambda: extra.problems(self.config.stack)))

    def is_enabled(self, name: str) -> bool:
        return any(s.name == name for s in self.enabled())

    def _cached(self, key: str, fetch: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._cache:
                value = self._cache[key]
                if isinstance(value, Exception):
                    raise value
                return value
        try:
            value = fetch()
        except Exception as exc:
            with self._lock:
                self._cache[key] = exc
            raise
        with self._lock:
            self._cache[key] = value
        return value

    def inspect(self, name: str) -> Container | None:
        """`podman container inspect name`; None when there is no such container."""
        if self.podman_error is not None:
            raise PodmanDown(self.podman_error)
        return self._cached(  # type: ignore[no-any-return]
            f"inspect:{name}",
            lambda: podman_api.inspect_container(self.socket, name, CALL_TIMEOUT_S),
        )

    def inspect_or_none(self, name: str) -> Container | None:
        """inspect(), with an unreachable Podman read as "no container"."""
        try:
            return self.inspect(name)
        except (PodmanDown, podman_api.PodmanApiError):
            return None

    def agent_status(self) -> dict[str, Any] | None:
        """The agent's /status document (no token needed); None when it does not answer."""

        def fetch() -> dict[str, Any] | None:
            try:  # the agent's own API: through its one client
                doc = client.request(f"{self.api_base}/status", CALL_TIMEOUT_S).body
            except client.AgentUnreachable:
                return None
            return doc if isinstance(doc, dict) and "state" in doc else None

        return self._cached("status", fetch)  # type: ignore[no-any-return]

    def unit_states(self) -> dict[str, systemd_ctl.UnitState]:
        units = [m.unit for m in self.members()]
        return self._cached("units", lambda: systemd_ctl.unit_states(units))  # type: ignore[no-any-return]

    def service_urls(self, name: str, port: int) -> list[str]:
        """Where this host reaches a service: its container's address on the stack's
        network, then its published ports (what a person would curl)."""
        urls = []
        container = self.inspect_or_none(name)
        network = container.networks.get(NETWORK) if container is not None else None
        address = network.ip_address if network is not None else ""
        if address:
            urls.append(f"http://{address}:{port}")
        spec = spec_of(name)
        for published in spec.settings(self.config.stack).ports:
            host, _, host_port = published.rpartition(":")
            host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
            urls.append(f"http://{host}:{host_port}")
        return urls
