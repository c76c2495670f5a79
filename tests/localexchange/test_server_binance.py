"""The local exchange's Binance site against an unchanged ccxt.pro client (127.0.0.1 only).

Most tests run the replay in manual mode (``advance_to``) so what the client sees is
deterministic; one paces a short flow at a high speed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request

import aiohttp
import ccxt
import pytest

from helpers.binance_kit import T0, binance_client, run, small_flow, until
from pivotal.core.errors import ConfigError
from pivotal.core.timeframes import Timeframe
from pivotal.localexchange.config import ServeConfig
from pivotal.localexchange.recorded import recorded_flow
from pivotal.localexchange.server import LocalExchange, LocalExchangeThread
from pivotal.localexchange.wsconn import StreamHub
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

pytestmark = pytest.mark.network

MANUAL = ServeConfig(mode="manual")


def _exchange(config: ServeConfig = MANUAL, **flow_args: object) -> LocalExchange:
    flows = [small_flow(**flow_args), small_flow("ETH/USDT", seed=2, mid=50.0)]  # type: ignore[arg-type]
    return LocalExchange(flows, config)


def test_rest_endpoints_answer_ccxt_like_binance() -> None:
    async def main() -> None:
        ex = _exchange()
        await ex.start()
        await ex.advance_to(T0 + 20_000)
        client = binance_client(ex.urls()["binance"])
        try:
            markets = await client.load_markets()
            assert sorted(markets) == ["BTC/USDT", "ETH/USDT"]
            assert markets["BTC/USDT"]["precision"]["price"] == 0.01
            assert await client.fetch_time() == ex.now_ms() == T0 + 20_000
            market = ex.market("BTC/USDT")

            rows = await client.fetch_ohlcv("BTC/USDT", "1s", limit=5)
            want = market.klines(Timeframe.S1, None, None, 5)
            assert [r[0] for r in rows] == [k.open_time for k in want]
            assert [r[4] for r in rows] == [k.close for k in want]
            since = await client.fetch_ohlcv("BTC/USDT", "1s", since=T0 + 3000, limit=2)
            assert [r[0] for r in since] == [T0 + 3000, T0 + 4000]

            book = await client.fetch_order_book("BTC/USDT", 10)
            snap = market.depth(10)
            assert book["nonce"] == snap.last_update_id
            assert [tuple(level) for level in book["bids"]] == list(snap.bids)
            assert [tuple(level) for level in book["asks"]] == list(snap.asks)

            recent = await client.fetch_trades("BTC/USDT", limit=3)  # aggTrades
            assert [int(t["id"]) for t in recent] == [t.trade_id for t in market.trades_recent(3)]
            by_id = await client.fetch_trades(
                "BTC/USDT",
                limit=4,
                params={"fetchTradesMethod": "publicGetHistoricalTrades", "fromId": 5},
            )
            assert [int(t["id"]) for t in by_id] == [5, 6, 7, 8]
            assert by_id[0]["price"] == market.trades_from(5, 1)[0].price

            ticker = await client.fetch_ticker("BTC/USDT")
            top = market.top()
            assert top is not None and ticker["bid"] == top.bid and ticker["ask"] == top.ask
            assert ticker["last"] == market.trades_recent(1)[0].price
            bids_asks = await client.fetch_bids_asks(["BTC/USDT"])
            assert bids_asks["BTC/USDT"]["bid"] == top.bid
        finally:
            await client.close()
            await ex.stop()

    run(main())


def test_rest_errors_and_weights_in_binance_format() -> None:
    async def main() -> None:
        ex = _exchange()
        await ex.start()
        rest = ex.urls()["binance"].rest
        try:
            async with aiohttp.ClientSession() as http:

                async def get(path: str) -> tuple[int, object, dict[str, str]]:
                    async with http.get(rest + path) as reply:
                        return reply.status, await reply.json(), dict(reply.headers)

                status, body, _ = await get("/api/v3/depth?symbol=XRPUSDT")
                assert (status, body) == (400, {"code": -1121, "msg": "Invalid symbol."})
                status, body, _ = await get("/api/v3/klines?symbol=BTCUSDT")
                assert status == 400 and body["code"] == -1102  # type: ignore[index]
                status, body, _ = await get("/api/v3/klines?symbol=BTCUSDT&interval=1w")
                assert body == {"code": -1120, "msg": "Invalid interval."}
                status, body, _ = await get("/api/v3/trades?symbol=BTCUSDT&limit=x")
                assert body["code"] == -1100  # type: ignore[index]
                status, body, _ = await get(
                    f"/api/v3/aggTrades?symbol=BTCUSDT&startTime={T0}&endTime={T0 + 3_600_001}"
                )
                assert body["code"] == -1127  # type: ignore[index]
                _, _, h1 = await get("/api/v3/depth?symbol=BTCUSDT&limit=1000")  # weight 50
                _, _, h2 = await get("/api/v3/ping")  # weight 1
                assert int(h2["X-MBX-USED-WEIGHT-1M"]) - int(h1["X-MBX-USED-WEIGHT-1M"]) == 1
                status, body, _ = await get("/api/v3/exchangeInfo?symbol=ETHUSDT")
                assert [s["symbol"] for s in body["symbols"]] == ["ETHUSDT"]  # type: ignore[index]
                status, body, _ = await get("/api/v3/time")
                assert body == {"serverTime": T0}
        finally:
            await ex.stop()

    run(main())


def test_ccxt_watchers_follow_the_replay_and_the_book_stays_in_sync() -> None:
    async def main() -> None:
        ex = _exchange()
        await ex.start()
        await ex.advance_to(T0 + 5_000)
        client = binance_client(ex.urls()["binance"])
        try:
            await client.load_markets()
            tasks = {
                "book": asyncio.ensure_future(client.watch_order_book("BTC/USDT")),
                "trades": asyncio.ensure_future(client.watch_trades("BTC/USDT")),
                "ohlcv": asyncio.ensure_future(client.watch_ohlcv("BTC/USDT", "1s")),
                "bidask": asyncio.ensure_future(client.watch_bids_asks(["BTC/USDT"])),
                "ticker": asyncio.ensure_future(client.watch_ticker("ETH/USDT")),
            }
            # let every subscription reach the server before the market moves
            await until(lambda: len(ex.sites["binance"].hub.streams()) == 5)
            t = T0 + 5_000
            while not all(task.done() for task in tasks.values()) and t < T0 + 15_000:
                t += 100
                await ex.advance_to(t)
                await asyncio.sleep(0.005)
            results = {name: task.result() for name, task in tasks.items()}
            market = ex.market("BTC/USDT")
            assert results["trades"][0]["timestamp"] > T0 + 5_000
            assert results["ohlcv"][-1][0] % 1000 == 0
            assert results["bidask"]["BTC/USDT"]["bid"] > 0
            assert results["ticker"]["symbol"] == "ETH/USDT"
            # keep the book going for 3 more market seconds: every diff must chain (U = u + 1)
            for _ in range(30):
                t += 100
                await ex.advance_to(t)
                book = await asyncio.wait_for(client.watch_order_book("BTC/USDT"), 5)
            snap = market.depth(20)
            assert book["nonce"] == snap.last_update_id
            assert [tuple(x) for x in book["bids"][:20]] == list(snap.bids)
            assert [tuple(x) for x in book["asks"][:20]] == list(snap.asks)
        finally:
            await client.close()
            await ex.stop()
        assert ex.replayer.sink_errors == 0
        assert ex.fault_log.counts() == {}

    run(main())


def test_raw_socket_protocol_subscribe_list_unsubscribe_and_envelopes() -> None:
    async def main() -> None:
        ex = _exchange()
        await ex.start()
        ws_url = ex.urls()["binance"].ws
        try:
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(ws_url + "/stream") as ws:
                    await ws.send_json(
                        {
                            "method": "SUBSCRIBE",
                            "params": ["btcusdt@trade", "btcusdt@depth"],
                            "id": 1,
                        }
                    )
                    assert await ws.receive_json() == {"result": None, "id": 1}
                    await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 2})
                    assert await ws.receive_json() == {
                        "result": ["btcusdt@depth", "btcusdt@trade"],
                        "id": 2,
                    }
                    await ws.send_json({"method": "SUBSCRIBE", "params": ["nonsense"], "id": 3})
                    reply = await ws.receive_json()
                    assert reply["id"] == 3 and reply["error"]["code"] == 2
                    await ex.advance_to(T0 + 1_500)
                    first = await ws.receive_json()
                    assert first["stream"] == "btcusdt@trade" and first["data"]["e"] == "trade"
                    kinds = {first["stream"]}
                    while "btcusdt@depth" not in kinds:
                        kinds.add((await ws.receive_json(timeout=5))["stream"])
                    await ws.send_json(
                        {"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 4}
                    )
                    while (msg := await ws.receive_json(timeout=5)).get("id") != 4:
                        pass
                    await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 5})
                    assert (await ws.receive_json())["result"] == ["btcusdt@depth"]
                async with http.ws_connect(ws_url + "/ws/btcusdt@bookTicker") as raw:
                    await until(lambda: ex.sites["binance"].hub.has("btcusdt@bookTicker"))
                    await ex.advance_to(T0 + 2_000)
                    msg = await raw.receive_json(timeout=5)
                    assert set(msg) == {"u", "s", "b", "B", "a", "A"} and msg["s"] == "BTCUSDT"
                async with http.ws_connect(ws_url + "/ws") as noisy:
                    for i in range(6):  # Binance allows 5 incoming messages a second
                        await noisy.send_json({"method": "LIST_SUBSCRIPTIONS", "id": i})
                    closed = None
                    while closed is None:
                        msg = await noisy.receive(timeout=5)
                        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                            closed = noisy.close_code
                    assert closed == 1008
        finally:
            await ex.stop()
        assert ex.fault_log.counts() == {"ws_rate": 1}

    run(main())


def test_fan_out_renders_each_message_once_per_variant() -> None:
    class FakeConn:
        def __init__(self, conn_id: int, variant: str) -> None:
            self.conn_id, self.variant, self.streams = conn_id, variant, set()
            self.got: list[bytes] = []

        def send(self, data: bytes, **_: object) -> bool:
            self.got.append(data)
            return True

    hub = StreamHub()
    conns = [FakeConn(i, "raw" if i % 2 else "combined") for i in range(10)]
    for conn in conns:
        hub.subscribe(conn, "s")  # type: ignore[arg-type]
    calls: list[str] = []

    def render(variant: str) -> bytes:
        calls.append(variant)
        return variant.encode()

    assert hub.publish("s", render) == 10
    assert sorted(calls) == ["combined", "raw"]
    raw = [c.got[0] for c in conns if c.variant == "raw"]
    assert all(item is raw[0] for item in raw)  # the very same bytes object


def test_paced_replay_runs_at_speed_and_keeps_serving_after_the_end() -> None:
    async def main() -> None:
        flow = small_flow(seconds=20)
        ex = LocalExchange([flow], ServeConfig(speed=400.0))  # 20 market s in ~50 ms wall
        await ex.start()
        try:
            seen = [ex.now_ms()]
            await until(lambda: seen.append(ex.now_ms()) or ex.finished, timeout_s=10)
            assert seen == sorted(seen)  # market time never goes back
            assert ex.replayer.events_applied == sum(1 for _ in flow.events())
            client = binance_client(ex.urls()["binance"])
            try:
                assert await client.fetch_time() >= flow.end_ms
                closed = await client.fetch_ohlcv("BTC/USDT", "1s", since=T0, limit=25)
                assert [r[0] for r in closed[:20]] == [T0 + 1000 * i for i in range(20)]
            finally:
                await client.close()
        finally:
            await ex.stop()

    run(main())


def test_pause_refuses_connections_and_resume_serves_again() -> None:
    async def main() -> None:
        ex = _exchange()
        await ex.start()
        await ex.advance_to(T0 + 2_000)
        client = binance_client(ex.urls()["binance"], timeout=2000)
        try:
            await client.load_markets()
            watch = asyncio.ensure_future(client.watch_trades("BTC/USDT"))
            await until(lambda: ex.sites["binance"].connections() != [])
            await ex.pause("binance")
            with pytest.raises(ccxt.NetworkError):
                await asyncio.wait_for(watch, 5)
            with pytest.raises(ccxt.NetworkError):
                await client.fetch_time()
            await ex.resume("binance")
            assert await client.fetch_time() == T0 + 2_000
            assert ex.urls()["binance"].port == ex.sites["binance"].port
        finally:
            await client.close()
            await ex.stop()
        assert ex.fault_log.counts() == {"pause": 1, "resume": 1}

    run(main())


def test_thread_runs_the_exchange_for_sync_callers() -> None:
    with LocalExchangeThread([small_flow()], MANUAL) as server:
        rest = server.urls["binance"].rest
        server.advance_to(T0 + 3_000)
        with urllib.request.urlopen(rest + "/api/v3/time", timeout=5) as reply:
            assert json.loads(reply.read()) == {"serverTime": T0 + 3_000}
        with urllib.request.urlopen(rest + "/_pivotal/faults", timeout=5) as reply:
            assert json.loads(reply.read())["counts"] == {}
        assert server.running
    assert not server.running


def test_bad_setups_are_refused_with_clear_errors() -> None:
    with pytest.raises(ConfigError, match="at least one flow"):
        LocalExchange([], MANUAL)
    with pytest.raises(ConfigError, match="same symbol"):
        LocalExchange([small_flow(), small_flow(seed=3)], MANUAL)
    with pytest.raises(ValueError, match="unknown venue"):
        ServeConfig(venues=("kraken",))
    with pytest.raises(ValueError, match="not local"):
        ServeConfig(host="0.0.0.0")
    with pytest.raises(ValueError, match="greater than 0"):
        ServeConfig(speed=0)
    ex = LocalExchange([small_flow()], ServeConfig(speed=5))
    with pytest.raises(ConfigError, match="manual"):
        run(ex.advance_to(T0))


DATA = shared_data_dir()


@pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
def test_recorded_binance_day_replays_into_a_synced_ccxt_book() -> None:
    assert DATA is not None
    folder = DATA / "messages" / "binance-spot" / "hftbacktest"
    flow = recorded_flow([folder / "btcusdt_20240808.gz", folder / "btcusdt_20240809.gz"])

    async def main() -> None:
        ex = LocalExchange([flow], ServeConfig(mode="manual"))
        await ex.start()
        client = binance_client(ex.urls()["binance"])
        try:
            await client.load_markets()
            t = flow.start_ms + 1_000
            await ex.advance_to(t)
            book_task = asyncio.ensure_future(client.watch_order_book("BTC/USDT"))
            trades_task = asyncio.ensure_future(client.watch_trades("BTC/USDT"))
            await until(lambda: len(ex.sites["binance"].hub.streams()) == 2)
            updates = 0
            end = t + 60_000
            while t < end:  # a market minute, 250 ms per step
                t += 250
                await ex.advance_to(t)
                await asyncio.sleep(0.003)
                if book_task.done():
                    book = book_task.result()  # raises on any sequence problem
                    updates += 1
                    book_task = asyncio.ensure_future(client.watch_order_book("BTC/USDT"))
            assert updates > 100 and book["nonce"] > flow.snapshot.last_update_id
            snap = ex.market("BTC/USDT").depth(50)
            await until(lambda: client.orderbooks["BTC/USDT"]["nonce"] == snap.last_update_id)
            local = client.orderbooks["BTC/USDT"].limit()
            assert [tuple(x) for x in local["bids"][:50]] == list(snap.bids)
            assert [tuple(x) for x in local["asks"][:50]] == list(snap.asks)
            trades = trades_task.result()
            assert trades and trades[0]["price"] > 10_000
            assert await client.fetch_time() == t
        finally:
            book_task.cancel()
            await client.close()
            await ex.stop()
        assert ex.replayer.sink_errors == 0

    run(main(), timeout_s=50)


def test_slow_depth_partial_books_klines_and_pings_on_a_combined_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pivotal.localexchange.binance import BinanceSite

    monkeypatch.setattr(BinanceSite, "ws_heartbeat_s", 0.05)
    names = ["btcusdt@depth", "btcusdt@depth5", "btcusdt@kline_1m", "btcusdt@aggTrade",
             "btcusdt@miniTicker"]  # fmt: skip

    async def main() -> dict[str, list[dict]]:
        ex = _exchange()
        await ex.start()
        url = ex.urls()["binance"].ws + "/stream?streams=" + "/".join(names)
        got: dict[str, list[dict]] = {name: [] for name in names}
        pings = 0
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(url, autoping=False) as ws,
            ):
                await until(lambda: len(ex.sites["binance"].hub.streams()) == len(names))
                await ex.advance_to(T0 + 3_500)
                while min(len(v) for v in got.values()) < 3 or pings < 1:
                    msg = await ws.receive(timeout=5)
                    if msg.type == aiohttp.WSMsgType.PING:
                        pings += 1
                        await ws.pong(msg.data)
                    else:
                        body = msg.json()
                        got[body["stream"]].append(body["data"])
            slow = got["btcusdt@depth"]
            assert [d["E"] % 1000 for d in slow] == [0] * len(slow)  # once per market second
            assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(slow))
            part = got["btcusdt@depth5"][-1]
            assert len(part["bids"]) == 5 and len(part["asks"]) == 5 and part["lastUpdateId"] > 0
            agg = got["btcusdt@aggTrade"][0]
            assert agg["a"] == agg["f"] == agg["l"]
            kline = got["btcusdt@kline_1m"][0]["k"]
            assert kline["i"] == "1m" and kline["t"] == T0 - T0 % 60_000 and kline["x"] is False
            assert got["btcusdt@miniTicker"][0]["e"] == "24hrMiniTicker"
            return got
        finally:
            await ex.stop()

    run(main())
