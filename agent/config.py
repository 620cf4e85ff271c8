"""Typed agent configuration: load, validate and explain `agent.yaml`.

Every mistake a person can make in the file is reported with the full key path and, for
unknown keys, a "did you mean" hint: a typo must never pass silently and leave a default
in force. Loading never changes anything; callers decide what to do with a ConfigError
(the daemon and `aistack check-config` exit 78, EX_CONFIG).
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import math
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import yaml

EX_CONFIG = 78
# Bounds on what a config file may make the loader do: a hostile or broken file is
# refused by name in bounded time and memory, never a hang or a traceback.
MAX_CONFIG_BYTES = 1 << 20  # the shipped agent.yaml is ~12 KiB
MAX_VALUES = 100_000  # scalars and collections after aliases are followed (alias bombs)
MAX_DURATION_S = 3650 * 86400.0  # ten years
MAX_SIZE_BYTES = 1 << 50
DEFAULT_CONFIG_PATH = Path("/etc/aistack/agent.yaml")
CONFIG_ENV = "AISTACK_CONFIG"


class ConfigError(Exception):
    """The configuration is unusable; `problems` holds one line per mistake."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        head = f"invalid configuration in {self.source}:"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


# --- units ---------------------------------------------------------------------------

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}  # fmt: skip
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)")


def sum_duration_parts(
    text: str, pattern: re.Pattern[str], units: Mapping[str, float]
) -> float | None:
    """Seconds in `1h30m`-style text made only of `pattern` matches (number, unit); None
    when anything else is in it. Shared by agent.yaml's and compose's duration grammars."""
    pos, total = 0, 0.0
    for match in pattern.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * units[match.group(2)]
        pos = match.end()
    return total if text and pos == len(text) else None


def parse_duration(value: object) -> float:
    """Parse `30s`, `5m`, `1h30m`, `250ms` into seconds.

    Bare numbers are refused: `timeout: 5` could mean seconds or minutes, and a config
    that is read differently from how it was meant is worse than one that is refused.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {value!r}")
    if isinstance(value, int | float):
        raise ValueError(f"a duration needs a unit: write {value}s, {value}m or {value}h")
    total = sum_duration_parts(value.strip()[:1000], _DURATION_PART, _DURATION_UNITS)
    if total is None or len(value) > 1000:
        raise ValueError(
            f"not a duration: {value[:100]!r} (use a number and a unit: ms, s, m, h, d; "
            "e.g. 30s, 1h30m)"
        )
    if not math.isfinite(total) or total > MAX_DURATION_S:
        raise ValueError(f"too long: at most {MAX_DURATION_S // 86400:.0f}d")
    return total


def format_duration(seconds: float) -> str:
    """Inverse of parse_duration, for printing the effective config (90 -> 1m30s)."""
    if seconds != int(seconds):
        return f"{round(seconds * 1000)}ms" if seconds < 1 else f"{seconds:g}s"
    whole, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts) or "0s"


def parse_size(value: object) -> int:
    """Parse `10GiB`, `512MiB`, `1GB`, `300B` into bytes. Bare numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a size such as 512MiB or 10GiB, got {value!r}")
    if isinstance(value, int | float):
        raise ValueError(f"a size needs a unit: write {value}B, {value}MiB or {value}GiB")
    match = _SIZE_RE.fullmatch(value.strip()) if len(value) <= 1000 else None
    if not match:
        raise ValueError(
            f"not a size: {value[:100]!r} "
            "(use a number and a unit: B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
        )
    size = float(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if not math.isfinite(size) or size > MAX_SIZE_BYTES:
        raise ValueError("too large: at most 1PiB")
    return int(size)


def format_size(size: int) -> str:
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if size >= _SIZE_UNITS[unit] and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return f"{size}B"


class Unit(enum.Enum):
    """Markers for Annotated fields whose YAML text needs a unit."""

    DURATION = "duration"
    SIZE = "size"


Duration = Annotated[float, Unit.DURATION]
ByteSize = Annotated[int, Unit.SIZE]


class Secret(str):
    """A string that never shows itself: repr, logs and `check-config` print it redacted."""

    REDACTED = "**********"

    def __repr__(self) -> str:
        return f"Secret({self.REDACTED!r})"


class Folder(str):
    """A host folder that may be left empty (""): `stack.*.data`."""


NO_FOLDER = Folder("")


def _limits(low: float | None = None, high: float | None = None) -> dict[str, Any]:
    return {"min": low, "max": high}


# --- model ---------------------------------------------------------------------------
# Plain frozen dataclasses, validated by _build() below. A dataclass per section keeps
# the schema readable in one place; pydantic would do the same but costs ~18 MB of the
# agent's 60 MB RSS budget.


@dataclass(frozen=True)
class ApiConfig:
    allow_remote: bool = False
    listen: str = "127.0.0.1"
    port: int = field(default=9200, metadata=_limits(1, 65535))
    token_file: Path = Path("/etc/aistack/api-token")
    max_body_size: ByteSize = 1 << 20
    # /status answers this when the overall state is failed (a service given up), so
    # `curl -f localhost:9200/status` is a check; 200 turns that off.
    failed_status_code: int = field(default=503, metadata=_limits(200, 599))
    # Host names the API answers besides localhost and IP addresses (a DNS-rebinding page
    # uses a name of its own): e.g. the host's name, for a Prometheus that scrapes by it.
    allowed_hosts: tuple[str, ...] = ()
    # A client must send a whole request within this of connecting (or of its previous
    # answer): slow or silent clients are closed, not held.
    request_timeout: Duration = 20.0
    # Connections open at once; one more is closed at once.
    max_connections: int = field(default=256, metadata=_limits(1, 65535))

    def problems(self) -> list[tuple[str, str]]:
        for name in self.allowed_hosts:
            if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.?)*", name) or len(name) > 253:
                return [("allowed_hosts", f"not a host name: {name!r}")]
        if not 1 <= self.request_timeout <= 600:
            return [("request_timeout", "must be between 1s and 10m")]
        if self.max_body_size < 1024:
            return [("max_body_size", "must be at least 1KiB (it bounds every request body)")]
        try:
            address = ipaddress.ip_address(self.listen)
        except ValueError:
            why = "use 127.0.0.1, ::1, or with allow_remote 0.0.0.0"
            return [("listen", f"not an IP address: {self.listen!r} ({why})")]
        if not address.is_loopback and not self.allow_remote:
            why = "set api.allow_remote: true if that is intended"
            return [
                (
                    "listen",
                    f"{self.listen} is not a loopback address, so the API would be "
                    f"reachable from other hosts; {why}",
                )
            ]
        return []


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "journal", "json", "console"] = "auto"


@dataclass(frozen=True)
class WatchConfig:
    interval: Duration = 15.0
    timeout: Duration = 5.0
    podman_socket: Path = Path("/run/podman/podman.sock")
    # After a stack container starts, its startup health check runs this often through
    # Podman until it passes (agent/stack/startup_checks.py); 0s: Podman's timer alone.
    startup_check_interval: Duration = 0.25

    def problems(self) -> list[tuple[str, str]]:
        out = [
            (k, "must be longer than 0s") for k in ("interval", "timeout") if getattr(self, k) <= 0
        ]
        early = self.startup_check_interval
        if early != 0 and not 0.1 <= early <= 5.0:
            out.append(
                (
                    "startup_check_interval",
                    f"must be 0s (off) or between 100ms and 5s, got {format_duration(early)}",
                )
            )
        if not out and self.timeout >= self.interval:
            interval, timeout = format_duration(self.interval), format_duration(self.timeout)
            out.append(
                ("timeout", f"must be shorter than watch.interval ({interval}), got {timeout}")
            )
        return out


XidList = tuple[int, ...]
_XID = _limits(1, 999)


@dataclass(frozen=True)
class GpuConfig:
    """When a GPU counts as sick (docs/gpu.md), and what to do about Ollama then."""

    temperature_warn: int = field(default=83, metadata=_limits(30, 130))
    temperature_critical: int = field(default=90, metadata=_limits(30, 130))
    memory_full_percent: int = field(default=95, metadata=_limits(50, 100))
    reset_xids: XidList = field(
        default=(48, 62, 64, 74, 79, 92, 95, 119, 120, 140, 154), metadata=_XID
    )
    application_xids: XidList = field(default=(13, 31, 43, 45, 68), metadata=_XID)
    xid_window: Duration = 3600.0
    xid_storm: int = field(default=20, metadata=_limits(0, 1_000_000))
    kernel_log: bool = True
    ollama_url: str = "http://127.0.0.1:11434"
    restart_ollama_on_xid: bool = False
    restart_cooldown: Duration = 1800.0
    ollama_unit: str = "ollama.service"

    @property
    def reset_xid_set(self) -> frozenset[int]:
        return frozenset(self.reset_xids)

    @property
    def application_xid_set(self) -> frozenset[int]:
        return frozenset(self.application_xids)

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.temperature_warn >= self.temperature_critical:
            out.append(
                (
                    "temperature_warn",
                    f"must be lower than gpu.temperature_critical ({self.temperature_critical}), "
                    f"got {self.temperature_warn}",
                )
            )
        both = sorted(self.reset_xid_set & self.application_xid_set)
        if both:
            listed = ", ".join(map(str, both))
            out.append(("application_xids", f"XIDs {listed} are also in gpu.reset_xids"))
        if self.xid_window <= 0:
            out.append(("xid_window", "must be longer than 0s"))
        if self.restart_cooldown < 60:
            # A shorter cooldown could turn "restart on XID" into a restart loop.
            out.append(("restart_cooldown", "must be at least 1m"))
        if not self.ollama_url.startswith(("http://", "https://")):
            why = f"must start with http:// or https://, got {self.ollama_url!r}"
            out.append(("ollama_url", why))
        return out


_UNIT_SUFFIXES = (".service", ".target", ".socket", ".timer", ".path", ".mount", ".scope")
_PG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")


def parse_unit_list(text: str) -> tuple[str, ...]:
    """`litellm.service,open-webui.service` -> a tuple; `none` -> ()."""
    if text.strip() == "none":
        return ()
    units = tuple(u.strip() for u in text.split(","))
    for unit in units:
        if not unit.endswith(_UNIT_SUFFIXES) or not re.fullmatch(r"[\w@.:\\-]+", unit):
            raise ValueError(
                f"not a list of systemd units: {text!r} "
                "(write full unit names, e.g. litellm.service, or none)"
            )
    return units


@dataclass(frozen=True)
class BackupConfig:
    """PostgreSQL backups (docs/backups.md): schedule, source, retention, safety floors."""

    # auto: on once the stack's PostgreSQL is enabled and applied (agent/backup/
    # activation.py); before that off, with the reason in /status. true and false force it.
    enabled: Literal[True, False, "auto"] = "auto"
    schedule: str = "0 3 * * *"
    timezone: str = "local"
    directory: Path = Path("/var/lib/aistack/backups")
    source: Literal["podman", "local"] = "podman"
    container: str = "postgres"
    host: str = "127.0.0.1"
    port: int = field(default=5432, metadata=_limits(1, 65535))
    database: str = "litellm"
    user: str = "llmproxy"
    password_file: Path = Path("/etc/aistack/postgres-password")
    compression: Literal["auto", "zstd", "gzip", "none"] = "auto"
    compression_level: int = field(default=0, metadata=_limits(0, 22))
    globals: bool = True
    keep_last: int = field(default=7, metadata=_limits(0, 10_000))
    keep_daily: int = field(default=7, metadata=_limits(0, 10_000))
    keep_weekly: int = field(default=4, metadata=_limits(0, 10_000))
    keep_monthly: int = field(default=6, metadata=_limits(0, 10_000))
    keep_yearly: int = field(default=2, metadata=_limits(0, 10_000))
    min_keep: int = field(default=3, metadata=_limits(1, 10_000))
    min_free: ByteSize = 1 << 30
    min_size: ByteSize = 1024
    size_drop_percent: int = field(default=50, metadata=_limits(0, 100))
    misfire_grace: Duration = 6 * 3600.0
    catch_up_delay: Duration = 60.0
    timeout: Duration = 6 * 3600.0
    dependents: str = "litellm.service"
    trial_restore: bool = False

    @property
    def dependent_units(self) -> tuple[str, ...]:
        return parse_unit_list(self.dependents)

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        tz = None
        if self.timezone != "local":
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                tz = ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                why = "use local or an IANA name such as Europe/Berlin or UTC"
                out.append(("timezone", f"unknown time zone {self.timezone!r} ({why})"))
        try:
            from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

            CronTrigger.from_crontab(self.schedule, timezone=tz)
        except ValueError as exc:
            why = "5 fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *'"
            out.append(("schedule", f"not a cron expression: {self.schedule!r} ({why}): {exc}"))
        for key in ("database", "user"):
            if not _PG_NAME.fullmatch(getattr(self, key)):
                out.append((key, f"not a PostgreSQL name: {getattr(self, key)!r}"))
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", self.container):
            out.append(("container", f"not a container name: {self.container!r}"))
        level = self.compression_level
        if self.compression == "gzip" and level > 9:
            out.append(("compression_level", f"gzip takes 1-9 (0: its default, 1), got {level}"))
        if self.compression == "none" and level:
            out.append(("compression_level", "must be 0 with compression: none"))
        try:
            parse_unit_list(self.dependents)
        except ValueError as exc:
            out.append(("dependents", str(exc)))
        for key in ("timeout", "misfire_grace"):
            if getattr(self, key) < 60:
                out.append((key, "must be at least 1m"))
        if self.catch_up_delay < 0:
            out.append(("catch_up_delay", "must not be negative"))
        return out


@dataclass(frozen=True)
class HealConfig:
    """Auto-healing of the stack's services (agent/heal/policy.py says how it decides)."""

    enabled: bool = True
    # How long a failing container health check is tolerated before the agent restarts.
    unhealthy_grace: Duration = 30.0
    # The agent's own service probes (agent/stack/probes.py): how often, how long each,
    # and how soon a failed one is asked again (a miss needs confirming before it counts
    # to the restart threshold). Together they bound a hang's detection:
    # interval + (timeout + confirm) * failures - confirm, 4 + 2 + 1 + 2 = 9 s by default.
    probe_interval: Duration = 4.0
    probe_timeout: Duration = 2.0
    probe_confirm: Duration = 1.0
    probe_failures: int = field(default=2, metadata=_limits(1, 1000))
    backoff_initial: Duration = 5.0
    backoff_max: Duration = 300.0
    backoff_factor: float = field(default=2.0, metadata=_limits(1, 100))
    # Each delay is scaled by a random factor in [1 - jitter, 1 + jitter].
    jitter: float = field(default=0.2, metadata=_limits(0, 0.99))
    give_up_after: int = field(default=5, metadata=_limits(1, 1000))  # restarts ...
    give_up_window: Duration = 1800.0  # ... within this window
    # systemd's restart counter of a service running well this long is reset, so its next
    # crash is restarted at once (RestartSteps grow the delay with the counter); 0s: never.
    forget_restarts_after: Duration = 900.0
    state_file: Path = Path("/var/lib/aistack/heal-state.json")

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.backoff_initial <= 0:
            out.append(("backoff_initial", "must be longer than 0s"))
        if self.backoff_max < self.backoff_initial:
            out.append(("backoff_max", "must not be shorter than heal.backoff_initial"))
        for key in ("probe_interval", "probe_timeout", "probe_confirm", "give_up_window"):
            if getattr(self, key) <= 0:
                out.append((key, "must be longer than 0s"))
        if 0 < self.probe_interval <= self.probe_timeout:
            out.append(("probe_timeout", "must be shorter than heal.probe_interval"))
        if self.probe_confirm > self.probe_interval > 0:
            out.append(("probe_confirm", "must not be longer than heal.probe_interval"))
        if 0 < self.forget_restarts_after < 60:
            out.append(("forget_restarts_after", "must be 0s (never) or at least 1m"))
        return out


EnvMap = tuple[tuple[str, str], ...]  # a YAML mapping of environment variables, in order
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_PORT = re.compile(r"(?P<addr>\[[0-9a-fA-F:]+\]|[0-9.]+):(?P<port>[0-9]{1,5})")


def _service_problems(svc: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for i, port in enumerate(svc.ports):
        match = _HOST_PORT.fullmatch(port)
        if not match or not 1 <= int(match["port"]) <= 65535:
            out.append((f"ports[{i}]", f"not a host address:port: {port!r} (e.g. 127.0.0.1:8080)"))
            continue
        try:
            ipaddress.ip_address(match["addr"].strip("[]"))
        except ValueError:
            out.append((f"ports[{i}]", f"not an IP address in {port!r}"))
    for name, _ in svc.env:
        if not _ENV_NAME.fullmatch(name):
            out.append(("env", f"not an environment variable name: {name!r}"))
    for i, volume in enumerate(svc.volumes):
        parts = volume.split(":")
        if len(parts) not in (2, 3) or not parts[1].startswith("/"):
            why = f"{volume!r} is not SOURCE:/container/path[:OPTIONS]"
            out.append((f"volumes[{i}]", why))
    return out


_DATA_PATH = re.compile(r"/[^\0\n:,]*")


def _data_problems(data: str) -> list[tuple[str, str]]:
    """`data:` is a host directory bound instead of the managed volume (`aistack migrate
    --data in-place`); empty keeps the volume."""
    if data and (not _DATA_PATH.fullmatch(data) or "/../" in f"{data}/" or data == "/"):
        why = "must be an absolute directory path without ':' or ',' (or empty: the volume)"
        return [("data", f"{why}, got {data!r}")]
    return []


@dataclass(frozen=True)
class OllamaConfig:
    enabled: bool = True
    image: str = "docker.io/ollama/ollama:latest"
    ports: tuple[str, ...] = ("127.0.0.1:11434",)
    env: EnvMap = ()
    volumes: tuple[str, ...] = ()
    # A host directory for the data instead of the managed volume (in-place migrate).
    data: Folder = NO_FOLDER
    # Models to keep pulled (pulled on apply when missing). On a front host with
    # stack.litellm.ollama_backends: the models LiteLLM routes to every backend.
    models: tuple[str, ...] = ()
    # Ollama has no authentication: publishing it on an address other hosts reach (a GPU
    # host serving a front's LiteLLM, docs/fleet.md) is refused unless this says so.
    allow_remote: bool = False

    def problems(self) -> list[tuple[str, str]]:
        return _service_problems(self) + _data_problems(self.data) + self._remote_problems()

    def _remote_problems(self) -> list[tuple[str, str]]:
        if self.allow_remote:
            return []
        for i, port in enumerate(self.ports):
            address = published_address(port)
            if address is not None and not address.is_loopback:
                why = (
                    f"{port} is not a loopback address, so Ollama (which has no "
                    "authentication) would be reachable from other hosts; set "
                    "stack.ollama.allow_remote: true if that is intended, and firewall "
                    "the port to the front hosts (docs/fleet.md)"
                )
                return [(f"ports[{i}]", why)]
        return []


@dataclass(frozen=True)
class OpenWebuiConfig:
    enabled: bool = True
    image: str = "ghcr.io/open-webui/open-webui:main"
    ports: tuple[str, ...] = ("127.0.0.1:8080",)
    env: EnvMap = ()
    volumes: tuple[str, ...] = ()
    # A host directory for the data instead of the managed volume (in-place migrate).
    data: Folder = NO_FOLDER
    # Traefik Host() rule in proxy mode, e.g. ai.example.com.
    hostname: str = "ai.localhost"

    def problems(self) -> list[tuple[str, str]]:
        return _service_problems(self) + _data_problems(self.data)


@dataclass(frozen=True)
class LitellmConfig:
    enabled: bool = True
    image: str = "ghcr.io/berriai/litellm-database:main-v1.63.6-nightly"
    ports: tuple[str, ...] = ("127.0.0.1:4000",)
    env: EnvMap = ()
    volumes: tuple[str, ...] = ()
    hostname: str = "llm.localhost"
    # Written into LiteLLM's config.yaml as model_list (LiteLLM's own format).
    model_list: tuple[Any, ...] = ()
    # Provider keys (e.g. OPENAI_API_KEY): each read from /etc/aistack/secrets/<NAME>.
    provider_keys: tuple[str, ...] = ()
    # Remote Ollamas (GPU hosts, docs/fleet.md): one LiteLLM deployment per backend per
    # model of stack.ollama.models (the local Ollama too, when enabled), balanced and
    # failed over by LiteLLM's router; the agent probes each one.
    ollama_backends: tuple[str, ...] = ()

    @property
    def backend_urls(self) -> tuple[str, ...]:
        """ollama_backends as rendered, probed and labelled (no trailing slash)."""
        return tuple(normalize_backend(url) for url in self.ollama_backends)

    def problems(self) -> list[tuple[str, str]]:
        out = _service_problems(self)
        for i, model in enumerate(self.model_list):
            if not isinstance(model, Mapping) or "model_name" not in model:
                out.append((f"model_list[{i}]", "needs model_name and litellm_params"))
        for name in self.provider_keys:
            if not _ENV_NAME.fullmatch(name):
                out.append(("provider_keys", f"not an environment variable name: {name!r}"))
        seen: set[str] = set()
        for i, url in enumerate(self.ollama_backends):
            why = backend_url_problem(url)
            if why is None and normalize_backend(url) in seen:
                why = f"{url!r} is listed twice"
            if why is None and normalize_backend(url) == LOCAL_OLLAMA_URL:
                why = (
                    f"{url!r} is the local Ollama, which is a deployment already when "
                    "stack.ollama.enabled is true"
                )
            if why is not None:
                out.append((f"ollama_backends[{i}]", why))
            seen.add(normalize_backend(url))
        return out


# The local Ollama as LiteLLM reaches it on the stack's network (units/ollama.container).
LOCAL_OLLAMA_URL = "http://ollama:11434"
_BACKEND_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}(\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*\.?")


def published_address(port: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The host address of a `stack.*.ports` entry (`10.0.0.5:11434`); None when it is
    not one (its own check says so)."""
    match = _HOST_PORT.fullmatch(port)
    try:
        return ipaddress.ip_address(match["addr"].strip("[]")) if match else None
    except ValueError:
        return None


def normalize_backend(url: str) -> str:
    """A backend URL as it is compared, shown and used as a label: no trailing slash."""
    return url.rstrip("/")


def backend_url_problem(url: str) -> str | None:
    """Why `url` is not an Ollama backend LiteLLM and the agent can use, or None.

    http(s), a host and a port, nothing else: a path would be sent before /api/..., and
    credentials in the URL would be written into LiteLLM's config and shown in /status
    and as a metric label (Ollama has no authentication to send them to anyway)."""
    example = "e.g. http://gpu1:11434"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL: {url!r} ({exc}; {example})"
    if parts.scheme not in ("http", "https"):
        return f"must start with http:// or https://, got {url!r} ({example})"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not carry credentials (user:password@): Ollama has no authentication"
    host = parts.hostname or ""
    if not host:
        return f"no host in {url!r} ({example})"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _BACKEND_HOST.fullmatch(host) or len(host) > 253:
            return f"not a host name or IP address: {host!r}"
    if port is None:
        return f"needs a port: {url!r} (Ollama listens on 11434: {example})"
    if parts.path.strip("/") or parts.query or parts.fragment:
        return f"must be scheme://host:port only, without a path or query: {url!r}"
    return None


@dataclass(frozen=True)
class PostgresConfig:
    enabled: bool = True
    image: str = "docker.io/library/postgres:16"
    ports: tuple[str, ...] = ("127.0.0.1:5432",)
    env: EnvMap = ()
    volumes: tuple[str, ...] = ()
    # A host directory for the data instead of the managed volume (in-place migrate).
    data: Folder = NO_FOLDER
    database: str = "litellm"
    user: str = "llmproxy"

    def problems(self) -> list[tuple[str, str]]:
        return _service_problems(self) + _data_problems(self.data)


_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class ExtraConfig:
    """A compose project whose services join the managed stack (docs/import-compose.md,
    "Extra services in the managed stack"): read by the compose importer at every apply."""

    project: str = ""
    files: tuple[Path, ...] = ()
    profiles: tuple[str, ...] = ()
    allow_lossy: bool = False
    enabled: bool = True

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not _PROJECT.fullmatch(self.project) or len(self.project) > 63:
            why = "use lower case letters, digits, '-' and '_', starting with a letter or digit"
            out.append(("project", f"not a compose project name: {self.project!r} ({why})"))
        if not self.files:
            out.append(("files", "name at least one compose file (an absolute path)"))
        return out


@dataclass(frozen=True)
class StackConfig:
    """The AI stack as quadlet units (units/ holds the templates)."""

    # Quadlet keys are chosen for this Podman version; auto asks the Podman API.
    podman_version: str = "auto"
    # auto: NVIDIA when a CDI spec exists, AMD when /dev/kfd exists, else none.
    gpu: Literal["auto", "nvidia", "amd", "none"] = "auto"
    # traefik: the seed's Traefik labels, and join the external proxy network.
    proxy: Literal["none", "traefik"] = "none"
    proxy_network: str = "proxy"
    unit_dir: Path = Path("/etc/containers/systemd/aistack")
    ollama: OllamaConfig = field(default_factory=OllamaConfig)
    open_webui: OpenWebuiConfig = field(default_factory=OpenWebuiConfig)
    litellm: LitellmConfig = field(default_factory=LitellmConfig)
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    # Compose projects whose services join the managed stack (agent/stack/extra.py).
    extra: tuple[ExtraConfig, ...] = ()

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        for i, entry in enumerate(self.extra):
            if entry.project in seen:
                first = f"stack.extra[{seen[entry.project]}]"
                out.append((f"extra[{i}].project", f"{entry.project!r} is already {first}"))
            seen.setdefault(entry.project, i)
        if self.podman_version != "auto" and not re.fullmatch(
            r"\d+\.\d+(\.\d+)?", self.podman_version
        ):
            out.append(("podman_version", f"must be auto or X.Y, got {self.podman_version!r}"))
        if self.litellm.enabled and self.litellm.ollama_backends and not self.ollama.models:
            why = (
                "no model to route to them: list the models in stack.ollama.models (each "
                "GPU host's agent pulls the same list; docs/fleet.md)"
            )
            out.append(("litellm.ollama_backends", why))
        return out


@dataclass(frozen=True)
class AgentConfig:
    """The whole of agent.yaml: one section per concern."""

    api: ApiConfig = field(default_factory=ApiConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    backups: BackupConfig = field(default_factory=BackupConfig)
    heal: HealConfig = field(default_factory=HealConfig)
    stack: StackConfig = field(default_factory=StackConfig)

    def problems(self) -> list[tuple[str, str]]:
        """A GPU host that publishes Ollama only on its network address: the agent (model
        pulls, /api/ps) would ask gpu.ollama_url, where nothing answers."""
        ollama = self.stack.ollama
        if not (ollama.enabled and ollama.allow_remote and ollama.ports):
            return []
        try:
            url = urlsplit(self.gpu.ollama_url)
            host, port = url.hostname or "", url.port or 11434
        except ValueError:
            return []  # gpu.ollama_url's own check says so
        if host != "localhost" and not _is_loopback(host):
            return []
        for published in ollama.ports:
            address = published_address(published)
            if address is not None and (address.is_loopback or address.is_unspecified):
                return []  # (a different port there is the person's choice)
        why = (
            f"none of them publishes where the agent asks Ollama (gpu.ollama_url: "
            f"{self.gpu.ollama_url}): add 127.0.0.1:{port} to the list, or set "
            "gpu.ollama_url to the published address"
        )
        return [("stack.ollama.ports", why)]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- validation ----------------------------------------------------------------------


class _Invalid(Exception):
    pass


class _Reported(Exception):
    """The problems were already appended to the error list (one per list item)."""


def _describe(value: object) -> str:
    return "a mapping" if isinstance(value, Mapping) else "a list" if isinstance(value, list) \
        else f"{value!r}"  # fmt: skip


def _yaml_scalar(value: object) -> str:
    """A choice as it is written in agent.yaml: true, not True."""
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _convert(
    value: object, hint: Any, meta: Mapping[str, Any], path: str, errors: list[str]
) -> Any:
    """Check and convert one YAML value to the field's type; raise _Invalid with the why."""
    origin = get_origin(hint)
    if origin is Annotated:
        base, marker = get_args(hint)[0], get_args(hint)[1]
        if marker is Unit.DURATION:
            return parse_duration(value)
        if marker is Unit.SIZE:
            return parse_size(value)
        return _convert(value, base, meta, path, errors)
    if origin is Literal:
        choices = get_args(hint)
        # By type too: YAML's 1 is not true, and `enabled: 1` must not pass as it.
        if not any(type(value) is type(c) and value == c for c in choices):
            named = ", ".join(_yaml_scalar(c) for c in choices)
            raise _Invalid(f"must be one of {named} (got {_describe(value)})")
        return value
    if hint == EnvMap:  # a YAML mapping NAME: value; scalars become strings
        if value is None:
            return ()
        if not isinstance(value, Mapping):
            raise _Invalid(f"must be a mapping of NAME: value (got {_describe(value)})")
        pairs = []
        for name, item in value.items():
            if isinstance(item, Mapping | list) or item is None:
                raise _Invalid(f"{name}: must be a string, number or true/false")
            text = str(item).lower() if isinstance(item, bool) else str(item)
            if "\0" in text or "\0" in str(name):
                raise _Invalid(f"{name}: must not contain a NUL character")
            pairs.append((str(name), text))
        return tuple(pairs)
    if hint is Any:  # free-form data handed on as is (e.g. LiteLLM's model_list entries)
        return value
    if origin is tuple:  # a YAML list: tuple[T, ...], each item checked like a field
        if not isinstance(value, list):
            raise _Invalid(f"must be a list (got {_describe(value)})")
        item_hint = get_args(hint)[0]
        items, bad = [], False
        base = path.rstrip(".")
        for i, item in enumerate(value):
            try:  # an item's own keys read `list[1].key`, never `list.[1]key`
                items.append(_convert(item, item_hint, meta, f"{base}[{i}].", errors))
            except (_Invalid, ValueError) as exc:
                errors.append(f"{base}[{i}]: {exc}")
                bad = True
        if bad:
            raise _Reported
        return tuple(items)
    if is_dataclass(hint):
        if value is None:  # a section whose keys are all commented out
            value = {}
        if not isinstance(value, Mapping):
            raise _Invalid(f"must be a mapping of keys (a section), got {_describe(value)}")
        return _build(hint, value, path, errors)  # type: ignore[arg-type]
    if hint is bool:
        if not isinstance(value, bool):
            raise _Invalid(f"must be true or false (got {_describe(value)})")
        return value
    if hint is float:  # ratios and factors; YAML ints are accepted (2 means 2.0)
        finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
        if isinstance(value, bool) or not isinstance(value, int | float) or not finite:
            raise _Invalid(f"must be a number (got {_describe(value)})")
        low, high = meta.get("min"), meta.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            raise _Invalid(f"must be between {low} and {high} (got {value})")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"must be a whole number (got {_describe(value)})")
        low, high = meta.get("min"), meta.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            raise _Invalid(f"must be between {low} and {high} (got {value})")
        return value
    if isinstance(value, str) and "\0" in value:
        raise _Invalid("must not contain a NUL character")
    if hint is Folder:
        if not isinstance(value, str):
            raise _Invalid(f"must be a folder path or empty (got {_describe(value)})")
        return Folder(value)
    if hint in (str, Secret):
        if not isinstance(value, str) or not value:
            raise _Invalid(f"must be a non-empty string (got {_describe(value)})")
        return hint(value)
    if hint is Path:
        if not isinstance(value, str) or not value.startswith("/"):
            raise _Invalid(f"must be an absolute path (got {_describe(value)})")
        return Path(value)
    raise TypeError(f"config field type {hint!r} at {path} has no converter")


def _build(cls: type[Any], data: Mapping[Any, Any], prefix: str, errors: list[str]) -> Any:
    """Build dataclass `cls` from `data`, appending every problem (with its key path)."""
    hints = get_type_hints(cls, include_extras=True)
    known = [f.name for f in fields(cls)]
    values: dict[str, Any] = {}
    before = len(errors)
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            where = f" in section '{prefix[:-1]}'" if prefix else ""
            msg = f"{path}: unknown key{where}"
            msg += f" (did you mean '{prefix}{hint[0]}'?)" if hint else ""
            errors.append(f"{msg}; known keys: {', '.join(sorted(known))}")
            continue
        meta = next(f.metadata for f in fields(cls) if f.name == key)
        try:
            values[key] = _convert(value, hints[key], meta, f"{path}.", errors)
        except (_Invalid, ValueError) as exc:
            errors.append(f"{path}: {exc}")
        except _Reported:
            pass
    if len(errors) != before:
        return None
    instance = cls(**values)
    check = getattr(instance, "problems", None)
    if check is not None:
        errors.extend(f"{prefix}{key}: {msg}" for key, msg in check())
    return instance


def _plain(value: Any, hint: Any = None) -> Any:
    """A config value as YAML/JSON data: units written back, secrets redacted."""
    if is_dataclass(value) and not isinstance(value, type):
        hints = get_type_hints(type(value), include_extras=True)
        return {f.name: _plain(getattr(value, f.name), hints[f.name]) for f in fields(value)}
    if isinstance(value, Secret):
        return Secret.REDACTED
    if get_origin(hint) is Annotated:
        marker = get_args(hint)[1]
        if marker is Unit.DURATION:
            return format_duration(value)
        if marker is Unit.SIZE:
            return format_size(value)
    if isinstance(value, Path | Folder):
        return str(value)
    if hint == EnvMap:
        return dict(value)
    if isinstance(value, tuple):  # a list: its items written back like fields
        args = get_args(hint) if get_origin(hint) is tuple else ()
        return [_plain(item, args[0] if args else None) for item in value]
    return value


# --- loading -------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain name, not a list or a mapping",
                key_node.start_mark,
            )  # fmt: skip
        key = loader.construct_object(key_node)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def resolve_path(cli_path: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """Pick the config file: --config, then $AISTACK_CONFIG, then the default.

    Returns (path, explicit). A missing explicit path is an error; a missing default
    path means built-in defaults, so the agent runs on a host nobody configured yet.
    """
    if cli_path:
        return Path(cli_path), True
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env), True
    return DEFAULT_CONFIG_PATH, False


def load_config(path: Path, *, must_exist: bool = True) -> AgentConfig:
    """Read and validate one config file; raises ConfigError naming every problem."""
    source = str(path)
    try:
        # O_NONBLOCK: a FIFO given as the config must not block the open
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        if not must_exist:
            return AgentConfig()
        raise ConfigError(source, [f"file not found: {path}"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read {path}: {exc.strerror}"]) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(source, [f"{path} is not a regular file"])
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(source, [f"{path} is larger than {MAX_CONFIG_BYTES >> 10} KiB"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"cannot read {path}: not UTF-8 text ({exc.reason})"]) from None
    return parse_config(text, source)


def parse_config(text: str, source: str = "<string>") -> AgentConfig:
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(source, [f"larger than {MAX_CONFIG_BYTES >> 10} KiB"])
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [_yaml_problem(exc)]) from None
    except RecursionError:
        raise ConfigError(source, ["YAML: nested too deeply"]) from None
    if _too_many_values(data):
        raise ConfigError(
            source, [f"more than {MAX_VALUES} values once aliases are followed (an alias bomb?)"]
        )
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            source, [f"top level must be a mapping of sections, got {type(data).__name__}"]
        )
    errors: list[str] = []
    config = _build(AgentConfig, data, "", errors)
    if errors:
        raise ConfigError(source, errors)
    return config  # type: ignore[no-any-return]


def _too_many_values(data: Any) -> bool:
    """Walk the loaded data, aliases followed, stopping at MAX_VALUES: a billion-laughs
    file is a few hundred bytes whose walk would not end."""
    todo, seen = [data], 0
    while todo:
        item = todo.pop()
        seen += 1
        if seen > MAX_VALUES:
            return True
        if isinstance(item, Mapping):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"YAML: {where}{problem}"


def effective(config: AgentConfig) -> dict[str, Any]:
    """The config as plain data with units written back and secrets redacted."""
    return _plain(config)  # type: ignore[no-any-return]


def render_yaml(config: AgentConfig) -> str:
    return yaml.safe_dump(effective(config), sort_keys=False, default_flow_style=False)
