"""The collector's market events reach a :class:`PushedFeed` and a consumer thread gets them
in time order, equal to what the collector stored: 1s and 1m ``CandleClosed``,
``TradesReceived`` and ``BookUpdated`` (the 1s COB snapshots), for two symbols, from real
ccxt.pro clients over 127.0.0.1 (stored real 1m candles replayed at 20x).

Pacing: the market moves one market second at a time (manual mode, 20x) and then stands
still until nothing is in flight; the consumer thread then drains what the feed has ready
(the feed hands out an event time once a later event is queued).

Why an event can be late at all: a 1s bar closes when the symbol's next trade arrives
(``close_lag_ms=None`` here), and the COB snapshot stamped ``T`` goes out with the first
book update at or after ``T``. A symbol that is quiet for a few seconds therefore publishes
those events after the other symbol's later events went out, and the feed delivers them as
*late* (counted in ``PushedFeed.late``, never dropped). The flows here carry ten trades a
second (``trades_per_candle=600``), so every second of both symbols has trades and book
updates; with the market moving second by second and the consumer draining after each
step, every event of a step is at or after every time already delivered, and the order is
exact (``late == 0``) by construction, not by timing.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers.collect_kit import MINUTE, CollectRig, candle_flow
from pivotal.core.clock import WallClock
from pivotal.core.events import (
    BookLevels,
    BookUpdated,
    CandleClosed,
    MarketEvent,
    TradesReceived,
)
from pivotal.core.symbols import Symbol
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.runtime.pushed_feed import PushedFeed
from pivotal.venues.collector import CollectConfig

pytestmark = pytest.mark.network

START = 1_751_328_000_000  # 2025-07-01 00:00 UTC
SPEED = 20.0
SYMBOLS = ("BTC/USDT", "ETH/USDT")
MARKET_S = 150  # market seconds replayed (2.5 minutes: two 1m closes)


class Consumer(threading.Thread):
    """Drains the feed when asked (``drain``), until it has nothing ready; ``None`` ends it."""

    def __init__(self, feed: PushedFeed) -> None:
        super().__init__(name="feed-consumer", daemon=True)
        self.feed = feed
        self.groups: list[list[MarketEvent]] = []
        self.asked = threading.Semaphore(0)
        self.drained = threading.Semaphore(0)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while True:
                self.asked.acquire()
                while True:
                    group = self.feed.next_events()
                    if group is None:
                        self.drained.release()
                        return
                    if not group:  # a heartbeat: nothing more is ready
                        break
                    self.groups.append(list(group))
                self.drained.release()
        except BaseException as exc:  # surfaced by the test
            self.error = exc
            self.drained.release()

    async def drain(self) -> None:
        self.asked.release()
        await asyncio.to_thread(self.drained.acquire)


async def _run(tmp_path: Path) -> dict[str, Any]:
    # ten trades a second: every second of both symbols has trades and book updates (see
    # the module docstring for what a quiet second does)
    made = [
        candle_flow(s.split("/")[0], START, 5, seed=51 + i, trades_per_candle=600)
        for i, s in enumerate(SYMBOLS)
    ]
    feed = PushedFeed(WallClock(), grace_ms=600_000, heartbeat_ms=50)
    consumer = Consumer(feed)
    consumer.start()
    collect = CollectConfig(
        exchanges=("binance",),
        symbols=SYMBOLS,
        timeframes=("1s", "1m"),
        close_lag_ms=None,
        batch_delay_ms=200,
    )
    rig = CollectRig(tmp_path, [f for f, _ in made], collect, feed=feed)
    async with rig:
        await rig.subscribed(len(SYMBOLS) * 3)
        for _ in range(MARKET_S):
            await rig.play(rig.market_ms + 1_000, SPEED)
            await rig.settle(quiet_s=0.03, live=False)
            await consumer.drain()
        report = await rig.finish()
        feed.close()
        await consumer.drain()
    consumer.join(10)
    assert consumer.error is None, consumer.error
    return {"report": report, "groups": consumer.groups, "feed": feed, "made": made}


def test_collected_events_reach_the_pushed_feed_in_time_order(tmp_path: Path) -> None:
    out = asyncio.run(_run(tmp_path))
    feed, groups = out["feed"], out["groups"]
    events = [e for g in groups for e in g]
    assert feed.late == 0
    assert len(events) == feed.published
    # time order: each group one event time, the groups strictly increasing
    times = [g[0].event_time for g in groups]
    assert all(e.event_time == g[0].event_time for g in groups for e in g)
    assert times == sorted(set(times))

    with open_store(tmp_path, read_only=True) as store:
        for symbol in SYMBOLS:
            mine = [e for e in events if e.symbol == symbol]
            kinds = {type(e).__name__ for e in mine}
            assert kinds == {"CandleClosed", "TradesReceived", "BookUpdated", "BookLevels"}
            for tf in ("1s", "1m"):
                closes = [e for e in mine if isinstance(e, CandleClosed) and e.timeframe == tf]
                stored = store.read_candles(SeriesKey("binance", symbol, tf))
                assert len(closes) == len(stored) > (1 if tf == "1m" else 100)
                for e, ts in zip(closes, stored.timestamp.tolist(), strict=True):
                    assert e.open_time == ts and e.event_time == ts + (
                        1_000 if tf == "1s" else MINUTE
                    )
                for name in ("open", "high", "low", "close", "volume"):
                    got = np.concatenate([getattr(e.candle, name) for e in closes])
                    np.testing.assert_array_equal(got, getattr(stored, name))
            batches = [e for e in mine if isinstance(e, TradesReceived)]
            trades = store.read_trades("binance", Symbol.parse(symbol))
            assert all(e.event_time == int(e.trades.timestamp[-1]) for e in batches)
            for name in ("trade_id", "timestamp", "price", "quantity", "is_buyer_maker"):
                got = np.concatenate([getattr(e.trades, name) for e in batches])
                np.testing.assert_array_equal(got, getattr(trades, name))
            books = [e for e in mine if isinstance(e, BookUpdated)]
            snapshots = store.read_cob("binance", symbol)
            assert len(books) == len(snapshots) > 100
            levels = [e for e in mine if isinstance(e, BookLevels)]
            assert [e.event_time for e in levels] == [e.event_time for e in books]
            for e, s in zip(books, snapshots, strict=True):
                assert e.event_time == e.snapshot.timestamp == s.timestamp
                for name in ("bucket_prices", "bid_volume", "ask_volume", "imbalance"):
                    np.testing.assert_array_equal(getattr(e.snapshot, name), getattr(s, name))
                assert e.snapshot.current_price == s.current_price
                assert sorted(e.snapshot.imbalance_ma) == sorted(s.imbalance_ma)
