"""A bounded window of the newest candles of one series, with their columns, updated per bar.

:class:`RollingCandles` keeps the newest ``capacity`` candles of a (symbol, timeframe) series
together with, row for row, their :func:`~pivotal.features.inputs.columns.candle_columns`
row (computed as each candle arrives by :class:`~pivotal.features.inputs.streaming_columns.
StreamingCandleColumns`, so it equals the batch over the *whole* series, not over the
window), the raw indicator values, and the index of each row's segment start
(:mod:`pivotal.core.gaps`). Rows are addressed by their absolute index (0 = the first candle
ever appended); :attr:`first_index` is the oldest one still held.

Storage is one set of column buffers twice the capacity long: a row is written once, at the
end; when the buffers are full, the newest ``capacity - 1`` rows move into *fresh* buffers
(amortized O(1) per row). Buffers are never written below their end, so a view handed out
earlier (:meth:`candles`, :meth:`column_rows`, :meth:`invalid_counts`) keeps its values for
as long as it is held, while the memory of the window itself stays bounded.

Each row also counts, once, whether input validation
(:func:`~pivotal.features.inputs.validation.invalid_rows`) would call it invalid (a price
that is not finite and positive, a volume that is not finite and non-negative): the running
count lets a window's invalid rows be read in O(1) (:meth:`invalid_counts`) instead of
re-scanning the window at every step.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS
from pivotal.core.timeframes import Timeframe
from pivotal.features.indicators.feature_set import FEATURE_COLUMNS
from pivotal.features.inputs.columns import ColumnsConfig
from pivotal.features.inputs.streaming_columns import StreamingCandleColumns
from pivotal.features.pivots.williams import Pivot
from pivotal.features.scalers import FeatureLayout

__all__ = ["DEFAULT_CAPACITY", "RollingCandles"]

DEFAULT_CAPACITY = 1_500
"""Candles kept per series by default: seed 003's 1,500-candle cache."""

FloatMatrix = npt.NDArray[np.float64]

_INF = math.inf


def _invalid_row(open: float, high: float, low: float, close: float, volume: float) -> bool:
    """Whether input validation counts the candle as invalid: a price that is not finite and
    positive, or a volume that is not finite and non-negative (NaN fails every comparison)."""
    return not (
        0.0 < open < _INF
        and 0.0 < high < _INF
        and 0.0 < low < _INF
        and 0.0 < close < _INF
        and 0.0 <= volume < _INF
    )


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


class RollingCandles:
    """The newest ``capacity`` candles of one series and their column rows (module docstring).

    ``append(timestamp, open, high, low, close, volume)`` adds the candle that has just
    closed (open time in UTC ms); open times must strictly increase and the candle must be
    valid (finite prices, close > 0, high >= low, volume >= 0) or ``ValueError`` is raised
    and nothing changes. ``columns`` selects the column groups (default ``ColumnsConfig()``;
    COB is not streamed). ``pivot_capacity`` bounds the confirmed pivots kept
    (:attr:`pivots`, default ``capacity``).
    """

    def __init__(
        self,
        timeframe: Timeframe | str,
        *,
        capacity: int = DEFAULT_CAPACITY,
        columns: ColumnsConfig | None = None,
        max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
        pivot_capacity: int | None = None,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 2:
            raise ValueError(f"capacity must be an int >= 2 candles, got {capacity!r}")
        self.stream = StreamingCandleColumns(timeframe, columns, max_missing_bars=max_missing_bars)
        self.timeframe = self.stream.timeframe
        self.capacity = capacity
        self.max_missing_bars = max_missing_bars
        keep = capacity if pivot_capacity is None else pivot_capacity
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError(f"pivot_capacity must be an int >= 0, got {pivot_capacity!r}")
        self.pivots: deque[Pivot] = deque(maxlen=keep)
        """The newest confirmed pivots, in confirmation order (absolute bar indices)."""
        self.pivots_seen = 0  # pivots confirmed since the first candle (kept or not)
        self._n_raw = len(FEATURE_COLUMNS) if self.stream.config.indicators else 0
        self._lo = 0  # buffer row of the oldest held candle
        self._hi = 0  # buffer row after the newest
        self.total = 0  # candles appended since the first (absolute index of the next row)
        self.invalid_total = 0  # of them, those input validation counts as invalid
        self._allocate(0)

    @property
    def layout(self) -> FeatureLayout:
        """Names of the column rows (``config.layout()``)."""
        return self.stream.layout

    def _allocate(self, keep: int) -> None:
        """Fresh buffers holding the newest ``keep`` rows of the current ones at their start."""
        size = 2 * self.capacity
        lo, hi = self._hi - keep, self._hi
        old = getattr(self, "_ts", None)
        ts = np.zeros(size, np.int64)
        prices = np.zeros((5, size), np.float64)  # open, high, low, close, volume
        cols = np.zeros((size, self.stream.width), np.float64)
        raw = np.zeros((size, self._n_raw), np.float64)
        seg = np.zeros(size, np.int64)
        # invalid[i + 1] - invalid[j]: invalid rows among buffer rows j..i (running counts of
        # every row appended so far, so only their differences are read)
        invalid = np.zeros(size + 1, np.int64)
        if old is not None and keep:
            ts[:keep] = self._ts[lo:hi]
            prices[:, :keep] = self._prices[:, lo:hi]
            cols[:keep] = self._cols[lo:hi]
            raw[:keep] = self._raw[lo:hi]
            seg[:keep] = self._seg[lo:hi]
            invalid[: keep + 1] = self._invalid[lo : hi + 1]
        else:
            invalid[0] = self.invalid_total
        self._ts, self._prices, self._cols, self._raw, self._seg = ts, prices, cols, raw, seg
        self._invalid = invalid
        self._base = Candles(_read_only(ts), *(_read_only(p) for p in prices))
        self._cols_ro = _read_only(cols)
        self._raw_ro = _read_only(raw)
        self._seg_ro = _read_only(seg)
        self._invalid_ro = _read_only(invalid)
        self._lo, self._hi = 0, keep

    def append(
        self,
        timestamp: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
    ) -> None:
        """Add the candle that has just closed (class docstring)."""
        row = self.stream.update(timestamp, open, high, low, close, volume)
        if self._hi == len(self._ts):
            self._allocate(min(self._hi - self._lo, self.capacity - 1))
        i = self._hi
        self._ts[i] = timestamp
        prices = self._prices
        prices[0, i] = open
        prices[1, i] = high
        prices[2, i] = low
        prices[3, i] = close
        prices[4, i] = volume
        self._cols[i] = row
        if self._n_raw:
            self._raw[i] = self.stream.raw_indicators
        self._seg[i] = self.stream.segment_start
        if _invalid_row(open, high, low, close, volume):
            self.invalid_total += 1
        self._invalid[i + 1] = self.invalid_total
        self._hi = i + 1
        if self._hi - self._lo > self.capacity:
            self._lo = self._hi - self.capacity
        self.total += 1
        new = self.stream.new_pivots
        if new:
            self.pivots.extend(new)
            self.pivots_seen += len(new)

    def extend(self, candles: Candles) -> int:
        """Append every candle of ``candles`` in order; returns how many were appended. On
        an invalid candle the ones before it stay appended and ``ValueError`` names it."""
        rows = zip(
            candles.timestamp.tolist(),
            candles.open.tolist(),
            candles.high.tolist(),
            candles.low.tolist(),
            candles.close.tolist(),
            candles.volume.tolist(),
            strict=True,
        )
        for row in rows:
            self.append(*row)
        return len(candles)

    # -- reading ------------------------------------------------------------------------
    def __len__(self) -> int:
        """Candles held (at most ``capacity``)."""
        return self._hi - self._lo

    @property
    def first_index(self) -> int:
        """Absolute index of the oldest candle held."""
        return self.total - (self._hi - self._lo)

    @property
    def last_open(self) -> int | None:
        """Open time of the newest candle held (UTC ms), None when empty."""
        return int(self._ts[self._hi - 1]) if self._hi > self._lo else None

    @property
    def timestamps(self) -> npt.NDArray[np.int64]:
        """Open times of the held candles, oldest first (a read-only view)."""
        return self._base.timestamp[self._lo : self._hi]

    def candles(self, stop: int | None = None) -> Candles:
        """The held candles (the first ``stop`` of them), oldest first, as read-only views."""
        hi = self._hi if stop is None else self._lo + max(0, min(stop, self._hi - self._lo))
        return self._base.rows(self._lo, hi)

    def rows(self, start: int, stop: int) -> Candles:
        """The held candles at positions ``start..stop-1`` (0 = oldest held) as read-only
        views; needs ``0 <= start <= stop <= len(self)``."""
        lo = self._lo
        return self._base.rows(lo + start, lo + stop)

    def invalid_counts(self, start: int, stop: int) -> npt.NDArray[np.int64]:
        """Running counts of invalid candles (module docstring) over the held candles at
        positions ``start..stop-1`` (as :meth:`candles`), a read-only view of
        ``stop - start + 1`` entries: ``counts[k] - counts[j]`` is the number of invalid
        candles among positions ``start + j .. start + k - 1``. Needs ``0 <= start <= stop
        <= len(self)``."""
        lo = self._lo
        return self._invalid_ro[lo + start : lo + stop + 1]

    def column_rows(self, start: int = 0, stop: int | None = None) -> FloatMatrix:
        """Column rows ``start..stop-1`` of the held candles (positions within the window,
        as :meth:`candles`), ``(rows, len(layout))`` float64, NaN where not known yet."""
        hi = self._hi if stop is None else self._lo + min(stop, self._hi - self._lo)
        return self._cols_ro[self._lo + start : hi]

    def raw_row(self, position: int) -> FloatMatrix:
        """Raw indicator values (:data:`FEATURE_COLUMNS` order) of the held candle at
        ``position`` (0 = oldest held); empty without indicators."""
        return self._raw_ro[self._lo + position]

    def segment_start(self, position: int) -> int:
        """Absolute index of the first candle of the segment of the held candle at
        ``position``."""
        return int(self._seg_ro[self._lo + position])

    def closed_count(self, t: int) -> int:
        """How many held candles have closed at ``t`` (``open + tf.ms <= t``)."""
        return int(self._ts[self._lo : self._hi].searchsorted(t - self.timeframe.ms, side="right"))
