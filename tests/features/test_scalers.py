"""Scalers learn from the training span only, round-trip through state, and guard the layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pivotal.features.scalers import (
    FeatureLayout,
    MinMaxScaler,
    PivotBoundScaler,
    StandardScaler,
    scaler_from_state,
)

LAYOUT = FeatureLayout(("close", "volume", "rsi"))


def data(rows: int = 200, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [100 + rng.normal(0, 5, rows).cumsum(), rng.gamma(2, 10, rows), rng.uniform(0, 100, rows)]
    )


@pytest.mark.parametrize("scaler", [StandardScaler(), MinMaxScaler()])
def test_fit_uses_only_the_training_rows(scaler: StandardScaler | MinMaxScaler) -> None:
    x = data()
    scaler.fit(x, LAYOUT, train=slice(0, 100))
    reference = type(scaler)().fit(x[:100], LAYOUT, train=slice(None))
    future_changed = x.copy()
    future_changed[100:] *= 1000.0  # the future must not move the fitted parameters
    again = type(scaler)().fit(future_changed, LAYOUT, train=slice(0, 100))
    for fitted in (reference, again):
        np.testing.assert_array_equal(fitted.transform(x, LAYOUT), scaler.transform(x, LAYOUT))


def test_standard_and_minmax_values() -> None:
    x = data()
    z = StandardScaler().fit(x, LAYOUT, slice(0, 150)).transform(x[:150], LAYOUT)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-12)
    m = MinMaxScaler().fit(x, LAYOUT, slice(0, 150)).transform(x[:150], LAYOUT)
    np.testing.assert_allclose(m.min(axis=0), 0.0, atol=1e-15)
    np.testing.assert_allclose(m.max(axis=0), 1.0, rtol=1e-15)
    clipped = MinMaxScaler(clip=True).fit(x, LAYOUT, slice(0, 10)).transform(x, LAYOUT)
    assert clipped.min() >= 0.0
    assert clipped.max() <= 1.0
    state = MinMaxScaler(clip=True).fit(x, LAYOUT, slice(0, 10)).state_dict()
    np.testing.assert_array_equal(scaler_from_state(state).transform(x, LAYOUT), clipped)


def test_constant_column_does_not_divide_by_zero() -> None:
    x = data()
    x[:, 1] = 7.0
    z = StandardScaler().fit(x, LAYOUT, slice(None)).transform(x, LAYOUT)
    assert np.all(z[:, 1] == 0.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda x: StandardScaler().fit(x, LAYOUT, slice(0, 120)),
        lambda x: MinMaxScaler().fit(x, LAYOUT, slice(0, 120)),
        lambda x: PivotBoundScaler().fit(LAYOUT, 90.0, 130.0, ["close"]),
    ],
)
def test_state_round_trip_through_json(make) -> None:  # type: ignore[no-untyped-def]
    x = data()
    scaler = make(x)
    restored = scaler_from_state(json.loads(json.dumps(scaler.state_dict())))
    np.testing.assert_array_equal(restored.transform(x, LAYOUT), scaler.transform(x, LAYOUT))
    back = restored.inverse_transform(restored.transform(x, LAYOUT), LAYOUT)
    np.testing.assert_allclose(back, x, rtol=1e-12)


def test_pivot_bounds_scale_only_price_columns() -> None:
    x = data()
    out = PivotBoundScaler().fit(LAYOUT, 90.0, 110.0, ["close"]).transform(x, LAYOUT)
    np.testing.assert_allclose(out[:, 0], (x[:, 0] - 90.0) / 20.0)
    np.testing.assert_array_equal(out[:, 1:], x[:, 1:])
    with pytest.raises(ValueError, match="low < high"):
        PivotBoundScaler().fit(LAYOUT, 110.0, 90.0, ["close"])
    with pytest.raises(ValueError, match="not in the feature layout"):
        PivotBoundScaler().fit(LAYOUT, 90.0, 110.0, ["open"])


def test_a_different_layout_is_refused() -> None:
    x = data()
    scaler = StandardScaler().fit(x, LAYOUT, slice(0, 100))
    with pytest.raises(ValueError, match="different order"):
        scaler.transform(x, FeatureLayout(("volume", "close", "rsi")))
    with pytest.raises(ValueError, match=r"missing \['rsi'\]"):
        scaler.transform(x, FeatureLayout(("close", "volume", "macd")))
    with pytest.raises(ValueError, match="shape"):
        scaler.transform(x[:, :2], LAYOUT)


def test_bad_fits_explain_themselves() -> None:
    x = data()
    x[5, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*row 5.*'rsi'"):
        StandardScaler().fit(x, LAYOUT, slice(0, 50))
    with pytest.raises(ValueError, match="selects no rows"):
        MinMaxScaler().fit(x, LAYOUT, slice(10, 10))
    with pytest.raises(ValueError, match="fit the scaler first"):
        StandardScaler().transform(x, LAYOUT)
    with pytest.raises(ValueError, match="unique"):
        FeatureLayout(("a", "a"))
