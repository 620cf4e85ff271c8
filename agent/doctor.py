"""`aistack doctor`: the seed's troubleshooting list, run for you, with a fix for each finding.

The seed's list ("Open WebUI can't connect to Ollama", "Database connection error", "Model
loading slow", "Ollama not responding", GPU) is what people type by hand: `network
inspect`, `exec open-webui curl ...`, `pg_isready`, `docker stats`, `nvidia-smi`. Doctor
does the same from the host, as root: the libpod API socket (inspect and exec, as the
agent does), systemd over D-Bus, the agent's /status, /proc and statvfs. It changes nothing.

Every check runs in its own thread with a deadline (CHECK_LIMIT_S), and every call inside
one has a shorter timeout: a hung Podman or D-Bus makes its checks say so, it never hangs
doctor, and a check that fails never stops the others. Once Podman did not answer, the
checks that need it say so instead of each waiting for it in turn.

Exit codes: 0 no problems (warnings allowed), 1 at least one problem, 78 invalid config.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import client, podman_api, systemd_ctl
from .config import AgentConfig, load_config, resolve_path
from .stack.facts import CDI_DIRS, CDI_HINT, cdi_has_nvidia
from .stack.model import ServiceSpec, enabled, spec_of

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

    podman_api.ExecStream reads without a timeout (a backup's pg_dump may pause for long);
    here a timer aborts the stream, so a command that hangs costs `timeout`, no more."""
    exec_id = podman_api.exec_create(socket, container, cmd, timeout=timeout)
    stream = podman_api.ExecStream(socket, exec_id, connect_timeout=timeout)
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        stream.abort()

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    out, err = bytearray(), bytearray()
    try:
        while (frame := stream.demux.frame()) is not None:
            kind, payload = frame
            target = err if kind == podman_api.STDERR else out
            target += payload[: max(0, 4096 - len(target))]
    except (OSError, podman_api.PodmanApiError):
        if not fired.is_set():
            raise
    finally:
        timer.cancel()
        stream.close()
    if fired.is_set():
        raise ExecTimeout(f"`{' '.join(cmd)}` in {container}: no answer within {timeout:g} s")
    code = podman_api.exec_exit_code(socket, exec_id, wait=2.0)
    return code, out.decode(errors="replace").strip(), err.decode(errors="replace").strip()


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


def _env(inspect: Mapping[str, Any]) -> dict[str, str]:
    """A container's environment (Config.Env: the image's and the unit's, merged)."""
    env: dict[str, str] = {}
    for item in (inspect.get("Config") or {}).get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


def _running(inspect: Mapping[str, Any] | None) -> bool:
    return bool(inspect and (inspect.get("State") or {}).get("Running"))


def _networks(inspect: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(((inspect or {}).get("NetworkSettings") or {}).get("Networks") or {})


def _health(inspect: Mapping[str, Any]) -> str:
    state = inspect.get("State") or {}
    health = state.get("Health") or state.get("Healthcheck") or {}
    return str(health.get("Status") or "")


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

    def inspect(self, name: str) -> dict[str, Any] | None:
        """`podman container inspect name`; None when there is no such container."""
        if self.podman_error is not None:
            raise PodmanDown(self.podman_error)
        return self._cached(  # type: ignore[no-any-return]
            f"inspect:{name}",
            lambda: podman_api.container_inspect(self.socket, name, CALL_TIMEOUT_S),
        )

    def inspect_or_none(self, name: str) -> dict[str, Any] | None:
        """inspect(), with an unreachable Podman read as "no container"."""
        try:
            return self.inspect(name)
        except (PodmanDown, podman_api.PodmanApiError):
            return None

    def agent_status(self) -> dict[str, Any] | None:
        """The agent's /status document (no token needed); None when it does not answer."""

        def fetch() -> dict[str, Any] | None:
            try:
                _, doc = http_json(f"{self.api_base}/status")
            except OSError:
                return None
            return doc if isinstance(doc, dict) and "state" in doc else None

        return self._cached("status", fetch)  # type: ignore[no-any-return]

    def unit_states(self) -> dict[str, systemd_ctl.UnitState]:
        units = [f"{s.name}.service" for s in self.enabled()]
        return self._cached("units", lambda: systemd_ctl.unit_states(units))  # type: ignore[no-any-return]

    def service_urls(self, name: str, port: int) -> list[str]:
        """Where this host reaches a service: its container's address on the stack's
        network, then its published ports (what a person would curl)."""
        urls = []
        address = (_networks(self.inspect_or_none(name)).get(NETWORK) or {}).get("IPAddress")
        if address:
            urls.append(f"http://{address}:{port}")
        spec = spec_of(name)
        for published in spec.settings(self.config.stack).ports:
            host, _, host_port = published.rpartition(":")
            host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
            urls.append(f"http://{host}:{host_port}")
        return urls


# --------------------------------------------------------------------------- checks


def check_agent(ctx: Context) -> list[Finding]:
    """The agent's /status: whether it runs, and its own verdict."""
    doc = ctx.agent_status()
    if doc is None:
        return [
            problem("agent", f"the agent is not running (nothing answers at {ctx.api_base})",
                    "systemctl start aistack-agent; then: systemctl status aistack-agent")
        ]  # fmt: skip
    head = f"aistack-agent {doc.get('version', '?')} answers at {ctx.api_base}"
    if doc.get("state") == "ok":
        return [ok("agent", f"{head}, state ok")]
    reasons = "; ".join(map(str, doc.get("state_reasons") or [])) or "no reason given"
    if doc.get("state") == "failed":  # the agent gave up healing a service: a person acts
        fix = "fix the cause (journalctl -u SERVICE), then: aistack restart SERVICE"
        return [problem("agent", f"{head}, state failed: {reasons}", fix)]
    return [warn("agent", f"{head}, state {doc.get('state')}: {reasons}", "aistack status")]


def check_podman(ctx: Context) -> list[Finding]:
    """The libpod API socket answers: everything about containers goes through it."""
    sock = ctx.socket
    fix = "systemctl enable --now podman.socket"
    if not sock.exists():
        ctx.podman_error = f"no Podman API socket at {sock}"
        return [problem("podman", f"{ctx.podman_error} (podman.socket is not running)", fix)]
    try:
        status, data = podman_api.request_json(
            sock, "GET", f"{podman_api.API}/version", timeout=CALL_TIMEOUT_S
        )
    except podman_api.PodmanApiError as exc:
        ctx.podman_error = f"the Podman API at {sock} does not answer"
        text = str(exc)
        if "Permission denied" in text:
            fix = "run doctor as root: sudo aistack doctor"
        elif "timed out" in text:
            fix = "systemctl restart podman.socket; journalctl -u podman.service -n 50"
        return [problem("podman", text.split(" (is podman.socket", 1)[0], fix)]
    if status != 200 or not isinstance(data, dict):
        ctx.podman_error = f"the Podman API at {sock} answers {status}"
        fix = "systemctl restart podman.socket; journalctl -u podman.service -n 50"
        return [problem("podman", f"{ctx.podman_error}: {data}", fix)]
    version = data.get("Version") or (data.get("Components") or [{}])[0].get("Version") or "?"
    return [ok("podman", f"Podman {version} answers at {sock}")]


def check_network(ctx: Context) -> list[Finding]:
    """The stack's network exists, resolves names, and every running container is on it
    (the seed's `docker network inspect proxy`)."""
    enabled = ctx.enabled()
    if not enabled:
        return [ok("network", "no service enabled in stack: nothing to connect")]
    if ctx.podman_error is not None:
        raise PodmanDown(ctx.podman_error)
    status, data = podman_api.request_json(
        ctx.socket, "GET", f"{podman_api.API}/networks/{NETWORK}/json", timeout=CALL_TIMEOUT_S
    )
    inspect_it = f"podman network inspect {NETWORK}"
    if status == 404:
        return [
            problem("network", f"the network {NETWORK!r} does not exist: the containers "
                    "cannot reach each other by name",
                    f"aistack up (its aistack-network.service creates it); then: {inspect_it}")
        ]  # fmt: skip
    if status != 200 or not isinstance(data, dict):
        raise podman_api.PodmanApiError(f"network inspect {NETWORK} answered {status}: {data}")
    findings = []
    if not data.get("dns_enabled"):
        findings.append(
            problem("network", f"DNS is off on network {NETWORK!r}: containers cannot "
                    "resolve each other by name (ollama, litellm, postgres)",
                    f"aistack down; podman network rm {NETWORK}; aistack up (the stack's "
                    "network unit creates it with DNS on)")
        )  # fmt: skip
    attached = []
    for spec in enabled:
        inspect = ctx.inspect(spec.name)
        if not _running(inspect):
            continue  # the services check reports it
        if NETWORK in _networks(inspect):
            attached.append(spec.name)
            continue
        findings.append(
            problem("network", f"{spec.name} runs but is not attached to network {NETWORK!r}: "
                    "the others cannot reach it by name, nor it them",
                    f"aistack restart {spec.name} (its unit attaches it); check: {inspect_it}")
        )  # fmt: skip
    on = ", ".join(attached) or "no running container yet"
    return findings or [ok("network", f"{NETWORK}: DNS on; attached: {on}")]


def check_services(ctx: Context) -> list[Finding]:
    """Each enabled service: its unit active and its container healthy."""
    enabled = ctx.enabled()
    if not enabled:
        return [ok("services", "no service enabled in stack")]
    try:
        states = ctx.unit_states()
    except systemd_ctl.SystemdError as exc:
        hint = "run doctor as root on the stack's host; systemctl status dbus.socket"
        return [problem("services", f"cannot read the services' units: {exc}", hint)]
    findings = []
    for spec in enabled:
        severity, summary, fix = _service_verdict(ctx, spec.name, states[f"{spec.name}.service"])
        findings.append(Finding("services", severity, f"{spec.name}: {summary}", fix))
    return findings


def _service_verdict(
    ctx: Context, name: str, st: systemd_ctl.UnitState
) -> tuple[Severity, str, str | None]:
    unit = f"{name}.service"
    logs = f"journalctl -u {unit} -n 50"
    if st.load_state == "not-found":
        return PROBLEM, f"no unit {unit} (not installed)", "aistack up (writes and starts it)"
    if st.active_state == "failed":
        return PROBLEM, f"unit failed ({st.result or '?'})", f"{logs}; aistack restart {name}"
    if st.active_state in ("inactive", "deactivating"):
        return PROBLEM, f"not running (unit {st.active_state})", f"aistack restart {name}; {logs}"
    if st.active_state != "active":
        return WARNING, f"unit {st.active_state} ({st.sub_state})", f"run doctor again; {logs}"
    try:
        inspect = ctx.inspect(name)
    except (PodmanDown, podman_api.PodmanApiError) as exc:
        return WARNING, f"unit active; container not checked ({exc})", FIX_PODMAN_FIRST
    if not _running(inspect):
        return PROBLEM, "unit active but no running container", f"aistack restart {name}; {logs}"
    health = _health(inspect or {})
    if health == "unhealthy":
        fix = f"{logs}; podman healthcheck run {name}; aistack restart {name}"
        return PROBLEM, "container unhealthy (its health check fails)", fix
    if health == "starting":
        return WARNING, "health check still starting", "wait, then run doctor again"
    if st.n_restarts >= RESTARTS_WARN:
        return WARNING, f"runs, but systemd restarted it {st.n_restarts} times", logs
    return OK, f"active, {health or 'no health check'}", None


def ollama_urls(env: Mapping[str, str]) -> list[str]:
    """The Ollama URLs Open WebUI uses: OLLAMA_BASE_URLS (;-separated) wins over
    OLLAMA_BASE_URL; anything that is not http(s) falls back to the stack's default."""
    many = [u.strip() for u in env.get("OLLAMA_BASE_URLS", "").split(";") if u.strip()]
    urls = many or [env.get("OLLAMA_BASE_URL", "").strip() or DEFAULT_OLLAMA_URL]
    return [u.rstrip("/") if u.startswith(("http://", "https://")) else DEFAULT_OLLAMA_URL
            for u in urls]  # fmt: skip


def check_webui_ollama(ctx: Context) -> list[Finding]:
    """The seed's "Open WebUI can't connect to Ollama": curl Ollama from inside Open WebUI,
    at the URL Open WebUI itself is configured with."""
    check = "webui-ollama"
    if not (ctx.is_enabled("open-webui") and ctx.is_enabled("ollama")):
        return [ok(check, "open-webui or ollama not enabled: nothing to connect")]
    webui = ctx.inspect("open-webui")
    if not _running(webui):
        return [not_checked(check, "open-webui is not running (see services)")]
    env = _env(webui or {})
    setting = "OLLAMA_BASE_URLS" if "OLLAMA_BASE_URLS" in env else "OLLAMA_BASE_URL"
    findings = []
    for url in ollama_urls(env):
        try:
            code, out, err = exec_run(
                ctx.socket, "open-webui", ["curl", "-fsS", "-m", "5", f"{url}/api/version"]
            )
        except ExecTimeout as exc:
            code, out, err = -1, "", str(exc)
        if code == 0:
            try:
                version = json.loads(out).get("version", "?")
            except (ValueError, AttributeError):
                version = "?"
            findings.append(ok(check, f"open-webui reaches Ollama {version} at {url}"))
        elif code in (126, 127):
            findings.append(not_checked(check, f"no curl in the open-webui image ({err})"))
        else:
            why = f"open-webui cannot reach Ollama at {url}: {err or f'curl exit {code}'}"
            findings.append(problem(check, why, _webui_ollama_fix(ctx, webui, url, setting)))
    return findings


def _webui_ollama_fix(ctx: Context, webui: Any, url: str, setting: str) -> str:
    """The likeliest cause first: Open WebUI off the network, Ollama down, the URL."""
    if NETWORK not in _networks(webui):
        return (f"open-webui is not on network {NETWORK!r}: aistack restart open-webui; "
                f"check: podman network inspect {NETWORK}")  # fmt: skip
    if "//ollama:" in url and not _running(ctx.inspect_or_none("ollama")):
        return "ollama is not running: aistack restart ollama; journalctl -u ollama.service"
    return (f"Open WebUI reads {setting} (now {url}); it must name Ollama on network "
            f"{NETWORK!r}, {DEFAULT_OLLAMA_URL}: set stack.open_webui.env.{setting} and run "
            f"aistack up. Check: podman network inspect {NETWORK}; podman exec open-webui "
            f"curl {url}/api/tags")  # fmt: skip


PG_ISREADY: dict[int, tuple[Severity, str]] = {
    1: (WARNING, "rejects connections (starting up or shutting down)"),
    2: (PROBLEM, "does not answer (pg_isready: no response)"),
    3: (PROBLEM, "was not tried (pg_isready: bad parameters)"),
}


def check_postgres(ctx: Context) -> list[Finding]:
    """The seed's "Database connection error": pg_isready in the container as the
    configured user and database, and LiteLLM's own view of its database."""
    if not ctx.is_enabled("postgres"):
        return [ok("postgres", "postgres not enabled")]
    pg = ctx.config.stack.postgres
    logs = "journalctl -u postgres.service -n 50"
    findings = []
    if not _running(ctx.inspect("postgres")):
        findings.append(problem("postgres", "postgres is not running: LiteLLM has no database",
                                f"aistack restart postgres; {logs}"))  # fmt: skip
    else:
        cmd = ["pg_isready", "-U", pg.user, "-d", pg.database, "-t", "3"]
        try:
            code, out, err = exec_run(ctx.socket, "postgres", cmd)
        except ExecTimeout as exc:
            code, out, err = 2, "", str(exc)
        if code == 0:
            findings.append(ok("postgres", f"accepts connections ({pg.database} as {pg.user})"))
        elif code in (126, 127):
            findings.append(not_checked("postgres", f"no pg_isready in the image ({err})"))
        else:
            severity, what = PG_ISREADY.get(code, (PROBLEM, f"fails (pg_isready exit {code})"))
            detail = ((out or err).splitlines() or [""])[-1]
            summary = f"postgres {what}" + (f": {detail}" if detail else "")
            findings.append(
                Finding("postgres", severity, summary, f"{logs}; aistack restart postgres")
            )
    if ctx.is_enabled("litellm") and _running(ctx.inspect("litellm")):
        findings.append(_litellm_db(ctx))
    return findings


def _litellm_db(ctx: Context) -> Finding:
    """LiteLLM's /health/readiness: its `db` field says whether it reaches the database."""
    for base in ctx.service_urls("litellm", 4000):
        try:
            _, doc = http_json(f"{base}/health/readiness", timeout=3)
        except OSError:
            continue
        db = doc.get("db") if isinstance(doc, dict) else None
        if db == "connected":
            return ok("postgres", "LiteLLM's database: connected (/health/readiness)")
        return problem("postgres", f"LiteLLM's database: {db or doc} (/health/readiness)",
                       "postgres must be healthy, and the secret aistack-litellm-database-url "
                       "name postgres:5432; journalctl -u litellm.service -n 50; aistack "
                       "restart litellm")  # fmt: skip
    return not_checked("postgres", "LiteLLM's /health/readiness did not answer (see services)")


@dataclass(frozen=True)
class ModelSize:
    name: str
    size: int  # bytes: Ollama's size (/api/ps: loaded, with its cache; /api/tags: on disk)
    vram: int = 0  # /api/ps size_vram: the part in GPU memory


def memory_findings(
    meminfo: Mapping[str, int],
    installed: Sequence[ModelSize] | None,
    loaded: Sequence[ModelSize],
    gpu_memory: int | None,
) -> list[Finding]:
    """Memory against the models: the seed's "models need RAM" and "model loading slow".

    installed: None when Ollama did not answer. gpu_memory: the GPUs' total as the agent
    reports it (0: none; None: unknown). A model needs RAM for what does not fit on the GPU
    (on CPU inference, all of it); loaded models count as free-able, since Ollama unloads
    idle ones to load another.
    """
    check = "memory"
    available, total = meminfo.get("MemAvailable"), meminfo.get("MemTotal")
    if available is None or not total:
        return [not_checked(check, "no MemAvailable in /proc/meminfo", "a kernel >= 3.14")]
    head = f"{human(available)} of {human(total)} available"
    findings = []
    if available < MEMORY_LOW * total:
        fix = "podman stats --no-stream (who uses it?); " + FIX_MODEL_SIZE
        findings.append(warn(check, f"{head}: memory nearly exhausted", fix))
    gpu = bool(gpu_memory) or any(m.vram > 0 for m in loaded)
    for m in loaded:
        if gpu and m.vram < m.size:
            cpu = m.size - m.vram
            findings.append(
                warn(check, f"{m.name} runs {cpu * 100 // m.size}% on the CPU ({human(cpu)} of "
                     f"{human(m.size)} in system memory): slow", FIX_MODEL_SIZE)
            )  # fmt: skip
    if installed is None:
        note = "Ollama not answering: model sizes not compared (see services)"
        return findings or [ok(check, f"{head}; {note}")]
    if gpu and not gpu_memory:
        note = "GPU memory unknown (the agent reports none): model fit not judged"
        return findings or [ok(check, f"{head}; {note}")]
    where = f"{human(gpu_memory or 0)} GPU memory" if gpu else "CPU inference"
    loaded_names = {m.name for m in loaded}
    waiting = [m for m in installed if m.name not in loaded_names]
    if not waiting:
        note = f"{len(loaded)} model(s) loaded" if loaded else "no models installed"
        return findings or [ok(check, f"{head}; {note} ({where})")]
    big = max(waiting, key=lambda m: m.size)
    need = max(0, big.size - (gpu_memory or 0))
    freeable = sum(m.size - m.vram for m in loaded)
    if need > available + freeable:
        findings.append(
            warn(check, f"the largest model, {big.name} ({human(big.size)}), needs {human(need)} "
                 f"of RAM ({where}) but {human(available)} is available: loading it will be "
                 "very slow (swap) or fail", FIX_MODEL_SIZE)
        )  # fmt: skip
    fits = f"{head}; the largest model, {big.name} ({human(big.size)}), fits ({where})"
    return findings or [ok(check, fits)]


def _ollama_models(ctx: Context) -> tuple[list[ModelSize] | None, list[ModelSize]]:
    """(installed, loaded) from Ollama's /api/tags and /api/ps; installed is None when
    Ollama answers nowhere."""
    bases = [*ctx.service_urls("ollama", 11434), ctx.config.gpu.ollama_url.rstrip("/")]
    for base in dict.fromkeys(bases):
        try:
            _, tags = http_json(f"{base}/api/tags", timeout=3)
            _, ps = http_json(f"{base}/api/ps", timeout=3)
        except OSError:
            continue
        if isinstance(tags, dict) and isinstance(ps, dict):
            installed = [ModelSize(str(m.get("name")), int(m.get("size") or 0))
                         for m in tags.get("models") or []]  # fmt: skip
            loaded = [ModelSize(str(m.get("name")), int(m.get("size") or 0),
                                int(m.get("size_vram") or 0))
                      for m in ps.get("models") or []]  # fmt: skip
            return installed, loaded
    return None, []


def check_memory(ctx: Context, meminfo_path: Path = Path("/proc/meminfo")) -> list[Finding]:
    """MemAvailable against Ollama's models, and containers the kernel killed for memory."""
    meminfo = parse_meminfo(meminfo_path.read_text())
    if ctx.is_enabled("ollama"):
        installed, loaded = _ollama_models(ctx)
    else:
        installed, loaded = [], []
    status = ctx.agent_status()
    gpu_memory = None
    if status is not None:
        gpu_memory = sum(int(g.get("memory_total_bytes") or 0) for g in status.get("gpus") or [])
    return [*memory_findings(meminfo, installed, loaded, gpu_memory), *_oom_findings(ctx)]


def _oom_findings(ctx: Context) -> list[Finding]:
    """OOM kills: the container's State.OOMKilled, or systemd's Result=oom-kill."""
    try:
        states = ctx.unit_states()
    except systemd_ctl.SystemdError:
        states = {}
    findings = []
    for spec in ctx.enabled():
        st = states.get(f"{spec.name}.service")
        state = (ctx.inspect_or_none(spec.name) or {}).get("State") or {}
        if state.get("OOMKilled") or (st is not None and st.result == "oom-kill"):
            fix = f"journalctl -k | grep -i oom; for Ollama: {FIX_MODEL_SIZE}"
            findings.append(problem("memory", f"{spec.name} was killed for lack of memory", fix))
    return findings


@dataclass(frozen=True)
class GpuFacts:
    """What the GPU verdict depends on: gathered by check_gpu, judged by judge_gpu."""

    wanted: str  # stack.gpu
    agent_gpus: Sequence[Mapping[str, Any]] | None  # /status gpus; None: agent not answering
    nvidia_gpus: int | None  # GPUs `nvidia-smi -L` lists; None: not run, or it failed
    nvidia_error: str | None  # why nvidia-smi listed none
    cdi_nvidia: bool  # a CDI spec for nvidia.com/gpu exists
    kfd: bool  # /dev/kfd (AMD ROCm) exists
    ollama_gpu_error: str | None = None  # nvidia-smi inside the ollama container failed: why


def judge_gpu(f: GpuFacts) -> list[Finding]:
    """No GPU with gpu: none/auto is fine (CPU inference); a GPU asked for and missing,
    unhealthy, or out of Ollama's sight is not."""
    check = "gpu"
    if f.wanted == "none":
        return [ok(check, "stack.gpu: none: CPU inference")]
    findings = []
    gpus = list(f.agent_gpus or [])
    for g in gpus:
        name = f"GPU {g.get('index', '?')} ({g.get('name') or g.get('vendor') or '?'})"
        if g.get("healthy") is False or g.get("health") == "unhealthy":
            why = "; ".join(map(str, g.get("reasons") or [])) or str(g.get("error") or "unhealthy")
            findings.append(problem(check, f"{name}: {why}", "nvidia-smi -q; an XID that needs "
                                    "a reset: reboot (or nvidia-smi -r with nothing on the GPU); "
                                    "docs/gpu.md"))  # fmt: skip
        elif g.get("health") == "warning":
            why = "; ".join(map(str, [*(g.get("reasons") or []), *(g.get("warnings") or [])]))
            findings.append(warn(check, f"{name}: {why or 'warning'}", "docs/gpu.md (health)"))
    nvidia = bool(f.nvidia_gpus) or any(g.get("vendor") == "nvidia" for g in gpus)
    amd = f.kfd or any(g.get("vendor") == "amd" for g in gpus)
    if f.wanted == "nvidia" and not nvidia:
        why = f" ({f.nvidia_error})" if f.nvidia_error else ""
        findings.append(problem(check, f"stack.gpu is nvidia but no NVIDIA GPU answers{why}",
                                "install or load the NVIDIA driver (nvidia-smi must list the "
                                "GPU), or set stack.gpu: auto"))  # fmt: skip
    elif nvidia and not f.cdi_nvidia and f.wanted in ("nvidia", "auto"):
        where = " or ".join(map(str, CDI_DIRS))
        findings.append(
            Finding(check, PROBLEM if f.wanted == "nvidia" else WARNING,
                    f"an NVIDIA GPU is present but no CDI spec for nvidia.com/gpu is in {where}: "
                    "Ollama cannot use it (CPU inference)", f"{CDI_HINT}; then: aistack up")
        )  # fmt: skip
    if f.wanted == "amd" and not amd:
        findings.append(problem(check, "stack.gpu is amd but /dev/kfd is missing",
                                "load amdgpu (modprobe amdgpu) on a GPU ROCm supports, or set "
                                "stack.gpu: auto"))  # fmt: skip
    if f.ollama_gpu_error:
        findings.append(problem(check, f"the ollama container does not see the GPU "
                                f"({f.ollama_gpu_error})", f"{CDI_HINT} (again after a driver "
                                "upgrade); then: aistack restart ollama"))  # fmt: skip
    if findings:
        return findings
    if gpus:
        names = ", ".join(str(g.get("name") or g.get("vendor")) for g in gpus)
        return [ok(check, f"{len(gpus)} GPU(s), healthy: {names}")]
    if nvidia:
        return [ok(check, f"{f.nvidia_gpus} NVIDIA GPU(s) (nvidia-smi), CDI spec present")]
    if amd:
        return [ok(check, "AMD GPU (/dev/kfd present)")]
    return [ok(check, f"no GPU (stack.gpu: {f.wanted}): CPU inference")]


def _nvidia_smi() -> tuple[int | None, str | None]:
    """(GPUs `nvidia-smi -L` lists on the host, why none)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, "no nvidia-smi on PATH"
    try:
        res = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=EXEC_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nvidia-smi: {exc}"
    if res.returncode != 0:
        return None, f"nvidia-smi: {(res.stdout + res.stderr).strip()[:200]}"
    return sum(line.startswith("GPU ") for line in res.stdout.splitlines()), None


def _ollama_gpu_error(ctx: Context) -> str | None:
    """The seed's `docker exec -it ollama nvidia-smi` (the CDI spec mounts it in)."""
    if not _running(ctx.inspect_or_none("ollama")):
        return None  # the services check reports it
    try:
        code, out, err = exec_run(ctx.socket, "ollama", ["nvidia-smi", "-L"])
    except (podman_api.PodmanApiError, ExecTimeout):
        return None
    return None if code == 0 else (err or out or f"nvidia-smi exit {code}")[:200]


def check_gpu(ctx: Context) -> list[Finding]:
    """The agent's view of the GPUs when it runs; the driver and CDI spec on the host."""
    wanted = ctx.config.stack.gpu
    if wanted == "none":
        return judge_gpu(GpuFacts(wanted, None, None, None, False, False))
    status = ctx.agent_status()
    gpus = status.get("gpus") if status is not None else None
    count, error = _nvidia_smi() if wanted in ("nvidia", "auto") else (None, None)
    cdi = cdi_has_nvidia()
    nvidia = bool(count) or any(g.get("vendor") == "nvidia" for g in gpus or [])
    seen = _ollama_gpu_error(ctx) if nvidia and cdi and ctx.is_enabled("ollama") else None
    return judge_gpu(GpuFacts(wanted, gpus, count, error, cdi, KFD.exists(), seen))


def disk_finding(label: str, total: int, free: int, min_free: int = 0) -> Finding:
    """One filesystem: a warning under DISK_WARN free, a problem under DISK_PROBLEM or
    under `min_free` (backups refuse to start below it)."""
    share = free / total if total else 0.0
    head = f"{label}: {human(free)} free of {human(total)} ({share:.0%})"
    fix = "podman image prune; podman system df; old backups: aistack backup list"
    if share < DISK_PROBLEM or free < min_free:
        floor = f"; backups need {human(min_free)}" if free < min_free else ""
        return problem("disk", head + floor, fix)
    if share < DISK_WARN:
        return warn("disk", f"{head}: under {DISK_WARN:.0%}", fix)
    return ok("disk", head)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(ctx: Context, containers: Path = CONTAINERS_DIR) -> list[Finding]:
    """Free space where Podman keeps images and volumes, and where backups go: one finding
    per filesystem (a path not created yet counts on the filesystem that will hold it)."""
    backups = ctx.config.backups
    paths = [containers]
    if backups.enabled or backups.directory.exists():
        paths.append(backups.directory)
    groups: dict[int, list[Path]] = {}
    for path in paths:
        groups.setdefault(os.stat(_existing(path)).st_dev, []).append(path)
    findings = []
    for group in groups.values():
        st = os.statvfs(_existing(group[0]))
        min_free = backups.min_free if backups.enabled and backups.directory in group else 0
        label = " and ".join(map(str, group))
        total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        findings.append(disk_finding(label, total, free, min_free))
    return findings


Check = Callable[[Context], list[Finding]]
CHECKS: tuple[tuple[str, Check], ...] = (
    ("agent", check_agent),
    ("podman", check_podman),  # before the checks that need Podman: it records why not
    ("network", check_network),
    ("services", check_services),
    ("webui-ollama", check_webui_ollama),
    ("postgres", check_postgres),
    ("memory", check_memory),
    ("gpu", check_gpu),
    ("disk", check_disk),
)


# --------------------------------------------------------------------------- running


def _run_one(
    name: str, check: Check, ctx: Context, limit: float, progress: Callable[[str], None]
) -> list[Finding]:
    """One check in a daemon thread: past `limit` it is left behind, and reported."""
    result: list[Finding] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.extend(check(ctx))
        except PodmanDown as exc:
            result.append(not_checked(name, str(exc), FIX_PODMAN_FIRST))
        except BaseException as exc:  # a failing check is a finding, never the end
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"doctor-{name}", daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(min(PROGRESS_AFTER_S, limit))
    if thread.is_alive() and limit > PROGRESS_AFTER_S:
        progress(f"aistack doctor: still checking {name} ...")
    thread.join(max(0.0, limit - (time.monotonic() - started)))
    if thread.is_alive():
        if name == "podman":
            ctx.podman_error = f"the Podman API at {ctx.socket} gave no answer in {limit:g} s"
        return [problem(name, f"the check got no answer within {limit:g} s (something it asks "
                        "hangs)", "systemctl status podman.socket dbus.socket aistack-agent; "
                        "journalctl -n 50")]  # fmt: skip
    if failure:
        why = f"the check failed: {type(failure[0]).__name__}: {failure[0]}"
        return [warn(name, why, "run doctor again; if it persists, report it with this line")]
    return result


def run_checks(
    ctx: Context,
    checks: Iterable[tuple[str, Check]] = CHECKS,
    limit: float = CHECK_LIMIT_S,
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> list[Finding]:
    """Every check in order, each bounded by `limit` seconds."""
    findings: list[Finding] = []
    for name, check in checks:
        findings.extend(_run_one(name, check, ctx, limit, progress))
    return findings


# --------------------------------------------------------------------------- output


def counts(findings: Sequence[Finding]) -> tuple[int, int]:
    """(problems, warnings)."""
    severities = [f.severity for f in findings]
    return severities.count(PROBLEM), severities.count(WARNING)


def exit_code(findings: Sequence[Finding]) -> int:
    """1 when anything is a problem; warnings alone are not a failure."""
    return EX_PROBLEMS if counts(findings)[0] else EX_OK


def to_json(findings: Sequence[Finding]) -> dict[str, Any]:
    problems, warnings = counts(findings)
    return {"findings": [asdict(f) for f in findings], "problems": problems, "warnings": warnings}


MARKERS: dict[str, str] = {OK: "✓", WARNING: "!", PROBLEM: "✗"}
ASCII_MARKERS: dict[str, str] = {OK: "+", WARNING: "!", PROBLEM: "x"}


def render(findings: Sequence[Finding], encoding: str | None = "utf-8") -> str:
    """One line per finding (marker, check, summary), its fix indented under each warning
    and problem, and the count at the end. ASCII markers where the output cannot take ✓."""
    try:
        "✓✗".encode(encoding or "ascii")
        markers = MARKERS
    except (UnicodeEncodeError, LookupError):
        markers = ASCII_MARKERS
    width = max((len(f.check) for f in findings), default=0)
    lines = []
    for f in findings:
        lines.append(f"{markers[f.severity]} {f.check.ljust(width)}  {f.summary}")
        if f.fix and f.severity != OK:
            lines.append(f"  {' ' * width}  fix: {f.fix}")
    problems, warnings = counts(findings)
    verdict = f"{problems} problem{'s' * (problems != 1)}" if problems else "no problems"
    return "\n".join([*lines, "", f"{verdict}, {warnings} warning{'s' * (warnings != 1)}"])


def cmd_doctor(args: argparse.Namespace) -> int:
    path, explicit = resolve_path(args.config)
    config = load_config(path, must_exist=explicit)
    findings = run_checks(Context(config, client.api_base(config)))
    if args.json:
        print(json.dumps(to_json(findings), indent=2))
    else:
        print(render(findings, sys.stdout.encoding))
    return exit_code(findings)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    doctor = sub.add_parser(
        "doctor", help="run the troubleshooting checks; print findings with fixes",
        description="Check what usually breaks the stack: the agent, the Podman socket, the "
        "aistack network and its DNS, each service's unit and health, Open WebUI -> Ollama, "
        "PostgreSQL (pg_isready, LiteLLM's view of it), memory against Ollama's models, the "
        "GPU and free disk. Changes nothing; run it as root on the stack's host. Each check "
        f"takes {CHECK_LIMIT_S:g} s at most. What each looks at: docs/doctor.md.",
        epilog="exit codes:\n  0   no problems (warnings allowed)\n  1   at least one problem"
        "\n  78  the config file is invalid (EX_CONFIG)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    doctor.add_argument("--json", action="store_true",
                        help='print {"findings": [...], "problems": N, "warnings": N}')  # fmt: skip
    # SUPPRESS: when not given here, the top-level `aistack --config FILE doctor` stays
    doctor.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="agent config (default: $AISTACK_CONFIG, else "
                        "/etc/aistack/agent.yaml)")  # fmt: skip
    doctor.set_defaults(func=cmd_doctor)
