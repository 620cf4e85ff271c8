"""Bounds on the API's connections: how many, and how long a client may take to send a
request. aiohttp has neither (a client that sends one byte a second, or nothing at all,
is held forever), so each connection's protocol is wrapped here.

- At most `max_connections` at once; one more is closed at once.
- A connection must deliver a whole request (its headers, and the body a handler reads)
  within `request_timeout` of opening or of its previous response. While a handler runs
  (an apply may take minutes) the clock is stopped: only the client's own slowness counts.
- Idle keep-alive connections are aiohttp's: `KEEPALIVE_S` after a response.
- A request aiohttp's parser rejects (a 20,000-character URL, a control byte in a
  header) gets the API's JSON error, not aiohttp's plain text that quotes the request
  back, and nothing of it is logged: such a header may carry the token.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger(component="api")
KEEPALIVE_S = 15.0
CHECK_EVERY_S = 0.5


class JsonErrorsHandler(web.RequestHandler):
    """aiohttp's connection protocol, answering what its HTTP parser refuses (a
    20,000-character URL, a control byte in a header) with the API's JSON error. Its own
    answer is plain text quoting the request back, and it logs a traceback that quotes
    the header: a token may be in it."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        reason = PARSER_ERRORS.get(status, "the request could not be handled")
        log.info("api request refused by the HTTP parser", status=status,
                 error=type(exc).__name__ if exc else None)  # fmt: skip
        body = json.dumps({"error": {"status": status, "message": reason}}, separators=(",", ":"))
        response = web.Response(status=status, text=body, content_type="application/json")
        response.force_close()
        return response


PARSER_ERRORS = {
    400: "malformed HTTP request",
    413: "request too large",
    414: "URL too long",
    431: "request headers too large",
}


class _Guarded(asyncio.Protocol):
    """Forwards to aiohttp's protocol; the guard reads `waiting_since`."""

    def __init__(self, guard: ConnectionGuard, inner: Any) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None
        self.refused = False
        self.waiting_since: float | None = guard.clock()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if len(self.guard.active) >= self.guard.max_connections:
            self.refused = True
            log.warning("api connection refused: too many open", limit=self.guard.max_connections)
            transport.close()
            return
        self.guard.active[transport] = self
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.refused:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self.refused else self.inner.eof_received()

    def pause_writing(self) -> None:
        if not self.refused:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if not self.refused:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.guard.active.pop(self.transport, None)
        if not self.refused:
            self.inner.connection_lost(exc)


class ConnectionGuard:
    def __init__(
        self,
        max_connections: int,
        request_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.clock = clock
        self.active: dict[asyncio.BaseTransport, _Guarded] = {}

    def wrap(self, inner: Any) -> asyncio.Protocol:
        return _Guarded(self, inner)

    def handling(self, transport: Any) -> None:
        """A request reached a handler: the client's part is done."""
        if (conn := self.active.get(transport)) is not None:
            conn.waiting_since = None

    def answered(self, transport: Any) -> None:
        """The handler is done: the next request's clock starts."""
        if (conn := self.active.get(transport)) is not None:
            conn.waiting_since = self.clock()

    def overdue(self) -> list[asyncio.BaseTransport]:
        now = self.clock()
        return [
            t
            for t, conn in self.active.items()
            if conn.waiting_since is not None and now - conn.waiting_since > self.request_timeout
        ]

    async def run(self) -> None:
        """Close connections whose client is too slow; runs until cancelled."""
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            for transport in self.overdue():
                log.info("api connection closed: no whole request in time",
                         limit_s=self.request_timeout)  # fmt: skip
                transport.close()


def middleware(guard: ConnectionGuard) -> Any:
    """Marks each request's connection as handled, and answered when done."""

    @web.middleware
    async def guarded(request: web.Request, handler: Any) -> web.StreamResponse:
        guard.handling(request.transport)
        try:
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            guard.answered(request.transport)

    return guarded


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through the guard."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        handler_options: dict[str, Any],
    ) -> None:
        super().__init__(runner)
        self.host, self.port, self.guard = host, port, guard
        self.handler_options = handler_options  # what the runner was given for its Server

    @property
    def name(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        def connection() -> asyncio.Protocol:
            handler = JsonErrorsHandler(server, loop=loop, **self.handler_options)
            return self.guard.wrap(handler)

        self._server = await loop.create_server(
            connection, self.host, self.port, reuse_address=True
        )
