"""Streaming indicators: one bar in, the newest value out, O(1) work per bar.

Each class mirrors one batch function of :mod:`pivotal.features.indicators.batch` and, fed the
same bars from the same first bar, returns the same values bar by bar (the SMA, EMA, WMA,
RSI, MACD, Bollinger, stochastic and ATR repeat TA-Lib's C arithmetic in the same order, so
they agree to the last bit or nearly). ``update`` returns NaN while warming up; ``warmup``
is the index of the first valid value (the number of bars that return NaN). A non-finite
input raises ``ValueError`` before any state changes. The twins of pivotal's own indicators
(OBV, VWAP, returns, volatility, momentum, time) live in
:mod:`pivotal.features.indicators.streaming_own`.
"""

from __future__ import annotations

import math
from collections import deque

from pivotal.features.indicators.batch import check_period

NAN = math.nan


def _finite(x: float, name: str) -> float:
    if not math.isfinite(x):
        raise ValueError(
            f"{name} is {x}; streaming indicators need finite input — skip or fill the bar first"
        )
    return x


class StreamingSMA:
    """TA-Lib SMA: running sum, add the newest then subtract the oldest. Warm-up ``period-1``."""

    __slots__ = ("_buf", "_n", "_seen", "_total", "period", "warmup")

    def __init__(self, period: int, *, minimum: int = 2) -> None:
        self.period = check_period(period, minimum=minimum)
        self.warmup = self.period - 1
        self._n = float(self.period)
        self._buf: deque[float] = deque(maxlen=self.period)
        self._total = 0.0
        self._seen = 0

    def update(self, x: float) -> float:
        _finite(x, "x")
        buf = self._buf
        buf.append(x)
        self._total += x
        self._seen += 1
        if self._seen < self.period:
            return NAN
        out = self._total / self._n
        self._total -= buf[0]
        return out


class StreamingEMA:
    """EMA with k = 2/(period+1), seeded by the SMA of the first ``period`` values."""

    __slots__ = ("_k", "_prev", "_seen", "_sum", "period", "warmup")

    def __init__(self, period: int, *, minimum: int = 2) -> None:
        self.period = check_period(period, minimum=minimum)
        self.warmup = self.period - 1
        self._k = 2.0 / (self.period + 1)
        self._sum = 0.0
        self._prev = NAN
        self._seen = 0

    def update(self, x: float) -> float:
        _finite(x, "x")
        if self._seen >= self.period:
            self._prev = ((x - self._prev) * self._k) + self._prev
            return self._prev
        self._seen += 1
        self._sum += x
        if self._seen < self.period:
            return NAN
        self._prev = self._sum / self.period
        return self._prev


class StreamingWMA:
    """Linearly weighted average (weights 1..period, newest heaviest); warm-up ``period-1``.

    Keeps the window sum S and the weighted sum W: a new bar x turns W into W - S + period·x
    (every weight drops by one, the oldest to zero). TA-Lib 0.8 stays within ~1e-9 of the exact
    value, so both sums are rebuilt from the window every ``period`` bars (amortised O(1))
    to keep rounding from drifting.
    """

    __slots__ = ("_buf", "_div", "_seen", "_since", "_sum", "_wsum", "period", "warmup")

    def __init__(self, period: int) -> None:
        self.period = check_period(period)
        self.warmup = self.period - 1
        self._div = float((self.period * (self.period + 1)) >> 1)
        self._buf: deque[float] = deque(maxlen=self.period)
        self._sum = self._wsum = 0.0
        self._seen = self._since = 0

    def update(self, x: float) -> float:
        _finite(x, "x")
        n, buf = self.period, self._buf
        if self._seen < n:
            self._seen += 1
            buf.append(x)
            self._sum += x
            self._wsum += x * self._seen
            return NAN if self._seen < n else self._wsum / self._div
        oldest = buf[0]
        buf.append(x)
        self._since += 1
        if self._since >= n:
            self._since = 0
            total = weighted = 0.0
            for i, value in enumerate(buf, 1):
                total += value
                weighted += value * i
            self._sum, self._wsum = total, weighted
        else:
            self._wsum += x * n - self._sum
            self._sum += x - oldest
        return self._wsum / self._div


class StreamingRSI:
    """Wilder RSI as TA-Lib computes it; warm-up ``period``."""

    __slots__ = ("_gain", "_loss", "_prev", "_seen", "period", "warmup")

    def __init__(self, period: int = 14) -> None:
        self.period = check_period(period)
        self.warmup = self.period
        self._gain = self._loss = 0.0
        self._prev = NAN
        self._seen = 0

    def update(self, close: float) -> float:
        _finite(close, "close")
        self._seen += 1
        if self._seen == 1:
            self._prev = close
            return NAN
        diff = close - self._prev
        self._prev = close
        n = self.period
        if self._seen > n + 1:
            self._loss *= n - 1
            self._gain *= n - 1
        if diff < 0:
            self._loss -= diff
        else:
            self._gain += diff
        if self._seen <= n:
            return NAN
        self._loss /= n
        self._gain /= n
        total = self._gain + self._loss
        return 100.0 * (self._gain / total) if total != 0.0 else 0.0


class StreamingMACD:
    """``(macd, signal, hist)``; the fast EMA is seeded at bar ``slow-1`` like TA-Lib's."""

    __slots__ = ("_closes", "_fast", "_k_fast", "_seen", "_signal", "_slow", "fast", "warmup")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        self.fast = check_period(fast, "fast")
        slow = check_period(slow, "slow")
        if self.fast >= slow:
            raise ValueError(f"fast ({self.fast}) must be smaller than slow ({slow})")
        self._slow = StreamingEMA(slow)
        self._signal = StreamingEMA(signal, minimum=1)
        self._k_fast = 2.0 / (self.fast + 1)
        self._closes: deque[float] = deque(maxlen=self.fast)
        self._fast = NAN
        self._seen = 0
        self.warmup = slow + self._signal.period - 2

    def update(self, close: float) -> tuple[float, float, float]:
        slow = self._slow.update(close)  # checks close
        if self._seen >= self._slow.period:
            self._fast = ((close - self._fast) * self._k_fast) + self._fast
        else:
            self._seen += 1
            self._closes.append(close)
            if self._seen < self._slow.period:
                return NAN, NAN, NAN
            total = 0.0
            for value in self._closes:
                total += value
            self._fast = total / self.fast
        line = self._fast - slow
        signal = self._signal.update(line)
        if signal != signal:
            return NAN, NAN, NAN
        return line, signal, line - signal


class StreamingBollinger:
    """``(upper, middle, lower)``: SMA ± k × population std of the last ``period`` closes.

    The middle band is TA-Lib's running-sum SMA. The variance is taken without cancellation,
    like TA-Lib 0.8's: running sums of deviations from an anchor that moves to the newest
    close every ``period`` bars (the sums are then rebuilt from the window, so amortised O(1)),
    and exactly 0 when the last ``period`` closes are all equal.
    """

    __slots__ = (
        "_anchor",
        "_buf",
        "_k",
        "_last",
        "_run",
        "_s1",
        "_s2",
        "_since",
        "_sma",
        "period",
        "warmup",
    )

    def __init__(self, period: int = 20, k: float = 2.0) -> None:
        self._sma = StreamingSMA(period)
        self.period = self._sma.period
        self.warmup = self.period - 1
        if isinstance(k, bool) or not isinstance(k, int | float) or not 0 < k < math.inf:
            raise ValueError(f"k must be a positive finite number, got {k!r}")
        self._k = float(k)
        self._buf: deque[float] = deque(maxlen=self.period)
        self._anchor = self._last = NAN
        self._s1 = self._s2 = 0.0
        self._since = self._run = 0

    def update(self, close: float) -> tuple[float, float, float]:
        middle = self._sma.update(close)  # checks close
        buf, n = self._buf, self.period
        if self._anchor != self._anchor:
            self._anchor = close
        if len(buf) == n:
            old = buf[0] - self._anchor
            self._s1 -= old
            self._s2 -= old * old
        buf.append(close)
        d = close - self._anchor
        self._s1 += d
        self._s2 += d * d
        self._run = self._run + 1 if close == self._last else 1
        self._last = close
        self._since += 1
        if self._since >= n:  # re-anchor on the newest close and rebuild the sums
            self._anchor, self._since = close, 0
            s1 = s2 = 0.0
            for x in buf:
                d = x - close
                s1 += d
                s2 += d * d
            self._s1, self._s2 = s1, s2
        if middle != middle:
            return NAN, NAN, NAN
        if self._run >= n:
            return middle, middle, middle
        mean = self._s1 / n
        var = self._s2 / n - mean * mean
        width = math.sqrt(var) * self._k if var > 0.0 else 0.0
        return middle + width, middle, middle - width


class StreamingStochastic:
    """Slow stochastic ``(slowk, slowd)``; monotonic deques give HH and LL in amortised O(1)."""

    __slots__ = ("_d", "_highs", "_k", "_lows", "_seen", "k_period", "warmup")

    def __init__(self, k_period: int = 14, k_smooth: int = 3, d_period: int = 3) -> None:
        self.k_period = check_period(k_period, "k_period", minimum=1)
        self._k = StreamingSMA(check_period(k_smooth, "k_smooth", minimum=1), minimum=1)
        self._d = StreamingSMA(check_period(d_period, "d_period", minimum=1), minimum=1)
        self.warmup = self.k_period + self._k.period + self._d.period - 3
        self._highs: deque[tuple[int, float]] = deque()
        self._lows: deque[tuple[int, float]] = deque()
        self._seen = 0

    def update(self, high: float, low: float, close: float) -> tuple[float, float]:
        _finite(high, "high")
        _finite(low, "low")
        _finite(close, "close")
        i = self._seen
        self._seen += 1
        highs, lows = self._highs, self._lows
        while highs and highs[-1][1] <= high:
            highs.pop()
        highs.append((i, high))
        while lows and lows[-1][1] >= low:
            lows.pop()
        lows.append((i, low))
        start = i - self.k_period + 1
        if highs[0][0] < start:
            highs.popleft()
        if lows[0][0] < start:
            lows.popleft()
        if start < 0:
            return NAN, NAN
        lowest = lows[0][1]
        diff = (highs[0][1] - lowest) / 100.0
        fastk = (close - lowest) / diff if diff != 0.0 else 0.0
        slowk = self._k.update(fastk)
        if slowk != slowk:
            return NAN, NAN
        slowd = self._d.update(slowk)
        if slowd != slowd:
            return NAN, NAN
        return slowk, slowd


class StreamingATR:
    """Wilder ATR; TR from bar 1, seeded with mean(TR[1..period]). Warm-up ``period``."""

    __slots__ = ("_atr", "_prev_close", "_seen", "_sum", "period", "warmup")

    def __init__(self, period: int = 14) -> None:
        self.period = check_period(period, minimum=1)
        self.warmup = self.period
        self._prev_close = NAN
        self._sum = 0.0
        self._atr = NAN
        self._seen = 0

    def update(self, high: float, low: float, close: float) -> float:
        _finite(high, "high")
        _finite(low, "low")
        _finite(close, "close")
        prev, self._prev_close = self._prev_close, close
        self._seen += 1
        if self._seen == 1:
            return NAN
        tr = high - low
        tr = max(tr, abs(prev - high), abs(prev - low))
        n = self.period
        if self._seen > n + 1:
            self._atr = ((self._atr * (n - 1)) + tr) / n
            return self._atr
        self._sum += tr
        if self._seen <= n:
            return NAN
        self._atr = self._sum / n
        return self._atr
