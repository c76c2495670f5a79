"""MEXC spot market data (REST v3 + protobuf WebSocket), served from the local market.

REST (``/api/v3/...``; errors ``{"code", "msg"}`` with HTTP 400, e.g. ``-1121 Invalid
symbol.``):

- ``ping``, ``time`` (``{"serverTime"}``), ``exchangeInfo`` (``symbol=``/``symbols=``;
  MEXC's symbol entry, ``status "1"``, precisions from the flow's tick and step sizes);
- ``klines``: MEXC's 8 fields ``[open time, o, h, l, c, volume, close time, quote volume]``
  with close time = open time + interval (MEXC's, not Binance's ``- 1``); intervals ``1m 5m
  15m 30m 60m 4h 1d`` (``1W``/``1M`` are refused: the market builds no weekly candles);
  ``startTime`` inclusive, ``endTime`` **exclusive** (on the open time); with ``startTime``
  the oldest ``limit`` candles from there, else the newest; ``limit`` default 500, larger
  values clamped to 500 (what MEXC serves in practice, per ccxt);
- ``depth`` (``lastUpdateId``, ``bids``, ``asks``, ``timestamp``; limit default 100, at
  most 5000), ``trades`` (newest ``limit`` ≤ 1000, ``id`` null as on MEXC), ``aggTrades``
  (``startTime``/``endTime`` inclusive; one aggregate per trade, ids null),
  ``ticker/bookTicker``;
- ``/api/v1/contract/detail`` → ``{"success": true, "code": 0, "data": []}``: ccxt's MEXC
  ``load_markets`` always asks for the swap markets too; none are listed.

Over the venue's request-weight budget the answer is HTTP 429 (a ban: 418) with body
``{"code": 429, "msg": ...}`` (ccxt: ``RateLimitExceeded``) and ``Retry-After``.

WebSocket ``/ws``: ``{"method": "SUBSCRIPTION" | "UNSUBSCRIPTION", "params": [...]}`` is
answered ``{"id": 0, "code": 0, "msg": "<the channels, comma-joined>"}`` (failures: ``msg``
``"Not Subscribed successfully! [...]. Reason: ..."``); ``{"method": "PING"}`` →
``{"id": 0, "code": 0, "msg": "PONG"}``; at most 30 channels per connection. Data frames
are binary protobuf (:mod:`pivotal.localexchange.mexc_proto`) on the channels ccxt.pro
uses for spot:

- ``spot@public.aggre.deals.v3.api.pb@(100ms|10ms)@SYMBOL``: the trades of each 100 ms (10
  ms) market-time window, pushed when the window has passed;
- ``spot@public.aggre.depth.v3.api.pb@(100ms|10ms)@SYMBOL``: every depth diff, with
  ``fromVersion``/``toVersion`` = the market's ``U``/``u``; ``/api/v3/depth``'s
  ``lastUpdateId`` is on the same scale, so ccxt syncs its book as on MEXC (snapshot after
  it has cached some diffs, then the diffs with ``fromVersion >= lastUpdateId``);
- ``spot@public.kline.v3.api.pb@SYMBOL@(Min1|Min5|Min15|Min30|Min60|Hour4|Hour8|Day1)``:
  the current candle on subscribe, then each change at market-second boundaries and each
  candle once closed;
- ``spot@public.aggre.bookTicker.v3.api.pb@(100ms|10ms)@SYMBOL``: the last best bid/ask of
  each window (and the current one on subscribe).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.localexchange import mexc_proto
from pivotal.localexchange.exchange_info import MEXC_SYMBOL_TEMPLATE
from pivotal.localexchange.faults import Verdict
from pivotal.localexchange.flow import BookTop, DepthDiff, FlowEvent, Kline, TradePrint
from pivotal.localexchange.sitefmt import amount, decimals_of, int_param, market_sizes, num
from pivotal.localexchange.venue import VenueError, VenueSite
from pivotal.localexchange.wsconn import DEPTH, WsConnection

#: MEXC REST kline interval names of the timeframes the market builds.
MEXC_REST_INTERVALS: dict[Timeframe, str] = {
    Timeframe.M1: "1m", Timeframe.M5: "5m", Timeframe.M15: "15m", Timeframe.M30: "30m",
    Timeframe.H1: "60m", Timeframe.H4: "4h", Timeframe.D1: "1d",
}  # fmt: skip
#: MEXC WebSocket kline interval names.
MEXC_WS_INTERVALS: dict[Timeframe, str] = {
    Timeframe.M1: "Min1", Timeframe.M5: "Min5", Timeframe.M15: "Min15",
    Timeframe.M30: "Min30", Timeframe.H1: "Min60", Timeframe.H4: "Hour4",
    Timeframe.H8: "Hour8", Timeframe.D1: "Day1",
}  # fmt: skip
_REST_TF = {name: tf for tf, name in MEXC_REST_INTERVALS.items()}
_WS_TF = {name: tf for tf, name in MEXC_WS_INTERVALS.items()}
#: Aggregation windows of the ``aggre`` channels (ms).
FREQUENCIES: dict[str, int] = {"100ms": 100, "10ms": 10}
#: Channels one connection may hold (MEXC: 30).
MAX_CHANNELS = 30
KLINE_LIMIT_MAX = 500


class MexcSite(VenueSite):
    """MEXC spot REST v3 and the protobuf ``/ws`` streams over the shared markets."""

    venue = "mexc"
    ws_heartbeat_s = None  # MEXC's clients ping ({"method": "PING"})
    ws_max_incoming_per_s = None
    ws_max_streams = MAX_CHANNELS

    def setup(self) -> None:
        self._dp = {
            s: (decimals_of(market_sizes(m)[0]), decimals_of(market_sizes(m)[1]))
            for s, m in self.markets.items()
        }
        # (channel) -> (window index, trades) / (window index, newest top)
        self._deals: dict[str, tuple[int, list[TradePrint]]] = {}
        self._tops: dict[str, tuple[int, BookTop]] = {}
        self.add_rest("/api/v3/ping", self._ping)
        self.add_rest("/api/v3/time", self._time)
        self.add_rest("/api/v3/exchangeInfo", self._exchange_info, weight=10)
        self.add_rest("/api/v3/klines", self._klines)
        self.add_rest("/api/v3/depth", self._depth)
        self.add_rest("/api/v3/trades", self._trades, weight=5)
        self.add_rest("/api/v3/aggTrades", self._agg_trades)
        self.add_rest("/api/v3/ticker/bookTicker", self._book_ticker)
        self.add_rest("/api/v1/contract/detail", self._contract_detail)
        self.add_ws("/ws", self._ws)

    # -- errors and limits ----------------------------------------------------------------
    def limit_response(self, verdict: Verdict) -> web.Response:
        if verdict.status == 418:
            return self.error_response(418, 429, "IP banned for too many requests.")
        return self.error_response(429, 429, "Too many requests, please try again later.")

    def _symbol(self, query: Mapping[str, str]) -> Symbol:
        raw = query.get("symbol", "")
        if not raw:
            raise VenueError(-1102, "Mandatory parameter 'symbol' was not sent.")
        symbol = self.symbol_for(raw)
        if symbol is None:
            raise VenueError(-1121, "Invalid symbol.")
        return symbol

    @staticmethod
    def _int(query: Mapping[str, str], name: str) -> int | None:
        try:
            return int_param(query, name)
        except ValueError:
            raise VenueError(-1100, f"Illegal characters found in parameter '{name}'.") from None

    def _limit(self, query: Mapping[str, str], default: int, high: int) -> int:
        limit = self._int(query, "limit")
        if limit is None:
            return default
        if limit < 1:
            raise VenueError(-1130, "Data sent for parameter 'limit' is not valid.")
        return min(limit, high)

    # -- REST -----------------------------------------------------------------------------
    async def _ping(self, request: web.Request) -> web.Response:
        return self.json({})

    async def _time(self, request: web.Request) -> web.Response:
        return self.json({"serverTime": self.now_ms()})

    async def _contract_detail(self, request: web.Request) -> web.Response:
        return self.json({"success": True, "code": 0, "data": []})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        query = request.query
        symbols = sorted(self.markets, key=lambda s: s.exchange_id)
        wanted = [query["symbol"]] if query.get("symbol") else []
        wanted += [s for s in query.get("symbols", "").split(",") if s]
        if wanted:
            chosen = [self.symbol_for(w) for w in wanted]
            if any(s is None for s in chosen):
                raise VenueError(-1121, "Invalid symbol.")
            symbols = [s for s in symbols if s in chosen]
        return self.json(
            {
                "timezone": "CST",
                "serverTime": self.now_ms(),
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": [self._symbol_entry(s) for s in symbols],
            }
        )

    def _symbol_entry(self, symbol: Symbol) -> dict[str, Any]:
        price_dp, qty_dp = self._dp[symbol]
        step = market_sizes(self.market(symbol))[1]
        entry = copy.deepcopy(MEXC_SYMBOL_TEMPLATE)
        entry.update(
            symbol=symbol.exchange_id,
            baseAsset=symbol.base,
            quoteAsset=symbol.quote,
            baseAssetPrecision=str(qty_dp),
            quotePrecision=str(price_dp),
            quoteAssetPrecision=str(price_dp),
            baseCommissionPrecision=str(qty_dp),
            quoteCommissionPrecision=str(price_dp),
            baseSizePrecision=num(step, qty_dp),
        )
        return entry

    async def _klines(self, request: web.Request) -> web.Response:
        query = request.query
        symbol = self._symbol(query)
        if not query.get("interval"):
            raise VenueError(-1102, "Mandatory parameter 'interval' was not sent.")
        timeframe = _REST_TF.get(query["interval"])
        if timeframe is None or timeframe not in self.market(symbol).timeframes:
            raise VenueError(-1120, "Invalid interval.")
        start, end = self._int(query, "startTime"), self._int(query, "endTime")
        limit = self._limit(query, 500, KLINE_LIMIT_MAX)
        if start is not None and end is not None and start >= end:
            return self.json([])
        if end is not None and end == 0:
            return self.json([])
        klines = self.market(symbol).klines(
            timeframe, start, None if end is None else end - 1, limit
        )
        price_dp = self._dp[symbol][0]
        rows = [
            [
                k.open_time, num(k.open, price_dp), num(k.high, price_dp), num(k.low, price_dp),
                num(k.close, price_dp), amount(k.volume), k.open_time + timeframe.ms,
                amount(k.quote_volume),
            ]
            for k in klines
        ]  # fmt: skip
        return self.json(rows)

    async def _depth(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request.query)
        limit = self._limit(request.query, 100, 5000)
        book = self.market(symbol).depth(limit)
        price_dp, qty_dp = self._dp[symbol]
        return self.json(
            {
                "lastUpdateId": book.last_update_id,
                "bids": [[num(p, price_dp), num(q, qty_dp)] for p, q in book.bids],
                "asks": [[num(p, price_dp), num(q, qty_dp)] for p, q in book.asks],
                "timestamp": self.now_ms(),
            }
        )

    async def _trades(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request.query)
        limit = self._limit(request.query, 500, 1000)
        price_dp, qty_dp = self._dp[symbol]
        rows = [
            {
                "id": None,
                "price": num(t.price, price_dp),
                "qty": num(t.qty, qty_dp),
                "quoteQty": num(t.price * t.qty, 8),
                "time": t.time_ms,
                "isBuyerMaker": t.buyer_maker,
                "isBestMatch": True,
                "tradeType": "ASK" if t.buyer_maker else "BID",
            }
            for t in self.market(symbol).trades_recent(limit)
        ]
        return self.json(rows)

    async def _agg_trades(self, request: web.Request) -> web.Response:
        query = request.query
        symbol = self._symbol(query)
        start, end = self._int(query, "startTime"), self._int(query, "endTime")
        limit = self._limit(query, 500, 1000)
        market = self.market(symbol)
        if start is None and end is None:
            trades = market.trades_recent(limit)
        else:
            trades = market.trades_between(start, end, limit)
        price_dp, qty_dp = self._dp[symbol]
        rows = [
            {
                "a": None,
                "f": None,
                "l": None,
                "p": num(t.price, price_dp),
                "q": num(t.qty, qty_dp),
                "T": t.time_ms,
                "m": t.buyer_maker,
                "M": True,
            }
            for t in trades
        ]
        return self.json(rows)

    async def _book_ticker(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("symbol"):
            symbols = [self._symbol(query)]
        else:
            symbols = sorted(self.markets, key=lambda s: s.exchange_id)
        rows = []
        for symbol in symbols:
            top = self.market(symbol).top()
            price_dp, qty_dp = self._dp[symbol]
            row: dict[str, Any] = {"symbol": symbol.exchange_id}
            if top is not None:
                row.update(
                    bidPrice=num(top.bid, price_dp),
                    bidQty=num(top.bid_qty, qty_dp),
                    askPrice=num(top.ask, price_dp),
                    askQty=num(top.ask_qty, qty_dp),
                )
            rows.append(row)
        return self.json(rows[0] if query.get("symbol") else rows)

    # -- WebSocket ------------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        return await self.serve_ws(request, self._on_message)

    @staticmethod
    def _reply(conn: WsConnection, msg: str, req_id: Any = 0) -> None:
        conn.send(orjson.dumps({"id": req_id, "code": 0, "msg": msg}))

    def _on_message(self, conn: WsConnection, data: str | bytes) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._reply(conn, "Wrong message format.")
            return
        if not isinstance(message, dict):
            self._reply(conn, "Wrong message format.")
            return
        method = str(message.get("method", "")).upper()
        req_id = message.get("id", 0)
        if method == "PING":
            self._reply(conn, "PONG", req_id)
            return
        params = message.get("params")
        if method not in ("SUBSCRIPTION", "UNSUBSCRIPTION"):
            self._reply(conn, f"Unknown method {message.get('method')!r}.", req_id)
            return
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            self._reply(conn, "Wrong message format: params must be a list of channels.", req_id)
            return
        if method == "UNSUBSCRIPTION":
            for channel in params:
                self.hub.unsubscribe(conn, channel)
            self._reply(conn, ",".join(params), req_id)
            return
        bad = [p for p in params if self._channel_symbol(p) is None]
        if bad:
            self._refuse(conn, bad, "Blocked! (unknown channel or symbol)", req_id)
            return
        new = [p for p in dict.fromkeys(params) if p not in conn.streams]
        if len(conn.streams) + len(new) > MAX_CHANNELS:
            self.record_fault("ws_streams", conn, detail=f"over {MAX_CHANNELS} channels")
            self._refuse(conn, params, f"Max {MAX_CHANNELS} subscriptions.", req_id)
            return
        self._reply(conn, ",".join(params), req_id)
        for channel in new:
            self.hub.subscribe(conn, channel)
            self._send_initial(conn, channel)

    def _refuse(self, conn: WsConnection, params: list[str], reason: str, req_id: Any) -> None:
        joined = ",".join(params)
        self._reply(conn, f"Not Subscribed successfully! [{joined}].  Reason： {reason}", req_id)

    def _channel_symbol(self, channel: str) -> Symbol | None:
        """The symbol of a valid spot channel, or None."""
        parts = channel.split("@")
        if len(parts) != 4 or parts[0] != "spot":
            return None
        kind = f"{parts[0]}@{parts[1]}"
        if kind == mexc_proto.KLINE:
            market_id, ok = parts[2], parts[3] in _WS_TF
        elif kind in (mexc_proto.DEALS, mexc_proto.DEPTH, mexc_proto.BOOK_TICKER):
            market_id, ok = parts[3], parts[2] in FREQUENCIES
        else:
            return None
        if not ok or market_id != market_id.upper():
            return None
        symbol = self.symbol_for(market_id)
        kept = () if symbol is None else self.market(symbol).timeframes
        if kind == mexc_proto.KLINE and _WS_TF[parts[3]] not in kept:
            return None  # the market keeps no candles of this interval
        return symbol

    def _send_initial(self, conn: WsConnection, channel: str) -> None:
        symbol = self._channel_symbol(channel)
        assert symbol is not None  # validated before subscribing
        parts = channel.split("@")
        market = self.market(symbol)
        if parts[0] + "@" + parts[1] == mexc_proto.KLINE:
            timeframe = _WS_TF[parts[3]]
            current = market.klines(timeframe, None, None, 1)
            if current:
                frame = self._kline_frame(channel, symbol, timeframe, current[-1])
                conn.send(frame, binary=True, stream=channel)
        elif parts[0] + "@" + parts[1] == mexc_proto.BOOK_TICKER:
            top = market.top()
            if top is not None:
                frame = mexc_proto.book_ticker_frame(
                    channel, symbol.exchange_id, top, self._dp[symbol]
                )
                conn.send(frame, binary=True, stream=channel)

    # -- pushes ---------------------------------------------------------------------------
    def on_event(self, symbol: Symbol, event: FlowEvent) -> None:
        self._flush(event.time_ms)
        market_id = symbol.exchange_id
        if isinstance(event, DepthDiff):
            for frequency in FREQUENCIES:
                channel = f"{mexc_proto.DEPTH}@{frequency}@{market_id}"
                if self.hub.has(channel):
                    frame = mexc_proto.depth_frame(channel, market_id, event, self._dp[symbol])
                    self.hub.publish(channel, lambda _v, f=frame: f, binary=True, kind=DEPTH)
        elif isinstance(event, TradePrint):
            for frequency, window_ms in FREQUENCIES.items():
                channel = f"{mexc_proto.DEALS}@{frequency}@{market_id}"
                if self.hub.has(channel):
                    window = event.time_ms // window_ms
                    pending = self._deals.setdefault(channel, (window, []))
                    pending[1].append(event)
        elif isinstance(event, BookTop):
            for frequency, window_ms in FREQUENCIES.items():
                channel = f"{mexc_proto.BOOK_TICKER}@{frequency}@{market_id}"
                if self.hub.has(channel):
                    self._tops[channel] = (event.time_ms // window_ms, event)

    def _flush(self, now_ms: int | None) -> None:
        """Push the aggregation windows that ended before ``now_ms`` (None: all)."""
        for channel in [c for c, (w, _) in self._deals.items() if _due(c, w, now_ms)]:
            window, trades = self._deals.pop(channel)
            symbol = self._channel_symbol(channel)
            if symbol is None or not self.hub.has(channel):
                continue
            send_ms = (window + 1) * FREQUENCIES[channel.split("@")[2]]
            frame = mexc_proto.deals_frame(
                channel, symbol.exchange_id, send_ms, trades, self._dp[symbol]
            )
            self.hub.publish(channel, lambda _v, f=frame: f, binary=True)
        for channel in [c for c, (w, _) in self._tops.items() if _due(c, w, now_ms)]:
            _, top = self._tops.pop(channel)
            symbol = self._channel_symbol(channel)
            if symbol is None or not self.hub.has(channel):
                continue
            frame = mexc_proto.book_ticker_frame(channel, symbol.exchange_id, top, self._dp[symbol])
            self.hub.publish(channel, lambda _v, f=frame: f, binary=True)

    def on_second(self, now_ms: int) -> None:
        self._flush(now_ms)

    def on_replay_end(self) -> None:
        self._flush(None)

    def on_klines(self, symbol: Symbol, klines: Mapping[Timeframe, list[Kline]]) -> None:
        for timeframe, changed in klines.items():
            name = MEXC_WS_INTERVALS.get(timeframe)
            if name is None:
                continue
            channel = f"{mexc_proto.KLINE}@{symbol.exchange_id}@{name}"
            if not self.hub.has(channel):
                continue
            for kline in changed:
                frame = self._kline_frame(channel, symbol, timeframe, kline)
                self.hub.publish(channel, lambda _v, f=frame: f, binary=True)

    def _kline_frame(
        self, channel: str, symbol: Symbol, timeframe: Timeframe, kline: Kline
    ) -> bytes:
        name = MEXC_WS_INTERVALS[timeframe]
        return mexc_proto.kline_frame(
            channel, symbol.exchange_id, name, kline, timeframe.ms, self.now_ms(), self._dp[symbol]
        )


def _due(channel: str, window: int, now_ms: int | None) -> bool:
    """Whether the aggregation ``window`` of ``channel`` has ended at ``now_ms``."""
    if now_ms is None:
        return True
    return now_ms // FREQUENCIES[channel.split("@")[2]] > window


Site = MexcSite
