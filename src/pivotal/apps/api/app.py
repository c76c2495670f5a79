"""The API application: REST routes, the WebSocket hub, health, metrics and the dashboard.

:func:`create_app` builds one FastAPI app over a :class:`Services` registry. Around every
request (HTTP and WebSocket) two plain ASGI middlewares run: the access log and metrics
(method, path without its query string, status, milliseconds: never a header, so never a
token), then the Origin check (a request whose ``Origin`` is neither this server's own nor
one given in ``allowed_origins`` is refused 403, a WebSocket before its handshake).

The dashboard (:mod:`pivotal.apps.dashboard`, a Dash app) is mounted at ``/dashboard/``
through a2wsgi when that package is installed, and ``/`` redirects to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import orjson
from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pivotal import __version__
from pivotal.apps.api.auth import ApiTokens, normalize_origin, own_origins
from pivotal.apps.api.hub import Hub, HubClient
from pivotal.apps.api.metrics import Metrics
from pivotal.apps.api.routes import api_router, auth_dependency, error_responses
from pivotal.services.view import NotFound, QueryError, ReadOnly, Services

__all__ = ["DASHBOARD_PREFIX", "SUBPROTOCOL", "HealthStatus", "create_app", "dashboard_available"]

log = logging.getLogger("pivotal.api")
access_log = logging.getLogger("pivotal.api.access")

DASHBOARD_PREFIX = "/dashboard/"
SUBPROTOCOL = "pivotal.v1"
TOKEN_PREFIX = "bearer."
#: WebSocket close codes: no valid token, refused origin
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403


class HealthStatus(BaseModel):
    status: str
    nodes: int
    version: str


def dashboard_available() -> bool:
    """Whether the dashboard package is installed (the API works without it)."""
    return importlib.util.find_spec("pivotal.apps.dashboard") is not None


def _detail(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _validation_text(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ())]
        where = f"{loc[0]} {'.'.join(loc[1:])}".strip() if loc else "request"
        given = error.get("input")
        shown = "" if isinstance(given, dict | list) or given is None else f" (got {given!r})"
        parts.append(f"{where}: {error.get('msg', 'invalid')}{shown}")
    return "; ".join(parts)[:2000] + " — see /docs for what each route takes"


def create_app(
    services: Services,
    tokens: ApiTokens,
    *,
    allowed_origins: Iterable[str] = (),
    dashboard: bool = True,
    ws_interval_s: float = 1.0,
) -> FastAPI:
    """The API over ``services``. ``allowed_origins``: origins (``https://host:port``) that
    may call it besides its own; ``dashboard``: mount the dashboard when installed;
    ``ws_interval_s``: the WebSocket poll period (1 s; tests use less)."""
    metrics = Metrics()
    hub = Hub(services, metrics, ws_interval_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        hub.start()
        try:
            yield
        finally:
            await hub.stop()

    app = FastAPI(
        title="pivotal API",
        version=__version__,
        description=(
            "Queries and commands of pivotal's trading nodes. Every route but /health needs "
            "`Authorization: Bearer <token>` (admin: everything; viewer: reads only)."
        ),
        lifespan=lifespan,
    )
    app.state.hub = hub
    app.state.metrics = metrics
    app.state.services = services

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return _detail(404, str(exc))

    @app.exception_handler(QueryError)
    async def _query_error(_: Request, exc: QueryError) -> JSONResponse:
        return _detail(422, str(exc))

    @app.exception_handler(ReadOnly)
    async def _read_only(_: Request, exc: ReadOnly) -> JSONResponse:
        return _detail(409, str(exc) or "this node is read-only: it takes no commands")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _detail(422, _validation_text(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body": a bad body is a 422
            return _detail(422, f"{exc.detail}: send a JSON object as the body (see /docs)")
        return _detail(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.get(
        "/health", response_model=HealthStatus, responses=error_responses(403), tags=["server"]
    )
    async def health() -> HealthStatus:
        """Liveness, without a token."""
        return HealthStatus(status="ok", nodes=len(services.nodes()), version=__version__)

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        dependencies=[Depends(auth_dependency(tokens, admin=False))],
        responses=error_responses(401, 403, json_ref=True),
        tags=["server"],
    )
    async def prometheus() -> PlainTextResponse:
        """Prometheus metrics (text exposition 0.0.4); any token."""
        text = await run_in_threadpool(metrics.exposition, services)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    app.include_router(api_router(services, tokens, hub.broadcast_command))

    @app.websocket("/api/v1/ws")
    async def websocket(ws: WebSocket) -> None:
        await _serve_socket(ws, tokens, hub, metrics)

    if dashboard and dashboard_available():
        _mount_dashboard(app)
    elif dashboard:
        log.warning("the dashboard package is not installed; serving the API only")

    app.add_middleware(OriginCheck, allowed=allowed_origins)
    app.add_middleware(AccessLog, metrics=metrics)
    return app


def _mount_dashboard(app: FastAPI) -> None:
    from a2wsgi import WSGIMiddleware

    from pivotal.apps.dashboard import create_dashboard

    dash_app = create_dashboard(DASHBOARD_PREFIX)
    app.mount(DASHBOARD_PREFIX.rstrip("/"), WSGIMiddleware(dash_app.server), name="dashboard")

    @app.get("/", include_in_schema=False)
    async def _root() -> RedirectResponse:
        return RedirectResponse(DASHBOARD_PREFIX, status_code=307)

    @app.get(DASHBOARD_PREFIX.rstrip("/"), include_in_schema=False)
    async def _dashboard() -> RedirectResponse:
        return RedirectResponse(DASHBOARD_PREFIX, status_code=307)


async def _serve_socket(ws: WebSocket, tokens: ApiTokens, hub: Hub, metrics: Metrics) -> None:
    """Check the subprotocol token, then relay: client messages to the hub, the hub's
    pushes to the client. A bad token is accepted then closed 4401 (so the browser sees
    why); no message is ever sent before the token is checked."""
    offered = list(ws.scope.get("subprotocols") or [])
    token = next((p[len(TOKEN_PREFIX) :] for p in offered if p.startswith(TOKEN_PREFIX)), None)
    role = tokens.role_of(token)
    chosen = SUBPROTOCOL if SUBPROTOCOL in offered else None
    await ws.accept(subprotocol=chosen)
    if role is None or chosen is None:
        reason = (
            "no valid API token: open the socket with subprotocols "
            f'["{SUBPROTOCOL}", "{TOKEN_PREFIX}<token>"]'
        )
        log.info("websocket refused: %s", "no valid token" if role is None else "no subprotocol")
        await ws.close(CLOSE_UNAUTHORIZED, reason)
        return
    client = HubClient(ws.send_text, role, ws.close)
    hub.connect(client)
    writer = asyncio.get_running_loop().create_task(client.writer(metrics))
    try:
        while True:
            message: Message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                data = message.get("bytes") or b""
                text = data.decode("utf-8", "replace")
            if len(text) > 65_536:
                client.push(orjson.dumps({"type": "error", "detail": "message over 64 KiB"}))
                continue
            await hub.handle(client, text)
    finally:
        hub.disconnect(client)
        if not client.too_slow:
            writer.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await writer


class AccessLog:
    """Log each request as ``METHOD path status ms`` (no query string, no header) and count
    it in the metrics under its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 0}

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "websocket.accept":
                status["code"] = 101
            elif message["type"] == "websocket.close" and not status["code"]:
                status["code"] = 403
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "WS")
            code = status["code"] or 500
            if scope["type"] == "http":
                self.metrics.observe_request(method, template, code, seconds)
            # answered requests at DEBUG (the dashboard polls nothing, but loads assets);
            # refusals and failures at INFO, where an operator sees them
            level = logging.DEBUG if code < 400 else logging.INFO
            access_log.log(
                level, "%s %s %s %.1f ms", method, scope.get("path", ""), code, seconds * 1000
            )


class OriginCheck:
    """Refuse (403) a request or WebSocket whose ``Origin`` header is not this server's own
    (``http://127.0.0.1:PORT``, ``http://localhost:PORT``, the address it was reached at)
    or one of ``allowed``. Requests without an Origin (curl, scripts) pass: they still need
    a token."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = {normalize_origin(o) for o in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            origin = _header(scope, b"origin")
            if origin is not None and not self._allowed(scope, origin):
                await self._refuse(scope, send, origin)
                return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope, origin: str) -> bool:
        given = normalize_origin(origin)
        if given in self.allowed:
            return True
        server = scope.get("server")
        if server and server[1] is not None:
            return given in own_origins(str(server[0]), int(server[1]))
        return False

    async def _refuse(self, scope: Scope, send: Send, origin: str) -> None:
        detail = (
            f"requests from origin {origin[:100]!r} are refused; start the server with "
            "--allow-origin ORIGIN to accept them"
        )
        log.warning("refused a %s from origin %r", scope["type"], origin[:100])
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": CLOSE_FORBIDDEN, "reason": detail})
            return
        body = orjson.dumps({"detail": detail})
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None
