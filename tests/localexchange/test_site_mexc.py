"""The MEXC spot site of the local exchange (REST v3, protobuf WebSocket) and the same
market seen through every venue (failover)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import aiohttp
import ccxt.pro
import orjson
import pytest
from ccxt.base.errors import NetworkError, RateLimitExceeded
from ccxt.protobuf.mexc import PushDataV3ApiWrapper_pb2

from helpers.site_flow import T0, handmade_flow, wait_for
from pivotal.core.timeframes import Timeframe
from pivotal.localexchange.config import ServeConfig, VenueUrls
from pivotal.localexchange.server import LocalExchange

pytestmark = pytest.mark.network
SYMBOL = "BTC/USDT"
DEPTH_CH = "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT"
DEALS_CH = "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT"


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 45))


def mexc_client(urls: VenueUrls) -> Any:
    """ccxt.pro's MEXC pointed at the local site (its load_markets also asks for swaps).

    ccxt's own throttle is off: after the swap listing (cost 100) it would hold the next
    request for about 5 s, which only slows the tests down.
    """
    client = ccxt.pro.mexc({"has": {"fetchCurrencies": False}, "enableRateLimit": False})
    client.urls["api"]["spot"]["public"] = urls.rest
    client.urls["api"]["spot"]["private"] = urls.rest
    client.urls["api"]["contract"]["public"] = urls.rest + "/api/v1/contract"
    client.urls["api"]["ws"]["spot"] = urls.ws + "/ws"
    return client


@contextlib.asynccontextmanager
async def serving(
    venues: tuple[str, ...] = ("mexc",), **config: Any
) -> AsyncIterator[LocalExchange]:
    flow = handmade_flow(history_minutes=600)
    exchange = LocalExchange([flow], ServeConfig(venues=venues, mode="manual", **config))
    await exchange.start()
    try:
        await exchange.advance_to(T0 + 2_000)
        yield exchange
    finally:
        await exchange.stop()


async def get(session: aiohttp.ClientSession, url: str, **params: Any) -> tuple[int, Any]:
    async with session.get(url, params={k: str(v) for k, v in params.items()}) as reply:
        return reply.status, await reply.json(content_type=None)


def decode(frame: bytes) -> Any:
    message = PushDataV3ApiWrapper_pb2.PushDataV3ApiWrapper()
    message.ParseFromString(frame)
    return message


def test_rest_answers_in_mexcs_format() -> None:
    async def scenario() -> None:
        async with serving() as ex, aiohttp.ClientSession(ex.urls()["mexc"].rest) as http:
            market = ex.market(SYMBOL)
            assert await get(http, "/api/v3/ping") == (200, {})
            assert await get(http, "/api/v3/time") == (200, {"serverTime": T0 + 2_000})
            status, info = await get(http, "/api/v3/exchangeInfo")
            (entry,) = info["symbols"]
            assert entry["symbol"] == "BTCUSDT" and entry["status"] == "1"
            assert (entry["quoteAssetPrecision"], entry["baseAssetPrecision"]) == ("2", "5")
            status, body = await get(http, "/api/v3/exchangeInfo", symbol="XRPUSDT")
            assert (status, body["code"]) == (400, -1121)

            end = T0 - 3_600_000
            status, rows = await get(
                http, "/api/v3/klines", symbol="BTCUSDT", interval="1m", endTime=end, limit=3
            )
            expected = market.klines(Timeframe.M1, None, end - 1, 3)
            assert [r[0] for r in rows] == [k.open_time for k in expected]
            assert rows[-1][0] == end - 60_000  # endTime is exclusive
            assert all(len(r) == 8 and r[6] == r[0] + 60_000 for r in rows)
            assert [float(r[4]) for r in rows] == [k.close for k in expected]
            status, rows = await get(
                http, "/api/v3/klines", symbol="BTCUSDT", interval="60m", startTime=T0 - 7_200_000
            )
            assert [r[0] for r in rows] == [T0 - 7_200_000, T0 - 3_600_000, T0]
            status, rows = await get(
                http, "/api/v3/klines", symbol="BTCUSDT", interval="1m", limit=1000
            )
            assert len(rows) == 500 and rows[-1][0] == T0  # clamped to 500, newest last
            status, body = await get(http, "/api/v3/klines", symbol="BTCUSDT", interval="1W")
            assert (status, body["code"]) == (400, -1120)

            status, book = await get(http, "/api/v3/depth", symbol="BTCUSDT", limit=5)
            depth = market.depth(5)
            assert book["lastUpdateId"] == depth.last_update_id
            assert [[float(p), float(q)] for p, q in book["asks"]] == [list(x) for x in depth.asks]
            status, trades = await get(http, "/api/v3/trades", symbol="BTCUSDT", limit=3)
            assert [t["time"] for t in trades] == [t.time_ms for t in market.trades_recent(3)]
            assert all(t["id"] is None for t in trades)
            status, aggs = await get(
                http, "/api/v3/aggTrades", symbol="BTCUSDT", startTime=T0, endTime=T0 + 1_000
            )
            assert [a["T"] for a in aggs] == [
                t.time_ms for t in market.trades_between(T0, T0 + 1_000, 500)
            ]
            status, body = await get(http, "/api/v1/contract/detail")
            assert body == {"success": True, "code": 0, "data": []}

    run(scenario())


def test_ccxt_loads_markets_and_fetches() -> None:
    async def scenario() -> None:
        async with serving() as ex:
            client = mexc_client(ex.urls()["mexc"])
            market = ex.market(SYMBOL)
            try:
                markets = await client.load_markets()
                assert list(markets) == [SYMBOL] and markets[SYMBOL]["precision"]["price"] == 0.01
                since = T0 - 3_600_000
                ohlcv = await client.fetch_ohlcv(SYMBOL, "1m", since=since, limit=5)
                expected = market.klines(Timeframe.M1, since, None, 5)
                assert ohlcv == [
                    [k.open_time, k.open, k.high, k.low, k.close, k.volume] for k in expected
                ]
                latest = await client.fetch_ohlcv(SYMBOL, "1m", limit=2)
                assert [row[0] for row in latest] == [T0 - 60_000, T0]
                book = await client.fetch_order_book(SYMBOL, 20)
                assert book["nonce"] == market.last_update_id
                assert book["bids"] == [list(x) for x in market.depth(20).bids]
                trades = await client.fetch_trades(SYMBOL, limit=4)
                assert [(t["timestamp"], t["price"]) for t in trades] == [
                    (t.time_ms, t.price) for t in market.trades_recent(4)
                ]
            finally:
                await client.close()

    run(scenario())


def test_ccxt_watches_trades_book_candles_and_ticker() -> None:
    async def scenario() -> None:
        async with serving() as ex:
            site = ex.sites["mexc"]
            client = mexc_client(ex.urls()["mexc"])
            market = ex.market(SYMBOL)
            try:
                pending = asyncio.ensure_future(client.watch_trades(SYMBOL))
                await wait_for(lambda: site.hub.has(DEALS_CH))
                await ex.advance_to(T0 + 5_000)
                await pending
                expected = [
                    (t.time_ms, t.price, "sell" if t.buyer_maker else "buy")
                    for t in market.trades_between(T0 + 2_001, T0 + 5_000, 1000)
                ]
                # ccxt resolves a watch on the next message only: read what arrived from its cache
                await wait_for(lambda: len(client.trades[SYMBOL]) == len(expected))
                seen = [(t["timestamp"], t["price"], t["side"]) for t in client.trades[SYMBOL]]
                assert seen == expected

                # ccxt caches 25 diffs, then takes the REST snapshot and applies the newer diffs
                pending = asyncio.ensure_future(client.watch_order_book(SYMBOL))
                await wait_for(lambda: site.hub.has(DEPTH_CH))
                for step in range(1, 41):
                    await ex.advance_to(T0 + 5_000 + step * 100)
                    await asyncio.sleep(0.002)
                await asyncio.wait_for(pending, 5)
                await ex.advance_to(T0 + 9_500)
                # the last diff was sent at T0 + 9_405; ccxt's nonce is its fromVersion
                await wait_for(lambda: client.orderbooks[SYMBOL]["timestamp"] == T0 + 9_405)
                assert client.orderbooks[SYMBOL]["nonce"] <= market.last_update_id
                local, depth = client.orderbooks[SYMBOL], market.depth(50)
                assert local["bids"][:50] == [list(x) for x in depth.bids]
                assert local["asks"][:50] == [list(x) for x in depth.asks]

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
                top = market.top()
                assert top is not None and (ticker["bid"], ticker["ask"]) == (top.bid, top.ask)
            finally:
                await client.close()

    run(scenario())


def test_websocket_protocol_frames_and_limits() -> None:
    async def scenario() -> None:
        async with serving() as ex, aiohttp.ClientSession() as http:
            ws = await http.ws_connect(ex.urls()["mexc"].ws + "/ws")
            await ws.send_json({"method": "PING"})
            assert orjson.loads((await ws.receive(timeout=5)).data) == {
                "id": 0,
                "code": 0,
                "msg": "PONG",
            }
            await ws.send_json(
                {"method": "SUBSCRIPTION", "params": ["spot@public.deals.v3.api@BTCUSDT"]}
            )
            refused = orjson.loads((await ws.receive(timeout=5)).data)
            assert refused["msg"].startswith("Not Subscribed successfully!")
            await ws.send_json({"method": "SUBSCRIPTION", "params": [DEPTH_CH]})
            assert orjson.loads((await ws.receive(timeout=5)).data)["msg"] == DEPTH_CH
            await ex.advance_to(T0 + 3_000)
            frames = [decode((await ws.receive(timeout=5)).data) for _ in range(10)]
            assert all(f.channel == DEPTH_CH and f.symbol == "BTCUSDT" for f in frames)
            versions = [
                (int(f.publicAggreDepths.fromVersion), int(f.publicAggreDepths.toVersion))
                for f in frames
            ]
            assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(versions))
            assert versions[-1][1] == ex.market(SYMBOL).last_update_id

            # a gap fault skips one diff on this connection: the versions jump
            assert await ex.inject("gap", venue="mexc", every=True) == 1
            await ex.advance_to(T0 + 3_200)
            frame = decode((await ws.receive(timeout=5)).data)
            assert int(frame.publicAggreDepths.fromVersion) > versions[-1][1] + 1
            assert ex.fault_log.count("gap", venue="mexc") == 1

            await ws.close()

    run(scenario())


def all_channels(market_id: str) -> list[str]:
    """The 14 spot channels of one symbol."""
    names = [f"spot@public.kline.v3.api.pb@{market_id}@{i}" for i in ("Min1", "Min5", "Min15")]
    names += [f"spot@public.kline.v3.api.pb@{market_id}@{i}" for i in ("Min30", "Min60")]
    names += [f"spot@public.kline.v3.api.pb@{market_id}@{i}" for i in ("Hour4", "Hour8", "Day1")]
    kinds = ("deals", "depth", "bookTicker")
    names += [
        f"spot@public.aggre.{k}.v3.api.pb@{f}@{market_id}" for k in kinds for f in ("100ms", "10ms")
    ]
    return names


def test_at_most_30_channels_per_connection() -> None:
    async def scenario() -> None:
        flows = [
            handmade_flow(seed=n, symbol=f"{b}/USDT") for n, b in enumerate(("BTC", "ETH", "SOL"))
        ]
        ex = LocalExchange(flows, ServeConfig(venues=("mexc",), mode="manual"))
        await ex.start()
        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(ex.urls()["mexc"].ws + "/ws")
                first = all_channels("BTCUSDT") + all_channels("ETHUSDT")  # 28
                await ws.send_json({"method": "SUBSCRIPTION", "params": first})
                assert orjson.loads((await ws.receive(timeout=5)).data)["msg"] == ",".join(first)
                more = all_channels("SOLUSDT")[:3]
                await ws.send_json({"method": "SUBSCRIPTION", "params": more, "id": 9})
                while True:  # skip the initial kline frames of the first request
                    reply = await ws.receive(timeout=5)
                    if reply.type == aiohttp.WSMsgType.TEXT:
                        break
                refused = orjson.loads(reply.data)
                assert refused["id"] == 9 and refused["msg"].startswith("Not Subscribed")
                assert ex.fault_log.count("ws_streams", venue="mexc") == 1
                await ws.send_json({"method": "SUBSCRIPTION", "params": more[:2]})
                while True:
                    reply = await ws.receive(timeout=5)
                    if reply.type == aiohttp.WSMsgType.TEXT:
                        break
                assert orjson.loads(reply.data)["msg"] == ",".join(more[:2])
                await ws.close()
        finally:
            await ex.stop()

    run(scenario())


def test_rate_limits_and_drops_reach_ccxt() -> None:
    async def scenario() -> None:
        async with serving() as ex:
            client = mexc_client(ex.urls()["mexc"])
            site = ex.sites["mexc"]
            try:
                await client.load_markets()
                await ex.inject("rate_limit", venue="mexc", count=1, retry_after_s=4)
                with pytest.raises(RateLimitExceeded):
                    await client.fetch_order_book(SYMBOL)
                assert client.last_http_response is not None
                assert client.last_response_headers["Retry-After"] == "4"
                await ex.inject("ban", venue="mexc", seconds=30)
                with pytest.raises(RateLimitExceeded, match="banned"):
                    await client.fetch_order_book(SYMBOL)
                site.limiter.lift()
                await client.fetch_order_book(SYMBOL)

                pending = asyncio.ensure_future(client.watch_trades(SYMBOL))
                await wait_for(lambda: site.hub.has(DEALS_CH))
                await ex.inject("drop", venue="mexc", every=True)
                with pytest.raises(NetworkError):
                    await pending
                assert ex.fault_log.counts(venue="mexc") == {"ban": 1, "drop": 1, "rate_limit": 1}
            finally:
                await client.close()

    run(scenario())


def test_every_venue_serves_the_same_market() -> None:
    """A failover from one venue to another sees the same book, trades and candles."""

    async def scenario() -> None:
        async with serving(venues=("binance", "bybit", "mexc")) as ex:
            urls = ex.urls()
            binance = ccxt.pro.binance(
                {"options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False}}
            )
            for key in ("public", "private", "v1", "v3"):
                binance.urls["api"][key] = urls["binance"].rest + "/api/v3"
            bybit = ccxt.pro.bybit(
                {
                    "options": {"fetchMarkets": {"types": ["spot"]}},
                    "has": {"fetchCurrencies": False},
                }
            )
            for key in ("spot", "futures", "v2", "public", "private"):
                bybit.urls["api"][key] = urls["bybit"].rest
            clients = [binance, bybit, mexc_client(urls["mexc"])]
            try:
                await ex.advance_to(T0 + 12_345)
                books = [await c.fetch_order_book(SYMBOL, 20) for c in clients]
                candles = [
                    await c.fetch_ohlcv(SYMBOL, "1m", since=T0 - 600_000, limit=11) for c in clients
                ]
                trades = [await c.fetch_trades(SYMBOL, limit=5) for c in clients]
                assert books[0]["bids"] == books[1]["bids"] == books[2]["bids"]
                assert books[0]["asks"] == books[1]["asks"] == books[2]["asks"]
                assert candles[0][-1][0] == T0
                for other in candles[1:]:  # volumes: Binance writes the float exactly
                    assert [row[:5] for row in other] == [row[:5] for row in candles[0]]
                    assert [row[5] for row in other] == pytest.approx([r[5] for r in candles[0]])
                prints = [
                    [(t["timestamp"], t["price"], t["amount"], t["side"]) for t in ts]
                    for ts in trades
                ]
                assert prints[0] == prints[1] == prints[2]
            finally:
                for client in clients:
                    await client.close()

    run(scenario())
