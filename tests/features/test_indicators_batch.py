"""Batch indicators: TA-Lib's conventions, our own indicators against pandas, the feature set.

TA-Lib wrappers are checked against TA-Lib itself and against the seeding rules of
``shared/reference/conventions.md`` written out in numpy; OBV, VWAP, log returns, volatility,
momentum and the time features against a direct pandas computation on real data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from pivotal.core import Candles
from pivotal.core.gaps import segment_bounds
from pivotal.features.indicators import (
    FEATURE_COLUMNS,
    IndicatorConfig,
    atr,
    bollinger,
    compute_indicator_features,
    ema,
    log_returns,
    macd,
    momentum,
    obv,
    rolling_volatility,
    rsi,
    sma,
    stochastic,
    time_features,
    vwap,
    wma,
)
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir

DATA = shared_data_dir()
RTOL, ATOL = 1e-10, 1e-8


@pytest.fixture(scope="module", params=["ETH", "BTC"])
def candles(request: pytest.FixtureRequest) -> Candles:
    if DATA is None:
        pytest.skip(SKIP_REASON)
    frame = pd.read_parquet(DATA / f"ohlcv/binance-spot/1m/{request.param}_USDT-1m.parquet")
    if request.param == "BTC":
        frame = frame.iloc[:300_000]
    return Candles.from_frame(frame)


def first_valid(x: np.ndarray) -> int:
    return int(np.argmax(~np.isnan(x)))


def close_enough(got: np.ndarray, expected: np.ndarray) -> None:
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=RTOL, atol=ATOL)


# -- TA-Lib wrappers ---------------------------------------------------------------------------
def test_wrappers_return_talib_values_and_documented_warmups(candles: Candles) -> None:
    h, lo, c = candles.high, candles.low, candles.close
    for period in (20, 10, 50):
        assert np.array_equal(sma(c, period), talib.SMA(c, period), equal_nan=True)
        assert first_valid(sma(c, period)) == period - 1
        assert first_valid(ema(c, period)) == period - 1
        assert first_valid(wma(c, period)) == period - 1
        assert first_valid(bollinger(c, period)[0]) == period - 1
    for period in (14, 7, 21):
        assert np.array_equal(rsi(c, period), talib.RSI(c, period), equal_nan=True)
        assert first_valid(rsi(c, period)) == period
        assert first_valid(atr(h, lo, c, period)) == period
    for fast, slow, signal in ((12, 26, 9), (5, 35, 5), (8, 17, 1)):
        assert all(first_valid(x) == slow + signal - 2 for x in macd(c, fast, slow, signal))
    for k, ks, d in ((14, 3, 3), (5, 1, 1), (21, 5, 4)):
        assert all(first_valid(x) == k + ks + d - 3 for x in stochastic(h, lo, c, k, ks, d))
    assert first_valid(momentum(c, 10)) == 10
    assert first_valid(obv(c, candles.volume)) == 0


def test_seeding_rules_of_the_conventions(candles: Candles) -> None:
    h, lo, c = candles.high, candles.low, candles.close
    assert ema(c, 20)[19] == pytest.approx(c[:20].mean(), rel=1e-13)
    k = 2 / 21
    np.testing.assert_allclose(ema(c, 20)[20], (c[20] - ema(c, 20)[19]) * k + ema(c, 20)[19])
    # MACD's fast EMA starts at index 25 from mean(close[14..25]), not as a standalone EMA(12).
    fast = c[14:26].mean()
    fast_27 = fast
    for x in c[26:34]:
        fast_27 = (x - fast_27) * (2 / 13) + fast_27
    line, _, _ = macd(c)
    assert line[33] == pytest.approx(fast_27 - ema(c, 26)[33], rel=1e-9, abs=1e-9)
    upper, middle, _ = bollinger(c, 20, 2.0)
    assert upper[19] - middle[19] == pytest.approx(2 * c[:20].std(ddof=0), rel=1e-10)
    tr = np.maximum(h[1:] - lo[1:], np.maximum(abs(c[:-1] - h[1:]), abs(c[:-1] - lo[1:])))
    assert atr(h, lo, c, 14)[14] == pytest.approx(tr[:14].mean(), rel=1e-12)
    diff = np.diff(c[:15])
    gain, loss = diff[diff > 0].sum() / 14, -diff[diff < 0].sum() / 14
    assert rsi(c, 14)[14] == pytest.approx(100 * gain / (gain + loss), rel=1e-12)


# -- our own indicators against pandas -----------------------------------------------------------
def test_obv_against_pandas(candles: Candles) -> None:
    s = pd.Series(candles.close)
    sign = np.sign(s.diff()).fillna(0.0)
    expected = (sign * candles.volume).cumsum() + candles.volume[0]
    close_enough(obv(candles.close, candles.volume), expected.to_numpy())


@pytest.mark.parametrize("session_ms", [86_400_000, 3_600_000])
def test_vwap_against_pandas(candles: Candles, session_ms: int) -> None:
    frame = candles.to_frame()
    frame["tp"] = (frame.high + frame.low + frame.close) / 3
    frame["pv"] = frame.tp * frame.volume
    session = frame.timestamp // session_ms
    cum_pv = frame.groupby(session).pv.cumsum()
    cum_v = frame.groupby(session).volume.cumsum()
    expected = (cum_pv / cum_v).where(cum_v > 0, frame.tp).to_numpy()
    got = vwap(candles.high, candles.low, candles.close, candles.volume, candles.timestamp,
               session_ms=session_ms)  # fmt: skip
    close_enough(got, expected)


def test_vwap_resets_at_utc_midnight_with_the_first_bar_typical_price() -> None:
    day = 86_400_000
    ts = np.array([day - 60_000, day, day + 60_000])
    h, lo, c = (
        np.array([12.0, 30.0, 40.0]),
        np.array([9.0, 27.0, 37.0]),
        np.array([9.0, 30.0, 40.0]),
    )
    v = np.array([5.0, 1.0, 3.0])
    np.testing.assert_allclose(vwap(h, lo, c, v, ts), [10.0, 29.0, (29 + 39 * 3) / 4])
    np.testing.assert_allclose(vwap(h, lo, c, np.zeros(3), ts), [10.0, 29.0, 39.0])


@pytest.mark.parametrize("period", [20, 5, 60])
def test_volatility_and_returns_against_pandas(candles: Candles, period: int) -> None:
    s = pd.Series(candles.close)
    returns = np.log(s / s.shift(1))
    close_enough(log_returns(candles.close), returns.to_numpy())
    close_enough(log_returns(candles.close, period), np.log(s / s.shift(period)).to_numpy())
    expected = returns.rolling(period).std(ddof=0).to_numpy()
    close_enough(rolling_volatility(candles.close, period), expected)
    close_enough(momentum(candles.close, period), s.diff(period).to_numpy())


def test_time_features_against_pandas(candles: Candles) -> None:
    when = pd.DatetimeIndex(pd.to_datetime(candles.timestamp, unit="ms", utc=True))
    got = time_features(candles.timestamp)
    for name, value, cycle in (
        ("hour", when.hour, 24),
        ("dow", when.day_of_week, 7),
        ("month", when.month - 1, 12),
    ):
        angle = 2 * np.pi * np.asarray(value) / cycle
        np.testing.assert_allclose(got[f"{name}_sin"], np.sin(angle), atol=1e-15)
        np.testing.assert_allclose(got[f"{name}_cos"], np.cos(angle), atol=1e-15)


# -- the feature set ---------------------------------------------------------------------------
def test_feature_set_columns_order_and_warmups(candles: Candles) -> None:
    # Every segment between gaps warms up on its own (the BTC file has a gap in 2023-03).
    features = compute_indicator_features(candles, step_ms=60_000)
    assert tuple(features) == FEATURE_COLUMNS
    assert all(len(v) == len(candles) and v.dtype == np.float64 for v in features.values())
    expected_first = {"sma": 19, "ema": 19, "wma": 19, "rsi": 14, "macd": 33, "macd_signal": 33,
                      "macd_hist": 33, "bb_upper": 19, "bb_middle": 19, "bb_lower": 19,
                      "stoch_k": 17, "stoch_d": 17, "atr": 14, "obv": 0, "vwap": 0,
                      "log_return": 1, "volatility": 20, "momentum": 10}  # fmt: skip
    for a, z in segment_bounds(candles.timestamp, 60_000):
        for name, values in features.items():
            first = first_valid(values[a:z])
            assert first == expected_first.get(name, 0), name
            assert np.all(np.isfinite(values[a + first : z])), name
        close_enough(features["rsi"][a:z], rsi(candles.close[a:z]))
        close_enough(features["volatility"][a:z], rolling_volatility(candles.close[a:z]))
    assert IndicatorConfig().warmup() == 33


def test_feature_set_config_changes_periods_not_names(candles: Candles) -> None:
    cfg = IndicatorConfig(sma_period=5, rsi_period=7, macd_fast=5, macd_slow=35, macd_signal=5)
    features = compute_indicator_features(candles[:5000], cfg)
    assert tuple(features) == FEATURE_COLUMNS
    assert first_valid(features["sma"]) == 4
    assert first_valid(features["macd"]) == 38
    assert cfg.warmup() == 38


def test_appending_future_bars_changes_no_past_feature(candles: Candles) -> None:
    full = compute_indicator_features(candles[:20_000])
    past = compute_indicator_features(candles[:12_345])
    for name in FEATURE_COLUMNS:
        assert np.array_equal(full[name][:12_345], past[name], equal_nan=True), name


def test_config_refuses_unknown_keys_and_inverted_macd() -> None:
    with pytest.raises(ValueError, match="extra"):
        IndicatorConfig(sma_periods=5)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="macd_fast"):
        IndicatorConfig(macd_fast=30, macd_slow=26)
