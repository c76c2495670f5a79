"""Trade files from real captures import exactly, idempotently, and refuse bad rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pivotal.core import Symbol
from pivotal.core.errors import DataError
from pivotal.data.duckdb_store import DuckDBStore
from pivotal.data.trade_import import import_trade_files, infer_trade_symbol
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    with DuckDBStore(tmp_path / "s.duckdb") as s:
        yield s


@needs_data
def test_real_spot_and_futures_trades_import_exactly(store: DuckDBStore) -> None:
    assert DATA is not None
    spot = sorted((DATA / "trades" / "binance-spot").glob("*.parquet"))
    usdm = sorted((DATA / "trades" / "binance-usdm").glob("*.parquet"))
    results = import_trade_files([*spot, *usdm], store)
    assert {(r.exchange, str(r.symbol)) for r in results} == {
        ("binance", "BTC/USDT"),
        ("binance", "ETH/USDT"),
        ("binanceusdm", "BTC/USDT"),
        ("binanceusdm", "ETH/USDT"),
    }
    for r in results:
        source = pd.read_parquet(r.path)
        back = store.read_trades(r.exchange, r.symbol)
        assert len(back) == len(source) == r.written.inserted
        np.testing.assert_array_equal(back.trade_id, source["trade_id"].to_numpy())
        np.testing.assert_array_equal(back.price, source["price"].to_numpy())
        np.testing.assert_array_equal(back.quantity, source["qty"].to_numpy())
        np.testing.assert_array_equal(back.is_buyer_maker, source["is_buyer_maker"].to_numpy())
    again = import_trade_files(spot, store)
    assert all(r.written.unchanged == r.rows for r in again)


@needs_data
def test_tardis_csv_gives_ms_timestamps_and_aggressor_side(store: DuckDBStore) -> None:
    assert DATA is not None
    path = DATA / "trades" / "binance-usdm" / "tardis" / "BTCUSDT-trades-20200222.csv.gz"
    (result,) = import_trade_files([path], store)
    source = pd.read_csv(path)
    assert (result.exchange, result.symbol) == ("binanceusdm", Symbol("BTC", "USDT"))
    back = store.read_trades("binanceusdm", result.symbol)
    assert len(back) == len(source) == 9_999
    np.testing.assert_array_equal(back.timestamp, source["timestamp"].to_numpy() // 1000)
    np.testing.assert_array_equal(back.is_buyer_maker, (source["side"] == "sell").to_numpy())


def test_binance_trade_csv_without_header(tmp_path: Path, store: DuckDBStore) -> None:
    path = tmp_path / "ETHUSDT-trades-2025-01-01.csv"
    path.write_text(
        "1,3300.5,0.1,330.05,1735689600000123,True,True\n"
        "2,3300.6,0.2,660.12,1735689600001456,False,True\n"
    )
    (result,) = import_trade_files([path], store, exchange="binance")
    back = store.read_trades("binance", result.symbol)
    assert back.timestamp.tolist() == [1735689600000, 1735689600001]
    assert back.is_buyer_maker.tolist() == [True, False]


def test_bad_trades_are_refused_and_nothing_is_written(tmp_path: Path, store: DuckDBStore) -> None:
    good = tmp_path / "BTC_USDT-trades-good.parquet"
    bad = tmp_path / "BTC_USDT-trades-bad.parquet"
    frame = pd.DataFrame(
        {
            "timestamp": [1, 2, 3],
            "trade_id": [10, 11, 12],
            "price": [100.0, 101.0, 102.0],
            "qty": [1.0, 1.0, 1.0],
            "is_buyer_maker": [True, False, True],
        }
    )
    frame.to_parquet(good)
    frame.assign(qty=[1.0, -1.0, 1.0]).to_parquet(bad)
    with pytest.raises(DataError, match="quantity"):
        import_trade_files([good, bad], store, exchange="binance")
    assert store.trade_symbols() == []
    weird = tmp_path / "weird.parquet"
    frame.to_parquet(weird)
    with pytest.raises(DataError, match="--symbol"):
        import_trade_files([weird], store, exchange="binance")


def test_symbol_inference_from_names() -> None:
    assert infer_trade_symbol(Path("BTC_USDT-trades-x.parquet")) == Symbol("BTC", "USDT")
    assert infer_trade_symbol(Path("ETHUSDT-trades-2024.csv")) == Symbol("ETH", "USDT")
    assert infer_trade_symbol(Path("trades.csv")) is None
