"""The Bybit v5 spot site of the local exchange, through raw HTTP/WebSocket and ccxt.pro."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import aiohttp
import ccxt.pro
import orjson
import pytest
from ccxt.base.errors import NetworkError, RateLimitExceeded

from helpers.site_flow import T0, handmade_flow, wait_for
from pivotal.core.timeframes import Timeframe
from pivotal.localexchange.config import ServeConfig, VenueUrls
from pivotal.localexchange.server import LocalExchange

pytestmark = pytest.mark.network
SYMBOL = "BTC/USDT"


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 45))


def bybit_client(urls: VenueUrls) -> Any:
    """ccxt.pro's Bybit pointed at the local site: spot markets only, no currencies call."""
    client = ccxt.pro.bybit(
        {"options": {"fetchMarkets": {"types": ["spot"]}}, "has": {"fetchCurrencies": False}}
    )
    for key in ("spot", "futures", "v2", "public", "private"):
        client.urls["api"][key] = urls.rest
    client.urls["api"]["ws"]["public"]["spot"] = urls.ws + "/v5/public/spot"
    return client


@contextlib.asynccontextmanager
async def serving(**config: Any) -> AsyncIterator[tuple[LocalExchange, VenueUrls]]:
    exchange = LocalExchange(
        [handmade_flow()], ServeConfig(venues=("bybit",), mode="manual", **config)
    )
    await exchange.start()
    try:
        await exchange.advance_to(T0 + 2_000)
        yield exchange, exchange.urls()["bybit"]
    finally:
        await exchange.stop()


async def get(session: aiohttp.ClientSession, url: str, **params: Any) -> tuple[Any, Any]:
    async with session.get(url, params={k: str(v) for k, v in params.items()}) as reply:
        return reply, await reply.json(content_type=None)


def test_rest_answers_in_bybits_envelope() -> None:
    async def scenario() -> None:
        async with serving() as (ex, urls), aiohttp.ClientSession(urls.rest) as http:
            market = ex.market(SYMBOL)
            reply, body = await get(http, "/v5/market/time")
            assert body["retCode"] == 0 and body["retMsg"] == "OK"
            assert body["time"] == ex.now_ms() == T0 + 2_000
            assert body["result"]["timeSecond"] == str((T0 + 2_000) // 1000)
            assert int(reply.headers["X-Bapi-Limit"]) > int(reply.headers["X-Bapi-Limit-Status"])
            assert int(reply.headers["X-Bapi-Limit-Reset-Timestamp"]) > 0

            _, body = await get(http, "/v5/market/instruments-info", category="spot")
            (entry,) = body["result"]["list"]
            assert entry["symbol"] == "BTCUSDT" and entry["status"] == "Trading"
            assert entry["priceFilter"]["tickSize"] == "0.01"
            assert entry["lotSizeFilter"]["basePrecision"] == "0.00001"
            _, body = await get(http, "/v5/market/instruments-info", category="linear")
            assert body["retCode"] == 0 and body["result"]["list"] == []

            # start is floored to the interval; rows newest first
            start = T0 - 3_600_000 + 30_000
            _, body = await get(
                http, "/v5/market/kline", category="spot", symbol="BTCUSDT", interval="1",
                start=start, limit=3,
            )  # fmt: skip
            rows = body["result"]["list"]
            expected = market.klines(Timeframe.M1, T0 - 3_600_000, None, 3)
            assert [int(r[0]) for r in rows] == [k.open_time for k in reversed(expected)]
            assert [float(r[4]) for r in rows] == [k.close for k in reversed(expected)]
            _, body = await get(
                http, "/v5/market/kline", category="spot", symbol="BTCUSDT", interval="1"
            )
            assert len(body["result"]["list"]) == 181  # the 180 history candles + the open one
            assert int(body["result"]["list"][0][0]) == T0  # the open candle first

            _, body = await get(
                http, "/v5/market/orderbook", category="spot", symbol="BTCUSDT", limit=3
            )
            book = market.depth(3)
            assert body["result"]["u"] == book.last_update_id
            assert [[float(p), float(q)] for p, q in body["result"]["b"]] == [
                list(level) for level in book.bids
            ]
            _, body = await get(
                http, "/v5/market/recent-trade", category="spot", symbol="BTCUSDT", limit=2
            )
            ids = [int(t["execId"]) for t in body["result"]["list"]]
            assert ids == [t.trade_id for t in reversed(market.trades_recent(2))]

            for params in (
                {"category": "spot", "symbol": "XRPUSDT", "interval": "1"},
                {"category": "linear", "symbol": "BTCUSDT", "interval": "1"},
                {"category": "spot", "symbol": "BTCUSDT", "interval": "W"},
                {"category": "spot", "symbol": "BTCUSDT", "interval": "1", "limit": 0},
            ):
                reply, body = await get(http, "/v5/market/kline", **params)
                assert reply.status == 200 and body["retCode"] == 10001, params

    run(scenario())


def test_ccxt_loads_markets_and_fetches() -> None:
    async def scenario() -> None:
        async with serving() as (ex, urls):
            client = bybit_client(urls)
            try:
                markets = await client.load_markets()
                assert list(markets) == [SYMBOL] and markets[SYMBOL]["spot"]
                market = ex.market(SYMBOL)
                since = T0 - 3_600_000
                ohlcv = await client.fetch_ohlcv(SYMBOL, "1m", since=since, limit=5)
                expected = market.klines(Timeframe.M1, since, None, 5)
                assert ohlcv == [
                    [k.open_time, k.open, k.high, k.low, k.close, k.volume] for k in expected
                ]
                book = await client.fetch_order_book(SYMBOL, 50)
                depth = market.depth(50)
                assert book["bids"] == [list(x) for x in depth.bids]
                assert book["asks"] == [list(x) for x in depth.asks]
                trades = await client.fetch_trades(SYMBOL, limit=5)
                assert [t["id"] for t in trades] == [
                    str(t.trade_id) for t in market.trades_recent(5)
                ]
                ticker = await client.fetch_ticker(SYMBOL)
                top = market.top()
                assert top is not None
                assert ticker["bid"] == top.bid and ticker["ask"] == top.ask
                assert ticker["last"] == market.trades_recent(1)[0].price
            finally:
                await client.close()

    run(scenario())


def test_ccxt_watches_trades_book_candles_and_ticker() -> None:
    async def scenario() -> None:
        async with serving() as (ex, urls):
            site = ex.sites["bybit"]
            client = bybit_client(urls)
            market = ex.market(SYMBOL)
            try:
                # trades: every trade after the subscription, in order
                first_id = market.trades_recent(1)[0].trade_id + 1
                pending = asyncio.ensure_future(client.watch_trades(SYMBOL))
                await wait_for(lambda: site.hub.has("publicTrade.BTCUSDT"))
                await ex.advance_to(T0 + 5_000)
                last_id = market.trades_recent(1)[0].trade_id
                await pending
                # ccxt resolves a watch on the next message only: read what arrived from its cache
                await wait_for(lambda: client.trades[SYMBOL][-1]["id"] == str(last_id))
                seen = [int(t["id"]) for t in client.trades[SYMBOL]]
                assert seen == list(range(first_id, last_id + 1))

                # order book: snapshot on subscribe, then deltas; equal to the market's top 50
                book = await client.watch_order_book(SYMBOL)
                assert book["bids"][:50] == [list(x) for x in market.depth(50).bids]
                for target in (T0 + 5_500, T0 + 7_300):
                    await ex.advance_to(target)
                    stamp = (target - 5) // 100 * 100 + 5  # the time of the last diff
                    await wait_for(lambda s=stamp: client.orderbooks[SYMBOL]["timestamp"] == s)
                    depth = market.depth(50)
                    local = client.orderbooks[SYMBOL]
                    assert local["bids"][:50] == [list(x) for x in depth.bids]
                    assert local["asks"][:50] == [list(x) for x in depth.asks]

                # candles: the open one on subscribe, then the closed one at the minute's end
                candles = await client.watch_ohlcv(SYMBOL, "1m")
                assert candles[-1][0] == T0
                pending = asyncio.ensure_future(client.watch_ohlcv(SYMBOL, "1m"))
                await ex.advance_to(T0 + 60_100)
                await pending  # an update of the open candle, or already the closed one
                closed = market.klines(Timeframe.M1, T0, T0, 1)[0]
                assert closed.closed
                row = [T0, closed.open, closed.high, closed.low, closed.close]

                def stored() -> list[Any]:
                    return next(r for r in client.ohlcvs[SYMBOL]["1m"] if r[0] == T0)

                await wait_for(lambda: stored()[:5] == row)
                assert stored()[5] == pytest.approx(closed.volume)

                ticker = await client.watch_ticker(SYMBOL)
                assert ticker["last"] == market.trades_recent(1)[0].price
            finally:
                await client.close()

    run(scenario())


async def ws_messages(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    return [orjson.loads((await ws.receive(timeout=5)).data) for _ in range(count)]


def test_websocket_protocol_and_book_deltas() -> None:
    async def scenario() -> None:
        async with serving() as (ex, urls), aiohttp.ClientSession() as http:
            ws = await http.ws_connect(urls.ws + "/v5/public/spot")
            await ws.send_json({"op": "ping", "req_id": "7"})
            (pong,) = await ws_messages(ws, 1)
            assert pong["success"] and pong["ret_msg"] == "pong" and pong["req_id"] == "7"
            await ws.send_json({"op": "subscribe", "req_id": "1", "args": ["orderbook.7.BTCUSDT"]})
            (refused,) = await ws_messages(ws, 1)
            assert not refused["success"] and "orderbook.7.BTCUSDT" in refused["ret_msg"]
            await ws.send_json({"op": "subscribe", "args": ["publicTrade.BTCUSDT"] * 11})
            assert not (await ws_messages(ws, 1))[0]["success"]

            await ws.send_json({"op": "subscribe", "req_id": "2", "args": ["orderbook.50.BTCUSDT"]})
            ack, snapshot = await ws_messages(ws, 2)
            assert ack == {
                "success": True, "ret_msg": "subscribe", "conn_id": ack["conn_id"],
                "req_id": "2", "op": "subscribe",
            }  # fmt: skip
            assert snapshot["type"] == "snapshot" and snapshot["topic"] == "orderbook.50.BTCUSDT"
            bids = {float(p): float(q) for p, q in snapshot["data"]["b"]}
            asks = {float(p): float(q) for p, q in snapshot["data"]["a"]}
            assert len(bids) == len(asks) == 50
            u = snapshot["data"]["u"]
            await ex.advance_to(T0 + 3_000)  # ten diffs, each changes the top levels
            for delta in await ws_messages(ws, 10):
                assert delta["type"] == "delta" and delta["data"]["u"] == u + 1
                u = delta["data"]["u"]
                for side, levels in ((bids, delta["data"]["b"]), (asks, delta["data"]["a"])):
                    for price, qty in levels:
                        if float(qty) == 0:
                            del side[float(price)]
                        else:
                            side[float(price)] = float(qty)
            depth = ex.market(SYMBOL).depth(50)
            assert delta["data"]["seq"] == depth.last_update_id
            assert sorted(bids.items(), reverse=True) == list(depth.bids)
            assert sorted(asks.items()) == list(depth.asks)

            await ws.send_json({"op": "subscribe", "req_id": "3", "args": ["orderbook.50.BTCUSDT"]})
            assert "already subscribed" in (await ws_messages(ws, 1))[0]["ret_msg"]
            await ws.send_json(
                {"op": "unsubscribe", "req_id": "4", "args": ["orderbook.50.BTCUSDT"]}
            )
            (ack,) = await ws_messages(ws, 1)
            assert ack["success"] and ack["op"] == "unsubscribe"
            await ex.advance_to(T0 + 4_000)
            with pytest.raises(asyncio.TimeoutError):
                await ws.receive(timeout=0.2)
            await ws.close()

    run(scenario())


def test_rate_limits_bans_and_drops_reach_ccxt() -> None:
    async def scenario() -> None:
        async with serving() as (ex, urls):
            client = bybit_client(urls)
            site = ex.sites["bybit"]
            try:
                await client.load_markets()
                await ex.inject("rate_limit", venue="bybit", count=1, retry_after_s=3)
                with pytest.raises(RateLimitExceeded, match="10006"):
                    await client.fetch_order_book(SYMBOL)
                assert client.last_response_headers["Retry-After"] == "3"
                await client.fetch_order_book(SYMBOL)  # the next one is served
                await ex.inject("ban", venue="bybit", seconds=30)
                with pytest.raises(RateLimitExceeded, match="403"):
                    await client.fetch_order_book(SYMBOL)
                site.limiter.lift()
                assert ex.fault_log.counts(venue="bybit") == {"ban": 1, "rate_limit": 1}

                pending = asyncio.ensure_future(client.watch_trades(SYMBOL))
                await wait_for(lambda: site.hub.has("publicTrade.BTCUSDT"))
                assert await ex.inject("drop", venue="bybit", every=True) == 1
                with pytest.raises(NetworkError):
                    await pending
                await wait_for(lambda: not site.hub.has("publicTrade.BTCUSDT"))
                pending = asyncio.ensure_future(client.watch_trades(SYMBOL))  # redials
                await wait_for(lambda: site.hub.has("publicTrade.BTCUSDT"))
                await ex.advance_to(T0 + 3_000)
                assert (await pending)[-1]["timestamp"] <= T0 + 3_000
                assert ex.fault_log.count("drop", venue="bybit") == 1
            finally:
                await client.close()

    run(scenario())
