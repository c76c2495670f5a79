"""DataSubscriptionManager: thread-safe publishing, back-pressure that is counted, drains that
apply in arrival order, derived indicator and pivot streams, and clear errors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import numpy as np
import pytest

from pivotal.core import Symbol, Timeframe
from pivotal.core.candles import Candles
from pivotal.core.trades import Trades
from pivotal.core.types import COBData
from pivotal.features.inputs import InputSpec
from pivotal.orchestrator.config import StreamConfig
from pivotal.orchestrator.frame import MarketFrame
from pivotal.orchestrator.subscriptions import (
    DataSubscriptionManager,
    StreamKey,
    StreamKind,
    StreamUpdate,
)
from pivotal.testing.planted import planted_candles

BTC = "BTC/USDT"
M1 = Timeframe.M1
T0 = 1_700_000_040_000  # on the 1m grid
SPEC = InputSpec.candles(["1m"])


def _snapshot(ts: int, symbol: str = BTC) -> COBData:
    prices = 100.0 + np.arange(-2, 2, dtype=np.float64)
    return COBData(
        symbol=Symbol.parse(symbol),
        timestamp=ts,
        current_price=100.0,
        bucket_size=1.0,
        bucket_prices=prices,
        bid_volume=np.array([1.0, 2.0, 3.0, 0.0]),
        ask_volume=np.array([0.0, 1.0, 1.0, 2.0]),
        imbalance=np.zeros(4),
        volume_weighted_prices=prices,
    )


def _trades(start: int, n: int = 5) -> Trades:
    return Trades(
        timestamp=start + np.arange(n, dtype=np.int64) * 10,
        price=np.full(n, 100.0),
        quantity=np.ones(n),
        is_buyer_maker=np.arange(n) % 2 == 0,
        trade_id=np.arange(n, dtype=np.int64),
    )


def _manager(**streams: StreamConfig) -> DataSubscriptionManager:
    return DataSubscriptionManager(MarketFrame(), streams)


def _candle_update(candles: Candles, i: int, j: int | None = None, symbol: str = BTC):
    rows = candles[i : (i + 1 if j is None else j)]
    close = int(rows.timestamp[-1]) + 60_000
    return StreamUpdate(StreamKey(StreamKind.CANDLES, symbol, M1), close, rows)


def _check_counts(manager: DataSubscriptionManager) -> None:
    for key, s in manager.stats().items():
        assert s.received == s.applied + s.dropped + s.coalesced, (key, s)


# -- threads and back-pressure --------------------------------------------------------------
def test_publishing_from_four_threads_adds_up() -> None:
    manager = _manager(
        cob=StreamConfig(capacity=4, overflow="coalesce"),
        trades=StreamConfig(capacity=8, overflow="drop_oldest"),
        candles=StreamConfig(capacity=16, overflow="drop_oldest"),
    )
    symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"]
    n = 300
    bars = {s: planted_candles(n, seed=i, start_time=T0) for i, s in enumerate(symbols)}
    for s in symbols:
        manager.subscribe(StreamKey(StreamKind.COB, s))
        manager.subscribe(StreamKey("trades", s))
        manager.subscribe(StreamKey("candles", s, "1m"))
    start = threading.Barrier(len(symbols) + 1)

    def produce(symbol: str) -> None:
        start.wait()
        for k in range(n):
            ts = T0 + k * 1_000
            manager.publish(StreamUpdate(StreamKey("cob", symbol), ts, _snapshot(ts, symbol)))
            manager.publish(StreamUpdate(StreamKey("trades", symbol), ts, _trades(ts)))
            manager.publish(_candle_update(bars[symbol], k, symbol=symbol))

    threads = [threading.Thread(target=produce, args=(s,)) for s in symbols]
    for thread in threads:
        thread.start()
    start.wait()
    drained = 0
    while any(thread.is_alive() for thread in threads):  # the consumer drains meanwhile
        drained += len(manager.drain())
    for thread in threads:
        thread.join()
    manager.drain()
    _check_counts(manager)
    stats = manager.stats()
    assert all(s.received == n and s.rejected == 0 for s in stats.values())
    frame = manager.frame
    for s in symbols:
        assert stats[StreamKey("cob", s)].coalesced + stats[StreamKey("cob", s)].applied == n
        assert frame.input(s, SPEC).cob_data.timestamp == T0 + (n - 1) * 1_000  # the newest
        last = int(bars[s].timestamp[-1])
        assert frame.last_open(s, M1) == last  # the newest candle is never dropped
        assert frame.known_until(s) == last + 60_000
        shown = frame.candles(s, M1).timestamp
        assert np.all(np.diff(shown) > 0)  # drops leave gaps, never disorder


def test_cob_coalescing_keeps_the_newest() -> None:
    manager = _manager(cob=StreamConfig(capacity=2, overflow="coalesce"))
    key = StreamKey(StreamKind.COB, BTC)
    manager.subscribe(key)
    results = [manager.publish(StreamUpdate(key, T0 + k, _snapshot(T0 + k))) for k in range(5)]
    assert results == [True, True, False, True, False]
    assert manager.drain() == [key]
    s = manager.stats()[key]
    assert (s.received, s.applied, s.coalesced, s.dropped) == (5, 1, 4, 0)
    manager.frame.advance(BTC, T0 + 100)
    assert manager.frame.input(BTC, SPEC).cob_data.timestamp == T0 + 4


def test_drop_oldest_is_counted_and_a_later_update_with_more_rows_still_applies() -> None:
    manager = _manager(candles=StreamConfig(capacity=2, overflow="drop_oldest"))
    key = StreamKey(StreamKind.CANDLES, BTC, M1)
    manager.subscribe(key)
    bars = planted_candles(10, start_time=T0)
    results = [manager.publish(_candle_update(bars, k)) for k in range(5)]
    assert results == [True, True, False, False, False]
    assert manager.drain() == [key]
    frame = manager.frame
    assert frame.candles(BTC, M1).equals(bars[3:5])  # bars 0-2 were dropped
    manager.publish(_candle_update(bars, 0, 7))  # a back-fill: 0-2 are too old now, 5-6 new
    manager.drain()
    s = manager.stats()[key]
    assert (s.received, s.applied, s.dropped, s.skipped_rows) == (6, 3, 3, 3)
    assert frame.candles(BTC, M1).equals(bars[3:7])
    assert frame.known_until(BTC) == int(bars.timestamp[6]) + 60_000


def test_drain_applies_in_arrival_order_and_advances_the_frame() -> None:
    manager = _manager()
    cob_eth, candles, cob, trades = (
        StreamKey("cob", "ETH/USDT"),
        StreamKey("candles", BTC, "1m"),
        StreamKey("cob", BTC),
        StreamKey("trades", BTC),
    )
    for key in (cob_eth, candles, cob, trades):
        manager.subscribe(key)
    bars = planted_candles(20, start_time=T0)
    manager.publish(StreamUpdate(cob_eth, T0, _snapshot(T0, "ETH/USDT")))
    manager.publish(_candle_update(bars, 0, 10))
    manager.publish(StreamUpdate(trades, T0, _trades(T0)))  # trades in time order: both apply
    manager.publish(StreamUpdate(cob, T0 + 5, _snapshot(T0 + 5)))
    manager.publish(StreamUpdate(trades, T0 + 100, _trades(T0 + 100)))
    manager.publish(_candle_update(bars, 10))
    assert manager.drain() == [cob_eth, candles, trades, cob]
    assert manager.drain() == []
    frame = manager.frame
    assert frame.known_until(BTC) == int(bars.timestamp[10]) + 60_000
    assert frame.candles(BTC, M1).equals(bars[:11])
    stats = manager.stats()
    assert stats[trades].applied == 2 and stats[trades].rejected == 0
    assert stats[candles].last_timestamp == int(bars.timestamp[10]) + 60_000
    # an out-of-order snapshot is refused by the frame: counted, reported, never raised
    manager.publish(StreamUpdate(cob, T0, _snapshot(T0)))
    assert manager.drain() == []
    s = manager.stats()[cob]
    assert (s.dropped, s.rejected) == (1, 1) and "older" in s.last_error
    _check_counts(manager)
    fresh = manager.freshness(T0 + 1_000)
    assert fresh[cob] == 995 and fresh[cob_eth] == 1_000


def test_derived_indicator_and_pivot_streams() -> None:
    """As a backtest drives it: history loaded, each closed bar published again, drained."""
    bars = planted_candles(400, seed=3, scale=0.004, start_time=T0)
    frame = MarketFrame()
    frame.load(BTC, {"1m": bars})
    manager = DataSubscriptionManager(frame)
    candles = StreamKey(StreamKind.CANDLES, BTC, M1)
    indicators = StreamKey(StreamKind.INDICATORS, BTC, M1)
    pivots = StreamKey(StreamKind.PIVOTS, BTC, M1)
    for key in (candles, indicators, pivots):
        manager.subscribe(key)
    grew = 0
    for k in range(len(bars)):
        before = frame.pivot_count(BTC, M1)
        manager.publish(_candle_update(bars, k))
        keys = manager.drain()
        after = frame.pivot_count(BTC, M1)
        expected = [candles, indicators] + ([pivots] if after > before else [])
        assert keys == expected, k
        grew += after > before
    assert grew > 20  # pivots were confirmed many times, not at every bar
    manager.publish(_candle_update(bars, len(bars) - 1))  # the same bar again: nothing new
    assert manager.drain() == [candles]
    s = manager.stats()
    assert s[indicators].applied == len(bars) and s[pivots].applied == grew
    _check_counts(manager)


def test_live_candles_grow_the_frame_and_report_new_indicator_rows() -> None:
    manager = _manager()
    candles, indicators = StreamKey("candles", BTC, "1m"), StreamKey("indicators", BTC, "1m")
    manager.subscribe(candles)
    manager.subscribe(indicators)
    bars = planted_candles(50, start_time=T0)
    for k in range(50):
        manager.publish(_candle_update(bars, k))
        assert manager.drain() == [candles, indicators]
    frame = manager.frame
    assert frame.candles(BTC, M1).equals(bars)
    assert frame.indicators(BTC, M1)["1m/sma"] == pytest.approx(bars.close[-20:].mean())


def test_pump_publishes_an_async_source() -> None:
    manager = _manager()
    key = StreamKey("cob", BTC)
    manager.subscribe(key)

    async def feed() -> AsyncIterator[StreamUpdate]:
        for k in range(10):
            await asyncio.sleep(0)
            yield StreamUpdate(key, T0 + k * 100, _snapshot(T0 + k * 100))

    assert asyncio.run(manager.pump(feed())) == 10
    assert manager.drain() == [key]
    assert manager.stats()[key].applied == 10


# -- errors ---------------------------------------------------------------------------------
def test_errors_say_what_to_do() -> None:
    manager = _manager()
    key = StreamKey("candles", BTC, "1m")
    bars = planted_candles(5, start_time=T0)
    with pytest.raises(ValueError, match="subscribe"):
        manager.publish(_candle_update(bars, 0))
    manager.subscribe(key)
    manager.subscribe(key)  # twice: harmless
    assert manager.subscriptions() == (key,)
    with pytest.raises(ValueError, match="carries Candles"):
        manager.publish(StreamUpdate(key, T0, _snapshot(T0)))
    manager.subscribe(StreamKey("cob", "ETH/USDT"))
    with pytest.raises(ValueError, match="cob"):
        manager.publish(StreamUpdate(StreamKey("cob", "ETH/USDT"), T0, _snapshot(T0)))
    manager.subscribe(StreamKey("pivots", BTC, "1m"))
    with pytest.raises(ValueError, match="derived"):
        manager.publish(StreamUpdate(StreamKey("pivots", BTC, "1m"), T0, None))
    with pytest.raises(ValueError, match="needs a timeframe"):
        StreamKey("candles", BTC)
    with pytest.raises(ValueError, match="no timeframe"):
        StreamKey("cob", BTC, "1m")
    with pytest.raises(ValueError, match="allowed"):
        StreamKey("ticks", BTC)
    with pytest.raises(ValueError, match="ccxt"):
        StreamKey("cob", "BTCUSDT!")
    with pytest.raises(ValueError, match="unknown kind"):
        _manager(ticks=StreamConfig())
    with pytest.raises(TypeError, match="UTC ms"):
        StreamUpdate(key, float(T0), bars)
    assert StreamUpdate(key, np.int64(T0), bars).timestamp == T0
    assert StreamKey("cob", "btc/usdt") == StreamKey(StreamKind.COB, BTC)
