"""The stream supervisor with real ccxt.pro clients against the local exchange (127.0.0.1):
dropped sockets, a depth gap, a REST rate limit, a paused primary (failover and failback), and
a clean shutdown. The market moves only when a test advances it (manual mode), so what
counts is deterministic; the waits are short real ones (backoffs of tens of ms)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from helpers.binance_kit import T0, small_flow
from pivotal.config.models import ExchangeConfig, StreamsConfig
from pivotal.core.clock import WallClock
from pivotal.core.timeframes import Timeframe
from pivotal.localexchange.config import ServeConfig
from pivotal.localexchange.server import LocalExchange
from pivotal.venues.clients import create_stream_client
from pivotal.venues.stream_events import CandleItem, StatusItem, StreamItem, TradesItem
from pivotal.venues.streams import StreamSupervisor

pytestmark = pytest.mark.network

BTC = "BTC/USDT"
FAST = StreamsConfig(
    backoff_initial_s=0.02,
    backoff_max_s=0.1,
    failover_after_s=0.6,
    probe_every_s=0.1,
    resubscribe_per_s=20,
)


class Scenario:
    """A local exchange, stream clients pointed at it, a supervisor, and the items seen."""

    def __init__(self, venues: tuple[str, ...], streams: list[tuple[str, str]]) -> None:
        self.ex = LocalExchange(
            [small_flow(seconds=300)], ServeConfig(venues=venues, mode="manual")
        )
        self.venues = venues
        self.streams = streams
        self.items: list[StreamItem] = []
        self.market_ms = T0 + 3000

    async def __aenter__(self) -> Scenario:
        await self.ex.start()
        await self.ex.advance_to(self.market_ms)
        urls = self.ex.urls()
        clients = {
            v: create_stream_client(
                v, ExchangeConfig(rest_url=urls[v].rest, ws_url=urls[v].ws, api_key="local")
            )
            for v in self.venues
        }
        config = FAST.model_copy(update={"failover": list(self.venues)})
        self.sup = StreamSupervisor(clients, self.streams, clock=WallClock(), config=config)
        await self.sup.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sup.stop()
        await self.ex.stop()

    def _drain(self) -> None:
        while not self.sup.queue.empty():
            self.items.append(self.sup.queue.get_nowait())

    async def pump(
        self, until: Callable[[], bool], *, step_ms: int = 200, limit_s: float = 10.0
    ) -> None:
        """Advance the market ``step_ms`` at a time (with a short real pause so sockets
        flush) until ``until()`` holds."""
        deadline = time.monotonic() + limit_s
        while True:
            self._drain()
            if until():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached in {limit_s} s; health: {self.sup.snapshot()}")
            self.market_ms += step_ms
            await self.ex.advance_to(self.market_ms)
            await asyncio.sleep(0.01)

    def trades(self, venue: str) -> list[TradesItem]:
        return [i for i in self.items if isinstance(i, TradesItem) and i.exchange == venue]

    def trade_ids(self, venue: str) -> list[int]:
        return [t for i in self.trades(venue) for t in i.trades.trade_id.tolist()]

    def status(self, kind: str) -> list[StatusItem]:
        return [i for i in self.items if isinstance(i, StatusItem) and i.kind == kind]

    def health(self, venue: str, channel: str) -> dict[str, Any]:
        return next(
            h for h in self.sup.snapshot() if h["exchange"] == venue and h["channel"] == channel
        )


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 45))


def contiguous(ids: list[int]) -> bool:
    return ids == list(range(ids[0], ids[0] + len(ids)))


def test_reconnect_backfills_trades_and_candles_and_resyncs_the_book() -> None:
    streams = [(BTC, "trades"), (BTC, "ohlcv:1s"), (BTC, "book")]

    async def main() -> tuple[Scenario, list[Any]]:
        async with Scenario(("binance",), streams) as s:
            await s.pump(lambda: len(s.trade_ids("binance")) >= 20)
            dropped = await s.ex.inject("drop", venue="binance", every=True)
            assert dropped == 3
            # the market moves on while the client reconnects
            s.market_ms += 3000
            await s.ex.advance_to(s.market_ms)
            await s.pump(lambda: s.health("binance", "trades")["backfilled_rows"] > 0)
            await s.pump(lambda: s.health("binance", "ohlcv:1s")["backfilled_rows"] > 0)
            await s.pump(lambda: s.health("binance", "book")["reconnects"] > 0)
            assert await s.ex.inject("gap", venue="binance") == 1
            await s.pump(lambda: s.health("binance", "book")["gaps"] > 0)
            end = s.market_ms
            await s.pump(lambda: s.trades("binance")[-1].time_ms >= end)
            market = s.ex.market(BTC)
            klines = market.klines(Timeframe.S1, None, None, 1000)
            return s, klines

    s, klines = run(main())
    ids = s.trade_ids("binance")
    assert len(ids) == len(set(ids))
    assert contiguous(ids)  # every trade once, the dropped span back-filled by id
    assert any(i.backfilled for i in s.trades("binance"))
    trades = s.health("binance", "trades")
    assert trades["disconnects"] >= 1
    assert trades["reconnects"] >= 1
    book = s.health("binance", "book")
    assert book["resyncs"] >= 1
    # every closed 1s candle equals the exchange's own kline, once
    closed = [i for i in s.items if isinstance(i, CandleItem) and i.closed]
    opens = [i.open_time for i in closed]
    assert len(opens) == len(set(opens))
    assert opens == sorted(opens)
    truth = {k.open_time: k for k in klines if k.closed}
    assert any(i.backfilled for i in closed)
    for item in closed:
        k = truth[item.open_time]
        assert (float(item.candle.close[0]), float(item.candle.volume[0])) == pytest.approx(
            (k.close, k.volume)
        )


def test_rate_limited_backfill_waits_for_retry_after() -> None:
    async def main() -> Scenario:
        async with Scenario(("binance",), [(BTC, "trades")]) as s:
            await s.pump(lambda: len(s.trade_ids("binance")) >= 5)
            await s.ex.inject("rate_limit", venue="binance", count=1, retry_after_s=1)
            await s.ex.inject("drop", venue="binance", every=True)
            s.market_ms += 2000
            await s.ex.advance_to(s.market_ms)
            start = time.monotonic()
            await s.pump(lambda: s.health("binance", "trades")["backfilled_rows"] > 0)
            assert time.monotonic() - start >= 0.9  # Retry-After: 1 s honoured
            return s

    s = run(main())
    assert s.health("binance", "trades")["rate_limited"] == 1
    assert s.sup.gates["binance"].blocks == 1
    assert contiguous(s.trade_ids("binance"))


def test_paused_primary_fails_over_to_mexc_and_back() -> None:
    async def main() -> Scenario:
        async with Scenario(("binance", "mexc"), [(BTC, "trades"), (BTC, "book")]) as s:
            await s.pump(lambda: len(s.trade_ids("binance")) >= 10)
            await s.ex.pause("binance")
            await s.pump(lambda: bool(s.status("failover")) and bool(s.trades("mexc")))
            await s.pump(lambda: len(s.trade_ids("mexc")) >= 30)
            await s.ex.resume("binance")
            await s.pump(lambda: bool(s.status("failback")))
            end = s.market_ms
            await s.pump(lambda: s.trades("binance")[-1].time_ms >= end)
            return s

    s = run(main())
    (failover,) = s.status("failover")
    assert (failover.exchange, failover.from_exchange) == ("mexc", "binance")
    (failback,) = s.status("failback")
    assert (failback.exchange, failback.from_exchange) == ("binance", "mexc")
    # binance's own series has no hole: the outage was back-filled from binance by id
    ids = s.trade_ids("binance")
    assert contiguous(ids)
    assert len(ids) == len(set(ids))
    # mexc's trades (no ids on its stream) went out once each, in time order
    mexc = s.trades("mexc")
    times = [t for i in mexc for t in i.trades.timestamp.tolist()]
    assert times == sorted(times)
    mexc_ids = [t for i in mexc for t in i.trades.trade_id.tolist()]
    assert len(mexc_ids) == len(set(mexc_ids))
    assert mexc[0].backfilled
    assert s.sup.failover.failovers == 1
    assert s.sup.failover.failbacks == 1
    assert s.health("binance", "trades")["failovers"] == 1
    assert s.health("mexc", "trades")["failbacks"] == 1


def test_stop_leaves_no_unclosed_sessions(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with Scenario(("binance", "bybit", "mexc"), [(BTC, "trades")]) as s:
            await s.pump(lambda: len(s.trade_ids("binance")) >= 3)
        await asyncio.sleep(0)

    with caplog.at_level(logging.WARNING):
        run(main())
        import gc

        gc.collect()
    assert not [r for r in caplog.records if "nclosed" in r.getMessage()]
