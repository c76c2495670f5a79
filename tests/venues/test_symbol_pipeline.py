"""One symbol's live path: real Binance trades and depth fed as a stream give exactly the
batch results (1s candles = aggregate_trades, 1s COB = iter_cob over the same depth), with
late and repeated trades counted, klines stored once, and events for the runtime's feed."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import pandas as pd
import pytest

from pivotal.core.candles import Candles
from pivotal.core.events import BookUpdated, CandleClosed, MarketEvent, TradesReceived
from pivotal.core.symbols import Symbol
from pivotal.core.trades import Trades
from pivotal.core.types import COBData
from pivotal.data.series import SeriesKey
from pivotal.data.tick_aggregation import aggregate_trades
from pivotal.features.orderbook import DepthEvents, OrderBook, Sequencing
from pivotal.features.orderbook.cob import iter_cob
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.venues.symbol_pipeline import SymbolPipeline

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
SPAN = "20240808T2354-20240809T0005"


class MemorySink:
    def __init__(self) -> None:
        self.candles: dict[SeriesKey, list[tuple[Candles, str]]] = {}
        self.trades: list[tuple[str, Trades, str]] = []
        self.cob: list[tuple[str, COBData, str]] = []

    def add_candles(self, key: SeriesKey, candles: Candles, source: str) -> None:
        self.candles.setdefault(key, []).append((candles, source))

    def add_trades(self, exchange: str, symbol: Symbol, trades: Trades, source: str) -> None:
        self.trades.append((exchange, trades, source))

    def add_cob(
        self, exchange: str, symbol: Symbol, snapshots: Sequence[COBData], source: str
    ) -> None:
        self.cob.extend((exchange, s, source) for s in snapshots)


@cache
def _trades(base: str) -> Trades:
    assert DATA is not None
    frame = pd.read_parquet(DATA / "trades" / "binance-spot" / f"{base}_USDT-trades-{SPAN}.parquet")
    return Trades.from_frame(frame)


@cache
def _depth(base: str) -> DepthEvents:
    assert DATA is not None
    path = DATA / "orderbook" / "binance-spot" / f"{base}_USDT-depth-{SPAN}.parquet"
    return DepthEvents(pd.read_parquet(path))


def _stream(base: str, pipeline: SymbolPipeline, chunk: int) -> None:
    """Trades in chunks and every depth event's resulting book, merged by exchange time."""
    trades = _trades(base)
    depth = _depth(base)
    book = OrderBook(f"{base}/USDT", Sequencing("spot"))
    i = j = 0
    while i < len(trades) or j < len(depth):
        t_time = int(trades.timestamp[i]) if i < len(trades) else 2**62
        d_time = int(depth.event_time[j]) if j < len(depth) else 2**62
        if t_time <= d_time:
            part = trades[i : i + chunk]
            part = part[part.timestamp <= d_time] if d_time < 2**62 else part
            pipeline.on_trades("binance", part, "binance:ws")
            i += len(part)
        else:
            depth.apply(j, book)
            if book.in_sync:
                bids, asks = book.depth(10_000)
                pipeline.on_book("binance", bids, asks, book.last_update_id, d_time)
            j += 1


@needs_data
@pytest.mark.parametrize("base", ["BTC", "ETH"])
def test_streamed_trades_and_books_equal_the_batch_candles_and_cob(base: str) -> None:
    sink = MemorySink()
    events: list[MarketEvent] = []
    pipeline = SymbolPipeline(f"{base}/USDT", "binance", sink, publish=events.extend)
    _stream(base, pipeline, chunk=7)

    batch = aggregate_trades(_trades(base), "1s").candles
    key = SeriesKey("binance", f"{base}/USDT", "1s")
    streamed = Candles.concat([c for c, _ in sink.candles[key]])
    n = len(streamed)
    assert n > 600 and n <= len(batch) + 5  # flat bars after the last trade may follow
    common = min(n, len(batch))
    for name in ("timestamp", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(
            getattr(streamed, name)[:common], getattr(batch, name)[:common]
        )
    assert {s for _, s in sink.candles[key]} == {"binance:trades"}

    depth = _depth(base)
    reference = list(iter_cob(depth, OrderBook(f"{base}/USDT", Sequencing("spot"))))
    live = [s for _, s, _ in sink.cob]
    assert len(live) == len(reference) > 600
    for a, b in zip(live, reference, strict=True):
        assert a.timestamp == b.timestamp and a.current_price == b.current_price
        for name in ("bid_volume", "ask_volume", "imbalance", "volume_weighted_prices"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        for w in b.imbalance_ma:
            np.testing.assert_array_equal(a.imbalance_ma[w], b.imbalance_ma[w])

    stored_trades = sum(len(t) for _, t, _ in sink.trades)
    assert stored_trades == len(_trades(base)) == pipeline.counts.trades
    assert sum(isinstance(e, TradesReceived) for e in events) == len(sink.trades)
    assert sum(isinstance(e, BookUpdated) for e in events) == len(live)
    closes = [e for e in events if isinstance(e, CandleClosed)]
    assert len(closes) == n
    assert all(e.event_time == e.open_time + 1000 for e in closes)


@needs_data
def test_repeated_and_late_trades_are_counted_not_aggregated_twice() -> None:
    sink = MemorySink()
    pipeline = SymbolPipeline("BTC/USDT", "binance", sink)
    trades = _trades("BTC")[:400]
    pipeline.on_trades("binance", trades[:300], "binance:ws")
    pipeline.on_trades("binance", trades[250:400], "binance:ws")  # 50 repeated ids
    assert pipeline.counts.duplicate_trades == 50
    assert pipeline.counts.trades == 400
    ids = np.concatenate([t.trade_id for _, t, _ in sink.trades])
    assert len(ids) == len(np.unique(ids)) == 400


def test_a_closed_kline_is_stored_and_published_once_under_the_feed_series() -> None:
    sink = MemorySink()
    events: list[MarketEvent] = []
    pipeline = SymbolPipeline("BTC/USDT", "binance", sink, publish=events.extend)
    candle = Candles.from_frame(
        pd.DataFrame(
            {"timestamp": [60_000], "open": [1.0], "high": [2.0], "low": [0.5], "close": [1.5],
             "volume": [3.0]}
        )
    )  # fmt: skip
    pipeline.on_candle("mexc", "1m", candle, "mexc:ws")
    pipeline.on_candle("mexc", "1m", candle, "mexc:ws")
    stored = sink.candles[SeriesKey("binance", "BTC/USDT", "1m")]
    assert [(len(c), s) for c, s in stored] == [(1, "mexc:ws")]
    assert [(e.event_time, e.timeframe.value) for e in events if isinstance(e, CandleClosed)] == [
        (120_000, "1m")
    ]


def test_a_book_without_an_exchange_time_reaches_no_cob_snapshot_before_a_timed_one() -> None:
    """ccxt's REST snapshot carries no time: it may be from after the next second boundary,
    so the snapshot of that boundary must not use it (it is skipped, not back-dated)."""
    sink = MemorySink()
    pipeline = SymbolPipeline("BTC/USDT", "binance", sink)

    def book(mid: float) -> tuple[np.ndarray, np.ndarray]:
        return np.array([[mid - 0.5, 1.0]]), np.array([[mid + 0.5, 1.0]])

    pipeline.on_book("binance", *book(60_000.0), 1, 1_000_100)
    pipeline.on_book("binance", *book(60_000.0), 2, 1_000_500)
    pipeline.on_book("binance", *book(61_000.0), 3, None)  # untimed content
    pipeline.on_book("binance", *book(61_000.0), 4, 1_001_200)
    pipeline.on_book("binance", *book(61_000.0), 5, 1_002_300)
    stamped = [(s.timestamp, s.current_price) for _, s, _ in sink.cob]
    assert stamped == [(1_002_000, 61_000.0)]  # 1_001_000 skipped: its book was of unknown time
