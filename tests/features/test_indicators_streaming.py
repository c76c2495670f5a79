"""Streaming indicators equal the batch (TA-Lib) values bar by bar on real BTC and ETH data.

Every indicator is checked with its default parameters and two other settings, fed from the
same first bar as the batch call: same NaN positions, values within rtol 1e-10, atol 1e-8.
ETH is the whole file (130k bars); BTC is a 60k-bar slice from the middle of the file (the
whole 1.58M-bar file runs in the slow test at the end).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core import Candles
from pivotal.features.indicators import (
    FEATURE_COLUMNS,
    StreamingATR,
    StreamingBollinger,
    StreamingEMA,
    StreamingIndicatorSet,
    StreamingLogReturn,
    StreamingMACD,
    StreamingMomentum,
    StreamingOBV,
    StreamingRSI,
    StreamingSMA,
    StreamingStochastic,
    StreamingTimeFeatures,
    StreamingVolatility,
    StreamingVWAP,
    StreamingWMA,
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
BTC_SLICE = slice(800_000, 860_000)


def load(symbol: str, rows: slice = slice(None)) -> Candles:
    if DATA is None:
        pytest.skip(SKIP_REASON)
    frame = pd.read_parquet(DATA / f"ohlcv/binance-spot/1m/{symbol}_USDT-1m.parquet")
    return Candles.from_frame(frame.iloc[rows].reset_index(drop=True))


@pytest.fixture(scope="module", params=["ETH", "BTC"])
def candles(request: pytest.FixtureRequest) -> Candles:
    return load(request.param, slice(None) if request.param == "ETH" else BTC_SLICE)


def assert_same(streamed: np.ndarray, batch: np.ndarray, what: str) -> None:
    nan_s, nan_b = np.isnan(streamed), np.isnan(batch)
    assert np.array_equal(nan_s, nan_b), f"{what}: NaN positions differ"
    ok = ~nan_b
    np.testing.assert_allclose(streamed[ok], batch[ok], rtol=RTOL, atol=ATOL, err_msg=what)


def stream(make: Callable[[], object], *columns: np.ndarray) -> np.ndarray:
    """Rows of ``update`` results of a fresh indicator fed the columns bar by bar."""
    indicator = make()
    update = indicator.update  # type: ignore[attr-defined]
    rows = [update(*bar) for bar in zip(*(c.tolist() for c in columns), strict=True)]
    return np.array(rows, dtype=np.float64)


CLOSE_ONLY = [
    ("sma", [20, 10, 50], StreamingSMA, sma),
    ("ema", [20, 9, 50], StreamingEMA, ema),
    ("wma", [20, 10, 50], StreamingWMA, wma),
    ("rsi", [14, 7, 21], StreamingRSI, rsi),
    ("momentum", [10, 1, 30], StreamingMomentum, momentum),
    ("rolling_volatility", [20, 5, 60], StreamingVolatility, rolling_volatility),
    ("log_returns", [1, 5, 60], StreamingLogReturn, log_returns),
]


@pytest.mark.parametrize(
    ("name", "periods", "cls", "fn"), CLOSE_ONLY, ids=[c[0] for c in CLOSE_ONLY]
)
def test_single_input_indicators(candles: Candles, name: str, periods, cls, fn) -> None:
    c = candles.close
    for period in periods:
        assert_same(stream(lambda p=period: cls(p), c), fn(c, period), f"{name}({period})")


@pytest.mark.parametrize("params", [(12, 26, 9), (5, 35, 5), (8, 17, 1)])
def test_macd(candles: Candles, params: tuple[int, int, int]) -> None:
    got = stream(lambda: StreamingMACD(*params), candles.close)
    for j, expected in enumerate(macd(candles.close, *params)):
        assert_same(got[:, j], expected, f"macd{params}[{j}]")


@pytest.mark.parametrize("params", [(20, 2.0), (10, 1.0), (50, 2.5)])
def test_bollinger(candles: Candles, params: tuple[int, float]) -> None:
    got = stream(lambda: StreamingBollinger(*params), candles.close)
    for j, expected in enumerate(bollinger(candles.close, *params)):
        assert_same(got[:, j], expected, f"bollinger{params}[{j}]")


@pytest.mark.parametrize("params", [(14, 3, 3), (5, 1, 1), (21, 5, 4)])
def test_stochastic(candles: Candles, params: tuple[int, int, int]) -> None:
    hlc = (candles.high, candles.low, candles.close)
    got = stream(lambda: StreamingStochastic(*params), *hlc)
    for j, expected in enumerate(stochastic(*hlc, *params)):
        assert_same(got[:, j], expected, f"stochastic{params}[{j}]")


@pytest.mark.parametrize("period", [14, 1, 30])
def test_atr(candles: Candles, period: int) -> None:
    hlc = (candles.high, candles.low, candles.close)
    assert_same(stream(lambda: StreamingATR(period), *hlc), atr(*hlc, period), f"atr({period})")


def test_obv(candles: Candles) -> None:
    got = stream(StreamingOBV, candles.close, candles.volume)
    assert_same(got, obv(candles.close, candles.volume), "obv")


@pytest.mark.parametrize("session_ms", [86_400_000, 3_600_000, 7 * 86_400_000])
def test_vwap(candles: Candles, session_ms: int) -> None:
    cols = (candles.timestamp, candles.high, candles.low, candles.close, candles.volume)
    expected = vwap(*cols[1:], candles.timestamp, session_ms=session_ms)
    assert_same(stream(lambda: StreamingVWAP(session_ms), *cols), expected, "vwap")


def test_time_features(candles: Candles) -> None:
    got = stream(StreamingTimeFeatures, candles.timestamp)
    for j, (name, expected) in enumerate(time_features(candles.timestamp).items()):
        assert np.array_equal(got[:, j], expected), name


def test_feature_set_matches_batch(candles: Candles) -> None:
    batch = compute_indicator_features(candles)
    rows = StreamingIndicatorSet().update_many(candles)
    assert rows.shape == (len(candles), len(FEATURE_COLUMNS))
    for j, name in enumerate(FEATURE_COLUMNS):
        assert_same(rows[:, j], batch[name], name)


def test_streaming_set_refuses_a_bad_bar_and_keeps_its_state() -> None:
    candles = load("ETH", slice(0, 300))
    clean = StreamingIndicatorSet().update_many(candles)
    live = StreamingIndicatorSet()
    ts, h, lo, c, v = (candles.timestamp, candles.high, candles.low, candles.close, candles.volume)
    rows = []
    for i in range(len(candles)):
        if i == 150:
            with pytest.raises(ValueError, match="non-finite price"):
                live.update(int(ts[i]), float(h[i]), float(lo[i]), float("nan"), float(v[i]))
        rows.append(live.update(int(ts[i]), float(h[i]), float(lo[i]), float(c[i]), float(v[i])))
    assert np.array_equal(np.array(rows), clean, equal_nan=True)


# Random walks: a start price and relative steps, some exactly flat (TA-Lib's own variance
# loses ~1e-8 after a jump by orders of magnitude, so the walk stays market-like).
walks = st.tuples(
    st.floats(min_value=1.0, max_value=1e5),
    st.lists(
        st.one_of(st.just(0.0), st.floats(min_value=-0.05, max_value=0.05)),
        min_size=60,
        max_size=200,
    ),
).map(lambda w: np.round(w[0] * np.cumprod(1.0 + np.array(w[1])), 2))


@settings(max_examples=40, deadline=None)
@given(walks, st.integers(min_value=2, max_value=30))
def test_random_series_stream_equals_batch(x: np.ndarray, period: int) -> None:
    assert_same(stream(lambda: StreamingSMA(period), x), sma(x, period), "sma")
    assert_same(stream(lambda: StreamingEMA(period), x), ema(x, period), "ema")
    assert_same(stream(lambda: StreamingWMA(period), x), wma(x, period), "wma")
    assert_same(stream(lambda: StreamingRSI(period), x), rsi(x, period), "rsi")
    got = stream(lambda: StreamingBollinger(period, 2.0), x)
    assert_same(got[:, 0], bollinger(x, period)[0], "bollinger upper")


@pytest.mark.slow
def test_feature_set_matches_batch_on_all_btc_bars() -> None:
    """1.58M bars: the running sums of SMA, WMA and the variances must not drift apart."""
    candles = load("BTC")
    batch = compute_indicator_features(candles, step_ms=60_000)
    rows = StreamingIndicatorSet(step_ms=60_000).update_many(candles)
    for j, name in enumerate(FEATURE_COLUMNS):
        assert_same(rows[:, j], batch[name], name)
