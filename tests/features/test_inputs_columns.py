"""Per-candle feature columns: causal (a prefix gives the same rows), scale-free, and the
pivot columns equal to a direct row-by-row lookup of the confirmed pivots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core.candles import Candles
from pivotal.features.inputs.columns import (
    ColumnsConfig,
    candle_columns,
    indicator_columns,
    pivot_columns,
)
from pivotal.features.pivots import pivots_known_at, williams_pivots
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir


@pytest.fixture(scope="module")
def eth() -> Candles:
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    frame = pd.read_parquet(data / "ohlcv/binance-spot/1m/ETH_USDT-1m.parquet").iloc[:4_000]
    return Candles.from_frame(frame.reset_index(drop=True))


def test_columns_on_a_prefix_equal_the_full_runs_rows(eth: Candles) -> None:
    layout, full = candle_columns(eth, "1m")
    assert full.shape == (len(eth), len(layout))
    for m in (5, 40, 777, 2_500):
        _, prefix = candle_columns(eth[:m], "1m")
        np.testing.assert_array_equal(prefix, full[:m], err_msg=f"prefix of {m} bars")


def test_indicator_columns_do_not_depend_on_the_price_scale(eth: Candles) -> None:
    _, base = indicator_columns(eth)
    scaled = Candles(
        eth.timestamp, eth.open * 1000, eth.high * 1000, eth.low * 1000, eth.close * 1000,
        eth.volume,
    )  # fmt: skip
    _, other = indicator_columns(scaled)
    np.testing.assert_allclose(other, base, rtol=1e-7, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(30, 200))
def test_pivot_columns_equal_a_direct_lookup(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    spread = rng.uniform(0.01, 0.5, n)
    ts = 1_700_000_000_000 + 60_000 * np.arange(n, dtype=np.int64)
    candles = Candles(ts, close, close + spread, close - spread, close, np.ones(n))
    pivots = williams_pivots(candles.high, candles.low, levels=3, strength=1)
    layout, matrix = pivot_columns(candles, pivots, levels=3)
    for i in rng.integers(0, n, 8):
        known = pivots_known_at(pivots, int(i))
        for level in (1, 2, 3):
            for kind in ("high", "low"):
                rows = known[(known["level"] == level) & (known["kind"] == kind)]
                j = layout.names.index(f"pivot{level}_{kind}_logrel")
                if rows.empty:
                    assert np.isnan(matrix[i, j]) and np.isnan(matrix[i, j + 1])
                    continue
                last = rows.sort_values("confirm_index", kind="stable").iloc[-1]
                assert matrix[i, j] == pytest.approx(np.log(last["price"] / close[i]))
                assert matrix[i, j + 1] == pytest.approx(np.log1p(i - last["index"]))


def test_column_config_refuses_nothing_enabled_and_unknown_keys() -> None:
    with pytest.raises(ValueError, match="no column group"):
        ColumnsConfig(indicators=False, pivots=False).layout()
    with pytest.raises(ValueError, match="extra"):
        ColumnsConfig(indicatorz=True)  # type: ignore[call-arg]


def test_pivot_columns_refuse_pivots_of_other_candles() -> None:
    ts = 1_700_000_000_000 + 60_000 * np.arange(50, dtype=np.int64)
    x = 100 + np.sin(np.arange(50))
    candles = Candles(ts, x, x + 1, x - 1, x, np.ones(50))
    pivots = williams_pivots(candles.high, candles.low, levels=2, strength=1)
    with pytest.raises(ValueError, match="these very candles"):
        pivot_columns(candles[:10], pivots, levels=2)
