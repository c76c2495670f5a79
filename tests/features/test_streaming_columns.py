"""Streaming per-candle columns and the rolling window equal the batch ``candle_columns`` at
every bar, across gaps (hypothesis on synthetic walks, and real BTC/ETH 1m with gaps cut in)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.real_candles import cut_gaps, real_1m
from pivotal.core.candles import Candles
from pivotal.core.gaps import segment_starts
from pivotal.core.timeframes import Timeframe
from pivotal.features.indicators.feature_set import (
    FEATURE_COLUMNS,
    IndicatorConfig,
    compute_indicator_features,
)
from pivotal.features.inputs.columns import ColumnsConfig, candle_columns
from pivotal.features.inputs.rolling import RollingCandles
from pivotal.features.inputs.streaming_columns import StreamingCandleColumns
from pivotal.features.pivots.williams import williams_pivots

MS = 60_000
SMALL = IndicatorConfig(
    sma_period=5,
    ema_period=4,
    wma_period=6,
    rsi_period=3,
    macd_fast=3,
    macd_slow=6,
    macd_signal=2,
    bb_period=5,
    stoch_k_period=4,
    stoch_k_smooth=2,
    stoch_d_period=2,
    atr_period=3,
    volatility_period=4,
    momentum_period=3,
)


def same(got: np.ndarray, want: np.ndarray, where: str = "") -> None:
    """The streaming tolerance: rtol 1e-10, atol 1e-8, NaN exactly where the batch has NaN."""
    assert got.shape == want.shape, where
    nan = np.isnan(want)
    bad = np.argwhere(np.isnan(got) != nan)
    assert not len(bad), f"{where}: NaN differs at {bad[:5].tolist()}"
    np.testing.assert_allclose(got[~nan], want[~nan], rtol=1e-10, atol=1e-8, err_msg=where)


def walk(steps: list[int], seed: int, flat_volume: tuple[int, int] = (0, 0)) -> Candles:
    """A random walk whose bar ``i`` opens ``steps[i]`` bars after bar ``i - 1``."""
    rng = np.random.default_rng(seed)
    n = len(steps)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 2e-3, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 5e-4, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 1e-3, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 1e-3, n)))
    volume = rng.lognormal(0, 1, n)
    volume[flat_volume[0] : flat_volume[1]] = 0.0  # a quiet stretch: OBV share's total is 0
    ts = 1_699_999_980_000 + np.cumsum(np.asarray(steps, dtype=np.int64)) * MS
    return Candles(ts, open_, high, low, close, volume)


def stream_rows(candles: Candles, tf: str, config: ColumnsConfig) -> np.ndarray:
    stream = StreamingCandleColumns(tf, config)
    rows = [
        stream.update(t, o, h, lo, c, v)
        for t, o, h, lo, c, v in zip(*(a.tolist() for a in candles.columns().values()), strict=True)
    ]
    return np.array(rows)


steps_strategy = st.lists(
    st.one_of(st.just(1), st.just(1), st.just(1), st.integers(2, 7), st.integers(7, 40)),
    min_size=1,
    max_size=260,
)


@settings(max_examples=40, deadline=None)
@given(
    steps=steps_strategy,
    seed=st.integers(0, 2**16),
    levels=st.integers(1, 4),
    strength=st.integers(1, 3),
    obv_window=st.integers(1, 12),
    gap_bars=st.integers(0, 6),
)
def test_streaming_rows_equal_the_batch_at_every_bar(
    steps: list[int], seed: int, levels: int, strength: int, obv_window: int, gap_bars: int
) -> None:
    candles = walk(steps, seed, flat_volume=(10, 10 + obv_window + 3))
    config = ColumnsConfig(
        indicator=SMALL, obv_window=obv_window, pivot_levels=levels, pivot_strength=strength
    )
    _, batch = candle_columns(candles, "1m", config, max_missing_bars=gap_bars)
    stream = StreamingCandleColumns("1m", config, max_missing_bars=gap_bars)
    starts = segment_starts(candles.timestamp, MS, gap_bars)
    for i in range(len(candles)):
        row = stream.update(*(float(a[i]) for a in candles.columns().values()))
        same(row, batch[i], f"bar {i}")
        assert stream.segment_start == int(np.flatnonzero(starts[: i + 1])[-1])
    assert stream.bars == len(candles)
    assert stream.gaps == int(starts.sum()) - 1


def test_raw_indicators_and_pivots_equal_their_batch_functions() -> None:
    candles = walk([1] * 300 + [20] + [1] * 400 + [3] + [1] * 300, seed=3)
    config = ColumnsConfig()
    raw = compute_indicator_features(candles, allow_short=True, step_ms=MS)
    pivots = williams_pivots(
        candles.high, candles.low, levels=5, strength=2, timestamps=candles.timestamp, step_ms=MS
    )
    stream = StreamingCandleColumns(Timeframe.M1, config)
    confirmed = []
    for i in range(len(candles)):
        stream.update(*(float(a[i]) for a in candles.columns().values()))
        got = np.array(stream.raw_indicators)
        same(got, np.array([raw[name][i] for name in FEATURE_COLUMNS]), f"bar {i}")
        confirmed += stream.new_pivots
    frame = pd.DataFrame(
        [(p.level, p.kind, p.index, p.confirm_index, p.price) for p in confirmed],
        columns=["level", "kind", "index", "confirm_index", "price"],
    )
    assert len(frame) == len(pivots) > 100
    for column in frame.columns:
        assert (frame[column].to_numpy() == pivots[column].astype(frame[column].dtype)).all()


def test_bad_bars_are_refused_and_leave_the_state_unchanged() -> None:
    candles = walk([1] * 80, seed=5)
    config = ColumnsConfig(indicator=SMALL)
    stream = StreamingCandleColumns("1m", config)
    rows = []
    for i in range(80):
        bar = [float(a[i]) for a in candles.columns().values()]
        if i == 40:
            for bad in (
                [bar[0], bar[1], bar[2], bar[3], -1.0, bar[5]],  # close <= 0
                [bar[0], bar[1], bar[3] - 1, bar[3], bar[4], bar[5]],  # high < low
                [bar[0], np.nan, *bar[2:]],  # NaN open
                [bar[0], *bar[1:5], -2.0],  # negative volume
                [bar[0] - MS * 10, *bar[1:]],  # goes back in time
            ):
                with pytest.raises(ValueError, match=r"bar opening at|strictly increase"):
                    stream.update(*bad)
        rows.append(stream.update(*bar))
    _, batch = candle_columns(candles, "1m", config)
    same(np.array(rows), batch)


def test_cob_columns_are_not_streamed() -> None:
    with pytest.raises(ValueError, match="cob=False"):
        StreamingCandleColumns("1m", ColumnsConfig(cob=True))


@settings(max_examples=15, deadline=None)
@given(steps=steps_strategy, seed=st.integers(0, 2**16), capacity=st.integers(2, 40))
def test_rolling_window_holds_the_newest_rows_of_the_batch(
    steps: list[int], seed: int, capacity: int
) -> None:
    """At every bar the window holds the newest ``capacity`` candles, their batch column
    rows, raw indicators and segment starts; views handed out keep their values."""
    candles = walk(steps, seed)
    config = ColumnsConfig(indicator=SMALL, pivot_levels=3)
    _, batch = candle_columns(candles, "1m", config)
    raw = compute_indicator_features(candles, SMALL, allow_short=True, step_ms=MS)
    raw_matrix = np.column_stack([raw[name] for name in FEATURE_COLUMNS])
    starts = np.flatnonzero(segment_starts(candles.timestamp, MS))
    seg = starts[np.searchsorted(starts, np.arange(len(candles)), side="right") - 1]
    rolling = RollingCandles("1m", capacity=capacity, columns=config)
    views = []
    for i in range(len(candles)):
        rolling.append(*(float(a[i]) for a in candles.columns().values()))
        lo = max(0, i + 1 - capacity)
        assert len(rolling) == i + 1 - lo and rolling.first_index == lo
        assert rolling.candles().equals(candles[lo : i + 1])
        same(rolling.column_rows(), batch[lo : i + 1], f"bar {i}")
        same(rolling.raw_row(len(rolling) - 1), raw_matrix[i], f"raw {i}")
        assert [rolling.segment_start(k) for k in range(len(rolling))] == seg[lo : i + 1].tolist()
        assert rolling.last_open == int(candles.timestamp[i])
        if i % 7 == 0:
            views.append((rolling.candles(), rolling.column_rows().copy(), rolling.column_rows()))
    for held, copy, view in views:  # reallocations never overwrite what was handed out
        np.testing.assert_array_equal(view, copy)
        assert held.equals(candles[np.isin(candles.timestamp, held.timestamp)])


def test_rolling_window_keeps_the_newest_pivots() -> None:
    candles = walk([1] * 2_000, seed=8)
    rolling = RollingCandles("1m", capacity=300, pivot_capacity=50)
    rolling.extend(candles)
    pivots = williams_pivots(candles.high, candles.low, levels=5, strength=2)
    assert rolling.pivots_seen == len(pivots)
    kept = pivots.tail(50)
    assert [p.index for p in rolling.pivots] == kept["index"].tolist()
    assert [p.price for p in rolling.pivots] == kept["price"].tolist()


def test_rolling_refuses_a_bad_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RollingCandles("1m", capacity=1)


# -- real data ------------------------------------------------------------------------------
@pytest.mark.parametrize(("symbol", "seed"), [("BTC", 1), ("ETH", 2)])
def test_real_1m_with_gaps_cut_in_equals_the_batch(symbol: str, seed: int) -> None:
    candles = cut_gaps(real_1m(symbol, 6_000, seed), seed, count=12, earliest=50, longest=250)
    assert len(segment_starts(candles.timestamp, MS).nonzero()[0]) >= 7
    config = ColumnsConfig()
    _, batch = candle_columns(candles, "1m", config)
    same(stream_rows(candles, "1m", config), batch, f"{symbol} 1m")
