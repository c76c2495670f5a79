"""Batch technical indicators: typed wrappers over TA-Lib plus our own where it has none.

Every function takes one-dimensional float64 arrays (anything ``np.asarray`` turns into one),
returns arrays of the input's length, and puts NaN before the *first valid index* that its
docstring names; from there on every value is finite. Inputs are checked first, and a bad
input raises ``ValueError`` naming the argument: NaN or infinity anywhere (TA-Lib would
silently spread it), arrays of different lengths, a period that is not an integer in range,
or a period so large that the output would be all NaN.

Values are TA-Lib's (C 0.8.1, default compatibility, unstable period 0); the streaming
classes in :mod:`pivotal.features.indicators.streaming` repeat its arithmetic step by step.
Recursive indicators (EMA, RSI, MACD, ATR) depend on the first bar, so batch and streaming
agree only when both start from the same bar.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import numpy.typing as npt
import talib

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
# Cyclic encodings as lookup tables shared by batch and streaming code, so both give the very
# same bits: value v of a cycle of length L maps to (sin 2πv/L, cos 2πv/L).
HOUR_SIN, HOUR_COS = np.sin(2 * np.pi * np.arange(24) / 24), np.cos(2 * np.pi * np.arange(24) / 24)
DOW_SIN, DOW_COS = np.sin(2 * np.pi * np.arange(7) / 7), np.cos(2 * np.pi * np.arange(7) / 7)
MONTH_SIN, MONTH_COS = (
    np.sin(2 * np.pi * np.arange(12) / 12),
    np.cos(2 * np.pi * np.arange(12) / 12),
)
TIME_FEATURE_NAMES: tuple[str, ...] = (
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
    "month_sin",
    "month_cos",
)


# -- input checks ------------------------------------------------------------------------------
def check_period(value: Any, name: str = "period", minimum: int = 2) -> int:
    """``value`` as an int, or ``ValueError`` when it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_series(values: Any, name: str) -> FloatArray:
    """A C-contiguous float64 view or copy of ``values``; refuses 2-D, NaN and infinity."""
    try:
        array = np.ascontiguousarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} cannot be read as float64: {exc}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.isfinite(array.sum()) and not np.all(np.isfinite(array)):
        nan = np.flatnonzero(np.isnan(array))
        if len(nan):
            raise ValueError(
                f"{name} has {len(nan)} NaN values (first at index {nan[0]}); indicators need "
                "gap-free input — drop or fill them first"
            )
        inf = np.flatnonzero(np.isinf(array))
        raise ValueError(
            f"{name} has {len(inf)} infinite values (first at index {inf[0]}); indicators "
            "need finite input"
        )
    return array


def check_timestamps(values: Any, name: str = "timestamp") -> IntArray:
    """Int64 milliseconds, one-dimensional and non-decreasing."""
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be a one-dimensional integer array of UTC milliseconds, "
            f"got dtype {array.dtype} and shape {array.shape}"
        )
    array = np.ascontiguousarray(array, dtype=np.int64)
    if len(array) > 1 and np.any(array[1:] < array[:-1]):
        first = int(np.flatnonzero(array[1:] < array[:-1])[0]) + 1
        raise ValueError(f"{name} must be non-decreasing; it goes back at index {first}")
    return array


def check_same_length(**arrays: np.ndarray) -> int:
    """The common length, or ``ValueError`` listing every length."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        names = list(lengths)
        joined = ", ".join(names[:-1]) + " and " + names[-1]
        got = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"{joined} must have equal lengths, got {got}")
    return next(iter(lengths.values()))


def check_enough_data(indicator: str, period: int, first: int, name: str, n: int) -> None:
    """Refuse input too short for one valid value (the output would be all NaN)."""
    if n <= first:
        raise ValueError(
            f"{indicator} period {period} is larger than the data allows: its first value is at "
            f"index {first}, so it needs at least {first + 1} bars, but {name} has {n}"
        )


def _one(x: Any, name: str, indicator: str, period: int, first: int) -> FloatArray:
    array = check_series(x, name)
    check_enough_data(indicator, period, first, name, len(array))
    return array


def _hlc(high: Any, low: Any, close: Any) -> tuple[FloatArray, FloatArray, FloatArray]:
    h, lo, c = check_series(high, "high"), check_series(low, "low"), check_series(close, "close")
    check_same_length(high=h, low=lo, close=c)
    return h, lo, c


# -- TA-Lib wrappers ---------------------------------------------------------------------------
def sma(x: Any, period: int) -> FloatArray:
    """Simple moving average; first valid index ``period - 1`` (TA-Lib's running sum)."""
    period = check_period(period)
    return talib.SMA(_one(x, "x", "sma", period, period - 1), period)


def ema(x: Any, period: int) -> FloatArray:
    """EMA with k = 2/(period+1), seeded by the SMA of the first ``period`` values.

    First valid index ``period - 1``.
    """
    period = check_period(period)
    return talib.EMA(_one(x, "x", "ema", period, period - 1), period)


def wma(x: Any, period: int) -> FloatArray:
    """Linearly weighted average (weights 1..period, newest heaviest); first index ``period-1``."""
    period = check_period(period)
    return talib.WMA(_one(x, "x", "wma", period, period - 1), period)


def rsi(close: Any, period: int = 14) -> FloatArray:
    """Wilder RSI in [0, 100]; first valid index ``period``.

    The first average gain and loss are plain means of the changes 1..period, then
    avg = (avg·(period-1) + change)/period; the value is 0 when both averages are exactly 0.
    """
    period = check_period(period)
    return talib.RSI(_one(close, "close", "rsi", period, period), period)


def macd(
    close: Any, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(macd, signal, hist)``: EMA(fast) - EMA(slow), its EMA(signal), and their difference.

    TA-Lib seeds the fast EMA at index ``slow - 1`` with the mean of the ``fast`` closes ending
    there (so it is not a standalone EMA(fast)). All three outputs start at index
    ``slow + signal - 2``. ``fast`` must be smaller than ``slow``.
    """
    fast, slow = check_period(fast, "fast"), check_period(slow, "slow")
    signal = check_period(signal, "signal", minimum=1)
    if fast >= slow:
        raise ValueError(f"fast ({fast}) must be smaller than slow ({slow})")
    c = _one(close, "close", "macd", slow, slow + signal - 2)
    return talib.MACD(c, fast, slow, signal)


def bollinger(
    close: Any, period: int = 20, k: float = 2.0
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(upper, middle, lower)``: SMA(period) ± k × population std (ddof=0) of the window.

    First valid index ``period - 1``. TA-Lib 0.8 takes the variance without catastrophic
    cancellation (deviations from a moving anchor); it is exactly 0 on a flat window.
    """
    period = check_period(period)
    k = _check_multiplier(k)
    c = _one(close, "close", "bollinger", period, period - 1)
    return talib.BBANDS(c, period, k, k, 0)


def stochastic(
    high: Any, low: Any, close: Any, k_period: int = 14, k_smooth: int = 3, d_period: int = 3
) -> tuple[FloatArray, FloatArray]:
    """Slow stochastic ``(slowk, slowd)`` in [0, 100].

    fastk = (close - LL)/((HH - LL)/100) over ``k_period`` bars (0 when HH == LL);
    slowk = SMA(k_smooth) of fastk; slowd = SMA(d_period) of slowk. As in TA-Lib both
    start at index ``k_period + k_smooth + d_period - 3`` (slowk only where slowd exists).
    """
    k_period = check_period(k_period, "k_period", minimum=1)
    k_smooth = check_period(k_smooth, "k_smooth", minimum=1)
    d_period = check_period(d_period, "d_period", minimum=1)
    h, lo, c = _hlc(high, low, close)
    check_enough_data("stochastic", k_period, k_period + k_smooth + d_period - 3, "close", len(c))
    return talib.STOCH(h, lo, c, k_period, k_smooth, 0, d_period, 0)


def atr(high: Any, low: Any, close: Any, period: int = 14) -> FloatArray:
    """Wilder average true range; first valid index ``period``.

    The true range starts at bar 1 (it needs the previous close); ATR is seeded with the mean
    of TR[1..period] and then smoothed as (atr·(period-1) + tr)/period.
    """
    period = check_period(period, minimum=1)
    h, lo, c = _hlc(high, low, close)
    check_enough_data("atr", period, period, "close", len(c))
    return talib.ATR(h, lo, c, period)


def momentum(close: Any, period: int = 10) -> FloatArray:
    """``close[t] - close[t - period]`` (TA-Lib MOM); first valid index ``period``."""
    period = check_period(period, minimum=1)
    return talib.MOM(_one(close, "close", "momentum", period, period), period)


def obv(close: Any, volume: Any) -> FloatArray:
    """On-balance volume (TA-Lib OBV): starts at ``volume[0]`` and adds the bar's volume when
    the close rises, subtracts it when the close falls. Valid from index 0."""
    c, v = check_series(close, "close"), check_series(volume, "volume")
    check_same_length(close=c, volume=v)
    check_enough_data("obv", 1, 0, "close", len(c))
    return talib.OBV(c, v)


# -- our own -----------------------------------------------------------------------------------
def log_returns(close: Any, period: int = 1) -> FloatArray:
    """``log(close[t] / close[t - period])``; first valid index ``period``. Prices must be > 0."""
    period = check_period(period, minimum=1)
    c = _one(close, "close", "log_returns", period, period)
    _check_positive(c, "close")
    return _log_returns(c, period)


def rolling_volatility(close: Any, period: int = 20) -> FloatArray:
    """Population std (ddof=0, not annualised) of the last ``period`` one-bar log returns.

    First valid index ``period`` (the first return is at bar 1). Computed by TA-Lib STDDEV on
    the log returns.
    """
    period = check_period(period)
    c = _one(close, "close", "rolling_volatility", period, period)
    _check_positive(c, "close")
    return volatility_from_returns(_log_returns(c, 1), period)


def vwap(
    high: Any,
    low: Any,
    close: Any,
    volume: Any,
    timestamp: Any,
    session_ms: int = DAY_MS,
) -> FloatArray:
    """Session VWAP of the typical price (high + low + close)/3, reset every ``session_ms``.

    A session holds the bars whose ``timestamp // session_ms`` is equal (the default resets at
    00:00 UTC). Value at t: Σ tp·volume / Σ volume over the session's bars up to t, summed in
    order; while that volume is still 0 it is the bar's typical price. Valid from index 0.
    """
    session_ms = check_period(session_ms, "session_ms", minimum=1)
    h, lo, c = _hlc(high, low, close)
    v = check_series(volume, "volume")
    ts = check_timestamps(timestamp)
    check_same_length(close=c, volume=v, timestamp=ts)
    check_enough_data("vwap", 1, 0, "close", len(c))
    if np.any(v < 0):
        raise ValueError(f"volume has negative values (first at index {np.argmax(v < 0)})")
    return _vwap(h, lo, c, v, ts, session_ms)


def time_features(timestamp: Any) -> dict[str, FloatArray]:
    """Cyclic encodings of a bar's UTC open time, as sin/cos pairs (valid everywhere).

    ``hour`` is the hour of day 0..23, ``dow`` the day of week (Monday 0 .. Sunday 6), ``month``
    0..11 (January 0); value v of a cycle of length L becomes (sin 2πv/L, cos 2πv/L). Keys in
    the order of ``TIME_FEATURE_NAMES``.
    """
    ts = check_timestamps(timestamp)
    # Timestamps are sorted: compute everything once per run of bars in the same UTC hour,
    # then repeat it over the run (one integer division over the bars, the rest per hour).
    hours = ts // HOUR_MS
    starts = np.flatnonzero(np.r_[True, hours[1:] != hours[:-1]]) if len(ts) else hours
    lengths = np.diff(np.r_[starts, len(ts)])
    run_hours = hours[starts]
    days = run_hours // 24
    hour = run_hours - days * 24
    dow = (days + 3) % 7  # 1970-01-01 was a Thursday
    month = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
    return {
        "hour_sin": np.repeat(HOUR_SIN[hour], lengths),
        "hour_cos": np.repeat(HOUR_COS[hour], lengths),
        "dow_sin": np.repeat(DOW_SIN[dow], lengths),
        "dow_cos": np.repeat(DOW_COS[dow], lengths),
        "month_sin": np.repeat(MONTH_SIN[month], lengths),
        "month_cos": np.repeat(MONTH_COS[month], lengths),
    }


# -- kernels on checked input (used by the feature set too) --------------------------------------
def _log_returns(c: FloatArray, period: int) -> FloatArray:
    out = np.empty_like(c)
    out[:period] = np.nan
    np.log(c[period:] / c[:-period], out=out[period:])
    return out


def volatility_from_returns(returns: FloatArray, period: int) -> FloatArray:
    """TA-Lib STDDEV(period, 1) of one-bar log returns whose index 0 is NaN."""
    return talib.STDDEV(returns, period, 1.0)


def _vwap(
    h: FloatArray, lo: FloatArray, c: FloatArray, v: FloatArray, ts: IntArray, session_ms: int
) -> FloatArray:
    tp = (h + lo + c) / 3.0
    pv = tp * v
    session = ts // session_ms
    starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    bounds = np.r_[starts, len(ts)]
    cum_pv, cum_v = np.empty_like(pv), np.empty_like(v)
    for lo_i, hi_i in itertools.pairwise(bounds.tolist()):
        np.cumsum(pv[lo_i:hi_i], out=cum_pv[lo_i:hi_i])
        np.cumsum(v[lo_i:hi_i], out=cum_v[lo_i:hi_i])
    zero = cum_v == 0.0
    np.divide(cum_pv, cum_v, out=cum_pv, where=~zero)
    cum_pv[zero] = tp[zero]
    return cum_pv


def _check_multiplier(k: Any) -> float:
    if isinstance(k, bool) or not isinstance(k, int | float | np.number):
        raise ValueError(f"k must be a positive number, got {k!r}")
    k = float(k)
    if not np.isfinite(k) or k <= 0:
        raise ValueError(f"k must be a positive finite number, got {k!r}")
    return k


def _check_positive(c: FloatArray, name: str) -> None:
    if np.any(c <= 0):
        raise ValueError(
            f"{name} has values <= 0 (first at index {np.argmax(c <= 0)}); log returns need "
            "positive prices"
        )
