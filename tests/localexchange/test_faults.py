"""Faults of the local exchange: rate limits, socket faults, their log, determinism."""

from __future__ import annotations

import asyncio

import aiohttp
import ccxt
import pytest

from helpers.binance_kit import T0, binance_client, run, small_flow, until
from pivotal.core.errors import ConfigError
from pivotal.localexchange.config import ServeConfig
from pivotal.localexchange.faults import FaultConfig, FaultLog, RateLimiter
from pivotal.localexchange.server import LocalExchange

pytestmark = pytest.mark.network


class FakeMonotonic:
    def __init__(self, now: float = 600.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_windows_429_then_ban_that_doubles() -> None:
    clock = FakeMonotonic(600.0)  # a window starts at 600 s
    limiter = RateLimiter(10, ban_after=2, ban_s=30, monotonic=clock)
    assert [limiter.charge(4).status for _ in range(2)] == [200, 200]
    over = limiter.charge(4)
    assert (over.status, over.used, over.retry_after_s) == (429, 8, 60)
    clock.now = 630.5
    assert limiter.charge(2).status == 200  # fits: 10 of 10
    ban = limiter.charge(1)  # second refusal in a row of windows -> banned
    assert (ban.status, ban.retry_after_s) == (418, 30)
    clock.now = 659.0
    assert limiter.charge(1).status == 418
    clock.now = 661.0  # ban over, new window
    assert limiter.charge(10).status == 200
    assert limiter.charge(1).status == 429
    assert limiter.charge(1) == limiter.charge(1).__class__(418, 10, 60)  # doubled ban
    unlimited = RateLimiter(None, monotonic=clock)
    assert unlimited.charge(10**9).status == 200


def test_fault_log_counts_and_json() -> None:
    log = FaultLog()
    log.record("binance", "gap", conn_id=3, stream="btcusdt@depth")
    log.record("bybit", "drop", conn_id=4)
    log.record("binance", "gap", conn_id=5)
    assert log.counts() == {"drop": 1, "gap": 2}
    assert log.counts("binance") == {"gap": 2}
    body = log.to_json(last=1)
    assert body["total"] == 3 and body["records"][0]["kind"] == "gap"
    assert body["records"][0]["conn_id"] == 5


def test_rest_rate_limit_answers_429_then_418_with_retry_after() -> None:
    config = ServeConfig(mode="manual", faults=FaultConfig(weight_per_minute=45, ban_after_429=2))

    async def main() -> None:
        ex = LocalExchange([small_flow()], config)
        await ex.start()
        rest = ex.urls()["binance"].rest
        try:
            async with aiohttp.ClientSession() as http:
                statuses = []
                for _ in range(4):  # exchangeInfo weighs 20: 20, 40, refused, banned
                    async with http.get(rest + "/api/v3/exchangeInfo") as reply:
                        statuses.append(reply.status)
                        headers = reply.headers
                        body = await reply.json()
                assert statuses == [200, 200, 429, 418]
                assert body["code"] == -1003 and "banned" in body["msg"]
                assert int(headers["Retry-After"]) == 120
                assert headers["X-MBX-USED-WEIGHT-1M"] == "40"
                async with http.get(rest + "/_pivotal/faults") as reply:
                    faults = await reply.json()
                assert faults["counts"] == {"ban": 1, "rate_limit": 1}
            client = binance_client(ex.urls()["binance"])
            try:
                with pytest.raises(ccxt.DDoSProtection):
                    await client.fetch_time()
            finally:
                await client.close()
            ex.sites["binance"].limiter.lift()
            await ex.inject("rate_limit", venue="binance", count=1, retry_after_s=7)
            client = binance_client(ex.urls()["binance"])
            try:
                with pytest.raises(ccxt.DDoSProtection):  # ccxt maps Binance's -1003 so
                    await client.fetch_time()
                assert client.last_response_headers["Retry-After"] == "7"
                assert await client.fetch_time() == T0
            finally:
                await client.close()
        finally:
            await ex.stop()

    run(main())


async def _book_watch(ex: LocalExchange, client: object, start: int) -> int:
    """Watch the BTC book, stepping the market 100 ms at a time until the watch returns;
    returns the market time reached (raises what the watch raised)."""
    task = asyncio.ensure_future(client.watch_order_book("BTC/USDT"))  # type: ignore[attr-defined]
    await until(lambda: ex.sites["binance"].hub.has("btcusdt@depth@100ms"))
    t = start
    while not task.done() and t < start + 20_000:
        t += 100
        await ex.advance_to(t)
        await asyncio.sleep(0.005)
    task.result()
    return t


@pytest.mark.parametrize("kind", ["gap", "reorder"])
def test_sequence_faults_make_ccxt_see_a_broken_book(kind: str) -> None:
    async def main() -> None:
        ex = LocalExchange([small_flow()], ServeConfig(mode="manual"))
        await ex.start()
        client = binance_client(ex.urls()["binance"])
        try:
            await client.load_markets()
            t = await _book_watch(ex, client, T0)
            assert await ex.inject(kind, venue="binance") == 1
            with pytest.raises(ccxt.InvalidNonce):  # noqa: PT012 - some watch of the next ones
                for _ in range(5):
                    t = await _book_watch(ex, client, t)
        finally:
            await client.close()
            await ex.stop()
        records = ex.fault_log.records(kind)
        assert len(records) == 1
        assert records[0].stream == "btcusdt@depth@100ms" and records[0].market_ms > T0

    run(main())


def test_drop_closes_a_socket_and_the_client_reconnects() -> None:
    async def main() -> None:
        ex = LocalExchange([small_flow()], ServeConfig(mode="manual"))
        await ex.start()
        client = binance_client(ex.urls()["binance"])
        try:
            await client.load_markets()
            await _book_watch(ex, client, T0)
            assert await ex.inject("drop", venue="binance", every=True) == 1
            with pytest.raises(ccxt.NetworkError):
                await asyncio.wait_for(client.watch_order_book("BTC/USDT"), 5)
            await _book_watch(ex, client, T0 + 5_000)  # a new socket, a new snapshot: synced
            assert len(ex.sites["binance"].connections()) == 1
        finally:
            await client.close()
            await ex.stop()
        assert ex.fault_log.counts() == {"drop": 1}

    run(main())


def _periodic(faults: FaultConfig, seed: int, connections: int = 4) -> list[int]:
    """Open ``connections`` sockets with a depth stream; return the victims' ordinal numbers."""

    async def main() -> list[int]:
        config = ServeConfig(mode="manual", faults=faults, seed=seed)
        ex = LocalExchange([small_flow()], config)
        await ex.start()
        ws_url = ex.urls()["binance"].ws
        try:
            async with aiohttp.ClientSession() as http:
                sockets = [
                    await http.ws_connect(ws_url + "/ws/btcusdt@depth@100ms")
                    for _ in range(connections)
                ]
                await until(lambda: len(ex.sites["binance"].connections()) == connections)
                first = ex.sites["binance"].connections()[0].conn_id
                cap = faults.max_count or 0
                await until(lambda: len(ex.fault_log.records()) >= cap, timeout_s=10)
                await asyncio.sleep(0.1)  # nothing more may come: the cap holds
                for ws in sockets:
                    await ws.close()
        finally:
            await ex.stop()
        records = ex.fault_log.records()
        assert len(records) == cap
        return [r.conn_id - first for r in records if r.conn_id is not None]

    return run(main())


def test_periodic_faults_are_capped_and_deterministic_with_a_seed() -> None:
    faults = FaultConfig(drop_every_s=0.02, max_count=3)
    victims = _periodic(faults, seed=11)
    assert len(victims) == 3
    assert _periodic(faults, seed=11) == victims
    picks = {tuple(_periodic(faults, seed=s)) for s in range(4)}
    assert len(picks) > 1  # the seed decides


def test_expiry_and_delay_are_logged() -> None:
    faults = FaultConfig(expire_after_s=0.05, delay_ms=5)

    async def main() -> None:
        ex = LocalExchange([small_flow()], ServeConfig(mode="manual", faults=faults))
        await ex.start()
        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(ex.urls()["binance"].ws + "/ws/btcusdt@trade")
                await until(lambda: ex.sites["binance"].hub.has("btcusdt@trade"))
                await ex.advance_to(T0 + 1_000)
                got = [await ws.receive_json(timeout=5)]
                assert got[0]["e"] == "trade"
                while (msg := await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
                    got.append(msg.json())
                assert ws.closed or msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                ids = [m["t"] for m in got]
                assert ids == sorted(ids)  # delayed, never reordered
        finally:
            await ex.stop()
        assert ex.fault_log.counts() == {"delay": 1, "expire": 1}

    run(main())


def test_inject_refuses_unknown_kinds_and_venues() -> None:
    async def main() -> None:
        ex = LocalExchange([small_flow()], ServeConfig(mode="manual"))
        with pytest.raises(ConfigError, match="unknown fault kind"):
            await ex.inject("meteor")
        with pytest.raises(ConfigError, match="unknown venue"):
            await ex.inject("rate_limit", venue="kraken")
        assert await ex.inject("drop") == 0  # no connection yet: nothing to drop

    run(main())
