"""The base of a venue site: one aiohttp application speaking one exchange's wire format.

A venue module (``binance``, ``bybit``, ``mexc``) subclasses :class:`VenueSite`, sets
``venue`` and exposes the class as the module attribute ``Site``. The server builds one
site per served venue with a :class:`VenueContext` (the markets, the market clock, the
fault log and injector, the config), calls :meth:`VenueSite.setup` once, then:

- runs the site's app on its own port (:meth:`start`, :meth:`pause`, :meth:`resume`,
  :meth:`stop` are the base's);
- calls :meth:`VenueSite.on_event` with every flow event after it was applied to the
  symbol's :class:`~pivotal.localexchange.market.MarketState`, and
  :meth:`VenueSite.on_klines` with the klines that changed at each market second. Both run
  in the event loop and must not block: render each message once per stream and variant
  and hand it to :meth:`StreamHub.publish` (``self.hub``), which only queues.

REST handlers are registered with :meth:`add_rest` (the base charges the route's request
weight to the venue's rate limiter, answers 429/418 in the venue's format and adds the
weight headers) and may raise :class:`VenueError` for a venue-format error reply. WebSocket
endpoints are registered with :meth:`add_ws`; their handler calls :meth:`serve_ws`, which
accepts the socket, pings, counts incoming messages, expires and ends the connection and
calls back ``on_message(conn, data)`` for each text or binary message. Every port also
serves ``GET /_pivotal/faults`` (the fault log as JSON) and ``GET /_pivotal/record`` (the
account's orders, fills and balances: :meth:`MatchingEngine.record`).

Every site owns one :class:`~pivotal.localexchange.engine.MatchingEngine` (``self.engine``):
the account of that venue, built from :meth:`VenueSite.symbol_rules` and the config's
balances; the server replays every flow event into it after the sites (a replay sink), so
orders fill as the market moves whether or not a client is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from aiohttp import WSMsgType, web

from pivotal.core.clock import Clock
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.localexchange.config import ServeConfig, VenueUrls
from pivotal.localexchange.engine import MatchingEngine
from pivotal.localexchange.engine_types import SymbolRules
from pivotal.localexchange.exchange_info import binance_symbol_entry
from pivotal.localexchange.faults import FaultInjector, FaultLog, RateLimiter, Verdict
from pivotal.localexchange.flow import FlowEvent, Kline, SymbolFlow
from pivotal.localexchange.market import MarketState
from pivotal.localexchange.wsconn import StreamHub, WsConnection

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Weight = int | Callable[[web.Request], int]
OnMessage = Callable[[WsConnection, str | bytes], Awaitable[None] | None]


class VenueError(Exception):
    """An error reply in the venue's format: HTTP ``status`` with ``code`` and ``msg``.

    Raise it from a REST handler; the site turns it into :meth:`VenueSite.error_response`.
    """

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


@dataclass(frozen=True, slots=True)
class VenueContext:
    """What a site gets from the server.

    ``markets``: every served symbol's state (shared by all venues, read-only for sites);
    ``clock``: the market clock (the replay cursor, UTC ms); ``log``/``faults``: the shared
    fault log and injector; ``config``: the server's config; ``flows``: each symbol's
    flow (for its ``tick_size``/``step_size``, ``source``, ``start_ms``/``end_ms``).
    """

    venue: str
    markets: Mapping[Symbol, MarketState]
    clock: Clock
    log: FaultLog
    faults: FaultInjector
    config: ServeConfig
    flows: Mapping[Symbol, SymbolFlow] = field(default_factory=dict)


class VenueSite(ABC):
    """One venue's aiohttp application on its own port; subclass per venue."""

    #: The venue id (``"binance"``); also the key in ``ServeConfig.venues``.
    venue: ClassVar[str] = ""
    #: Wall seconds between the server's WebSocket pings (None: none).
    ws_heartbeat_s: ClassVar[float | None] = 20.0
    #: Incoming WebSocket messages allowed per connection and wall second (None: any).
    ws_max_incoming_per_s: ClassVar[int | None] = None
    #: Streams (topics) allowed per connection.
    ws_max_streams: ClassVar[int] = 1024
    #: Largest incoming WebSocket message, bytes.
    ws_max_msg_size: ClassVar[int] = 1 << 20

    def __init__(self, ctx: VenueContext) -> None:
        self.ctx = ctx
        self.hub = StreamHub()
        self.paused = False
        self.limiter: RateLimiter = ctx.faults.register_venue(ctx.venue, self.connections)
        self._conns: dict[int, WsConnection] = {}
        self._by_id = {symbol.exchange_id: symbol for symbol in ctx.markets}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._host = ctx.config.host
        self.port = 0
        self.app = web.Application(middlewares=[self._pause_middleware])
        self.app.router.add_get("/_pivotal/faults", self._faults_endpoint)
        self.app.router.add_get("/_pivotal/record", self._record_endpoint)
        self.engine = MatchingEngine(
            ctx.venue,
            ctx.markets,
            ctx.clock,
            {symbol: self.symbol_rules(symbol) for symbol in ctx.markets},
            ctx.config.balances(ctx.venue),
            fee_rate=ctx.config.fee_rate,
        )
        self.setup()

    # -- to override ----------------------------------------------------------------------
    @abstractmethod
    def setup(self) -> None:
        """Register the venue's routes with :meth:`add_rest` and :meth:`add_ws`."""

    @abstractmethod
    def on_event(self, symbol: Symbol, event: FlowEvent) -> None:
        """A flow event, already applied to ``self.market(symbol)``: push it to subscribers."""

    def symbol_rules(self, symbol: Symbol) -> SymbolRules:
        """The trading filters the engine applies to ``symbol`` (default: Binance's entry
        for the flow's tick and step sizes; override with the venue's own)."""
        flow = self.ctx.markets[symbol].flow
        entry = binance_symbol_entry(symbol, flow.tick_size, flow.step_size)
        return SymbolRules.from_binance(symbol, entry)

    def on_klines(self, symbol: Symbol, klines: Mapping[Timeframe, list[Kline]]) -> None:  # noqa: B027 (an optional hook: no-op by default)
        """Klines changed at this market second (``MarketState.advance``): push them."""

    def on_second(self, now_ms: int) -> None:  # noqa: B027 (an optional hook: no-op by default)
        """The market crossed the second boundary ``now_ms`` (after ``on_klines``)."""

    def on_replay_end(self) -> None:  # noqa: B027 (an optional hook: no-op by default)
        """The flows ended; the site keeps serving REST and idle sockets."""

    def error_response(
        self, status: int, code: int, msg: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        """An error reply in the venue's format (default: Binance's ``{"code","msg"}``)."""
        return self.json({"code": code, "msg": msg}, status=status, headers=headers)

    def limit_response(self, verdict: Verdict) -> web.Response:
        """The 429/418 reply of a refused request (``Retry-After`` is added by the base)."""
        if verdict.status == 418:
            return self.error_response(418, -1003, "Way too many requests; IP banned.")
        return self.error_response(429, -1003, "Too many requests; current limit exceeded.")

    def weight_headers(self, used: int) -> dict[str, str]:
        """Headers that report the used request weight (default: none)."""
        return {}

    # -- helpers for subclasses -----------------------------------------------------------
    def now_ms(self) -> int:
        """The market time (UTC ms)."""
        return self.ctx.clock.now_ms()

    @property
    def markets(self) -> Mapping[Symbol, MarketState]:
        return self.ctx.markets

    def market(self, symbol: Symbol) -> MarketState:
        return self.ctx.markets[symbol]

    def symbol_for(self, exchange_id: str) -> Symbol | None:
        """The served symbol whose exchange id (``BTCUSDT``, case-insensitive) is given."""
        return self._by_id.get(exchange_id.upper().replace("/", "").replace("_", ""))

    @staticmethod
    def json(
        data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        """A JSON reply (orjson-encoded)."""
        return web.Response(
            body=orjson.dumps(data),
            status=status,
            headers=dict(headers or {}),
            content_type="application/json",
        )

    def record_fault(
        self,
        kind: str,
        conn: WsConnection | None = None,
        stream: str | None = None,
        detail: str = "",
    ) -> None:
        self.ctx.log.record(
            self.venue,
            kind,
            conn_id=None if conn is None else conn.conn_id,
            stream=stream,
            detail=detail,
        )

    def connections(self) -> list[WsConnection]:
        """The open WebSocket connections, by id."""
        return [self._conns[k] for k in sorted(self._conns)]

    def add_rest(
        self, path: str, handler: Handler, *, weight: Weight = 1, method: str = "GET"
    ) -> None:
        """Register ``method path`` (default GET); each request is charged ``weight`` (or
        ``weight(request)``)."""

        async def charged(request: web.Request) -> web.StreamResponse:
            cost = weight(request) if callable(weight) else weight
            verdict = self.limiter.charge(cost)
            if verdict.status != 200:
                kind = "ban" if verdict.status == 418 else "rate_limit"
                self.record_fault(kind, detail=f"{request.path} weight {cost}")
                reply = self.limit_response(verdict)
                reply.headers["Retry-After"] = str(verdict.retry_after_s)
                reply.headers.update(self.weight_headers(verdict.used))
                return reply
            try:
                reply = await handler(request)
            except VenueError as exc:
                reply = self.error_response(exc.status, exc.code, exc.msg)
            reply.headers.update(self.weight_headers(verdict.used))
            return reply

        if method == "GET":
            self.app.router.add_get(path, charged)
        else:
            self.app.router.add_route(method, path, charged)

    def add_ws(self, path: str, handler: Handler) -> None:
        """Register a WebSocket endpoint (``handler`` calls :meth:`serve_ws`)."""
        self.app.router.add_get(path, handler)

    async def serve_ws(
        self,
        request: web.Request,
        on_message: OnMessage,
        *,
        variant: str = "",
        streams: Iterable[str] = (),
        on_open: Callable[[WsConnection], Awaitable[None] | None] | None = None,
    ) -> web.WebSocketResponse:
        """Accept a WebSocket and run it until it closes.

        ``streams`` are subscribed at once (a URL-named stream); ``on_open(conn)`` runs
        after the socket is accepted (e.g. a welcome message); ``on_message(conn, data)``
        for each incoming text (``str``) or binary (``bytes``) message. More than
        :attr:`ws_max_incoming_per_s` messages in a wall second closes the connection
        (code 1008, a ``ws_rate`` fault).
        """
        ws = web.WebSocketResponse(
            heartbeat=self.ws_heartbeat_s,
            autoping=True,
            max_msg_size=self.ws_max_msg_size,
            compress=False,
        )
        await ws.prepare(request)
        cfg = self.ctx.config.faults
        conn = WsConnection(
            ws,
            conn_id=self.ctx.faults.next_conn_id(),
            venue=self.venue,
            delay_ms=cfg.delay_ms,
            variant=variant,
            log=self.ctx.log,
        )
        self._conns[conn.conn_id] = conn
        for stream in streams:
            self.hub.subscribe(conn, stream)
        conn.start()
        loop = asyncio.get_running_loop()
        timer = None
        if cfg.expire_after_s is not None:
            timer = loop.call_later(cfg.expire_after_s, self._expire, conn)
        try:
            if on_open is not None:
                opened = on_open(conn)
                if inspect.isawaitable(opened):
                    await opened
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                if not conn.count_incoming(self.ws_max_incoming_per_s):
                    self.record_fault(
                        "ws_rate", conn, detail=f"over {self.ws_max_incoming_per_s} messages/s"
                    )
                    await conn.close(1008, "Too many messages")
                    break
                result = on_message(conn, msg.data)
                if inspect.isawaitable(result):
                    await result
        finally:
            if timer is not None:
                timer.cancel()
            self.hub.drop(conn)
            self._conns.pop(conn.conn_id, None)
            await conn.finished()
            with contextlib.suppress(Exception):
                await ws.close()
        return ws

    def _expire(self, conn: WsConnection) -> None:
        if not conn.closed:
            self.record_fault("expire", conn, detail="connection lifetime ended")
            conn.close_soon(1000, "expired")

    async def close_connections(self, code: int = 1001, reason: str = "going away") -> int:
        """Close every WebSocket connection; returns how many."""
        conns = self.connections()
        await asyncio.gather(*(c.close(code, reason) for c in conns), return_exceptions=True)
        return len(conns)

    # -- lifecycle (the server calls these) -----------------------------------------------
    def urls(self) -> VenueUrls:
        host = "127.0.0.1" if self._host in ("localhost", "::1") else self._host
        return VenueUrls(
            self.venue, f"http://{host}:{self.port}", f"ws://{host}:{self.port}", self.port
        )

    async def start(self, port: int = 0) -> int:
        """Serve on ``port`` (0: ephemeral); returns the bound port."""
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await self._bind(port)
        return self.port

    async def _bind(self, port: int) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self._host, port, reuse_address=True)
        await self._site.start()
        server = self._site._server
        sockets = getattr(server, "sockets", None) or ()
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def pause(self) -> None:
        """Stop listening, close every socket and keep-alive connection (refused until resume)."""
        if self.paused or self._runner is None:
            return
        self.paused = True
        if self._site is not None:
            await self._site.stop()
            self._site = None
        await self.close_connections(1001, "venue paused")
        server = self._runner.server
        for handler in list(server.connections) if server is not None else []:
            transport = handler.transport
            if transport is not None:
                transport.abort()
        self.record_fault("pause", detail=f"port {self.port}")

    async def resume(self) -> None:
        """Listen again on the same port."""
        if not self.paused or self._runner is None:
            return
        await self._bind(self.port)
        self.paused = False
        self.record_fault("resume", detail=f"port {self.port}")

    async def stop(self) -> None:
        await self.close_connections(1001, "server stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    # -- internals ------------------------------------------------------------------------
    @web.middleware
    async def _pause_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.paused:
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise web.HTTPServiceUnavailable()
        return await handler(request)

    async def _record_endpoint(self, request: web.Request) -> web.Response:
        venue = request.query.get("venue", self.venue)
        if venue != self.venue:
            return self.json(
                {"error": f"this port serves {self.venue}; ask {venue}'s port for its record"},
                status=404,
            )
        return self.json(self.engine.record())

    async def _faults_endpoint(self, request: web.Request) -> web.Response:
        venue = request.query.get("venue")
        body = self.ctx.log.to_json(venue=venue)
        body["venue"] = self.venue
        return self.json(body)
