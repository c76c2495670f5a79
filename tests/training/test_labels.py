"""Labels: hand examples, brute-force oracles, what each label may read (the past only through
the anchor close, the future no further than label_horizon), features untouched by shuffling
the future, bad input, and real data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core.candles import Candles
from pivotal.core.gaps import segment_bounds
from pivotal.features.indicators import compute_indicator_features
from pivotal.features.pivots import williams_pivots
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.training.labels import (
    DIRECTION_CLASSES,
    UNKNOWN_CLASS,
    LabelConfig,
    LabelSet,
    direction_classes,
    future_prices,
    future_returns,
    future_volume,
    label_horizon,
    local_extrema,
    make_labels,
    next_pivot_targets,
)

HOUR = 3_600_000
SMALL = LabelConfig(
    horizons=(1, 3),
    dead_band=0.002,
    extrema_window=4,
    pivot_levels=2,
    pivot_strength=1,
    pivot_horizon=12,
    volume_horizon=3,
)
PIVOT_PREFIX = "pivot"


def make_candles(seed: int, n: int, tick: float = 0.5) -> Candles:
    """A seeded random walk on a price grid (so equal highs and lows are common)."""
    rng = np.random.default_rng(seed)
    close = 100.0 + np.round(np.cumsum(rng.normal(0, 1.0, n)) / tick) * tick
    close = close - min(0.0, close.min()) + 10.0
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) + np.round(rng.uniform(0, 1.5, n) / tick) * tick
    low = np.minimum(open_, close) - np.round(rng.uniform(0, 1.5, n) / tick) * tick
    low = np.maximum(low, 1.0)
    volume = rng.uniform(0.0, 50.0, n)
    timestamp = 1_700_000_000_000 - 1_700_000_000_000 % HOUR + HOUR * np.arange(n)
    return Candles(timestamp, open_, high, low, close, volume)


def replace_rows(candles: Candles, rows: np.ndarray, source: Candles) -> Candles:
    """``candles`` with OHLCV of ``rows`` taken from the same rows of ``source``."""
    cols = {name: getattr(candles, name).copy() for name in ("open", "high", "low", "close")}
    cols["volume"] = candles.volume.copy()
    for name in cols:
        cols[name][rows] = getattr(source, name)[rows]
    return Candles(candles.timestamp, **cols)


def assert_frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)


# -- hand examples -----------------------------------------------------------------------------
def test_future_returns_by_hand():
    close = np.array([1.0, 2.0, 4.0, 2.0])
    out = future_returns(close, (1, 2))
    assert list(out) == ["return_1", "return_2"]
    np.testing.assert_allclose(out["return_1"][:3], [math.log(2), math.log(2), -math.log(2)])
    assert np.isnan(out["return_1"][3])
    np.testing.assert_allclose(out["return_2"][:2], [math.log(4), 0.0])
    assert np.isnan(out["return_2"][2:]).all()
    far = future_returns(close, (4,))["return_4"]
    assert np.isnan(far).all()


def test_future_prices_by_hand():
    out = future_prices([100.0, 110.0, 99.0], (1,))["price_change_1"]
    np.testing.assert_allclose(out[:2], [0.1, -0.1])
    assert np.isnan(out[2])


def test_direction_classes_by_hand_and_dead_band_edges():
    close = np.array([100.0, 100.0, 101.0, 100.5, 100.6])
    # returns: 0, log(1.01) = 0.00995, log(100.5/101) = -0.00496, log(100.6/100.5) = 0.000995
    classes = direction_classes(close, 1, dead_band=0.005)
    assert classes.dtype == np.int64
    assert list(classes) == [1, 2, 1, 1, UNKNOWN_CLASS]
    assert list(direction_classes(close, 1, dead_band=0.0)) == [1, 2, 0, 2, UNKNOWN_CLASS]
    edge = float(np.log(close[2] / close[1]))
    assert direction_classes(close, 1, dead_band=edge)[1] == 1  # |r| <= dead band is flat
    assert DIRECTION_CLASSES[0] == "down" and DIRECTION_CLASSES[2] == "up"


def test_local_extrema_by_hand():
    high = np.array([5, 1, 3, 2, 2, 4, 6, 7, 7], dtype=float)
    low = high - 0.5
    is_max, is_min = local_extrema(high, low, 3)
    # row 0 window 1,3,2 -> peak 3 inside; row 1: 3,2,2 top at first bar -> 0;
    # row 2: 2,2,4 top at the end -> 0; row 3: 2,4,6 -> 0; row 4: 4,6,7 -> 0; row 5: 6,7,7
    # -> max 7 equals the last bar -> 0
    assert list(is_max) == [1, 0, 0, 0, 0, 0, -1, -1, -1]
    # lows: row 0 window 0.5,2.5,1.5 -> lowest at first -> 0; row 1: 2.5,1.5,1.5 -> equals
    # last -> 0; row 2: 1.5,1.5,3.5 -> equals first -> 0
    assert list(is_min[:3]) == [0, 0, 0]
    _, is_min = local_extrema(np.array([9, 5, 3, 4, 9.0]), np.array([8, 4, 2, 3, 8.0]), 3)
    assert list(is_min) == [1, 0, -1, -1, -1]


def test_future_volume_by_hand():
    out = future_volume([1.0, 2.0, 3.0, 4.0], 2)
    np.testing.assert_allclose(out[:2], [np.log1p(5.0), np.log1p(7.0)])
    assert np.isnan(out[2:]).all()


def test_next_pivot_targets_by_hand():
    # level-1 swing highs (strength 1) at bars 2 (10) and 5 (12); swing low at bar 3 (4)
    high = np.array([5, 6, 10, 7, 8, 12, 9, 9.0])
    low = np.array([4, 5, 8, 4, 6, 10, 8, 7.0])
    close = np.full(8, 8.0)
    out = next_pivot_targets(high, low, close, levels=1, strength=1)
    bars = out["pivot1_high_bars"]
    assert list(bars[:5]) == [2, 1, 3, 2, 1]  # next high after row 0 is bar 2; after 2: bar 5
    assert np.isnan(bars[5:]).all()
    np.testing.assert_allclose(out["pivot1_high_rel"][0], math.log(10 / 8))
    np.testing.assert_allclose(out["pivot1_high_rel"][3], math.log(12 / 8))
    assert list(out["pivot1_low_bars"][:3]) == [3, 2, 1]
    assert np.isnan(out["pivot1_low_bars"][3:]).all()
    # bar 5's high pivot is confirmed at bar 6: with max_horizon=2 row 3 (3 + 2 < 6) loses it
    capped = next_pivot_targets(high, low, close, 1, 1, max_horizon=2)["pivot1_high_bars"]
    assert np.isnan(capped[3]) and capped[4] == 1


# -- oracles -----------------------------------------------------------------------------------
def extrema_oracle(values: np.ndarray, w: int) -> list[int]:
    out = []
    for i in range(len(values)):
        if i + w >= len(values):
            out.append(-1)
            continue
        window = list(values[i + 1 : i + w + 1])
        out.append(int(max(window) > window[0] and max(window) > window[-1]))
    return out


def pivot_oracle(high, low, close, levels, strength, horizon) -> dict[str, list[float]]:
    pivots = williams_pivots(high, low, levels, strength)
    out: dict[str, list[float]] = {}
    for level in range(1, levels + 1):
        for kind in ("high", "low"):
            rows = pivots[(pivots["level"] == level) & (pivots["kind"] == kind)]
            rel, bars = [], []
            for i in range(len(close)):
                later = rows[rows["index"] > i].sort_values("index")
                if len(later) and (
                    horizon is None or later["confirm_index"].iloc[0] <= i + horizon
                ):
                    rel.append(math.log(later["price"].iloc[0] / close[i]))
                    bars.append(float(later["index"].iloc[0] - i))
                else:
                    rel.append(math.nan)
                    bars.append(math.nan)
            out[f"pivot{level}_{kind}_rel"] = rel
            out[f"pivot{level}_{kind}_bars"] = bars
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 120), w=st.integers(3, 8))
def test_local_extrema_equal_the_definition(seed, n, w):
    c = make_candles(seed, n)
    is_max, is_min = local_extrema(c.high, c.low, w)
    assert list(is_max) == extrema_oracle(c.high, w)
    assert list(is_min) == extrema_oracle(-c.low, w)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(10, 150),
    levels=st.integers(1, 3),
    strength=st.integers(1, 2),
    horizon=st.one_of(st.none(), st.integers(1, 30)),
)
def test_next_pivot_targets_equal_the_definition(seed, n, levels, strength, horizon):
    c = make_candles(seed, n)
    out = next_pivot_targets(c.high, c.low, c.close, levels, strength, max_horizon=horizon)
    expected = pivot_oracle(c.high, c.low, c.close, levels, strength, horizon)
    assert list(out) == list(expected)
    for key, values in expected.items():
        np.testing.assert_allclose(out[key], values, rtol=0, atol=1e-12, err_msg=key)
    for key in out:
        if key.endswith("_bars"):
            known = out[key][~np.isnan(out[key])]
            assert (known >= 1).all()
            if horizon is not None:
                assert (known <= horizon).all()  # extreme before confirmation <= i + horizon


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 80), h=st.integers(1, 10))
def test_future_volume_equals_the_definition(seed, n, h):
    volume = make_candles(seed, n).volume
    out = future_volume(volume, h)
    for i in range(n):
        if i + h < n:
            assert out[i] == pytest.approx(math.log1p(volume[i + 1 : i + h + 1].sum()), rel=1e-12)
        else:
            assert math.isnan(out[i])


# -- what labels read --------------------------------------------------------------------------
def non_pivot(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[c for c in frame.columns if not c.startswith(PIVOT_PREFIX)]]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(30, 150), data=st.data())
def test_labels_read_the_past_only_through_the_anchor_close(seed, n, data):
    """Altering every row < i (and row i except its close) changes no return, direction,
    extrema or volume label at rows >= i: the anchor close[i] is the only past value used.
    (Pivot labels read the past by definition: whether a bar is a pivot depends on the bars
    before it; their correctness is pinned by the oracle test above.)"""
    candles = make_candles(seed, n)
    i = data.draw(st.integers(1, n - 1), label="i")
    other = make_candles(seed + 1, n, tick=0.25)
    altered = replace_rows(candles, np.arange(i), other)
    cols = {name: getattr(altered, name).copy() for name in ("open", "high", "low", "volume")}
    cols["open"][i] = min(other.open[i], altered.close[i])
    cols["high"][i] = max(other.high[i], altered.close[i], cols["open"][i])
    cols["low"][i] = min(other.low[i], altered.close[i], cols["open"][i])
    cols["volume"][i] = other.volume[i]
    altered = Candles(altered.timestamp, close=altered.close, **cols)
    before = non_pivot(make_labels(candles, SMALL)).iloc[i:]
    after = non_pivot(make_labels(altered, SMALL)).iloc[i:]
    assert_frames_equal(before, after)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(60, 160), data=st.data())
def test_shuffling_the_future_changes_labels_but_no_feature(seed, n, data):
    """Labels at i really use the future; features at rows <= i never do."""
    candles = make_candles(seed, n)
    i = data.draw(st.integers(40, n - 3), label="i")
    future = np.arange(i + 1, n)
    rng = np.random.default_rng(seed)
    order = rng.permutation(future)
    if order[0] == i + 1:  # make sure bar i + 1 really moves
        order[[0, 1]] = order[[1, 0]]
    cols = {
        name: getattr(candles, name).copy() for name in ("open", "high", "low", "close", "volume")
    }
    for name in cols:
        cols[name][future] = getattr(candles, name)[order]
    shuffled = Candles(candles.timestamp, **cols)
    assume_moved = shuffled.close[i + 1] != candles.close[i + 1]

    labels = make_labels(candles, SMALL)
    labels_shuffled = make_labels(shuffled, SMALL)
    if assume_moved:
        assert labels["return_1"].iloc[i] != labels_shuffled["return_1"].iloc[i]

    features = compute_indicator_features(candles)
    features_shuffled = compute_indicator_features(shuffled)
    for name, values in features.items():
        np.testing.assert_array_equal(values[: i + 1], features_shuffled[name][: i + 1], name)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(20, 150), data=st.data())
def test_no_label_reads_beyond_label_horizon(seed, n, data):
    """Labels on bars [0, m) equal the full run's wherever they are known (no label is ever
    revised by later data), and rows with i + label_horizon < m are known exactly when the
    full run's are: label i is a function of bars <= i + label_horizon, as purging needs."""
    candles = make_candles(seed, n)
    m = data.draw(st.integers(2, n), label="m")
    horizon = label_horizon(SMALL)
    full = LabelSet.build(candles, SMALL)
    prefix = LabelSet.build(candles[:m], SMALL)
    head = full.frame.iloc[:m]
    for column in full.frame.columns:
        a = prefix.frame[column].to_numpy()
        b = head[column].to_numpy()
        known = prefix.known([column])
        np.testing.assert_array_equal(a[known], b[known], err_msg=column)
        settled = np.arange(m) + horizon < m
        np.testing.assert_array_equal(
            known[settled], full.known([column])[:m][settled], err_msg=column
        )


# -- label set ---------------------------------------------------------------------------------
def test_label_set_columns_horizon_and_alignment():
    candles = make_candles(7, 300)
    labels = LabelSet.build(candles, SMALL)
    frame = labels.frame
    assert len(frame) == len(candles)
    np.testing.assert_array_equal(frame.index.to_numpy(), candles.timestamp)
    assert frame.index.name == "timestamp"
    assert list(frame.columns[:4]) == ["return_1", "direction_1", "return_3", "direction_3"]
    assert set(labels.class_columns) == {"direction_1", "direction_3", "local_max_4", "local_min_4"}
    assert labels.class_columns["direction_1"] == DIRECTION_CLASSES
    assert "pivot2_low_bars" in labels.regression_columns
    assert "volume_3" in labels.regression_columns
    for column in labels.class_columns:
        assert frame[column].dtype == np.int64
    assert labels.horizon == label_horizon(SMALL) == 12
    assert label_horizon(SMALL.model_copy(update={"pivot_levels": 0})) == 4
    # the last horizon rows lack the 3-bar return; all rows before are known
    known = labels.known(["return_3"])
    assert known[:-3].all() and not known[-3:].any()
    np.testing.assert_array_equal(labels.rows_at(candles.timestamp[[5, 9]] + HOUR, HOUR), [5, 9])
    with pytest.raises(ValueError, match="not candle closes"):
        labels.rows_at([candles.timestamp[5] + 1], HOUR)
    with pytest.raises(ValueError, match="no label column"):
        labels.known(["nope"])
    assert_frames_equal(make_labels(candles, SMALL), frame)


def test_no_pivot_labels_when_levels_is_zero():
    frame = make_labels(make_candles(3, 50), LabelConfig(pivot_levels=0))
    assert not any(c.startswith(PIVOT_PREFIX) for c in frame.columns)


# -- bad input ---------------------------------------------------------------------------------
def test_bad_input_raises_clear_errors():
    close = np.array([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="NaN"):
        future_returns([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="positive"):
        future_returns([1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        direction_classes([1.0, -1.0], 1, 0.0)
    with pytest.raises(ValueError, match=">= 1"):
        future_returns(close, (0,))
    with pytest.raises(ValueError, match=">= 1"):
        direction_classes(close, 0, 0.0)
    with pytest.raises(ValueError, match=">= 1"):
        future_volume([1.0, 2.0], 0)
    with pytest.raises(ValueError, match="at least one"):
        future_returns(close, ())
    with pytest.raises(ValueError, match="repeats"):
        future_returns(close, (1, 1))
    with pytest.raises(TypeError, match="sequence"):
        future_returns(close, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dead_band"):
        direction_classes(close, 1, -0.1)
    with pytest.raises(ValueError, match="window must be >= 3"):
        local_extrema(close, close, 2)
    with pytest.raises(ValueError, match="equal lengths"):
        local_extrema(close, close[:3], 3)
    with pytest.raises(ValueError, match="equal lengths"):
        next_pivot_targets(close, close, close[:3], 1, 1)
    with pytest.raises(ValueError, match="NaN"):
        local_extrema([1.0, np.nan, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0], 3)
    with pytest.raises(ValueError, match="negative"):
        future_volume([1.0, -2.0, 3.0], 1)
    with pytest.raises(ValueError, match="max_horizon"):
        next_pivot_targets(close, close, close, 1, 1, max_horizon=0)
    with pytest.raises(ValueError, match="every horizon must be >= 1"):
        LabelConfig(horizons=(1, 0))
    with pytest.raises(ValueError, match="repeats"):
        LabelConfig(horizons=(5, 5))
    with pytest.raises(ValueError, match="greater than or equal to 3"):
        LabelConfig(extrema_window=2)
    with pytest.raises(ValueError, match="Extra inputs"):
        LabelConfig(horizon=3)  # unknown key
    bad = make_candles(1, 10)
    cols = {n: getattr(bad, n).copy() for n in ("open", "high", "low", "close", "volume")}
    cols["close"][4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        make_labels(Candles(bad.timestamp, **cols))
    with pytest.raises(TypeError, match="Candles"):
        make_labels(pd.DataFrame({"close": [1.0]}))  # type: ignore[arg-type]


# -- real data ---------------------------------------------------------------------------------
DATA = shared_data_dir()


@pytest.mark.skipif(DATA is None, reason=SKIP_REASON)
def test_real_hourly_labels_match_pandas_and_never_revise():
    assert DATA is not None
    frame = pd.read_parquet(DATA / "ohlcv/binance-spot/1h/ETH_USDT-1h.parquet")
    candles = Candles.from_frame(frame.reset_index(drop=True))[:6000]
    config = LabelConfig()
    labels = make_labels(candles, config)
    # the series has exchange outages: each segment between gaps is labelled on its own
    bounds = segment_bounds(candles.timestamp, 3_600_000)
    assert len(bounds) > 1
    for a, z in bounds:
        close = pd.Series(candles.close[a:z])
        for h in config.horizons:
            expected = np.log(close.shift(-h) / close).to_numpy()
            np.testing.assert_allclose(labels[f"return_{h}"][a:z], expected, rtol=1e-12)
        volume = pd.Series(candles.volume[a:z])
        expected_volume = np.log1p(volume[::-1].rolling(5).sum()[::-1].shift(-1)).to_numpy()
        np.testing.assert_allclose(labels["volume_5"][a:z], expected_volume, rtol=1e-9)
    for h in config.horizons:
        up = labels[f"direction_{h}"].to_numpy()[:-h]
        assert set(np.unique(up)) == {-1, 0, 1, 2}
    prefix = make_labels(candles[:4000], config)
    for column in labels.columns:
        a, b = prefix[column].to_numpy(), labels[column].to_numpy()[:4000]
        known = ~np.isnan(a) if a.dtype.kind == "f" else a != UNKNOWN_CLASS
        np.testing.assert_array_equal(a[known], b[known], err_msg=column)
        assert (
            known[: 4000 - label_horizon(config)].sum()
            == (
                ~np.isnan(b[: 4000 - label_horizon(config)])
                if b.dtype.kind == "f"
                else b[: 4000 - label_horizon(config)] != UNKNOWN_CLASS
            ).sum()
        )
