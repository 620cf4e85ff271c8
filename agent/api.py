"""The local HTTP API (aiohttp). Handlers read snapshots; none calls Podman or systemd.

Errors are always JSON (`{"error": {"status", "message"}}`), 404 and 405 included, and
no traceback ever reaches a client. Handlers marked @token_required need
`Authorization: Bearer <token>`, checked in constant time.

Hostile input is refused before it costs anything: a Host header that is a name other
than localhost or a configured one (DNS rebinding: a web page whose name resolves to
127.0.0.1 must not read /status), and a compressed request body (the server does not
inflate bodies, so a gzip bomb stays 255 KiB). Bodies are JSON objects of bounded size
and depth; systemd or Podman being unreachable is a 503 that says so.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .api_guard import ConnectionGuard
from .api_guard import middleware as guarded
from .backup.model import AlreadyRunning, BackupControl, BackupsDisabled
from .backup.status import backups_document
from .ollama_api import OllamaError
from .podman_api import PodmanApiError
from .snapshot import SnapshotStore
from .stack.control import Busy, StackControl, UnknownService
from .stack.secrets import SecretsError, SecretStoreUnavailable
from .status import AgentInfo, status_document
from .systemd_ctl import SystemdError
from .token import token_matches

log = structlog.get_logger(component="api")
# Ollama's names: [registry/][namespace/]model[:tag]
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}(:[A-Za-z0-9][A-Za-z0-9._-]{0,127})?")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    config_path: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApiContext:
    """What the API may read, and the actions it may trigger (reload, a backup run)."""

    info: AgentInfo
    store: SnapshotStore
    registry: CollectorRegistry
    token: Callable[[], str]
    reload: Callable[[], Awaitable[ReloadResult]]
    backups: BackupControl | None = None
    stack: StackControl | None = None
    # /status's HTTP status when the overall state is failed (api.failed_status_code).
    failed_status: Callable[[], int] = lambda: 503
    # Host names besides localhost and IP literals that the API answers (api.allowed_hosts).
    allowed_hosts: Callable[[], tuple[str, ...]] = lambda: ()


CONTEXT = web.AppKey("context", ApiContext)
GUARD = web.AppKey("guard", ConnectionGuard)


def token_required(handler: Handler) -> Handler:
    handler.requires_token = True  # type: ignore[attr-defined]
    return handler


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=json.dumps(data, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def json_error(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    return json_response(
        {"error": {"status": status, "message": message, **extra}}, status, headers
    )


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (SystemdError, PodmanApiError) as exc:
        return json_error(503, f"not done: {exc}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        keep = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return json_error(exc.status, message, keep)
    except Exception:
        log.exception("unhandled error in API handler", path=request.path, method=request.method)
        return json_error(500, "internal error; the agent's log has the details")


@web.middleware
async def server_timing(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`Server-Timing: app;dur=MS`, the agent's own time on the request (a W3C header that
    browsers' developer tools show): a slow answer tells whether the agent was slow or
    the client waited, e.g. for a CPU on a busy host (benchmarks/detection.py uses it)."""
    started = time.perf_counter()
    response = await handler(request)
    if not response.prepared:  # a streamed answer has sent its headers already
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1e3:.3f}"
    return response


def host_allowed(host: str | None, allowed: tuple[str, ...]) -> bool:
    """An IP literal, localhost (or a name under .localhost) or a configured name. A
    rebinding attack needs a name of its own, so IP literals are safe to accept."""
    if not host:
        return True  # HTTP/1.0 without Host: not a browser
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").rstrip(".").lower()
    if (
        name in ("localhost",)
        or name.endswith(".localhost")
        or name in {a.lower() for a in allowed}
    ):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@web.middleware
async def refuse_hostile(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Before any handler: the Host header, and no compressed bodies."""
    context = request.app[CONTEXT]
    if not host_allowed(request.headers.get("Host"), context.allowed_hosts()):
        return json_error(
            421,
            "this Host is not one the agent answers to (localhost, an IP address, or "
            "api.allowed_hosts)",
        )
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return json_error(415, "compressed request bodies are not accepted")
    return await handler(request)


async def json_object(request: web.Request, example: str) -> dict[str, Any]:
    """The body as a JSON object (max_body_size bounds it; nesting is bounded by the
    parser's recursion, caught); 400 naming what was expected otherwise."""
    guard = request.app.get(GUARD)
    limit = guard.request_timeout if guard is not None else 30.0
    try:
        async with asyncio.timeout(limit):  # a body sent a byte at a time is cut off
            raw = await request.read()
        body = json.loads(raw.decode("utf-8"))
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="the request body did not arrive in time") from None
    except web.HTTPException:
        raise
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise web.HTTPBadRequest(text=f"the body must be a JSON object like {example}") from None
    except Exception:  # a broken or unreadable body (aiohttp's own payload errors)
        raise web.HTTPBadRequest(text="the request body could not be read") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=f"the body must be a JSON object like {example}")
    return body


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if getattr(request.match_info.handler, "requires_token", False):
        context = request.app[CONTEXT]
        if not token_matches(context.token(), request.headers.get("Authorization")):
            return json_error(
                401,
                "this call changes state and needs 'Authorization: Bearer <token>' "
                "(the token is in the agent's api.token_file)",
                {"WWW-Authenticate": 'Bearer realm="aistack"'},
            )
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "alive", "version": request.app[CONTEXT].info.version})


async def status(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    doc = status_document(context.info, context.store.latest())
    code = context.failed_status() if doc["state"] == "failed" else 200
    return json_response(doc, status=code)


async def page(request: web.Request) -> web.Response:
    """The status page: /status's document as HTML for a person (no token, like /status)."""
    from .statuspage import PAGE_HEADERS, status_page  # on first use, as openapi below

    context = request.app[CONTEXT]
    doc = status_document(context.info, context.store.latest())
    return web.Response(
        text=status_page(doc), content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )


async def metrics(request: web.Request) -> web.Response:
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(request.app[CONTEXT].registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi(request: web.Request) -> web.Response:
    # Imported on the first request: scripts and people rarely ask, and the spec's
    # module is memory the running agent otherwise keeps for nothing (docs/performance.md).
    from .openapi import openapi_document

    return json_response(openapi_document(request.app[CONTEXT].info.version))


@token_required
async def reload(request: web.Request) -> web.Response:
    result = await request.app[CONTEXT].reload()
    if not result.ok:
        return json_error(
            422,
            f"new config in {result.config_path} is invalid; the running config is unchanged",
            problems=list(result.problems),
        )
    return json_response({"reloaded": True, "config_path": result.config_path})


@token_required
async def backup_now(request: web.Request) -> web.Response:
    """Start a backup run; `?wait=true` answers with its result when it is done."""
    control = request.app[CONTEXT].backups
    if control is None:
        return json_error(409, "backups are not available in this agent")
    wait = request.query.get("wait", "false").lower() in ("1", "true", "yes")
    try:
        result = await control.trigger(wait=wait)
    except (AlreadyRunning, BackupsDisabled) as exc:
        return json_error(409, str(exc))
    if result is None:
        return json_response({"started": True}, status=202)
    return json_response(result.to_dict())


def _stack(request: web.Request) -> StackControl:
    control = request.app[CONTEXT].stack
    if control is None:
        raise web.HTTPConflict(text="the stack is not managed by this agent")
    return control


@token_required
async def stack_apply(request: web.Request) -> web.Response:
    """Render, write what changed, (re)start in order, wait until healthy; the report."""
    control = _stack(request)
    purge = request.query.get("purge_data", "false").lower() in ("1", "true", "yes")
    # `aistack up` applies the config file as it is now: reload it first, all or nothing.
    reloaded = await request.app[CONTEXT].reload()
    if not reloaded.ok:
        return json_error(
            422,
            f"config in {reloaded.config_path} is invalid; nothing was changed",
            problems=list(reloaded.problems),
        )
    try:
        report = await control.apply(purge_data=purge)
    except Busy as exc:
        return json_error(409, str(exc))
    if report.problems:
        return json_error(
            422,
            "the config cannot be applied: no unit was written, started or stopped",
            problems=report.problems,
        )
    return json_response(report.as_dict(), status=200 if report.ok else 502)


@token_required
async def stack_update(request: web.Request) -> web.Response:
    """Newer images, restart, roll back what does not come back healthy; the report."""
    control = _stack(request)
    pull = request.query.get("pull", "true").lower() not in ("0", "false", "no")
    try:
        report = await control.update(pull=pull)
    except Busy as exc:
        return json_error(409, str(exc))
    return json_response(report.as_dict(), status=200 if report.ok else 502)


@token_required
async def service_action(request: web.Request) -> web.Response:
    control = _stack(request)
    name, action = request.match_info["name"], request.match_info["action"]
    try:
        result = await control.service(name, action)
    except UnknownService as exc:
        return json_error(404, str(exc))
    body = {"service": result.service, "action": result.action, "ok": result.ok,
            "result": result.result, "active_state": result.active_state}  # fmt: skip
    return json_response(body, status=200 if result.ok else 502)


@token_required
async def model_pull(request: web.Request) -> web.Response:
    """Pull a model into Ollama (blocks until done): {"model": "llama3.2"}."""
    control = _stack(request)
    example = '{"model": "llama3.2"}'
    name = (await json_object(request, example)).get("model")
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        return json_error(
            400, f"model: a model name such as llama3.2 or llama3.2:1b is needed (body {example})"
        )
    try:
        status = await control.pull_model(name)
    except OllamaError as exc:
        return json_error(502, str(exc))
    return json_response({"model": name, "status": status})


@token_required
async def secret_rotate(request: web.Request) -> web.Response:
    control = _stack(request)
    try:
        results = await control.rotate_secret(request.match_info["name"])
    except SecretStoreUnavailable as exc:  # Podman is down: not the caller's mistake
        return json_error(503, str(exc))
    except SecretsError as exc:
        return json_error(400, str(exc))
    restarted = [{"service": r.service, "ok": r.ok, "result": r.result} for r in results]
    ok = all(r.ok for r in results)
    return json_response({"rotated": request.match_info["name"], "restarted": restarted},
                         status=200 if ok else 502)  # fmt: skip


async def backups(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    return json_response(backups_document(context.store.get("backups")))


def create_app(
    context: ApiContext, max_body_size: int = 1 << 20, guard: ConnectionGuard | None = None
) -> web.Application:
    first = [guarded(guard)] if guard is not None else []
    app = web.Application(
        middlewares=[*first, server_timing, errors_as_json, refuse_hostile, bearer_auth],
        client_max_size=max_body_size,
    )
    if guard is not None:
        app[GUARD] = guard
    app[CONTEXT] = context
    app.router.add_get("/", page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_post("/v1/reload", reload)
    app.router.add_get("/v1/backups", backups)
    app.router.add_post("/v1/backups", backup_now)
    app.router.add_post("/v1/apply", stack_apply)
    app.router.add_post("/v1/update", stack_update)
    app.router.add_post("/v1/services/{name}/{action}", service_action)
    app.router.add_post("/v1/models/pull", model_pull)
    app.router.add_post("/v1/secrets/{name}/rotate", secret_rotate)
    return app
