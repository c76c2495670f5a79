"""The Binance spot site: REST ``/api/v3/...`` and WebSocket market streams.

REST (weights are Binance's, charged to the venue's rate limiter, reported in
``X-MBX-USED-WEIGHT`` and ``X-MBX-USED-WEIGHT-1M``): ``ping`` (1), ``time`` (1: the market
time), ``exchangeInfo`` (20), ``depth`` (5/25/50/250 by limit), ``trades`` (25),
``historicalTrades`` (25, ``fromId``), ``aggTrades`` (4; one aggregate per trade, aggregate
id = trade id), ``klines``/``uiKlines`` (2), ``ticker/bookTicker`` (2, 4 for all),
``ticker/24hr`` (2, 80 for all), ``ticker/price`` (2, 4 for all). Errors are Binance's
``{"code": -1121, "msg": "Invalid symbol."}`` bodies.

WebSocket: ``/ws`` and ``/ws/<stream>`` (raw payloads), ``/stream``, ``/stream/<anything>``
and ``/stream?streams=a/b`` (the ``{"stream", "data"}`` envelope); ``SUBSCRIBE``,
``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY``/``GET_PROPERTY`` ``combined``.
Streams: ``<s>@trade``, ``<s>@aggTrade``, ``<s>@depth@100ms`` (the flow's diffs),
``<s>@depth`` / ``<s>@depth@1000ms`` (diffs merged per market second), ``<s>@depth5|10|20``
(``@100ms``: partial books), ``<s>@kline_<tf>``, ``<s>@bookTicker``, ``<s>@ticker``,
``<s>@miniTicker``. Pings every 20 wall seconds; more than 5 incoming messages a second
close the connection; at most 1,024 streams per connection.

Trading (the site's :class:`~pivotal.localexchange.engine.MatchingEngine`): the signed REST
endpoints of :mod:`~pivotal.localexchange.binance_trade` (``/api/v3/order``,
``openOrders``, ``allOrders``, ``account``, ``myTrades``, ...) and the WebSocket API user
data stream of :mod:`~pivotal.localexchange.binance_user` (``/ws-api/v3``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.localexchange import binance_wire as wire
from pivotal.localexchange.binance_trade import BinanceTrading
from pivotal.localexchange.binance_user import BinanceUserStream
from pivotal.localexchange.exchange_info import binance_exchange_info, binance_symbol_entry
from pivotal.localexchange.faults import Verdict
from pivotal.localexchange.flow import BookTop, DepthDiff, FlowEvent, Kline, TradePrint
from pivotal.localexchange.venue import VenueError, VenueSite
from pivotal.localexchange.wsconn import DEPTH, WsConnection

RAW = "raw"
COMBINED = "combined"
_HOUR = 3_600_000
_DEPTH_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (5000, 250))
_TOO_MANY = "Please use WebSocket Streams for live updates to avoid polling the API."
_METHODS = "SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY, GET_PROPERTY"


def _depth_weight(request: web.Request) -> int:
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return 5
    for top, weight in _DEPTH_WEIGHTS:
        if limit <= top:
            return weight
    return 250


def _by_symbol(one: int, every: int) -> Callable[[web.Request], int]:
    def weight(request: web.Request) -> int:
        return one if ("symbol" in request.query or "symbols" in request.query) else every

    return weight


def _int(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise VenueError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(raw)


def _limit(query: Mapping[str, str], default: int, most: int) -> int:
    value = _int(query, "limit")
    if value is None:
        return default
    if value < 1:
        raise VenueError(-1130, "Data sent for parameter 'limit' is not valid.")
    return min(value, most)


def _renderer(name: str, payload: Any) -> Callable[[str], bytes]:
    raw = orjson.dumps(payload)
    wrapped: list[bytes] = []

    def render(variant: str) -> bytes:
        if variant != COMBINED:
            return raw
        if not wrapped:
            wrapped.append(b'{"stream":"' + name.encode() + b'","data":' + raw + b"}")
        return wrapped[0]

    return render


@dataclass(slots=True)
class _Names:
    """A symbol's stream names and its per-second depth accumulator."""

    sid: str  # BTCUSDT
    trade: str
    agg: str
    fast: str
    slow: tuple[str, str]
    book: str
    ticker: str
    mini: str
    first_id: int = -1
    last_id: int = -1
    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)

    @classmethod
    def of(cls, symbol: Symbol) -> _Names:
        s = symbol.exchange_id.lower()
        return cls(symbol.exchange_id, f"{s}@trade", f"{s}@aggTrade", f"{s}@depth@100ms",
                   (f"{s}@depth", f"{s}@depth@1000ms"), f"{s}@bookTicker", f"{s}@ticker",
                   f"{s}@miniTicker")  # fmt: skip


class BinanceSite(VenueSite):
    """Binance spot over the local market (see the module docstring)."""

    venue = "binance"
    ws_heartbeat_s = 20.0
    ws_max_incoming_per_s = 5
    ws_max_streams = 1024

    def setup(self) -> None:
        self._names = {symbol: _Names.of(symbol) for symbol in self.markets}
        self._ids = {symbol.exchange_id: symbol for symbol in self.markets}
        api = "/api/v3"
        self.add_rest(f"{api}/ping", self._ping, weight=1)
        self.add_rest(f"{api}/time", self._time, weight=1)
        self.add_rest(f"{api}/exchangeInfo", self._exchange_info, weight=20)
        self.add_rest(f"{api}/depth", self._depth, weight=_depth_weight)
        self.add_rest(f"{api}/trades", self._trades, weight=25)
        self.add_rest(f"{api}/historicalTrades", self._historical_trades, weight=25)
        self.add_rest(f"{api}/aggTrades", self._agg_trades, weight=4)
        self.add_rest(f"{api}/klines", self._klines, weight=2)
        self.add_rest(f"{api}/uiKlines", self._klines, weight=2)
        self.add_rest(f"{api}/ticker/bookTicker", self._book_ticker, weight=_by_symbol(2, 4))
        self.add_rest(f"{api}/ticker/24hr", self._ticker_24hr, weight=_by_symbol(2, 80))
        self.add_rest(f"{api}/ticker/price", self._ticker_price, weight=_by_symbol(2, 4))
        self.trading = BinanceTrading(self)
        self.trading.register()
        self.user_stream = BinanceUserStream(self)
        self.user_stream.register()
        for path in ("/ws", "/ws/{names:.*}"):
            self.add_ws(path, self._ws_raw)
        for path in ("/stream", "/stream/{tail:.*}"):
            self.add_ws(path, self._ws_combined)

    # -- venue format -----------------------------------------------------------------------
    def limit_response(self, verdict: Verdict) -> web.Response:
        limit = self.limiter.limit
        text = f"Too many requests; current limit of IP(127.0.0.1) is {limit} requests per minute."
        if verdict.status == 418:
            until = self.now_ms() + verdict.retry_after_s * 1000
            msg = f"Way too many requests; IP(127.0.0.1) banned until {until}. {_TOO_MANY}"
            return self.error_response(418, -1003, msg)
        return self.error_response(429, -1003, f"{text} {_TOO_MANY}")

    def weight_headers(self, used: int) -> dict[str, str]:
        return {"X-MBX-USED-WEIGHT": str(used), "X-MBX-USED-WEIGHT-1M": str(used)}

    # -- REST ---------------------------------------------------------------------------
    def _symbol(self, query: Mapping[str, str]) -> Symbol:
        text = query.get("symbol")
        if not text:
            raise VenueError(
                -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        symbol = self._ids.get(text.upper())
        if symbol is None:
            raise VenueError(-1121, "Invalid symbol.")
        return symbol

    def _symbols(self, query: Mapping[str, str]) -> list[Symbol]:
        """``symbol=`` or ``symbols=["A","B"]`` or every symbol."""
        if "symbol" in query:
            return [self._symbol(query)]
        if "symbols" in query:
            try:
                names = orjson.loads(query["symbols"])
            except orjson.JSONDecodeError:
                raise VenueError(
                    -1100, "Illegal characters found in parameter 'symbols'."
                ) from None
            if not isinstance(names, list) or not names:
                raise VenueError(-1100, "Illegal characters found in parameter 'symbols'.")
            return [self._symbol({"symbol": str(n)}) for n in names]
        return list(self.markets)

    async def _ping(self, request: web.Request) -> web.Response:
        return self.json({})

    async def _time(self, request: web.Request) -> web.Response:
        return self.json({"serverTime": self.now_ms()})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        symbols = self._symbols(request.query)
        entries = []
        for symbol in symbols:
            flow = self.ctx.flows[symbol]
            entries.append(binance_symbol_entry(symbol, flow.tick_size, flow.step_size))
        limit = self.ctx.config.faults.weight_per_minute
        return self.json(binance_exchange_info(entries, self.now_ms(), limit))

    async def _depth(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request.query)
        limit = _limit(request.query, 100, 5000)
        return self.json(wire.partial_depth(self.market(symbol).depth(limit)))

    async def _trades(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request.query)
        limit = _limit(request.query, 500, 1000)
        return self.json([wire.trade_row(t) for t in self.market(symbol).trades_recent(limit)])

    async def _historical_trades(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request.query)
        limit = _limit(request.query, 500, 1000)
        from_id = _int(request.query, "fromId")
        market = self.market(symbol)
        rows = (
            market.trades_recent(limit) if from_id is None else market.trades_from(from_id, limit)
        )
        return self.json([wire.trade_row(t) for t in rows])

    async def _agg_trades(self, request: web.Request) -> web.Response:
        query = request.query
        symbol = self._symbol(query)
        limit = _limit(query, 500, 1000)
        from_id, start, end = (
            _int(query, "fromId"),
            _int(query, "startTime"),
            _int(query, "endTime"),
        )
        if start is not None and end is not None:
            if start > end:
                raise VenueError(-1023, "Start time is greater than end time.")
            if end - start > _HOUR:
                raise VenueError(-1127, "More than 1 hours between startTime and endTime.")
        market = self.market(symbol)
        if from_id is not None:
            rows = [
                t for t in market.trades_from(from_id, limit) if end is None or t.time_ms <= end
            ]
        elif start is not None or end is not None:
            rows = market.trades_between(start, end, limit)
        else:
            rows = market.trades_recent(limit)
        return self.json([wire.agg_trade_row(t) for t in rows])

    async def _klines(self, request: web.Request) -> web.Response:
        query = request.query
        for name in ("symbol", "interval"):
            if not query.get(name):
                raise VenueError(
                    -1102,
                    f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
                )
        symbol = self._symbol(query)
        timeframe = wire.INTERVALS.get(query["interval"])
        if timeframe is None:
            raise VenueError(-1120, "Invalid interval.")
        start, end = _int(query, "startTime"), _int(query, "endTime")
        limit = _limit(query, 500, 1000)
        if start is not None and end is not None and start > end:
            raise VenueError(-1023, "Start time is greater than end time.")
        rows = self.market(symbol).klines(timeframe, start, end, limit)
        return self.json([wire.kline_row(k) for k in rows])

    async def _book_ticker(self, request: web.Request) -> web.Response:
        rows = [
            wire.book_ticker_row(self._names[s].sid, self.market(s).top())
            for s in self._symbols(request.query)
        ]
        return self.json(rows[0] if "symbol" in request.query else rows)

    async def _ticker_24hr(self, request: web.Request) -> web.Response:
        rows = [
            wire.ticker_row(self._names[s].sid, self._day(s), self.market(s).top())
            for s in self._symbols(request.query)
        ]
        return self.json(rows[0] if "symbol" in request.query else rows)

    async def _ticker_price(self, request: web.Request) -> web.Response:
        rows = []
        for s in self._symbols(request.query):
            last = self.market(s).trades_recent(1)
            price = last[-1].price if last else 0.0
            rows.append({"symbol": self._names[s].sid, "price": wire.num(price)})
        return self.json(rows[0] if "symbol" in request.query else rows)

    def _day(self, symbol: Symbol) -> wire.DayStats:
        market, now = self.market(symbol), self.now_ms()
        start = Timeframe.H1.floor(now) - 23 * _HOUR
        klines = market.klines(Timeframe.H1, start, None, 25)
        last = market.trades_recent(1)
        return wire.day_stats(klines, now, last[-1] if last else None)

    # -- WebSocket ------------------------------------------------------------------------
    async def _ws_raw(self, request: web.Request) -> web.WebSocketResponse:
        names = request.match_info.get("names", "")
        streams = [s.name for s in map(wire.parse_stream, names.split("/")) if s is not None]
        return await self.serve_ws(request, self._on_message, variant=RAW, streams=streams)

    async def _ws_combined(self, request: web.Request) -> web.WebSocketResponse:
        names = request.query.get("streams", "")
        streams = [s.name for s in map(wire.parse_stream, names.split("/")) if s is not None]
        return await self.serve_ws(
            request, self._on_message, variant=COMBINED, streams=streams[: self.ws_max_streams]
        )

    def _reply(self, conn: WsConnection, body: dict[str, Any]) -> None:
        conn.send(orjson.dumps(body))

    def _error(self, conn: WsConnection, code: int, msg: str, request_id: Any = None) -> None:
        self._reply(conn, {"error": {"code": code, "msg": msg}, "id": request_id})

    def _on_message(self, conn: WsConnection, data: str | bytes) -> None:
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self._error(conn, 3, f"Invalid JSON: {exc}")
            return
        if not isinstance(msg, dict):
            self._error(conn, 2, "Invalid request: expected an object")
            return
        request_id = msg.get("id")
        if request_id is not None and not (
            (isinstance(request_id, int) and not isinstance(request_id, bool) and request_id >= 0)
            or (isinstance(request_id, str) and len(request_id) <= 36)
        ):
            self._error(conn, 2, "Invalid request: request ID must be an unsigned integer")
            return
        method = msg.get("method")
        params = msg.get("params", [])
        if not isinstance(params, list):
            self._error(conn, 2, "Invalid request: params must be an array", request_id)
            return
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            parsed = [wire.parse_stream(p) if isinstance(p, str) else None for p in params]
            if any(p is None for p in parsed):
                bad = next(p for p, q in zip(params, parsed, strict=True) if q is None)
                self._error(conn, 2, f"Invalid request: invalid stream name {bad!r}", request_id)
                return
            names = [p.name for p in parsed if p is not None]
            if method == "SUBSCRIBE":
                if len(conn.streams | set(names)) > self.ws_max_streams:
                    self.record_fault("ws_streams", conn, detail=f"over {self.ws_max_streams}")
                    self._error(conn, 2, "Invalid request: too many streams", request_id)
                    return
                for name in names:
                    self.hub.subscribe(conn, name)
            else:
                for name in names:
                    self.hub.unsubscribe(conn, name)
            self._reply(conn, {"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            self._reply(conn, {"result": sorted(conn.streams), "id": request_id})
        elif method == "SET_PROPERTY":
            if len(params) != 2 or params[0] != "combined" or not isinstance(params[1], bool):
                self._error(conn, 0, "Unknown property", request_id)
                return
            conn.variant = COMBINED if params[1] else RAW
            self._reply(conn, {"result": None, "id": request_id})
        elif method == "GET_PROPERTY":
            if params != ["combined"]:
                self._error(conn, 0, "Unknown property", request_id)
                return
            self._reply(conn, {"result": conn.variant == COMBINED, "id": request_id})
        else:
            self._error(
                conn, 2, f"Invalid request: unknown variant {method!r}, expected one of {_METHODS}",
                request_id,
            )  # fmt: skip

    # -- pushes -------------------------------------------------------------------------
    def _push(self, name: str, payload: Any, kind: str = "") -> None:
        self.hub.publish(name, _renderer(name, payload), kind=kind)

    def on_event(self, symbol: Symbol, event: FlowEvent) -> None:
        n = self._names[symbol]
        hub = self.hub
        if isinstance(event, TradePrint):
            if hub.has(n.trade):
                self._push(n.trade, wire.trade_event(n.sid, event))
            if hub.has(n.agg):
                self._push(n.agg, wire.agg_trade_event(n.sid, event))
        elif isinstance(event, DepthDiff):
            if hub.has(n.fast):
                self._push(n.fast, wire.diff_event(n.sid, event), DEPTH)
            if hub.has(n.slow[0]) or hub.has(n.slow[1]):
                if n.first_id < 0:
                    n.first_id = event.first_id
                n.last_id = event.last_id
                wire.merge_levels(n.bids, event.bids)
                wire.merge_levels(n.asks, event.asks)
            self._push_partials(symbol, fast=True)
        elif isinstance(event, BookTop) and hub.has(n.book):
            self._push(n.book, wire.book_ticker_event(n.sid, event))

    def _push_partials(self, symbol: Symbol, *, fast: bool) -> None:
        s = self._names[symbol].sid.lower()
        for levels in (5, 10, 20):
            base = f"{s}@depth{levels}"
            names = (f"{base}@100ms",) if fast else (base, f"{base}@1000ms")
            for name in names:
                if self.hub.has(name):
                    self._push(name, wire.partial_depth(self.market(symbol).depth(levels)))

    def on_klines(self, symbol: Symbol, klines: Mapping[Timeframe, list[Kline]]) -> None:
        s = self._names[symbol]
        now = self.now_ms()
        for tf, rows in klines.items():
            name = f"{s.sid.lower()}@kline_{tf.value}"
            if self.hub.has(name):
                for k in rows:
                    self._push(name, wire.kline_event(s.sid, tf, k, now))

    def on_second(self, now_ms: int) -> None:
        for symbol, n in self._names.items():
            if n.first_id >= 0:
                payload = wire.depth_event(
                    n.sid,
                    now_ms,
                    n.first_id,
                    n.last_id,
                    wire.sorted_levels(n.bids, descending=True),
                    wire.sorted_levels(n.asks, descending=False),
                )
                for name in n.slow:
                    if self.hub.has(name):
                        self._push(name, payload, DEPTH)
                n.first_id, n.last_id = -1, -1
                n.bids.clear()
                n.asks.clear()
            self._push_partials(symbol, fast=False)
            if self.hub.has(n.ticker) or self.hub.has(n.mini):
                day = self._day(symbol)
                if self.hub.has(n.ticker):
                    top = self.market(symbol).top()
                    self._push(n.ticker, wire.ticker_event(n.sid, day, top, now_ms))
                if self.hub.has(n.mini):
                    self._push(n.mini, wire.mini_ticker_event(n.sid, day, now_ms))


Site = BinanceSite
