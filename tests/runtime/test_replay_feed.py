"""The replay feeds: events at each candle's close, base bars first, the clock moved there;
the store-backed feed reads bounded chunks and gives exactly the in-memory feed's events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core.candles import Candles
from pivotal.core.events import CandleClosed
from pivotal.core.ports import MarketFeed
from pivotal.core.timeframes import Timeframe
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.resample import resample
from pivotal.data.series import SeriesKey
from pivotal.runtime.replay_feed import CandleStream, ReplayFeed
from pivotal.testing.runtime_fakes import MINUTE, candles

M1, M5 = Timeframe.M1, Timeframe.M5


def _drain(feed: ReplayFeed) -> list[tuple[int, list[tuple[str, str, int, tuple[float, ...]]]]]:
    """Every event time with its events as plain tuples, and the clock at each."""
    out = []
    while (events := feed.next_events()) is not None:
        now = feed.clock.now_ms()
        assert all(e.event_time == now for e in events)
        out.append((now, [_plain(e) for e in events]))
    return out


def _plain(event: CandleClosed) -> tuple[str, str, int, tuple[float, ...]]:
    c = event.candle
    assert len(c) == 1
    values = (c.open[0], c.high[0], c.low[0], c.close[0], c.volume[0])
    return (event.symbol, str(event.timeframe), int(c.timestamp[0]), tuple(map(float, values)))


def test_events_come_at_each_close_base_bars_first() -> None:
    btc = candles(10)
    eth = candles(10, skip=[2, 3])
    five = {Timeframe.M5: resample(btc, M1, M5)}
    feed = ReplayFeed.from_candles(
        {"BTC/USDT": btc, "ETH/USDT": eth}, timeframe=M1, higher={"BTC/USDT": five}
    )
    assert isinstance(feed, MarketFeed)
    assert feed.clock.now_ms() == 0
    seen = _drain(feed)
    assert [t for t, _ in seen] == [(i + 1) * MINUTE for i in range(10)]
    at_5 = seen[4][1]
    assert [(s, tf) for s, tf, _, _ in at_5] == [
        ("BTC/USDT", "1m"),
        ("ETH/USDT", "1m"),
        ("BTC/USDT", "5m"),
    ]
    assert [(s, o) for s, _, o, _ in seen[2][1]] == [("BTC/USDT", 2 * MINUTE)]  # ETH has none


def test_an_empty_span_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one candle stream"):
        ReplayFeed([])


def _with_gaps(n: int, seed: int, holes: int) -> Candles:
    rng = np.random.default_rng(seed)
    skip: set[int] = set()
    for start in rng.integers(1, n - 1, holes):
        skip.update(range(int(start), int(start) + int(rng.integers(1, 40))))
    return candles(n, start=1_700_000_000_000 - 1_700_000_000_000 % 3_600_000, skip=sorted(skip))


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(50, 1_500),
    holes=st.integers(0, 6),
    chunk=st.integers(1, 400),
)
def test_the_store_feed_reads_bounded_chunks_and_equals_the_memory_feed(
    tmp_path_factory: pytest.TempPathFactory, seed: int, n: int, holes: int, chunk: int
) -> None:
    path: Path = tmp_path_factory.mktemp("feed") / "store.duckdb"
    series = {
        "BTC/USDT": _with_gaps(n, seed, holes),
        "ETH/USDT": _with_gaps(n, seed + 1, holes),
    }
    higher = {
        s: {M5: resample(c, M1, M5), Timeframe.H1: resample(c, M1, Timeframe.H1)}
        for s, c in series.items()
    }
    with DuckDBStore(path) as store:
        for symbol, bars in series.items():
            store.write_candles(SeriesKey("binance", symbol, M1), bars, source="test")
            for tf, tf_bars in higher[symbol].items():
                store.write_candles(SeriesKey("binance", symbol, tf), tf_bars, source="test")
        start = min(int(c.timestamp[0]) for c in series.values())
        end = max(int(c.timestamp[-1]) for c in series.values()) + MINUTE
        stored = ReplayFeed.from_store(
            store,
            exchange="binance",
            symbols=list(series),
            timeframe=M1,
            higher=[M5, Timeframe.H1],
            start=start,
            end=end,
            chunk_bars=chunk,
        )
        # bars opened in [start, end): the higher bars opened before `end`, as in the store
        clipped = {s: {tf: b.between(start, end) for tf, b in h.items()} for s, h in higher.items()}
        memory = ReplayFeed.from_candles(series, timeframe=M1, higher=clipped)
        assert _drain(stored) == _drain(memory)
        assert all(s.largest_chunk <= chunk for s in stored.streams)


def test_a_stream_reads_only_its_chunk_windows() -> None:
    bars = candles(100)
    reads: list[tuple[int, int]] = []

    def read(lo: int, hi: int) -> Candles:
        reads.append((lo, hi))
        return bars.between(lo, hi)

    stream = CandleStream("BTC/USDT", M1, read, start=0, end=100 * MINUTE, chunk_bars=30)
    popped = []
    while stream.next_close is not None:
        popped.append(stream.pop())
    assert len(popped) == 100
    assert reads == [
        (0, 30 * MINUTE),
        (30 * MINUTE, 60 * MINUTE),
        (60 * MINUTE, 90 * MINUTE),
        (90 * MINUTE, 100 * MINUTE),
    ]
    assert stream.largest_chunk == 30


class _CountingStore:
    """A store that records how many rows each ``read_candles`` returned."""

    def __init__(self, inner: DuckDBStore) -> None:
        self.inner = inner
        self.rows: list[int] = []

    def read_candles(self, key: SeriesKey, start: int | None = None, end: int | None = None):
        bars = self.inner.read_candles(key, start, end)
        self.rows.append(len(bars))
        return bars


def test_the_store_feed_holds_one_bounded_chunk_whatever_the_span(tmp_path: Path) -> None:
    """Memory independent of the span: a 4x longer span makes 4x the reads, each at most
    ``chunk_bars`` rows, and the feed keeps only the current chunk per stream."""
    n = 20_000
    key = SeriesKey("binance", "BTC/USDT", M1)
    reads = []
    with DuckDBStore(tmp_path / "long.duckdb") as inner:
        inner.write_candles(key, candles(4 * n), source="test")
        for span in (n, 4 * n):
            store = _CountingStore(inner)
            feed = ReplayFeed.from_store(
                store,  # type: ignore[arg-type]
                exchange="binance",
                symbols=["BTC/USDT"],
                timeframe=M1,
                start=0,
                end=span * MINUTE,
                chunk_bars=2_000,
            )
            count = 0
            while (events := feed.next_events()) is not None:
                count += len(events)
                assert feed.streams[0].held <= 2_000
            assert count == span
            assert max(store.rows) == 2_000
            reads.append(len(store.rows))
    assert reads[1] >= 4 * reads[0] - 1
