"""Streaming twins of pivotal's own indicators (OBV, VWAP, returns, volatility, momentum,
time features): one bar in, the newest value out, O(1) work per bar.

Fed the same bars from the same first bar they equal :mod:`pivotal.features.indicators.batch`
bar by bar. ``update`` returns NaN while warming up; ``warmup`` is the index of the first valid
value. A non-finite input raises ``ValueError`` before any state changes.
"""

from __future__ import annotations

import math
from collections import deque

from pivotal.features.indicators.batch import (
    DAY_MS,
    DOW_COS,
    DOW_SIN,
    HOUR_COS,
    HOUR_MS,
    HOUR_SIN,
    MONTH_COS,
    MONTH_SIN,
    check_period,
)
from pivotal.features.indicators.streaming import NAN, _finite

_HOUR = [(float(s), float(c)) for s, c in zip(HOUR_SIN, HOUR_COS, strict=True)]
_DOW = [(float(s), float(c)) for s, c in zip(DOW_SIN, DOW_COS, strict=True)]
_MONTH = [(float(s), float(c)) for s, c in zip(MONTH_SIN, MONTH_COS, strict=True)]


class StreamingOBV:
    """On-balance volume, starting at the first bar's volume."""

    __slots__ = ("_obv", "_prev", "warmup")

    def __init__(self) -> None:
        self.warmup = 0
        self._obv = NAN
        self._prev = NAN

    def update(self, close: float, volume: float) -> float:
        _finite(close, "close")
        _finite(volume, "volume")
        if self._prev != self._prev:
            self._obv = volume
        elif close > self._prev:
            self._obv += volume
        elif close < self._prev:
            self._obv -= volume
        self._prev = close
        return self._obv


class StreamingVWAP:
    """Session VWAP of the typical price, reset when ``timestamp // session_ms`` changes."""

    __slots__ = ("_pv", "_session", "_v", "session_ms", "warmup")

    def __init__(self, session_ms: int = DAY_MS) -> None:
        self.session_ms = check_period(session_ms, "session_ms", minimum=1)
        self.warmup = 0
        self._session: int | None = None
        self._pv = self._v = 0.0

    def update(self, timestamp: int, high: float, low: float, close: float, volume: float) -> float:
        _finite(high, "high")
        _finite(low, "low")
        _finite(close, "close")
        if not volume >= 0.0 or volume == math.inf:
            raise ValueError(f"volume must be finite and >= 0, got {volume}")
        session = timestamp // self.session_ms
        if session != self._session:
            self._session = session
            self._pv = self._v = 0.0
        tp = (high + low + close) / 3.0
        self._pv += tp * volume
        self._v += volume
        return self._pv / self._v if self._v != 0.0 else tp


class StreamingLogReturn:
    """``log(close / close[period bars ago])``; warm-up ``period``."""

    __slots__ = ("_buf", "period", "warmup")

    def __init__(self, period: int = 1) -> None:
        self.period = check_period(period, minimum=1)
        self.warmup = self.period
        self._buf: deque[float] = deque(maxlen=self.period + 1)

    def update(self, close: float) -> float:
        if not close > 0.0 or close == math.inf:
            raise ValueError(f"close must be finite and > 0 for log returns, got {close}")
        buf = self._buf
        buf.append(close)
        if len(buf) <= self.period:
            return NAN
        return math.log(close / buf[0])


class StreamingVolatility:
    """Population std of the last ``period`` one-bar log returns (TA-Lib STDDEV's arithmetic)."""

    __slots__ = ("_buf", "_ret", "_s1", "_s2", "period", "warmup")

    def __init__(self, period: int = 20) -> None:
        self.period = check_period(period)
        self.warmup = self.period
        self._ret = StreamingLogReturn(1)
        self._buf: deque[float] = deque(maxlen=self.period)
        self._s1 = self._s2 = 0.0

    def update(self, close: float) -> float:
        return self.update_return(self._ret.update(close))

    def update_return(self, r: float) -> float:
        """Feed a one-bar log return directly (NaN for the first bar only)."""
        if r != r:
            return NAN
        buf = self._buf
        buf.append(r)
        self._s1 += r
        self._s2 += r * r
        if len(buf) < self.period:
            return NAN
        mean1 = self._s1 / self.period
        mean2 = self._s2 / self.period
        oldest = buf[0]
        self._s1 -= oldest
        self._s2 -= oldest * oldest
        var = mean2 - mean1 * mean1
        return math.sqrt(var) if var > 0.0 else 0.0


class StreamingMomentum:
    """``close - close[period bars ago]``; warm-up ``period``."""

    __slots__ = ("_buf", "period", "warmup")

    def __init__(self, period: int = 10) -> None:
        self.period = check_period(period, minimum=1)
        self.warmup = self.period
        self._buf: deque[float] = deque(maxlen=self.period + 1)

    def update(self, close: float) -> float:
        _finite(close, "close")
        buf = self._buf
        buf.append(close)
        return close - buf[0] if len(buf) > self.period else NAN


class StreamingTimeFeatures:
    """The six cyclic UTC time features of ``batch.time_features`` for one timestamp."""

    __slots__ = ("_day", "_day_values", "warmup")

    def __init__(self) -> None:
        self.warmup = 0
        self._day: int | None = None
        self._day_values: tuple[float, float, float, float] = (NAN, NAN, NAN, NAN)

    def update(self, timestamp: int) -> tuple[float, float, float, float, float, float]:
        day = timestamp // DAY_MS
        if day != self._day:  # day of week and month change only at midnight
            self._day = day
            self._day_values = _DOW[(day + 3) % 7] + _MONTH[_month_index(day)]
        hour_sin, hour_cos = _HOUR[(timestamp // HOUR_MS) % 24]
        return (hour_sin, hour_cos, *self._day_values)


def _month_index(days: int) -> int:
    """Month 0..11 of a day count since 1970-01-01 (H. Hinnant's civil_from_days)."""
    z = days + 719468
    doe = z - (z // 146097) * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    return (mp + 2) % 12  # mp counts from March
