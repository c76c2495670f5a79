"""Bad input gives a clear ValueError naming the argument, never silent NaN propagation."""

from __future__ import annotations

import numpy as np
import pytest

from pivotal.core import Candles
from pivotal.features.indicators import (
    IndicatorConfig,
    StreamingBollinger,
    StreamingEMA,
    StreamingLogReturn,
    StreamingMACD,
    StreamingRSI,
    StreamingSMA,
    StreamingVWAP,
    atr,
    bollinger,
    compute_indicator_features,
    ema,
    log_returns,
    macd,
    obv,
    rolling_volatility,
    rsi,
    sma,
    stochastic,
    time_features,
    vwap,
    wma,
)

N = 60
RNG = np.random.default_rng(7)
CLOSE = 100 + np.cumsum(RNG.normal(0, 1, N))
HIGH, LOW = CLOSE + 1.0, CLOSE - 1.0
VOLUME = RNG.uniform(1, 5, N)
TS = 1_700_000_000_000 + 60_000 * np.arange(N, dtype=np.int64)


def with_nans(x: np.ndarray, *where: int) -> np.ndarray:
    out = x.copy()
    out[list(where)] = np.nan
    return out


def test_nan_inside_a_series_names_count_and_first_index() -> None:
    bad = with_nans(CLOSE, 17, 30, 31)
    message = r"close has 3 NaN values \(first at index 17\); .*drop or fill them first"
    for call in (
        lambda: rsi(bad),
        lambda: macd(bad),
        lambda: bollinger(bad),
        lambda: log_returns(bad),
        lambda: rolling_volatility(bad),
        lambda: atr(HIGH, LOW, bad),
        lambda: obv(bad, VOLUME),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(ValueError, match=r"^x has 1 NaN values \(first at index 5\)"):
        sma(with_nans(CLOSE, 5), 10)
    with pytest.raises(ValueError, match=r"high has 1 NaN"):
        stochastic(with_nans(HIGH, 40), LOW, CLOSE)
    with pytest.raises(ValueError, match=r"volume has 1 NaN"):
        obv(CLOSE, with_nans(VOLUME, 0))


def test_infinity_is_refused() -> None:
    bad = CLOSE.copy()
    bad[3] = np.inf
    with pytest.raises(ValueError, match=r"x has 1 infinite values \(first at index 3\)"):
        ema(bad, 5)


def test_mismatched_lengths_list_every_length() -> None:
    with pytest.raises(ValueError, match=r"high, low and close must have equal lengths, got "
                       r"high=60, low=59, close=60"):  # fmt: skip
        atr(HIGH, LOW[:-1], CLOSE)
    with pytest.raises(ValueError, match=r"low=60, close=58"):
        stochastic(HIGH, LOW, CLOSE[:-2])
    with pytest.raises(ValueError, match=r"close and volume must have equal lengths"):
        obv(CLOSE, VOLUME[:10])
    with pytest.raises(ValueError, match=r"timestamp=59"):
        vwap(HIGH, LOW, CLOSE, VOLUME, TS[:-1])


def test_period_larger_than_the_data_is_an_error_not_all_nan() -> None:
    short = CLOSE[:20]
    with pytest.raises(ValueError, match=r"sma period 50 is larger than the data allows: .* "
                       r"needs at least 50 bars, but x has 20"):  # fmt: skip
        sma(short, 50)
    with pytest.raises(
        ValueError, match=r"rsi period 20 .*needs at least 21 bars, but close has 20"
    ):
        rsi(short, 20)
    with pytest.raises(ValueError, match=r"macd period 26 .*at least 34 bars"):
        macd(CLOSE[:33])
    with pytest.raises(ValueError, match=r"stochastic .*at least 18 bars"):
        stochastic(HIGH[:17], LOW[:17], CLOSE[:17])
    with pytest.raises(ValueError, match=r"atr period 14 .*at least 15 bars"):
        atr(HIGH[:14], LOW[:14], CLOSE[:14])
    with pytest.raises(ValueError, match=r"obv .* but close has 0"):
        obv(np.array([]), np.array([]))
    # The boundary: exactly enough bars gives exactly one value.
    assert np.count_nonzero(~np.isnan(sma(short, 20))) == 1
    assert np.count_nonzero(~np.isnan(rsi(short, 19))) == 1
    assert np.count_nonzero(~np.isnan(macd(CLOSE[:34])[0])) == 1


@pytest.mark.parametrize("period", [1, 0, -3, 2.5, True, "14", None])
def test_bad_periods(period: object) -> None:
    with pytest.raises(ValueError, match=r"period must be an integer >= 2"):
        wma(CLOSE, period)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"period must be an integer >= 2"):
        StreamingSMA(period)  # type: ignore[arg-type]


def test_bad_other_parameters() -> None:
    with pytest.raises(ValueError, match=r"fast \(26\) must be smaller than slow \(12\)"):
        macd(CLOSE, fast=26, slow=12)
    with pytest.raises(ValueError, match=r"fast \(12\) must be smaller than slow \(12\)"):
        StreamingMACD(12, 12)
    for k in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"k must be a positive"):
            bollinger(CLOSE, 20, k)
        with pytest.raises(ValueError, match=r"k must be a positive"):
            StreamingBollinger(20, k)
    with pytest.raises(ValueError, match=r"k_period must be an integer >= 1"):
        stochastic(HIGH, LOW, CLOSE, k_period=0)


def test_two_dimensional_and_non_numeric_input() -> None:
    with pytest.raises(ValueError, match=r"x must be one-dimensional, got shape \(2, 30\)"):
        sma(CLOSE.reshape(2, 30), 5)
    with pytest.raises(ValueError, match=r"x cannot be read as float64"):
        sma(["a", "b", "c"], 2)


def test_prices_for_log_returns_must_be_positive() -> None:
    bad = CLOSE.copy()
    bad[9] = 0.0
    with pytest.raises(ValueError, match=r"close has values <= 0 \(first at index 9\)"):
        log_returns(bad)
    with pytest.raises(ValueError, match=r"close must be finite and > 0"):
        StreamingLogReturn().update(-1.0)


def test_timestamps_must_be_sorted_integers() -> None:
    shuffled = TS.copy()
    shuffled[[10, 11]] = shuffled[[11, 10]]
    with pytest.raises(
        ValueError, match=r"timestamp must be non-decreasing; it goes back at index 11"
    ):
        vwap(HIGH, LOW, CLOSE, VOLUME, shuffled)
    with pytest.raises(ValueError, match=r"integer array of UTC milliseconds"):
        time_features(TS.astype(float))
    with pytest.raises(ValueError, match=r"volume has negative values \(first at index 2\)"):
        vwap(HIGH, LOW, CLOSE, np.r_[1.0, 1.0, -1.0, VOLUME[3:]], TS)


def test_streaming_refuses_non_finite_values_without_changing_state() -> None:
    for make in (lambda: StreamingSMA(5), lambda: StreamingEMA(5), lambda: StreamingRSI(5)):
        clean, dirty = make(), make()
        expected = [clean.update(x) for x in CLOSE[:30]]
        got = []
        for i, x in enumerate(CLOSE[:30]):
            if i == 12:
                with pytest.raises(ValueError, match=r"is nan; streaming indicators need finite"):
                    dirty.update(float("nan"))
            got.append(dirty.update(x))
        assert np.array_equal(got, expected, equal_nan=True)
    with pytest.raises(ValueError, match=r"volume must be finite and >= 0"):
        StreamingVWAP().update(0, 2.0, 1.0, 1.5, -3.0)


def candles(n: int, close: np.ndarray | None = None) -> Candles:
    c = CLOSE[:n] if close is None else close
    return Candles(TS[:n], c, c + 1.0, c - 1.0, c, VOLUME[:n])


def test_feature_set_refuses_bad_candles() -> None:
    with pytest.raises(ValueError, match=r"needs at least 34 candles .* got 33"):
        compute_indicator_features(candles(33))
    assert len(compute_indicator_features(candles(34))["sma"]) == 34
    with pytest.raises(ValueError, match=r"high has 1 NaN values \(first at index 40\)"):
        compute_indicator_features(candles(N, with_nans(CLOSE, 40)))
    with pytest.raises(ValueError, match=r"needs at least 61 candles"):
        compute_indicator_features(candles(N), IndicatorConfig(momentum_period=60))
