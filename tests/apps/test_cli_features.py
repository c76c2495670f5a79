"""`pivotal features compute` writes exactly what the library computes, to Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pivotal.core import Candles
from pivotal.data.duckdb_store import open_store
from pivotal.data.series import SeriesKey
from pivotal.features.indicators import FEATURE_COLUMNS, compute_indicator_features
from pivotal.features.pivots import williams_pivots
from pivotal.testing.cli import run_cli
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()


def compute_btc_1h(tmp_path: Path):  # type: ignore[no-untyped-def]
    args = ["features", "compute", "-e", "binance", "-s", "BTC/USDT", "-t", "1h"]
    out = ["-o", str(tmp_path / "out"), "-d", str(tmp_path / "store")]
    return run_cli([*args, *out], cwd=tmp_path)


@pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
def test_features_compute_writes_indicators_and_pivots(tmp_path: Path) -> None:
    assert DATA is not None
    frame = pd.read_parquet(DATA / "ohlcv" / "binance-spot" / "1h" / "BTC_USDT-1h.parquet")
    candles = Candles.from_frame(frame.tail(2000))
    with open_store(tmp_path / "store") as store:
        store.write_candles(SeriesKey("binance", "BTC/USDT", "1h"), candles)
    result = compute_btc_1h(tmp_path)
    assert result.returncode == 0, result.stderr
    indicators = pd.read_parquet(tmp_path / "out" / "binance_BTC_USDT_1h.indicators.parquet")
    assert list(indicators.columns) == ["timestamp", *FEATURE_COLUMNS]
    expected = compute_indicator_features(candles)
    np.testing.assert_array_equal(indicators["timestamp"].to_numpy(), candles.timestamp)
    for name in FEATURE_COLUMNS:
        np.testing.assert_array_equal(indicators[name].to_numpy(), expected[name])
    pivots = pd.read_parquet(tmp_path / "out" / "binance_BTC_USDT_1h.pivots.parquet")
    reference = williams_pivots(candles.high, candles.low, timestamps=candles.timestamp)
    assert len(pivots) == len(reference)
    np.testing.assert_array_equal(pivots["confirm_timestamp"], reference["confirm_timestamp"])
    assert set(pivots["kind"]) == {"high", "low"}


def test_features_compute_on_a_missing_series_is_a_clear_error(tmp_path: Path) -> None:
    with open_store(tmp_path / "store"):
        pass
    result = compute_btc_1h(tmp_path)
    assert result.returncode == 2
    message = " ".join(result.stderr.replace("│", " ").split())
    assert "the store holds no candles yet, so none for BTC/USDT" in message
    assert "pivotal data import" in message
