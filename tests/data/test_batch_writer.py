"""MarketBatch (one transaction, all or nothing) and the buffering MarketBatchWriter."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from helpers.cob import T0, assert_same_cob, synthetic_cob
from pivotal.core import Candles, Symbol, Timeframe
from pivotal.core.clock import ReplayClock
from pivotal.core.errors import DataError, OperationalError
from pivotal.core.trades import Trades
from pivotal.data import duckdb_store
from pivotal.data.batch_writer import (
    BatchResult,
    CandlePart,
    COBPart,
    MarketBatch,
    MarketBatchWriter,
    TradePart,
)
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.series import SeriesKey, WriteResult

BTC = Symbol("BTC", "USDT")
M1 = SeriesKey("binance", BTC, Timeframe.M1)
S1 = SeriesKey("binance", BTC, Timeframe.S1)


def bars(start: int, n: int, step: int, price: float = 100.0) -> Candles:
    ts = start + np.arange(n, dtype=np.int64) * step
    close = price + np.arange(n, dtype=float)
    return Candles(ts, close - 0.5, close + 1, close - 1, close, np.full(n, 2.0))


def trades(first_id: int, n: int, start: int = T0) -> Trades:
    ids = first_id + np.arange(n, dtype=np.int64)
    return Trades(start + ids * 10, 100.0 + ids * 0.01, np.full(n, 0.5), ids % 2 == 0, ids)


def batch(n: int = 10) -> MarketBatch:
    return MarketBatch(
        candles=(
            CandlePart(M1, bars(T0, n, 60_000), "stream:binance"),
            CandlePart(S1, bars(T0, n, 1_000), "stream:binance"),
        ),
        trades=(TradePart("binance", BTC, trades(1, n), "stream:binance"),),
        cob=(COBPart("binance", BTC, synthetic_cob(n), "stream:binance"),),
    )


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    with DuckDBStore(tmp_path / "s.duckdb") as s:
        yield s


def _nothing_stored(store: DuckDBStore) -> None:
    assert store.series() == []
    assert len(store.read_candles(M1)) == 0 and len(store.read_candles(S1)) == 0
    assert len(store.read_trades("binance", BTC)) == 0
    assert store.read_cob("binance", BTC) == []


# -- write_batch --------------------------------------------------------------------------
def test_a_batch_lands_whole_and_rewriting_it_changes_nothing(store: DuckDBStore) -> None:
    result = store.write_batch(batch())
    assert result.candles == (WriteResult(10, 0, 0), WriteResult(10, 0, 0))
    assert result.trades == (WriteResult(10, 0, 0),)
    assert result.cob == (WriteResult(10, 0, 0),)
    again = store.write_batch(batch())
    assert again.total("candles") == WriteResult(0, 0, 20)
    assert again.total("trades").unchanged == again.total("cob").unchanged == 10
    assert store.read_candles(S1).close.tolist() == bars(T0, 10, 1_000).close.tolist()
    assert store.trade_sources("binance", BTC)[0].source == "stream:binance"
    assert_same_cob(store.read_cob("binance", BTC), synthetic_cob(10))


def test_a_failure_in_the_last_part_writes_nothing_of_the_batch(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def failing_cob(*args: object) -> WriteResult:
        calls.append(args)
        raise OSError("disk full (injected)")

    monkeypatch.setattr(duckdb_store, "upsert_cob", failing_cob)
    with pytest.raises(OSError, match="injected"):
        store.write_batch(batch())
    assert calls  # candles and trades were upserted inside the transaction before it failed
    _nothing_stored(store)
    monkeypatch.undo()
    assert store.write_batch(batch()).total("candles").inserted == 20  # the store goes on


def test_invalid_data_in_one_part_writes_nothing(store: DuckDBStore) -> None:
    good = batch()
    eth = synthetic_cob(2, symbol="ETH/USDT")
    bad = MarketBatch(good.candles, good.trades, (*good.cob, COBPart("binance", BTC, eth)))
    with pytest.raises(DataError, match="of ETH/USDT, written under BTC/USDT"):
        store.write_batch(bad)
    _nothing_stored(store)
    assert store.write_batch(MarketBatch()) == BatchResult()


# -- MarketBatchWriter ------------------------------------------------------------------------
class FlakyStore:
    """A store whose next ``fail`` writes raise; ``during`` runs inside each write."""

    def __init__(self, inner: DuckDBStore, fail: int = 0) -> None:
        self.inner = inner
        self.fail = fail
        self.batches: list[MarketBatch] = []
        self.during: list = []

    def write_batch(self, batch: MarketBatch) -> BatchResult:
        self.batches.append(batch)
        for action in self.during:
            action()
        if self.fail:
            self.fail -= 1
            raise OperationalError("store unavailable (injected)")
        return self.inner.write_batch(batch)


def test_flushes_on_size(store: DuckDBStore) -> None:
    writer = MarketBatchWriter(store, ReplayClock(T0), max_rows=5, max_delay_ms=60_000)
    assert writer.add_candles(M1, bars(T0, 3, 60_000), "s") is None
    result = writer.add_trades("binance", "BTC/USDT", trades(1, 2), "s")
    assert result is not None and result.total("trades").inserted == 2
    stats = writer.stats()
    assert stats.flushes == 1 and stats.pending == 0
    assert stats.written == {"candles": 3, "trades": 2, "cob": 0}
    assert len(store.read_candles(M1)) == 3


def test_flushes_on_age_by_the_clock(store: DuckDBStore) -> None:
    clock = ReplayClock(T0)
    writer = MarketBatchWriter(store, clock, max_rows=1_000, max_delay_ms=1_000)
    writer.add_cob("binance", BTC, synthetic_cob(1)[0], "live")
    clock.advance_to(T0 + 600)
    assert writer.add_cob("binance", BTC, synthetic_cob(2)[1], "live") is None
    clock.advance_to(T0 + 999)
    assert writer.maybe_flush() is None  # the oldest row waited 999 ms
    clock.advance_to(T0 + 1_000)
    flushed = writer.maybe_flush()
    assert flushed is not None and flushed.total("cob").inserted == 2
    assert writer.maybe_flush() is None  # nothing buffered
    assert_same_cob(store.read_cob("binance", BTC), synthetic_cob(2))


def test_a_repeated_row_replaces_the_buffered_one(store: DuckDBStore) -> None:
    writer = MarketBatchWriter(store, ReplayClock(T0), max_rows=100, max_delay_ms=10_000)
    writer.add_candles(M1, bars(T0, 3, 60_000, price=100.0), "stream")
    writer.add_candles(M1, bars(T0 + 60_000, 1, 60_000, price=500.0), "backfill")  # last wins
    writer.add_trades("binance", BTC, trades(1, 4), "stream")
    writer.add_trades("binance", BTC, trades(3, 2), "stream")  # ids 3, 4 again
    assert writer.stats().pending == 3 + 4 and writer.stats().replaced == 3
    writer.flush()
    assert store.read_candles(M1).close.tolist() == [100.0, 500.0, 102.0]
    assert [(r.source, r.rows) for r in store.source_ranges(M1)] == [
        ("stream", 1),
        ("backfill", 1),
        ("stream", 1),
    ]
    assert store.read_trades("binance", BTC).trade_id.tolist() == [1, 2, 3, 4]


def test_a_failed_flush_keeps_every_row_for_the_next_try(store: DuckDBStore) -> None:
    flaky = FlakyStore(store, fail=1)
    clock = ReplayClock(T0)
    writer = MarketBatchWriter(flaky, clock, max_rows=1_000, max_delay_ms=500)  # type: ignore[arg-type]
    writer.add_candles(M1, bars(T0, 5, 60_000), "stream")
    writer.add_trades("binance", BTC, trades(1, 5), "stream")
    newer = bars(T0 + 4 * 60_000, 1, 60_000, price=900.0)

    def add_from_another_thread() -> None:  # while the failing write is in progress
        thread = threading.Thread(target=writer.add_candles, args=(M1, newer, "late"))
        thread.start()
        thread.join()

    flaky.during.append(add_from_another_thread)
    with pytest.raises(OperationalError, match="injected"):
        writer.flush()
    stats = writer.stats()
    assert stats.failures == 1 and stats.flushes == 0 and stats.pending == 10
    assert "store unavailable" in (stats.last_error or "")
    assert len(store.read_candles(M1)) == 0
    flaky.during.clear()
    clock.advance_to(T0 + 499)
    assert writer.maybe_flush() is None  # automatic retries wait max_delay_ms
    clock.advance_to(T0 + 500)
    assert writer.maybe_flush() is not None
    assert store.read_candles(M1).close.tolist() == [100.0, 101.0, 102.0, 103.0, 900.0]
    assert len(store.read_trades("binance", BTC)) == 5
    stats = writer.stats()
    assert (stats.failures, stats.flushes, stats.pending, stats.last_error) == (1, 1, 0, None)


def test_automatic_flush_failures_go_to_on_error(store: DuckDBStore) -> None:
    errors: list[Exception] = []
    flaky = FlakyStore(store, fail=1)
    writer = MarketBatchWriter(
        flaky,  # type: ignore[arg-type]
        ReplayClock(T0),
        max_rows=2,
        max_delay_ms=0,
        on_error=errors.append,
    )
    assert writer.add_trades("binance", BTC, trades(1, 2)) is None  # failed, reported
    assert len(errors) == 1 and writer.stats().pending == 2
    assert writer.add_trades("binance", BTC, trades(3, 1)) is not None  # retried with the rest
    assert len(store.read_trades("binance", BTC)) == 3


def test_without_on_error_an_automatic_failure_raises_and_keeps_the_rows(
    store: DuckDBStore,
) -> None:
    writer = MarketBatchWriter(FlakyStore(store, fail=1), ReplayClock(T0), max_rows=1)  # type: ignore[arg-type]
    with pytest.raises(OperationalError):
        writer.add_trades("binance", BTC, trades(1, 1))
    assert writer.stats().pending == 1
    assert writer.close() is not None and writer.closed
    assert len(store.read_trades("binance", BTC)) == 1


def test_close_flushes_refuses_later_rows_and_stays_open_when_it_fails(
    store: DuckDBStore,
) -> None:
    flaky = FlakyStore(store, fail=1)
    writer = MarketBatchWriter(flaky, ReplayClock(T0), max_rows=100)  # type: ignore[arg-type]
    writer.add_cob("binance", BTC, synthetic_cob(3), "live")
    with pytest.raises(OperationalError):
        writer.close()
    assert not writer.closed and writer.stats().pending == 3
    with writer:
        pass  # __exit__ closes: the retry succeeds
    assert writer.closed and len(store.read_cob("binance", BTC)) == 3
    with pytest.raises(OperationalError, match="closed"):
        writer.add_cob("binance", BTC, synthetic_cob(4)[3])


def test_many_threads_lose_nothing_and_write_each_row_once(store: DuckDBStore) -> None:
    writer = MarketBatchWriter(store, ReplayClock(T0), max_rows=37, max_delay_ms=60_000)
    per_thread, threads = 250, 4

    def feed(k: int) -> None:
        for i in range(0, per_thread, 5):
            first = 1 + k * per_thread + i
            writer.add_trades("binance", BTC, trades(first, 5), f"t{k}")
            writer.add_trades("binance", BTC, trades(first, 2), f"t{k}")  # repeats

    workers = [threading.Thread(target=feed, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    writer.close()
    ids = store.read_trades("binance", BTC).trade_id
    np.testing.assert_array_equal(ids, np.arange(1, per_thread * threads + 1))
    stats = writer.stats()
    assert stats.pending == 0 and stats.failures == 0
    assert stats.inserted["trades"] == per_thread * threads
    assert stats.flushes >= 2
    # every repeat either replaced its buffered row or, flushed already, was written unchanged
    repeats = 2 * per_thread * threads // 5
    assert stats.replaced + stats.written["trades"] - per_thread * threads == repeats


def test_writer_arguments_are_checked(store: DuckDBStore) -> None:
    with pytest.raises(ValueError, match="max_rows"):
        MarketBatchWriter(store, ReplayClock(), max_rows=0)
    with pytest.raises(ValueError, match="max_delay_ms"):
        MarketBatchWriter(store, ReplayClock(), max_delay_ms=-1)
    writer = MarketBatchWriter(store, ReplayClock())
    assert writer.flush() is None and writer.add_trades("binance", BTC, trades(1, 0)) is None


def test_a_snapshot_of_another_symbol_is_refused_at_once(store: DuckDBStore) -> None:
    writer = MarketBatchWriter(store, ReplayClock(T0), max_rows=100)
    eth = synthetic_cob(2, symbol="ETH/USDT")
    with pytest.raises(DataError, match="add_cob for BTC/USDT got a snapshot of ETH/USDT"):
        writer.add_cob("binance", BTC, [synthetic_cob(1)[0], eth[1]])
    with pytest.raises(DataError, match="got a snapshot of str"):
        writer.add_cob("binance", BTC, ["not a snapshot"])  # type: ignore[list-item]
    assert writer.stats().pending == 0 and writer.flush() is None
