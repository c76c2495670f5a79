"""The DuckDB store: idempotent upserts, exact round trips, gaps, atomic batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pivotal.core import Candles, Symbol, Timeframe
from pivotal.core.candles import CANDLE_COLUMNS
from pivotal.core.trades import Trades
from pivotal.data.duckdb_store import DuckDBStore, find_gaps
from pivotal.data.series import CHANGE_TOLERANCE, SeriesKey
from pivotal.data.store import MarketDataStore

KEY = SeriesKey("binance", Symbol("BTC", "USDT"), Timeframe.M1)


def candles(start: int, n: int, step: int = 60_000, price: float = 100.0) -> Candles:
    ts = start + np.arange(n, dtype=np.int64) * step
    close = price + np.arange(n, dtype=float)
    return Candles(ts, close - 0.5, close + 1, close - 1, close, np.full(n, 2.0))


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    with DuckDBStore(tmp_path / "s.duckdb") as s:
        yield s


def test_implements_the_protocol(store: DuckDBStore) -> None:
    assert isinstance(store, MarketDataStore)


def test_round_trip_is_exact(store: DuckDBStore) -> None:
    c = candles(0, 1000)
    result = store.write_candles(KEY, c, source="test")
    assert (result.inserted, result.updated, result.unchanged) == (1000, 0, 0)
    assert store.read_candles(KEY).equals(c)
    assert store.read_candles(KEY, 60_000, 180_000).timestamp.tolist() == [60_000, 120_000]
    assert store.last_timestamp(KEY) == 999 * 60_000


def test_reimport_changes_nothing_and_newer_values_replace(store: DuckDBStore) -> None:
    c = candles(0, 100)
    store.write_candles(KEY, c)
    again = store.write_candles(KEY, c)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 100)
    changed = Candles(
        c.timestamp[:10], c.open[:10], c.high[:10] + 5, c.low[:10], c.close[:10], c.volume[:10]
    )
    overlap = Candles.concat([changed, candles(100 * 60_000, 5, price=200.0)])
    result = store.write_candles(KEY, overlap)
    assert (result.inserted, result.updated, result.unchanged) == (5, 10, 0)
    back = store.read_candles(KEY)
    assert len(back) == 105 and back.high[0] == c.high[0] + 5


def test_series_and_gaps(store: DuckDBStore) -> None:
    c = Candles.concat([candles(0, 10), candles(15 * 60_000, 5), candles(30 * 60_000, 1)])
    store.write_candles(KEY, c, source="unit")
    (info,) = store.series()
    # 5 missing bars are bridged, 10 are a gap (pivotal.core.gaps, more than 5 missing bars)
    assert (info.rows, info.gaps, info.missing, info.source) == (16, 1, 15, "unit")
    assert info.missing_runs == 2
    assert (info.first, info.last) == (0, 30 * 60_000)
    gaps = store.gaps(KEY)
    assert [(g.start, g.end, g.missing) for g in gaps] == [
        (10 * 60_000, 14 * 60_000, 5),
        (20 * 60_000, 29 * 60_000, 10),
    ]
    assert find_gaps(c.timestamp, Timeframe.M1) == gaps


def test_series_are_kept_apart(store: DuckDBStore) -> None:
    eth = SeriesKey("binance", Symbol("ETH", "USDT"), Timeframe.M1)
    store.write_candles(KEY, candles(0, 10))
    store.write_candles(eth, candles(0, 3, price=5.0))
    assert len(store.read_candles(KEY)) == 10
    assert store.read_candles(eth).close.tolist() == [5.0, 6.0, 7.0]
    assert store.read_candles(SeriesKey("mexc", KEY.symbol, Timeframe.M1)).timestamp.size == 0


def test_failed_write_leaves_the_store_unchanged(store: DuckDBStore) -> None:
    """A batch that fails half-way (after replacing changed rows) is rolled back whole."""
    import duckdb
    import pyarrow as pa

    store.write_candles(KEY, candles(0, 10))
    before = store.read_candles(KEY)

    class NullOpenOnLastRow(Candles):
        def to_arrow(self) -> pa.Table:
            table = super().to_arrow()
            opens = table.column("open").to_pylist()
            opens[-1] = None  # violates NOT NULL when inserted, after the DELETE ran
            return table.set_column(1, "open", pa.array(opens, pa.float64()))

    changed = candles(0, 12, price=500.0)  # rows 0..9 change, 10..11 are new
    bad = NullOpenOnLastRow(*changed.columns().values())
    with pytest.raises(duckdb.ConstraintException):
        store.write_candles(KEY, bad)
    assert store.read_candles(KEY).equals(before)
    assert [i.rows for i in store.series()] == [10]
    assert store.write_candles(KEY, changed).updated == 10  # the store still works


def test_store_reopens_with_data_and_read_only(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with DuckDBStore(path) as s:
        s.write_candles(KEY, candles(0, 7))
    with DuckDBStore(path, read_only=True) as s:
        assert len(s.read_candles(KEY)) == 7


def test_trades_upsert_by_id(store: DuckDBStore) -> None:
    t = Trades([1, 2, 3], [10.0, 11.0, 12.0], [1.0, 2.0, 3.0], [True, False, True], [7, 8, 9])
    assert store.write_trades("binance", KEY.symbol, t).inserted == 3
    assert store.write_trades("binance", KEY.symbol, t).unchanged == 3
    back = store.read_trades("binance", KEY.symbol)
    assert back.trade_id.tolist() == [7, 8, 9] and back.is_buyer_maker.tolist() == [1, 0, 1]
    assert store.trade_symbols() == [("binance", "BTC/USDT", 3, 1, 3)]


def scaled(c: Candles, factor: float) -> Candles:
    """The same candles with every price and the volume times ``factor``."""
    return Candles(c.timestamp, *(getattr(c, n) * factor for n in CANDLE_COLUMNS[1:]))


def sources(store: DuckDBStore) -> list[tuple[str, int, int, int]]:
    return [(r.source, r.first, r.last, r.rows) for r in store.source_ranges(KEY)]


def test_differences_within_the_tolerance_are_unchanged(store: DuckDBStore) -> None:
    c = candles(0, 10)
    store.write_candles(KEY, c, source="import:a")
    rounding = store.write_candles(KEY, scaled(c, 1 + CHANGE_TOLERANCE / 10), source="import:b")
    assert (rounding.updated, rounding.unchanged) == (0, 10)
    assert store.read_candles(KEY).equals(c)  # untouched, label included
    assert sources(store) == [("import:a", 0, 9 * 60_000, 10)]
    real = store.write_candles(KEY, scaled(c, 1 + CHANGE_TOLERANCE * 10), source="import:b")
    assert (real.updated, real.unchanged) == (10, 0)


def test_derived_candles_never_replace_exchange_ones_unless_asked(store: DuckDBStore) -> None:
    exchange = candles(0, 10)
    store.write_candles(KEY, exchange, source="download:binance")
    derived = Candles.concat([scaled(candles(0, 10), 1.01), candles(10 * 60_000, 5)])
    kept = store.write_candles(KEY, derived, source="resampled:1s")
    assert (kept.inserted, kept.updated, kept.unchanged, kept.kept) == (5, 0, 0, 10)
    assert store.read_candles(KEY, 0, 10 * 60_000).equals(exchange)
    assert sources(store) == [
        ("download:binance", 0, 9 * 60_000, 10),
        ("resampled:1s", 10 * 60_000, 14 * 60_000, 5),
    ]
    again = store.write_candles(KEY, scaled(derived, 1.02), source="aggregated:trades")
    assert (again.updated, again.kept) == (5, 10)  # derived replaces derived
    forced = store.write_candles(KEY, derived, source="resampled:1s", overwrite=True)
    assert forced.updated == 15
    assert sources(store) == [("resampled:1s", 0, 14 * 60_000, 15)]
    # the exchange's candle wins back its slot, even where the values agree
    back = store.write_candles(KEY, derived[:3], source="download:binance")
    assert (back.updated, back.unchanged) == (0, 3)
    assert sources(store)[0] == ("download:binance", 0, 2 * 60_000, 3)
    (info,) = store.series()
    assert [(s.source, s.rows) for s in info.sources] == [
        ("resampled:1s", 12),
        ("download:binance", 3),
    ]
    assert info.source == "resampled:1s 80 %, download:binance 20 %"


def test_the_store_bounds_duckdb_memory_and_refuses_a_bad_limit(tmp_path: Path) -> None:
    """A long run writes history and journal rows for days: DuckDB's cache of them must not
    grow the process without bound (its default is 80 % of the RAM)."""
    with DuckDBStore(tmp_path / "a.duckdb") as store:
        limit = store._con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    assert "MiB" in limit and 400 < float(limit.split()[0]) <= 512
    with DuckDBStore(tmp_path / "b.duckdb", memory_limit="2GB") as store:
        limit = store._con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    assert "GiB" in limit
    with pytest.raises(ValueError, match="memory_limit 'lots'"):
        DuckDBStore(tmp_path / "c.duckdb", memory_limit="lots")
