"""Issue 13 item 2 (features half): indicators, pivots and model windows restart after a gap.

A gap is a missing run of more than ``max_missing_bars`` bars (:mod:`pivotal.core.gaps`). After
one, every value equals that of the segment computed alone (no value mixes bars from both
sides), streaming equals batch, and no model window holds bars from both sides. Real data: the
ETH/USDT 1m windows of ../shared/data (2020-05..06 and 2021-11..12, 17 months apart), where
bridging the hole drove the Bollinger lower band below zero (the ``RuntimeWarning`` of
``pivotal train transformer -s ETH/USDT``); synthetic data: random walks with random holes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core.candles import Candles
from pivotal.core.gaps import find_series_gaps, segment_bounds, segment_ids
from pivotal.core.timeframes import Timeframe
from pivotal.features.indicators import (
    FEATURE_COLUMNS,
    StreamingIndicatorSet,
    compute_indicator_features,
)
from pivotal.features.inputs import (
    ColumnsConfig,
    EncodedInputDataset,
    InputEncoder,
    InputSpec,
    build_input,
    candle_columns,
    check_input,
)
from pivotal.features.inputs.builder import closed_window
from pivotal.features.pivots import StreamingWilliamsPivots, pivots_to_frame, williams_pivots
from pivotal.features.pivots.levels import PivotBounds, pivot_bounds_series, support_resistance
from pivotal.orchestrator.frame import MarketFrame
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.testing.training import store_candles, tiny_job
from pivotal.training.pipeline import prepare

MS = 60_000
M1, H1 = Timeframe.M1, Timeframe.H1
COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]


def eth_windows() -> Candles:
    """ETH/USDT 1m of the 2020-05 and 2021-11 windows, as one series with a 17-month hole."""
    data = shared_data_dir()
    if data is None:
        pytest.skip(SKIP_REASON)
    folder = data / "ohlcv" / "binance-spot" / "1m" / "windows"
    parts = [pd.read_parquet(p, columns=COLUMNS) for p in sorted(folder.glob("ETH_USDT-1m_202*"))]
    frame = pd.concat(parts[:2]).sort_values("timestamp").reset_index(drop=True)
    return Candles.from_frame(frame)


def walk(n: int, seed: int, holes: list[tuple[int, int]], step: int = MS) -> Candles:
    """A positive random walk of ``n`` bars; ``holes``: (after bar, bars missing)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n))
    shift = np.zeros(n, dtype=np.int64)
    for after, missing in holes:
        shift[after + 1 :] += missing
    ts = 1_700_000_000_000 + (np.arange(n, dtype=np.int64) + shift) * step
    return Candles(ts, open_, high, low, close, rng.uniform(1, 10, n))


def same(got: np.ndarray, expected: np.ndarray) -> None:
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-10, atol=1e-8)


def assert_segments_alone(candles: Candles, step: int) -> None:
    """Indicators and pivots of the whole series equal those of each segment computed alone."""
    whole = compute_indicator_features(candles, allow_short=True, step_ms=step)
    pivots = williams_pivots(candles.high, candles.low, timestamps=candles.timestamp, step_ms=step)
    for a, z in segment_bounds(candles.timestamp, step):
        alone = compute_indicator_features(candles[a:z], allow_short=True, step_ms=step)
        for name in FEATURE_COLUMNS:
            same(whole[name][a:z], alone[name])
        part = williams_pivots(candles.high[a:z], candles.low[a:z])
        mine = pivots[(pivots["index"] >= a) & (pivots["index"] < z)]
        assert np.array_equal(mine["index"].to_numpy() - a, part["index"].to_numpy())
        assert np.array_equal(mine["confirm_index"].to_numpy() - a, part["confirm_index"])
        assert np.array_equal(mine["price"].to_numpy(), part["price"].to_numpy())


# -- real data ---------------------------------------------------------------------------------
def test_the_eth_windows_have_the_17_month_hole() -> None:
    candles = eth_windows()
    gaps = find_series_gaps(candles.timestamp, MS)
    assert any(g.missing > 500_000 for g in gaps)


def test_indicators_and_pivots_after_the_real_gap_equal_the_segment_alone() -> None:
    assert_segments_alone(eth_windows(), MS)


def test_bollinger_lower_band_is_never_negative_on_real_data() -> None:
    candles = eth_windows()
    lower = compute_indicator_features(candles)["bb_lower"]  # step inferred from the times
    assert np.nanmin(lower) > 0
    # bridging the hole (what the code did before) is what drove it below zero
    bridged = compute_indicator_features(candles, max_missing_bars=10**9)["bb_lower"]
    assert np.nanmin(bridged) < 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # log(bb_lower / close) warned on the negative band
        _, matrix = candle_columns(candles, M1, ColumnsConfig())
    names = ColumnsConfig().layout().names
    after = int(np.flatnonzero(np.diff(candles.timestamp) > 6 * MS)[0]) + 1
    # the first bars after the gap warm up again: NaN, as at the start of a series
    assert np.isnan(matrix[after : after + 19, names.index("ind_bb_lower_logrel")]).all()
    assert np.isfinite(matrix[after + 19, names.index("ind_bb_lower_logrel")])


def test_streaming_equals_batch_across_the_real_gap() -> None:
    candles = eth_windows()
    after = int(np.flatnonzero(np.diff(candles.timestamp) > 6 * MS)[0]) + 1
    part = candles[after - 2_000 : after + 2_000]
    batch = compute_indicator_features(part, step_ms=MS)
    stream = StreamingIndicatorSet(step_ms=MS)
    rows = stream.update_many(part)
    assert stream.gaps == 1
    for j, name in enumerate(FEATURE_COLUMNS):
        same(rows[:, j], batch[name])
    detector = StreamingWilliamsPivots(step_ms=MS)
    streamed = [
        p
        for t, h, lo in zip(part.timestamp.tolist(), part.high, part.low, strict=True)
        for p in detector.update(h, lo, t)
    ]
    expected = williams_pivots(part.high, part.low, timestamps=part.timestamp, step_ms=MS)
    pd.testing.assert_frame_equal(pivots_to_frame(streamed), expected)


def test_transformer_data_on_eth_1m_emits_no_runtime_warning(tmp_path: Path) -> None:
    candles = eth_windows()
    after = int(np.flatnonzero(np.diff(candles.timestamp) > 6 * MS)[0]) + 1
    part = candles[after - 3_000 : after + 3_000]
    job = tiny_job(
        "transformer", symbol="ETH/USDT", frames=16, warmup_bars=100, columns=ColumnsConfig()
    )
    with (
        store_candles(tmp_path / "eth.duckdb", part, symbol="ETH/USDT") as store,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error", RuntimeWarning)
        prepared = prepare(store, job)
    assert prepared.gaps and prepared.dropped["input window crosses a gap"] > 0
    x = prepared.train.get_batch(np.arange(len(prepared.train)))["x"]
    assert torch.isfinite(x).all()


# -- synthetic data with random holes -----------------------------------------------------------
holes_strategy = st.lists(
    st.tuples(st.integers(10, 560), st.integers(1, 40)),
    min_size=1,
    max_size=4,
    unique_by=lambda h: h[0],
)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), holes=holes_strategy, gap_bars=st.integers(0, 8))
def test_random_gaps_restart_and_streaming_equals_batch(
    seed: int, holes: list[tuple[int, int]], gap_bars: int
) -> None:
    candles = walk(600, seed, holes)
    whole = compute_indicator_features(
        candles, allow_short=True, step_ms=MS, max_missing_bars=gap_bars
    )
    stream = StreamingIndicatorSet(step_ms=MS, max_missing_bars=gap_bars)
    rows = stream.update_many(candles)
    for j, name in enumerate(FEATURE_COLUMNS):
        same(rows[:, j], whole[name])
    bounds = segment_bounds(candles.timestamp, MS, gap_bars)
    assert stream.gaps == len(bounds) - 1
    for a, z in bounds:
        alone = compute_indicator_features(
            candles[a:z], allow_short=True, step_ms=MS, max_missing_bars=gap_bars
        )
        for name in FEATURE_COLUMNS:
            same(whole[name][a:z], alone[name])
    batch = williams_pivots(
        candles.high,
        candles.low,
        levels=3,
        timestamps=candles.timestamp,
        step_ms=MS,
        max_missing_bars=gap_bars,
    )
    detector = StreamingWilliamsPivots(3, step_ms=MS, max_missing_bars=gap_bars)
    streamed = [
        p
        for t, h, lo in zip(candles.timestamp.tolist(), candles.high, candles.low, strict=True)
        for p in detector.update(h, lo, t)
    ]
    pd.testing.assert_frame_equal(pivots_to_frame(streamed), batch)
    seg = segment_ids(candles.timestamp, MS, gap_bars)
    # no pivot's level-1 window (strength 2 each side) spans a gap
    idx = batch["index"].to_numpy()
    assert np.array_equal(seg[idx - 2], seg[np.minimum(idx + 2, len(seg) - 1)])
    assert np.array_equal(seg[idx], seg[batch["confirm_index"].to_numpy()])


def test_per_candle_columns_after_a_gap_equal_the_segment_alone() -> None:
    candles = walk(900, 3, [(400, 30)])
    cfg = ColumnsConfig(pivot_levels=2)
    _, whole = candle_columns(candles, M1, cfg)
    for a, z in segment_bounds(candles.timestamp, MS):
        _, alone = candle_columns(candles[a:z], M1, cfg)
        assert np.array_equal(np.isnan(whole[a:z]), np.isnan(alone))
        np.testing.assert_allclose(whole[a:z][~np.isnan(alone)], alone[~np.isnan(alone)])


# -- model windows -----------------------------------------------------------------------------
def test_no_model_window_crosses_a_gap_in_any_stream() -> None:
    m1 = walk(6_000, 5, [(2_999, 180)])  # a 3-hour hole: a gap in the 1h stream too
    hours = m1.timestamp // H1.ms
    starts = np.flatnonzero(np.r_[True, hours[1:] != hours[:-1]])
    ends = np.r_[starts[1:], len(m1)]
    full = (ends - starts) == 60
    h1 = Candles(
        hours[starts][full] * H1.ms,
        m1.open[starts][full],
        np.maximum.reduceat(m1.high, starts)[full],
        np.minimum.reduceat(m1.low, starts)[full],
        m1.close[ends - 1][full],
        np.add.reduceat(m1.volume, starts)[full],
    )
    spec = InputSpec.candles([M1, H1], frames=12, min_frames=12)
    data = {M1: m1, H1: h1}
    ds = EncodedInputDataset(spec, data, int(m1.timestamp[0]), int(m1.timestamp[-1]) + MS)
    assert 0 < ds.gap_invalid < len(ds)
    times = ds.times(np.arange(len(ds)))
    encoder = InputEncoder(spec)
    for tf, candles in data.items():
        seg = segment_ids(candles.timestamp, tf.ms)
        last = np.searchsorted(candles.timestamp, times - tf.ms, side="right") - 1
        first = np.maximum(last - spec.frames + 1, 0)
        stale = (times - candles.timestamp[last]) // tf.ms - 1 > 5
        crossing = (seg[first] != seg[last]) | stale
        assert not (crossing & ds.valid).any(), tf
    # valid samples equal the one-at-a-time path, whose windows never cross a gap either
    for i in np.flatnonzero(ds.valid)[::97]:
        inp = build_input(data, "ETH/USDT", int(times[i]), spec)
        assert torch.equal(ds[int(i)], encoder.encode(inp))
    for i in np.flatnonzero(~ds.valid)[::17]:
        t = int(times[i])
        for tf, candles in data.items():
            window = closed_window(candles, tf, t, spec.frames)
            if window.stop > window.start:
                seg = segment_ids(candles.timestamp[window], tf.ms)
                assert seg[0] == seg[-1]
    # the orchestrator's frame gives an expert of this spec an input exactly where the bulk
    # sample is valid: the coordinator's validation skips it where the window would cross
    frame = MarketFrame()
    frame.load("ETH/USDT", data)
    picks = np.r_[np.flatnonzero(~ds.valid)[::7], np.flatnonzero(ds.valid)[::211]]
    for i in np.sort(picks):
        frame.advance("ETH/USDT", int(times[i]))
        assert check_input(frame.input("ETH/USDT", spec), spec).ok == ds.valid[i]


# -- the orchestrator's market frame -----------------------------------------------------------
def test_market_frame_restarts_after_a_gap() -> None:
    candles = walk(1_200, 9, [(599, 90)])
    frame = MarketFrame(columns=ColumnsConfig(pivot_levels=2))
    frame.load("ETH/USDT", {M1: candles})
    a = 600  # first bar after the gap
    alone = compute_indicator_features(candles[a:], allow_short=True, step_ms=MS)
    spec = InputSpec.candles([M1], frames=16, min_frames=16)
    for k in (0, 5, 15, 40, 300):
        t = int(candles.timestamp[a + k]) + MS
        frame.advance("ETH/USDT", t)
        row = frame.indicators("ETH/USDT", M1)
        for name in FEATURE_COLUMNS:
            same(np.array([row[f"1m/{name}"]]), alone[name][k : k + 1])
        first_after = int(candles.timestamp[a])
        assert all(p.timestamp >= first_after for p in frame.pivots("ETH/USDT"))
        window = frame.input("ETH/USDT", spec).ohlcv[M1]
        assert int(window.timestamp[0]) >= first_after and len(window) == min(k + 1, 16)
        assert all(p.timestamp >= first_after for p in frame.input("ETH/USDT", spec).pivot_points)
    # the last bar before the gap still sees its own segment's pivots
    frame2 = MarketFrame(columns=ColumnsConfig(pivot_levels=2))
    frame2.load("ETH/USDT", {M1: candles})
    frame2.advance("ETH/USDT", int(candles.timestamp[a - 1]) + MS)
    assert frame2.pivots("ETH/USDT")


def test_pivot_levels_and_bounds_restart_after_a_gap() -> None:
    candles = walk(1_500, 11, [(699, 60)])
    pivots = williams_pivots(candles.high, candles.low, levels=2, timestamps=candles.timestamp)
    lo, hi = pivot_bounds_series(pivots, len(candles), count=6, timestamps=candles.timestamp)
    a = 700
    alone = williams_pivots(candles.high[a:], candles.low[a:], levels=2)
    lo_alone, hi_alone = pivot_bounds_series(alone, len(candles) - a, count=6)
    same(lo[a:], lo_alone)
    same(hi[a:], hi_alone)
    assert np.isnan(lo[a]) and np.isfinite(lo[a - 1])  # warm-up again after the gap
    now = len(candles) - 1
    price = float(candles.close[now])
    levels = support_resistance(pivots, now, price, since_index=a)
    assert levels and all(level.index >= a for level in levels)
    bounds = PivotBounds.from_pivots(pivots, now, count=6, since_index=a)
    assert bounds.price_min == lo[now] and bounds.price_max == hi[now]
