"""The per-candle columns of :func:`~pivotal.features.inputs.columns.candle_columns`, one bar
at a time.

:class:`StreamingCandleColumns` takes each candle as it closes and returns its row of
``config.layout()``: fed the candles of a series from its first bar, row ``t`` equals row ``t``
of ``candle_columns(candles, timeframe, config, max_missing_bars=...)`` (rtol 1e-10, atol
1e-8, NaN exactly where the batch has NaN), gaps included: after a missing run of more than
``max_missing_bars`` bars (:mod:`pivotal.core.gaps`) the indicators, the OBV share and the
newest-pivot columns restart exactly as the batch computation restarts per segment.

The work per bar is constant (no history is kept beyond the indicators' own windows): the
raw indicators come from :class:`~pivotal.features.indicators.StreamingIndicatorSet`, the
pivots from :class:`~pivotal.features.pivots.streaming.StreamingWilliamsPivots`, and the
scale-free transforms are the batch ones applied to one row. The OBV share keeps the
segment's running volume sum in the batch's order of addition, so it matches bit for bit
given the same OBV. COB columns are not streamed (they depend on snapshots, not candles):
a config with ``cob=True`` is refused; join :func:`~pivotal.features.inputs.columns.
cob_columns` yourself.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import numpy.typing as npt

from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, is_gap
from pivotal.core.timeframes import Timeframe
from pivotal.features.indicators.feature_set import FEATURE_COLUMNS, StreamingIndicatorSet
from pivotal.features.inputs.columns import ColumnsConfig
from pivotal.features.pivots.streaming import StreamingWilliamsPivots
from pivotal.features.pivots.williams import Pivot

__all__ = ["StreamingCandleColumns"]

_NAN = math.nan
_LOG_RATIO = frozenset(("sma", "ema", "wma", "bb_upper", "bb_middle", "bb_lower", "vwap"))
_PER_CLOSE = frozenset(("macd", "macd_signal", "macd_hist", "atr", "momentum"))
_PER_HUNDRED = frozenset(("rsi", "stoch_k", "stoch_d"))
# how each raw indicator becomes its column (columns.indicator_columns): 0 as is, 1 log of the
# ratio to close, 2 divided by close, 3 divided by 100, 4 the OBV share
_TRANSFORM = tuple(
    1
    if n in _LOG_RATIO
    else 2
    if n in _PER_CLOSE
    else 3
    if n in _PER_HUNDRED
    else 4
    if n == "obv"
    else 0
    for n in FEATURE_COLUMNS
)


def _log(x: float) -> float:
    """``np.log`` of one float without numpy's overhead: -inf at 0, NaN below 0 or for NaN."""
    if x > 0.0:
        return math.log(x)
    return -math.inf if x == 0.0 else _NAN


class StreamingCandleColumns:
    """Row ``t`` of :func:`~pivotal.features.inputs.columns.candle_columns` when candle ``t``
    closes (module docstring).

    ``update(timestamp, open, high, low, close, volume)`` (open time in UTC ms, prices in
    quote currency, volume in the base asset) returns a new float64 row of
    ``len(self.layout)`` values. Open times must strictly increase; a bar with a non-finite
    price, ``close <= 0``, ``high < low`` or a negative volume raises ``ValueError`` and
    leaves the state unchanged. After each update: :attr:`raw_indicators` holds the raw
    indicator values of the newest bar (:data:`FEATURE_COLUMNS` order, empty without
    indicators), :attr:`new_pivots` the pivots it confirmed (indices count bars since the
    first update), :attr:`bars` the number of bars seen and :attr:`segment_start` the index
    of the first bar of the newest bar's segment.
    """

    def __init__(
        self,
        timeframe: Timeframe | str,
        config: ColumnsConfig | None = None,
        *,
        max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
    ) -> None:
        cfg = config or ColumnsConfig()
        if cfg.cob:
            raise ValueError(
                "StreamingCandleColumns streams the candle-derived columns only; COB columns "
                "depend on order-book snapshots: use a ColumnsConfig with cob=False and join "
                "cob_columns(...) for the snapshots yourself"
            )
        if isinstance(max_missing_bars, bool) or not isinstance(max_missing_bars, int):
            raise TypeError(f"max_missing_bars must be an int, got {max_missing_bars!r}")
        if max_missing_bars < 0:
            raise ValueError(f"max_missing_bars must be >= 0, got {max_missing_bars}")
        self.timeframe = Timeframe.parse(timeframe)
        self.step_ms = self.timeframe.ms
        self.config = cfg
        self.layout = cfg.layout()
        self.width = len(self.layout)
        self.max_missing_bars = max_missing_bars
        self._indicators: StreamingIndicatorSet | None = None
        if cfg.indicators:
            self._indicators = StreamingIndicatorSet(
                cfg.indicator, step_ms=self.step_ms, max_missing_bars=max_missing_bars
            )
        self._pivots: StreamingWilliamsPivots | None = None
        self._levels = cfg.pivot_levels if cfg.pivots else 0
        if cfg.pivots:
            self._pivots = StreamingWilliamsPivots(
                cfg.pivot_levels,
                cfg.pivot_strength,
                step_ms=self.step_ms,
                max_missing_bars=max_missing_bars,
            )
        self._pivot_offset = len(FEATURE_COLUMNS) if cfg.indicators else 0
        self._window = cfg.obv_window
        self.bars = 0
        self.segment_start = 0
        self.gaps = 0
        self.last_open: int | None = None
        self.raw_indicators: tuple[float, ...] = ()
        self.new_pivots: list[Pivot] = []
        self._restart()

    def _restart(self) -> None:
        """Fresh per-segment state of the OBV share and the newest pivots."""
        self._cum = 0.0  # the segment's running volume sum, as np.cumsum adds it
        self._cums: deque[float] = deque(maxlen=self._window + 1)
        self._obvs: deque[float] = deque(maxlen=self._window + 1)
        # newest confirmed pivot per (level, kind): (price, extreme bar index) or None
        self._latest: list[tuple[float, int] | None] = [None] * (2 * self._levels)

    def _check(
        self, timestamp: int, open_: float, high: float, low: float, close: float, volume: float
    ) -> None:
        if self.last_open is not None and timestamp <= self.last_open:
            raise ValueError(
                f"{self.timeframe} bar opening at {timestamp} does not follow the previous bar "
                f"(opening at {self.last_open}); open times must strictly increase"
            )
        if not (
            math.isfinite(open_)
            and math.isfinite(high)
            and math.isfinite(low)
            and math.isfinite(close)
            and close > 0.0
            and high >= low
            and 0.0 <= volume < math.inf
        ):
            raise ValueError(
                f"{self.timeframe} bar opening at {timestamp} is not a valid candle: "
                f"open={open_} high={high} low={low} close={close} volume={volume} (prices "
                "must be finite, close > 0, high >= low, volume finite and >= 0)"
            )

    def update(
        self,
        timestamp: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
    ) -> npt.NDArray[np.float64]:
        """The column row of the candle opening at ``timestamp`` (class docstring)."""
        ts = int(timestamp)
        o, h, lo, c, v = float(open), float(high), float(low), float(close), float(volume)
        self._check(ts, o, h, lo, c, v)
        if self.last_open is not None and is_gap(
            self.last_open, ts, self.step_ms, self.max_missing_bars
        ):
            self.segment_start = self.bars
            self.gaps += 1
            self._restart()
        self.last_open = ts
        index = self.bars
        self.bars = index + 1
        row: list[float] = []
        if self._indicators is not None:
            raw = self._indicators.update(ts, h, lo, c, v)
            self.raw_indicators = raw
            row = self._indicator_row(raw, c, v)
        if self._pivots is not None:
            self.new_pivots = self._pivots.update(h, lo, ts)
            row += self._pivot_row(index, c)
        return np.array(row, dtype=np.float64)

    def _indicator_row(self, raw: tuple[float, ...], close: float, volume: float) -> list[float]:
        row = []
        for kind, value in zip(_TRANSFORM, raw, strict=True):
            if kind == 0:
                row.append(value)
            elif kind == 1:
                row.append(_log(value / close))
            elif kind == 2:
                row.append(value / close)
            elif kind == 3:
                row.append(value / 100.0)
            else:
                row.append(self._obv_share(value, volume))
        return row

    def _obv_share(self, obv: float, volume: float) -> float:
        """``(OBV_i - OBV_{i-w}) / (cum_i - cum_{i-w})`` as columns._obv_share computes it."""
        self._cum += volume
        self._cums.append(self._cum)
        self._obvs.append(obv)
        if len(self._cums) <= self._window:
            return _NAN
        total = self._cum - self._cums[0]
        if total > 0.0:
            return (obv - self._obvs[0]) / total
        return 0.0 if total <= 0.0 else _NAN

    def _pivot_row(self, index: int, close: float) -> list[float]:
        latest = self._latest
        for p in self.new_pivots:
            latest[2 * (p.level - 1) + (p.kind != "high")] = (p.price, p.index)
        row: list[float] = []
        for known in latest:
            if known is None:
                row += (_NAN, _NAN)
            else:
                row += (_log(known[0] / close), math.log1p(index - known[1]))
        return row

    @property
    def pivot_offset(self) -> int:
        """Index of the first pivot column in a row (after the indicator columns)."""
        return self._pivot_offset
