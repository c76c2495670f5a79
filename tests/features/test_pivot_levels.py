"""Support/resistance from known pivots and pivot-based normalization bounds (PivotBounds):
hand-checked values, only pivots known at the bar are used, the per-bar series equals the
one-bar computation, normalize/denormalize round trips, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.features.pivots import (
    PivotBounds,
    PriceLevel,
    pivot_bounds_series,
    support_resistance,
    williams_pivots,
)
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
real_data = pytest.mark.skipif(DATA is None, reason=SKIP_REASON)

HIGH = [1, 3, 1, 5, 1, 4, 1, 6, 1, 8, 1, 7, 1, 5, 1, 6, 1, 4, 1]
EVEN = [0.9, 0.6, 0.8, 0.4, 0.7, 0.2, 0.5, 0.3, 0.6, 0.95]
LOW = [EVEN[i // 2] if i % 2 == 0 else HIGH[i] - 0.5 for i in range(19)]
# level 1: highs at odd bars 1..17 (3 5 4 6 8 7 5 6 4), lows at even bars 2..16
# level 2: highs (3: 5), (9: 8), (15: 6); lows (6: .4), (10: .2), (14: .3)
# level 3: high (9: 8) confirmed at 18, low (10: .2) confirmed at 17
PIVOTS = williams_pivots(HIGH, LOW, levels=3, strength=1)


def test_support_and_resistance_per_level_with_all_pivots_known() -> None:
    got = support_resistance(PIVOTS, now_index=18, price=4.5)
    assert got == (
        PriceLevel(1, "resistance", 5.0, 13, 14, 2),
        PriceLevel(1, "support", 0.8, 4, 5, 1),
        PriceLevel(2, "resistance", 5.0, 3, 6, 1),
        PriceLevel(2, "support", 0.4, 6, 9, 1),
        PriceLevel(3, "resistance", 8.0, 9, 18, 1),
        PriceLevel(3, "support", 0.2, 10, 17, 1),
    )


def test_support_and_resistance_use_only_pivots_known_at_now() -> None:
    got = support_resistance(PIVOTS, now_index=12, price=4.5)
    assert got == (
        PriceLevel(1, "resistance", 5.0, 3, 4, 1),
        PriceLevel(1, "support", 0.8, 4, 5, 1),
        PriceLevel(2, "resistance", 5.0, 3, 6, 1),
        PriceLevel(2, "support", 0.4, 6, 9, 1),
    )
    assert support_resistance(PIVOTS, now_index=1, price=4.5) == ()


def test_support_resistance_options() -> None:
    recent = support_resistance(PIVOTS, 18, 4.5, levels=(1,), recent=3)
    assert recent == (
        PriceLevel(1, "resistance", 6.0, 15, 16, 1),
        PriceLevel(1, "support", 0.6, 16, 17, 1),
    )
    wide = support_resistance(PIVOTS, 18, 4.5, levels=(1,), tolerance=0.25)
    assert wide[0] == PriceLevel(1, "resistance", 5.0, 13, 14, 6)
    above_all = support_resistance(PIVOTS, 18, 100.0, levels=(2, 3))
    assert [(lv.level, lv.side, lv.price) for lv in above_all] == [
        (2, "support", 0.4),
        (3, "support", 0.2),
    ]
    with pytest.raises(ValueError, match="price must be a positive finite"):
        support_resistance(PIVOTS, 18, float("nan"))
    with pytest.raises(ValueError, match="tolerance"):
        support_resistance(PIVOTS, 18, 4.5, tolerance=-0.1)
    with pytest.raises(ValueError, match="recent"):
        support_resistance(PIVOTS, 18, 4.5, recent=0)


def test_pivot_bounds_from_known_pivots() -> None:
    bounds = PivotBounds.from_pivots(PIVOTS, now_index=18, level=2, count=10)
    assert bounds == PivotBounds(
        level=2,
        price_min=0.2,
        price_max=8.0,
        as_of_index=18,
        n_pivots=6,
        support_levels=(0.4, 0.2, 0.3),
        resistance_levels=(5.0, 8.0, 6.0),
    )
    recent = PivotBounds.from_pivots(PIVOTS, now_index=12, level=2, count=2)
    assert (recent.price_min, recent.price_max, recent.n_pivots) == (0.4, 8.0, 2)
    with pytest.raises(ValueError, match="no high or no low"):
        PivotBounds.from_pivots(PIVOTS, now_index=8, level=2)
    with pytest.raises(ValueError, match="no high or no low"):
        PivotBounds.from_pivots(PIVOTS, now_index=18, level=4)
    with pytest.raises(ValueError, match="count must be an int >= 2"):
        PivotBounds.from_pivots(PIVOTS, now_index=18, count=1)


def test_normalize_and_denormalize() -> None:
    b = PivotBounds(level=1, price_min=100.0, price_max=200.0, as_of_index=0, n_pivots=2)
    assert b.span == 100.0
    prices = np.array([50.0, 100.0, 150.0, 200.0, 250.0])
    np.testing.assert_allclose(b.normalize(prices), [-0.5, 0.0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(b.normalize(prices, signed=True), [-2.0, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_allclose(b.normalize(prices, clip=True), [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(
        b.normalize(prices, signed=True, clip=True), [-1.0, -1.0, 0.0, 1.0, 1.0]
    )
    for signed in (False, True):
        np.testing.assert_allclose(b.denormalize(b.normalize(prices, signed), signed), prices)
    with pytest.raises(ValueError, match="price_max > price_min"):
        PivotBounds(level=1, price_min=5.0, price_max=5.0, as_of_index=0, n_pivots=2)
    with pytest.raises(ValueError, match="finite"):
        PivotBounds(level=1, price_min=float("nan"), price_max=5.0, as_of_index=0, n_pivots=2)


@settings(max_examples=100, deadline=None)
@given(
    st.floats(1.0, 1e6),
    st.floats(1e-3, 1e6),
    st.lists(st.floats(0.0, 2e6), min_size=1, max_size=20),
    st.booleans(),
)
def test_normalize_round_trip(price_min, span, prices, signed) -> None:
    b = PivotBounds(1, price_min, price_min + span, 0, 2)
    x = np.asarray(prices)
    np.testing.assert_allclose(
        b.denormalize(b.normalize(x, signed), signed), x, rtol=1e-9, atol=1e-6
    )


def check_series_against_from_pivots(pivots, n_bars, level, count, bars) -> None:
    lo, hi = pivot_bounds_series(pivots, n_bars, level=level, count=count)
    assert lo.shape == hi.shape == (n_bars,)
    for t in bars:
        try:
            b = PivotBounds.from_pivots(pivots, int(t), level=level, count=count)
        except ValueError:
            assert np.isnan(lo[t]) and np.isnan(hi[t]), t
        else:
            assert (lo[t], hi[t]) == (b.price_min, b.price_max), t


@pytest.mark.parametrize(("level", "count"), [(1, 2), (1, 4), (2, 2), (2, 10), (3, 2)])
def test_bounds_series_equals_from_pivots_at_every_bar(level, count) -> None:
    check_series_against_from_pivots(PIVOTS, len(HIGH), level, count, range(len(HIGH)))


@real_data
def test_bounds_series_on_real_data_matches_and_does_not_look_ahead() -> None:
    assert DATA is not None
    df = pd.read_parquet(DATA / "ohlcv/binance-spot/1h/BTC_USDT-1h.parquet")
    high, low = df.high.to_numpy(), df.low.to_numpy()
    pivots = williams_pivots(high, low, levels=5, strength=2)
    rng = np.random.default_rng(11)
    bars = np.concatenate([np.arange(200), rng.integers(0, len(df), 150)])
    for level, count in ((1, 10), (3, 4), (5, 2)):
        check_series_against_from_pivots(pivots, len(df), level, count, bars)
    t = len(df) // 2
    lo, hi = pivot_bounds_series(pivots, len(df), level=2, count=6)
    spiked = high.copy()
    spiked[t + 1 :] *= 3.0
    lo2, hi2 = pivot_bounds_series(williams_pivots(spiked, low), len(df), level=2, count=6)
    np.testing.assert_array_equal(hi[: t + 1], hi2[: t + 1])
    np.testing.assert_array_equal(lo[: t + 1], lo2[: t + 1])
    assert not np.array_equal(hi, hi2)
    # in the warm-up there are no bounds; later every bar has them
    assert np.isnan(hi[:10]).all() and not np.isnan(hi[len(df) // 10 :]).any()
