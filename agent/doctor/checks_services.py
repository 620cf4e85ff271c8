"""Checks of the services: units and health, Open WebUI -> Ollama and -> LiteLLM,
PostgreSQL (and LiteLLM's view of it)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from .. import podman_api, systemd_ctl
from ..ollama_api import parse_version
from ..podman_api import Container
from ..stack.model import Member
from .context import (
    DEFAULT_OLLAMA_URL,
    FIX_PODMAN_FIRST,
    NETWORK,
    OK,
    PROBLEM,
    RESTARTS_WARN,
    WARNING,
    Context,
    ExecTimeout,
    Finding,
    PodmanDown,
    Severity,
    exec_run,
    http_json,
    not_checked,
    ok,
    problem,
    running,
)


def check_services(ctx: Context) -> list[Finding]:
    """Each service of the stack (stack.extra's too): its unit active and its container
    healthy; a project of stack.extra that cannot join is named."""
    left_out = [
        problem("services", f"stack.extra project {project} is not in the stack: {why}",
                "fix the compose file or stack.extra in the config, then: aistack up")
        for project, why in ctx.extra_problems().items()
    ]  # fmt: skip
    members = ctx.members()
    if not members:
        return left_out or [ok("services", "no service enabled in stack")]
    try:
        states = ctx.unit_states()
    except systemd_ctl.SystemdError as exc:
        hint = "run doctor as root on the stack's host; systemctl status dbus.socket"
        return [problem("services", f"cannot read the services' units: {exc}", hint)]
    findings = []
    for member in members:
        severity, summary, fix = _service_verdict(ctx, member, states[member.unit])
        findings.append(Finding("services", severity, f"{member.name}: {summary}", fix))
    return findings + left_out


def _service_verdict(
    ctx: Context, member: Member, st: systemd_ctl.UnitState
) -> tuple[Severity, str, str | None]:
    name, unit = member.name, member.unit
    logs = f"journalctl -u {unit} -n 50"
    if member.oneshot and st.active_state == "active" and st.sub_state == "exited":
        return OK, "ran to completion (a one-shot job)", None
    if st.load_state == "not-found":
        return PROBLEM, f"no unit {unit} (not installed)", "aistack up (writes and starts it)"
    if st.active_state == "failed":
        return PROBLEM, f"unit failed ({st.result or '?'})", f"{logs}; aistack restart {name}"
    if st.active_state in ("inactive", "deactivating"):
        return PROBLEM, f"not running (unit {st.active_state})", f"aistack restart {name}; {logs}"
    if st.active_state != "active":
        return WARNING, f"unit {st.active_state} ({st.sub_state})", f"run doctor again; {logs}"
    try:
        container = ctx.inspect(member.container)
    except (PodmanDown, podman_api.PodmanApiError) as exc:
        return WARNING, f"unit active; container not checked ({exc})", FIX_PODMAN_FIRST
    if container is None or not container.running:
        return PROBLEM, "unit active but no running container", f"aistack restart {name}; {logs}"
    health = container.health
    if health == "unhealthy":
        fix = f"{logs}; podman healthcheck run {member.container}; aistack restart {name}"
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


def _webui_to(ctx: Context, check: str, peer: str) -> Container | list[Finding]:
    """Open WebUI's container when it and `peer` are enabled and it runs; else the one
    finding that says why `check` has nothing to look at."""
    if not (ctx.is_enabled("open-webui") and ctx.is_enabled(peer)):
        return [ok(check, f"open-webui or {peer} not enabled: nothing to connect")]
    webui = ctx.inspect("open-webui")
    if webui is None or not webui.running:
        return [not_checked(check, "open-webui is not running (see services)")]
    return webui


def check_webui_ollama(ctx: Context) -> list[Finding]:
    """The seed's "Open WebUI can't connect to Ollama": curl Ollama from inside Open WebUI,
    at the URL Open WebUI itself is configured with."""
    check = "webui-ollama"
    webui = _webui_to(ctx, check, "ollama")
    if isinstance(webui, list):
        return webui
    env = webui.env
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
                version = parse_version(json.loads(out)).version
            except ValueError:
                version = "?"
            findings.append(ok(check, f"open-webui reaches Ollama {version} at {url}"))
        elif code in (126, 127):
            findings.append(not_checked(check, f"no curl in the open-webui image ({err})"))
        else:
            why = f"open-webui cannot reach Ollama at {url}: {err or f'curl exit {code}'}"
            findings.append(problem(check, why, _webui_ollama_fix(ctx, webui, url, setting)))
    return findings


def _webui_ollama_fix(ctx: Context, webui: Container, url: str, setting: str) -> str:
    """The likeliest cause first: Open WebUI off the network, Ollama down, the URL."""
    if NETWORK not in webui.networks:
        return (f"open-webui is not on network {NETWORK!r}: aistack restart open-webui; "
                f"check: podman network inspect {NETWORK}")  # fmt: skip
    if "//ollama:" in url and not running(ctx.inspect_or_none("ollama")):
        return "ollama is not running: aistack restart ollama; journalctl -u ollama.service"
    return (f"Open WebUI reads {setting} (now {url}); it must name Ollama on network "
            f"{NETWORK!r}, {DEFAULT_OLLAMA_URL}: set stack.open_webui.env.{setting} and run "
            f"aistack up. Check: podman network inspect {NETWORK}; podman exec open-webui "
            f"curl {url}/api/tags")  # fmt: skip


DEFAULT_LITELLM_URL = "http://litellm:4000/v1"
# The key goes to curl on its stdin (-H @-), read from the container's own environment:
# never on a command line, in the agent's memory or in this output.
_WEBUI_LITELLM = (
    'printf "Authorization: Bearer %s\\n" "${OPENAI_API_KEY%%;*}" | '
    'curl -sS -m 5 -H @- -w "\\n%{http_code}" "$1/models"'
)


def webui_openai_url(env: Mapping[str, str]) -> str:
    """The OpenAI-compatible API Open WebUI uses (first of OPENAI_API_BASE_URLS, or
    OPENAI_API_BASE_URL): the stack sets it to LiteLLM."""
    many = [u.strip() for u in env.get("OPENAI_API_BASE_URLS", "").split(";") if u.strip()]
    url = (many or [env.get("OPENAI_API_BASE_URL", "").strip()])[0] or DEFAULT_LITELLM_URL
    return url.rstrip("/")


def check_webui_litellm(ctx: Context) -> list[Finding]:
    """Open WebUI -> LiteLLM, as Open WebUI itself calls it: GET {url}/models from inside
    its container with the key it was given (the LiteLLM master key)."""
    check = "webui-litellm"
    webui = _webui_to(ctx, check, "litellm")
    if isinstance(webui, list):
        return webui
    url = webui_openai_url(webui.env)
    try:
        code, out, err = exec_run(ctx.socket, "open-webui", ["sh", "-c", _WEBUI_LITELLM, "sh", url])
    except ExecTimeout as exc:
        code, out, err = -1, "", str(exc)
    if code in (126, 127):
        return [not_checked(check, f"no sh or curl in the open-webui image ({err})")]
    body, _, status = out.rpartition("\n")
    logs = "journalctl -u litellm.service -n 50"
    if code != 0 or not status.isdigit():
        why = f"open-webui cannot reach LiteLLM at {url}: {err or f'curl exit {code}'}"
        fix = (f"litellm.service must be running and on network {NETWORK!r}: aistack restart "
               f"litellm; {logs}")  # fmt: skip
        return [problem(check, why, fix)]
    if status in ("401", "403"):
        fix = ("Open WebUI's OPENAI_API_KEY must be the secret aistack-litellm-master-key: "
               "aistack up; aistack restart open-webui")  # fmt: skip
        return [problem(check, f"LiteLLM at {url} refuses Open WebUI's key (HTTP {status})", fix)]
    if status != "200":
        return [problem(check, f"LiteLLM at {url}/models answered HTTP {status}", logs)]
    try:
        count = len(json.loads(body)["data"])
    except (ValueError, KeyError, TypeError):
        return [problem(check, f"LiteLLM at {url}/models answered without a model list", logs)]
    models = f"{count} model{'' if count == 1 else 's'}"
    return [ok(check, f"open-webui reaches LiteLLM at {url} ({models}, key accepted)")]


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
    if not running(ctx.inspect("postgres")):
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
    if ctx.is_enabled("litellm") and running(ctx.inspect("litellm")):
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
