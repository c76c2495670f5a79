"""Stored COB snapshots: exact round trips, idempotent upserts, ranges, columnar reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from helpers.cob import T0, assert_same_cob, synthetic_cob
from pivotal.core.errors import DataError
from pivotal.core.symbols import Symbol
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.store import MarketDataStore

BTC = Symbol("BTC", "USDT")


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    with DuckDBStore(tmp_path / "s.duckdb") as s:
        yield s


def test_the_store_still_implements_the_protocol(store: DuckDBStore) -> None:
    assert isinstance(store, MarketDataStore)


def test_snapshots_round_trip_bit_for_bit_with_nan_warm_up(store: DuckDBStore) -> None:
    snaps = synthetic_cob(120)
    assert np.isnan(snaps[0].imbalance_ma[60]).all()  # the warm-up is in the data
    result = store.write_cob("binance", BTC, snaps, source="test:seed7")
    assert (result.inserted, result.updated, result.unchanged) == (120, 0, 0)
    back = store.read_cob("binance", BTC)
    assert_same_cob(back, snaps)
    assert back[0].order_flow_metrics == {"buy_volume": snaps[0].order_flow_metrics["buy_volume"],
                                          "trade_count": 0.0}  # fmt: skip
    assert back[1].order_flow_metrics == {}


def test_rewriting_changes_nothing_and_a_changed_snapshot_is_replaced(
    store: DuckDBStore,
) -> None:
    snaps = synthetic_cob(30)
    store.write_cob("binance", BTC, snaps, source="import:a")
    again = store.write_cob("binance", BTC, snaps[::-1], source="import:b")  # any order
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 30)
    assert set(store.read_cob_arrays("binance", BTC).source) == {"import:a"}  # untouched
    bid = snaps[7].bid_volume.copy()
    bid[3] += 1.0
    changed = dataclasses.replace(snaps[7], bid_volume=bid)
    ma = dict(snaps[8].imbalance_ma)
    ma[60] = np.zeros_like(ma[60])  # NaN → numbers is a change too
    warmed = dataclasses.replace(snaps[8], imbalance_ma=ma)
    result = store.write_cob("binance", BTC, [changed, warmed, snaps[9]], source="stream:x")
    assert (result.inserted, result.updated, result.unchanged) == (0, 2, 1)
    back = store.read_cob("binance", BTC)
    assert_same_cob(back, [*snaps[:7], changed, warmed, *snaps[9:]])
    sources = store.read_cob_arrays("binance", BTC).source
    assert list(sources[6:10]) == ["import:a", "stream:x", "stream:x", "import:a"]


def test_bad_snapshots_are_refused_and_nothing_is_written(store: DuckDBStore) -> None:
    snaps = synthetic_cob(5)
    eth = synthetic_cob(1, symbol="ETH/USDT", start=T0 + 10_000)
    with pytest.raises(DataError, match="of ETH/USDT, written under BTC/USDT"):
        store.write_cob("binance", BTC, [*snaps, *eth])
    with pytest.raises(DataError, match="repeat a timestamp"):
        store.write_cob("binance", BTC, [*snaps, snaps[2]])
    with pytest.raises(DataError, match="not COBData"):
        store.write_cob("binance", BTC, [*snaps, "x"])  # type: ignore[list-item]
    assert store.read_cob("binance", BTC) == []
    assert store.write_cob("binance", BTC, []).total == 0


def test_ranges_last_and_keys_kept_apart(store: DuckDBStore) -> None:
    btc = synthetic_cob(50)
    eth = synthetic_cob(20, seed=3, symbol="ETH/USDT")
    store.write_cob("binance", BTC, btc)
    store.write_cob("mexc", BTC, btc[:10])
    store.write_cob("binance", "ETH/USDT", eth)
    assert_same_cob(store.read_cob("binance", BTC, T0 + 5_000, T0 + 9_000), btc[5:9])
    assert_same_cob(store.read_cob("binance", BTC, None, T0 + 9_500, last=1), [btc[9]])
    assert_same_cob(store.read_cob("binance", BTC, T0, None, last=3), btc[-3:])
    assert store.read_cob("binance", BTC, None, T0, last=1) == []
    assert_same_cob(store.read_cob("BINANCE", "ETH/USDT"), eth)
    assert store.cob_symbols() == [
        ("binance", "BTC/USDT", 50, T0, T0 + 49_000),
        ("binance", "ETH/USDT", 20, T0, T0 + 19_000),
        ("mexc", "BTC/USDT", 10, T0, T0 + 9_000),
    ]


def test_columnar_read_gives_2d_arrays_equal_to_the_snapshots(store: DuckDBStore) -> None:
    snaps = synthetic_cob(40)
    store.write_cob("binance", BTC, snaps, source="s")
    arrays = store.read_cob_arrays("binance", BTC, T0 + 2_000)
    rows = snaps[2:]
    assert len(arrays) == len(rows) and arrays.symbol == BTC
    assert arrays.timestamp.dtype == np.int64
    np.testing.assert_array_equal(arrays.timestamp, [s.timestamp for s in rows])
    for name in ("bucket_prices", "bid_volume", "ask_volume", "imbalance"):
        matrix = getattr(arrays, name)
        assert matrix.shape == (38, 41)
        assert matrix.tobytes() == np.stack([getattr(s, name) for s in rows]).tobytes()
    assert list(arrays.imbalance_ma) == [1, 5, 15, 60]
    want = np.stack([s.imbalance_ma[60] for s in rows])
    assert arrays.imbalance_ma[60].shape == (38, 11)
    assert arrays.imbalance_ma[60].tobytes() == want.tobytes()  # NaN rows included
    flow = arrays.order_flow_metrics["trade_count"]
    expected = [s.order_flow_metrics.get("trade_count", np.nan) for s in rows]
    np.testing.assert_array_equal(flow, expected)  # NaN where the second had no trades
    empty = store.read_cob_arrays("binance", BTC, 0, 1)
    assert len(empty) == 0 and empty.bid_volume.shape[0] == 0


def test_a_configuration_change_is_read_as_a_list_not_as_arrays(store: DuckDBStore) -> None:
    wide = synthetic_cob(5)
    narrow = synthetic_cob(5, buckets=10, start=T0 + 5_000, windows=(1, 5))
    store.write_cob("binance", BTC, [*wide, *narrow])
    assert_same_cob(store.read_cob("binance", BTC), [*wide, *narrow])
    with pytest.raises(DataError, match="differ in their bucket counts"):
        store.read_cob_arrays("binance", BTC)
    assert store.read_cob_arrays("binance", BTC, T0 + 5_000).bid_volume.shape == (5, 21)


@pytest.mark.slow
def test_a_day_of_snapshots_round_trips(tmp_path: Path) -> None:
    """86,400 snapshots (one symbol-day) in one write, read back whole both ways."""
    snaps = synthetic_cob(86_400, seed=11)
    with DuckDBStore(tmp_path / "day.duckdb") as store:
        assert store.write_cob("binance", BTC, snaps, source="day").inserted == 86_400
        assert store.write_cob("binance", BTC, snaps, source="day").unchanged == 86_400
        assert_same_cob(store.read_cob("binance", BTC), snaps)
        arrays = store.read_cob_arrays("binance", BTC)
    assert arrays.bid_volume.tobytes() == np.stack([s.bid_volume for s in snaps]).tobytes()
