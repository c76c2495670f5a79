"""Bybit v5 public spot market data, served from the local exchange's market.

REST (every answer in Bybit's envelope ``{"retCode", "retMsg", "result", "retExtInfo",
"time"}``, errors as HTTP 200 with a non-zero ``retCode``, e.g. ``10001``):

- ``/v5/market/time``; ``/v5/market/instruments-info?category=spot`` (other categories:
  an empty list, so a ccxt client that also asks for derivatives still loads);
- ``/v5/market/kline`` (``category, symbol, interval, start, end, limit``; rows newest
  first, ``[start, open, high, low, close, volume, turnover]``; ``start`` is floored to the
  interval so the candle containing it comes back; with ``start`` the oldest ``limit``
  candles from there, else the newest up to ``end``; limit 1..1000, default 200);
- ``/v5/market/orderbook`` (limit 1..200, default 1), ``/v5/market/recent-trade`` (limit
  1..60, default 60, newest first), ``/v5/market/tickers`` (24 h statistics from the
  hourly klines of the last 24 hours).

Rate limits: the venue's weight budget (:class:`~pivotal.localexchange.faults.RateLimiter`)
is reported in ``X-Bapi-Limit``, ``X-Bapi-Limit-Status`` (remaining) and
``X-Bapi-Limit-Reset-Timestamp``; over it the answer is Bybit's ``retCode 10006 "Too many
visits!"`` (HTTP 200), a ban is HTTP 403 ``access too frequent`` (ccxt maps both to
``RateLimitExceeded``); both carry ``Retry-After``.

WebSocket ``/v5/public/spot``: ``{"op": "subscribe" | "unsubscribe", "req_id", "args"}``
(at most 10 args a request) answered ``{"success", "ret_msg", "conn_id", "req_id", "op"}``;
``{"op": "ping"}`` → ``{"success": true, "ret_msg": "pong", ...}``. Topics:

- ``orderbook.<1|50|200|1000>.<SYMBOL>``: a snapshot of the top levels on subscribe, then
  deltas of the changed levels (quantity ``"0"`` removes one; a level that leaves the top
  ``depth`` is removed, one that enters is added); ``u`` counts the topic's messages
  (+1 each), ``seq`` is the market's book update id (Binance's ``u``). Depth 1 is pushed
  as snapshots only. Per Bybit's rule a new snapshot resets the client's book;
- ``publicTrade.<SYMBOL>``: one message per trade (``S`` is the taker side);
- ``kline.<interval>.<SYMBOL>``: the current candle on subscribe, then every change of the
  open candle (at market-second boundaries) and each candle once closed (``confirm``);
- ``tickers.<SYMBOL>``: a snapshot on subscribe and after every trade.

The server does not ping (Bybit's clients ping). Symbols are Bybit ids (``BTCUSDT``).

Trading (the account of the site's engine): the signed v5 routes of
:mod:`~pivotal.localexchange.bybit_trade` and the private stream ``/v5/private`` of
:mod:`~pivotal.localexchange.bybit_private`; the engine applies Bybit's instrument limits.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web

from pivotal.core.clock import WallClock
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.localexchange.bybit_private import BybitPrivate
from pivotal.localexchange.bybit_rest import (
    MAX_ORDER_AMT,
    MAX_ORDER_QTY,
    MIN_ORDER_AMT,
    bybit_rules,
)
from pivotal.localexchange.bybit_trade import BybitTrading
from pivotal.localexchange.bybit_wire import (
    BYBIT_INTERVALS,
    MAX_ARGS,
    ORDERBOOK_DEPTHS,
    PARAM_ERROR,
    TIMEFRAME_OF,
    TOO_MANY_VISITS,
    BookView,
    Level,
    tick_direction,
    topic_parts,
)
from pivotal.localexchange.engine_types import SymbolRules
from pivotal.localexchange.faults import Verdict
from pivotal.localexchange.flow import DepthDiff, FlowEvent, Kline, TradePrint
from pivotal.localexchange.sitefmt import amount, decimals_of, int_param, market_sizes, num
from pivotal.localexchange.venue import VenueError, VenueSite
from pivotal.localexchange.wsconn import DEPTH, WsConnection

_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
#: (open, high, low, close, volume, turnover) of the last 24 hours.
_DayStats = tuple[float, float, float, float, float, float]


class BybitSite(VenueSite):
    """Bybit v5 public spot REST and ``/v5/public/spot`` WebSocket over the shared markets."""

    venue = "bybit"
    ws_heartbeat_s = None
    ws_max_incoming_per_s = None
    ws_max_streams = 1024

    def setup(self) -> None:
        self._views: dict[tuple[Symbol, int], BookView] = {}
        self._last_trade: dict[Symbol, tuple[float, str]] = {}
        self._stats_cache: dict[Symbol, tuple[int, _DayStats | None]] = {}
        self._wall = WallClock()
        self._price_dp = {s: decimals_of(market_sizes(m)[0]) for s, m in self.markets.items()}
        self._qty_dp = {s: decimals_of(market_sizes(m)[1]) for s, m in self.markets.items()}
        self.add_rest("/v5/market/time", self._time)
        self.add_rest("/v5/market/instruments-info", self._instruments, weight=5)
        self.add_rest("/v5/market/kline", self._kline)
        self.add_rest("/v5/market/orderbook", self._orderbook)
        self.add_rest("/v5/market/recent-trade", self._recent_trade)
        self.add_rest("/v5/market/tickers", self._tickers)
        self.add_ws("/v5/public/spot", self._ws)
        self.trading = BybitTrading(self, self.engine)
        self.trading.install()
        BybitPrivate(self, self.trading.views).install()

    def symbol_rules(self, symbol: Symbol) -> SymbolRules:
        """Bybit's spot limits (:func:`~pivotal.localexchange.bybit_rest.bybit_rules`)."""
        return bybit_rules(symbol, *market_sizes(self.market(symbol)))

    # -- envelope, errors, limits ---------------------------------------------------------
    def _ok(self, result: Any) -> web.Response:
        return self.json(
            {
                "retCode": 0,
                "retMsg": "OK",
                "result": result,
                "retExtInfo": {},
                "time": self.now_ms(),
            }
        )

    def error_response(
        self, status: int, code: int, msg: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        body = {
            "retCode": code,
            "retMsg": msg,
            "result": {},
            "retExtInfo": {},
            "time": self.now_ms(),
        }
        return self.json(body, status=status, headers=headers)

    def limit_response(self, verdict: Verdict) -> web.Response:
        if verdict.status == 418:  # Bybit's IP ban: HTTP 403 with a plain-text body
            return web.Response(status=403, text="access too frequent", content_type="text/plain")
        return self.error_response(200, TOO_MANY_VISITS, "Too many visits!")

    def weight_headers(self, used: int) -> dict[str, str]:
        limit = self.limiter.limit
        if limit is None:
            return {}
        # The limiter's windows are whole minutes of the monotonic clock (see faults.py).
        reset_ms = self._wall.now_ms() + int((60.0 - time.monotonic() % 60.0) * 1000)
        return {
            "X-Bapi-Limit": str(limit),
            "X-Bapi-Limit-Status": str(max(0, limit - used)),
            "X-Bapi-Limit-Reset-Timestamp": str(reset_ms),
        }

    def _spot_symbol(self, query: Mapping[str, str]) -> Symbol:
        category = query.get("category", "")
        if category != "spot":
            raise VenueError(
                PARAM_ERROR, f"params error: category {category!r}: only spot is served", 200
            )
        symbol = self.symbol_for(query.get("symbol", ""))
        if symbol is None or not query.get("symbol"):
            raise VenueError(PARAM_ERROR, "params error: symbol invalid", 200)
        return symbol

    @staticmethod
    def _limit(query: Mapping[str, str], default: int, low: int, high: int) -> int:
        try:
            value = int_param(query, "limit")
        except ValueError as exc:
            raise VenueError(PARAM_ERROR, f"params error: {exc}", 200) from None
        if value is None:
            return default
        if not low <= value <= high:
            raise VenueError(PARAM_ERROR, f"params error: limit must be in [{low}, {high}]", 200)
        return value

    # -- REST -----------------------------------------------------------------------------
    async def _time(self, request: web.Request) -> web.Response:
        now = self.now_ms()
        return self._ok({"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)})

    async def _instruments(self, request: web.Request) -> web.Response:
        category = request.query.get("category", "")
        if category not in ("spot", "linear", "inverse", "option"):
            raise VenueError(PARAM_ERROR, f"params error: category {category!r} invalid", 200)
        if category != "spot":  # derivatives are not served: an empty listing
            return self._ok({"category": category, "list": [], "nextPageCursor": ""})
        wanted = request.query.get("symbol")
        entries = [
            self._instrument(symbol)
            for symbol in sorted(self.markets, key=lambda s: s.exchange_id)
            if wanted is None or symbol.exchange_id == wanted.upper()
        ]
        return self._ok({"category": "spot", "list": entries, "nextPageCursor": ""})

    def _instrument(self, symbol: Symbol) -> dict[str, Any]:
        tick, step = market_sizes(self.market(symbol))
        return {
            "symbol": symbol.exchange_id,
            "baseCoin": symbol.base,
            "quoteCoin": symbol.quote,
            "innovation": "0",
            "status": "Trading",
            "marginTrading": "none",
            "stTag": "0",
            "lotSizeFilter": {
                "basePrecision": num(step, decimals_of(step)),
                "quotePrecision": "0.00000001",
                "minOrderQty": num(step, decimals_of(step)),
                "maxOrderQty": str(MAX_ORDER_QTY),
                "minOrderAmt": str(MIN_ORDER_AMT),
                "maxOrderAmt": str(MAX_ORDER_AMT),
            },
            "priceFilter": {"tickSize": num(tick, decimals_of(tick))},
            "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.05"},
        }

    async def _kline(self, request: web.Request) -> web.Response:
        query = request.query
        symbol = self._spot_symbol(query)
        timeframe = TIMEFRAME_OF.get(query.get("interval", ""))
        if timeframe is None or timeframe not in self.market(symbol).timeframes:
            raise VenueError(PARAM_ERROR, "params error: Invalid interval", 200)
        try:
            start, end = int_param(query, "start"), int_param(query, "end")
        except ValueError as exc:
            raise VenueError(PARAM_ERROR, f"params error: {exc}", 200) from None
        limit = self._limit(query, 200, 1, 1000)
        if start is not None and end is not None and start > end:
            raise VenueError(PARAM_ERROR, "params error: start must not be after end", 200)
        if start is not None:
            start = timeframe.floor(start)  # Bybit returns the candle that contains start
        klines = self.market(symbol).klines(timeframe, start, end, limit)
        rows = [self._kline_row(symbol, k) for k in reversed(klines)]  # newest first
        return self._ok({"symbol": symbol.exchange_id, "category": "spot", "list": rows})

    def _kline_row(self, symbol: Symbol, k: Kline) -> list[str]:
        p = self._price_dp[symbol]
        return [
            str(k.open_time), num(k.open, p), num(k.high, p), num(k.low, p), num(k.close, p),
            amount(k.volume), amount(k.quote_volume),
        ]  # fmt: skip

    async def _orderbook(self, request: web.Request) -> web.Response:
        symbol = self._spot_symbol(request.query)
        limit = self._limit(request.query, 1, 1, 200)
        book = self.market(symbol).depth(limit)
        now = self.now_ms()
        result = {
            "s": symbol.exchange_id,
            "b": self._levels(symbol, book.bids),
            "a": self._levels(symbol, book.asks),
            "ts": now,
            "u": book.last_update_id,
            "seq": book.last_update_id,
            "cts": now,
        }
        return self._ok(result)

    def _levels(self, symbol: Symbol, levels: Sequence[Level]) -> list[list[str]]:
        p, q = self._price_dp[symbol], self._qty_dp[symbol]
        return [[num(price, p), num(qty, q)] for price, qty in levels]

    async def _recent_trade(self, request: web.Request) -> web.Response:
        symbol = self._spot_symbol(request.query)
        limit = self._limit(request.query, 60, 1, 60)
        trades = self.market(symbol).trades_recent(limit)
        p, q = self._price_dp[symbol], self._qty_dp[symbol]
        rows = [
            {
                "execId": str(t.trade_id),
                "symbol": symbol.exchange_id,
                "price": num(t.price, p),
                "size": num(t.qty, q),
                "side": "Sell" if t.buyer_maker else "Buy",
                "time": str(t.time_ms),
                "isBlockTrade": False,
                "isRPITrade": False,
                "seq": str(t.trade_id),
            }
            for t in reversed(trades)  # newest first
        ]
        return self._ok({"category": "spot", "list": rows})

    async def _tickers(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("category") != "spot":
            raise VenueError(PARAM_ERROR, "params error: only category spot is served", 200)
        if query.get("symbol"):
            symbols = [self._spot_symbol(query)]
        else:
            symbols = sorted(self.markets, key=lambda s: s.exchange_id)
        rows = []
        for symbol in symbols:
            row = self._ticker(symbol)
            top = self.market(symbol).top()
            p, q = self._price_dp[symbol], self._qty_dp[symbol]
            if top is not None:
                row["bid1Price"], row["bid1Size"] = num(top.bid, p), num(top.bid_qty, q)
                row["ask1Price"], row["ask1Size"] = num(top.ask, p), num(top.ask_qty, q)
            rows.append(row)
        return self._ok({"category": "spot", "list": rows})

    def _ticker(self, symbol: Symbol) -> dict[str, Any]:
        """Bybit's spot ticker fields; the 24 h window is the hourly klines of the last day."""
        now = self.now_ms()
        cached = self._stats_cache.get(symbol)
        if cached is None or cached[0] != now // 1000:
            cached = (now // 1000, self._day_stats(symbol, now))
            self._stats_cache[symbol] = cached
        stats = cached[1]
        last = self._last_trade.get(symbol)
        last_price = last[0] if last is not None else (stats[3] if stats else None)
        p = self._price_dp[symbol]
        row: dict[str, Any] = {"symbol": symbol.exchange_id}
        if stats is None or last_price is None:
            row.update(lastPrice="" if last_price is None else num(last_price, p), prevPrice24h="",
                       price24hPcnt="0", highPrice24h="", lowPrice24h="", volume24h="0",
                       turnover24h="0", usdIndexPrice="")  # fmt: skip
            return row
        first, high, low, _, volume, turnover = stats
        row.update(
            lastPrice=num(last_price, p),
            highPrice24h=num(max(high, last_price), p),
            lowPrice24h=num(min(low, last_price), p),
            prevPrice24h=num(first, p),
            volume24h=amount(volume),
            turnover24h=amount(turnover),
            price24hPcnt=f"{(last_price - first) / first:.4f}" if first else "0",
            usdIndexPrice=num(last_price, p),
        )
        return row

    def _day_stats(self, symbol: Symbol, now: int) -> _DayStats | None:
        """(open, high, low, close, volume, turnover) of the hourly klines of the last 24 h."""
        start = now - now % _HOUR_MS - _DAY_MS + _HOUR_MS
        klines = self.market(symbol).klines(Timeframe.H1, start, None, 25)
        klines = [k for k in klines if k.trades > 0 or k.volume > 0]
        if not klines:
            return None
        return (
            klines[0].open,
            max(k.high for k in klines),
            min(k.low for k in klines),
            klines[-1].close,
            sum(k.volume for k in klines),
            sum(k.quote_volume for k in klines),
        )

    # -- WebSocket ------------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        return await self.serve_ws(request, self._on_message)

    def _reply(self, conn: WsConnection, op: str, req_id: str, ok: bool, msg: str) -> None:
        body = {
            "success": ok,
            "ret_msg": msg,
            "conn_id": f"pivotal-{conn.conn_id}",
            "req_id": req_id,
            "op": op,
        }
        conn.send(orjson.dumps(body))

    def _on_message(self, conn: WsConnection, data: str | bytes) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._reply(conn, "", "", False, "error:invalid op")
            return
        if not isinstance(message, dict):
            self._reply(conn, "", "", False, "error:invalid op")
            return
        op = str(message.get("op", ""))
        req_id = str(message.get("req_id", ""))
        if op == "ping":
            self._reply(conn, "ping", req_id, True, "pong")
        elif op in ("subscribe", "unsubscribe"):
            args = message.get("args")
            if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
                self._reply(
                    conn, op, req_id, False, "error:args must be a non-empty list of topics"
                )
            elif op == "subscribe":
                self._subscribe(conn, req_id, args)
            else:
                for topic in args:
                    self.hub.unsubscribe(conn, topic)
                self._reply(conn, op, req_id, True, "")
        else:
            self._reply(conn, op, req_id, False, f"error:invalid op {op!r}")

    def _subscribe(self, conn: WsConnection, req_id: str, args: list[str]) -> None:
        if len(args) > MAX_ARGS:
            self._reply(conn, "subscribe", req_id, False, f"error:args size >{MAX_ARGS}")
            return
        args = list(dict.fromkeys(args))  # a topic named twice is subscribed once
        for topic in args:
            problem = self._topic_problem(topic)
            if problem is None and topic in conn.streams:
                problem = f"error:already subscribed,topic:{topic}"
            if problem is not None:
                self._reply(conn, "subscribe", req_id, False, problem)
                return
        if len(conn.streams) + len(args) > self.ws_max_streams:
            self.record_fault("ws_streams", conn, detail=f"over {self.ws_max_streams} topics")
            self._reply(
                conn, "subscribe", req_id, False, "error:too many topics on this connection"
            )
            return
        self._reply(conn, "subscribe", req_id, True, "subscribe")
        for topic in args:
            self.hub.subscribe(conn, topic)
            self._send_initial(conn, topic)

    def _topic_problem(self, topic: str) -> str | None:
        """Why ``topic`` cannot be subscribed, or None when it can."""
        kind, middle, market_id = topic_parts(topic)
        symbol = self.symbol_for(market_id) if market_id == market_id.upper() else None
        if symbol is None:
            return f"error:handler not found,topic:{topic}"
        if kind == "orderbook" and middle.isdigit() and int(middle) in ORDERBOOK_DEPTHS:
            return None
        kept = self.market(symbol).timeframes
        if kind == "kline" and middle in TIMEFRAME_OF and TIMEFRAME_OF[middle] in kept:
            return None
        if kind in ("publicTrade", "tickers") and middle == "":
            return None
        return f"error:handler not found,topic:{topic}"

    def _send_initial(self, conn: WsConnection, topic: str) -> None:
        kind, middle, market_id = topic_parts(topic)
        symbol = self.symbol_for(market_id)
        assert symbol is not None  # checked by _topic_problem
        if kind == "orderbook":
            view = self._view(symbol, int(middle))
            if not view.live:
                view.reset(self.market(symbol).depth(view.depth))
            conn.send(self._book_message(topic, symbol, view, None, self.now_ms()), stream=topic)
        elif kind == "tickers":
            conn.send(self._ticker_message(topic, symbol), stream=topic)
        elif kind == "kline":
            timeframe = TIMEFRAME_OF[middle]
            current = self.market(symbol).klines(timeframe, None, None, 1)
            if current:
                conn.send(self._kline_message(topic, symbol, timeframe, current), stream=topic)

    def _view(self, symbol: Symbol, depth: int) -> BookView:
        view = self._views.get((symbol, depth))
        if view is None:
            view = self._views[(symbol, depth)] = BookView(depth)
        return view

    # -- pushes ---------------------------------------------------------------------------
    def on_event(self, symbol: Symbol, event: FlowEvent) -> None:
        if isinstance(event, DepthDiff):
            self._push_books(symbol, event.time_ms)
        elif isinstance(event, TradePrint):
            self._push_trade(symbol, event)

    def on_klines(self, symbol: Symbol, klines: Mapping[Timeframe, list[Kline]]) -> None:
        for timeframe, changed in klines.items():
            name = BYBIT_INTERVALS.get(timeframe)
            if name is None or not changed:
                continue
            topic = f"kline.{name}.{symbol.exchange_id}"
            if self.hub.has(topic):
                message = self._kline_message(topic, symbol, timeframe, changed)
                self.hub.publish(topic, lambda _v, m=message: m)

    def _push_books(self, symbol: Symbol, time_ms: int) -> None:
        for depth in ORDERBOOK_DEPTHS:
            topic = f"orderbook.{depth}.{symbol.exchange_id}"
            view = self._views.get((symbol, depth))
            if view is None:
                continue
            if not self.hub.has(topic):
                view.live = False
                continue
            book = self.market(symbol).depth(depth)
            if depth == 1:
                if not view.replace(book):
                    continue
                message = self._book_message(topic, symbol, view, None, time_ms)
            else:
                bids, asks = view.update(book)
                if not bids and not asks:
                    continue
                message = self._book_message(topic, symbol, view, (bids, asks), time_ms)
            self.hub.publish(topic, lambda _v, m=message: m, kind=DEPTH)

    def _book_message(
        self,
        topic: str,
        symbol: Symbol,
        view: BookView,
        delta: tuple[list[Level], list[Level]] | None,
        time_ms: int,
    ) -> bytes:
        bids, asks = view.levels() if delta is None else delta
        data = {
            "s": symbol.exchange_id,
            "b": self._levels(symbol, bids),
            "a": self._levels(symbol, asks),
            "u": view.u,
            "seq": view.seq,
        }
        kind = "snapshot" if delta is None else "delta"
        return orjson.dumps(
            {"topic": topic, "type": kind, "ts": time_ms, "data": data, "cts": time_ms}
        )

    def _push_trade(self, symbol: Symbol, trade: TradePrint) -> None:
        tick = tick_direction(self._last_trade.get(symbol), trade.price)
        self._last_trade[symbol] = (trade.price, tick)
        topic = f"publicTrade.{symbol.exchange_id}"
        if self.hub.has(topic):
            p, q = self._price_dp[symbol], self._qty_dp[symbol]
            item = {
                "T": trade.time_ms,
                "s": symbol.exchange_id,
                "S": "Sell" if trade.buyer_maker else "Buy",
                "v": num(trade.qty, q),
                "p": num(trade.price, p),
                "L": tick,
                "i": str(trade.trade_id),
                "BT": False,
                "RPI": False,
                "seq": trade.trade_id,
            }
            message = orjson.dumps(
                {"topic": topic, "type": "snapshot", "ts": trade.time_ms, "data": [item]}
            )
            self.hub.publish(topic, lambda _v: message)
        ticker_topic = f"tickers.{symbol.exchange_id}"
        if self.hub.has(ticker_topic):
            ticker = self._ticker_message(ticker_topic, symbol)
            self.hub.publish(ticker_topic, lambda _v: ticker)

    def _ticker_message(self, topic: str, symbol: Symbol) -> bytes:
        now = self.now_ms()
        return orjson.dumps(
            {"topic": topic, "ts": now, "type": "snapshot", "cs": now, "data": self._ticker(symbol)}
        )

    def _kline_message(
        self, topic: str, symbol: Symbol, timeframe: Timeframe, klines: Sequence[Kline]
    ) -> bytes:
        now = self.now_ms()
        p = self._price_dp[symbol]
        data = [
            {
                "start": k.open_time,
                "end": k.close_time,
                "interval": BYBIT_INTERVALS[timeframe],
                "open": num(k.open, p),
                "close": num(k.close, p),
                "high": num(k.high, p),
                "low": num(k.low, p),
                "volume": amount(k.volume),
                "turnover": amount(k.quote_volume),
                "confirm": k.closed,
                "timestamp": now,
            }
            for k in klines
        ]
        return orjson.dumps({"topic": topic, "data": data, "ts": now, "type": "snapshot"})


Site = BybitSite
