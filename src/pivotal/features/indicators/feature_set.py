"""The full indicator feature set: one batch function and its streaming twin.

``compute_indicator_features(candles)`` returns a dict whose keys are exactly
:data:`FEATURE_COLUMNS`, in that order, each a float64 array as long as the candles with NaN
during the warm-up of its indicator. :class:`StreamingIndicatorSet` takes one bar at a time and
returns the same values for that bar, in the same order. Column names do not change with the
periods in :class:`IndicatorConfig`.

Columns (the first valid index with the default config in brackets):

- ``sma``, ``ema``, ``wma``: moving averages of close [19]
- ``rsi``: Wilder RSI [14]
- ``macd``, ``macd_signal``, ``macd_hist``: TA-Lib MACD [33]
- ``bb_upper``, ``bb_middle``, ``bb_lower``: Bollinger bands, population std [19]
- ``stoch_k``, ``stoch_d``: slow stochastic [17]
- ``atr``: Wilder ATR [14]
- ``obv``: on-balance volume [0]
- ``vwap``: session VWAP of the typical price, reset at 00:00 UTC [0]
- ``log_return``: one-bar log return of close [1]
- ``volatility``: population std of the last ``volatility_period`` log returns [20]
- ``momentum``: close - close ``momentum_period`` bars earlier [10]
- ``hour_sin`` .. ``month_cos``: cyclic UTC time of the bar's open [0]

**Gaps** (:mod:`pivotal.core.gaps`): the series is split into contiguous segments at every
missing run longer than ``max_missing_bars`` bars, and each segment is computed exactly as if
it were a separate series: after a gap every indicator warms up again (NaN), so no value mixes
bars from both sides. The streaming twin resets when a bar arrives after a gap.
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np
import talib
from pydantic import Field, model_validator

from pivotal.config.models import StrictModel
from pivotal.core.candles import Candles
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, is_gap, segment_bounds_of
from pivotal.features.indicators import batch as b
from pivotal.features.indicators import streaming as s
from pivotal.features.indicators import streaming_own as own

FEATURE_COLUMNS: tuple[str, ...] = (
    "sma",
    "ema",
    "wma",
    "rsi",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "stoch_k",
    "stoch_d",
    "atr",
    "obv",
    "vwap",
    "log_return",
    "volatility",
    "momentum",
    *b.TIME_FEATURE_NAMES,
)


class IndicatorConfig(StrictModel):
    """Periods of the indicator feature set; unknown keys are refused."""

    sma_period: int = Field(default=20, ge=2)
    ema_period: int = Field(default=20, ge=2)
    wma_period: int = Field(default=20, ge=2)
    rsi_period: int = Field(default=14, ge=2)
    macd_fast: int = Field(default=12, ge=2)
    macd_slow: int = Field(default=26, ge=3)
    macd_signal: int = Field(default=9, ge=1)
    bb_period: int = Field(default=20, ge=2)
    bb_k: float = Field(default=2.0, gt=0, allow_inf_nan=False)
    stoch_k_period: int = Field(default=14, ge=1)
    stoch_k_smooth: int = Field(default=3, ge=1)
    stoch_d_period: int = Field(default=3, ge=1)
    atr_period: int = Field(default=14, ge=1)
    volatility_period: int = Field(default=20, ge=2)
    momentum_period: int = Field(default=10, ge=1)
    vwap_session_ms: int = Field(default=b.DAY_MS, ge=1, description="VWAP session length")

    @model_validator(mode="after")
    def _macd_order(self) -> Self:
        if self.macd_fast >= self.macd_slow:
            raise ValueError(
                f"macd_fast ({self.macd_fast}) must be smaller than macd_slow ({self.macd_slow})"
            )
        return self

    def warmup(self) -> int:
        """Index of the first bar where every feature is valid (the longest warm-up)."""
        return max(
            self.sma_period - 1,
            self.ema_period - 1,
            self.wma_period - 1,
            self.rsi_period,
            self.macd_slow + self.macd_signal - 2,
            self.bb_period - 1,
            self.stoch_k_period + self.stoch_k_smooth + self.stoch_d_period - 3,
            self.atr_period,
            self.volatility_period,
            self.momentum_period,
        )


def compute_indicator_features(
    candles: Candles,
    config: IndicatorConfig | None = None,
    *,
    allow_short: bool = False,
    step_ms: int | None = None,
    max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
) -> dict[str, np.ndarray]:
    """Every column of :data:`FEATURE_COLUMNS` for ``candles``, in that order.

    Raises ``ValueError`` when a price or volume is NaN or infinite, a close is <= 0, a volume
    is negative, or the candles are too few for every feature to have a valid value
    (``config.warmup() + 1`` bars are needed). With ``allow_short=True`` fewer candles (at
    least one) are accepted: each column is then NaN where its own warm-up is not over, the
    same rows as in a longer series starting with the same candles (a young series still
    gets its time features, log returns and short indicators).

    Each segment between gaps (a missing run of more than ``max_missing_bars`` bars of
    ``step_ms``; the step is the smallest spacing of the open times when None) is computed
    on its own, with its own warm-up: rows after a gap equal those of the segment alone.
    """
    cfg = config or IndicatorConfig()
    h = b.check_series(candles.high, "high")
    lo = b.check_series(candles.low, "low")
    c = b.check_series(candles.close, "close")
    v = b.check_series(candles.volume, "volume")
    ts = b.check_timestamps(candles.timestamp)
    if not len(c):
        raise ValueError("the indicator feature set needs at least one candle, got none")
    if len(c) <= cfg.warmup() and not allow_short:
        raise ValueError(
            f"the indicator feature set needs at least {cfg.warmup() + 1} candles with this "
            f"config (its longest warm-up ends at index {cfg.warmup()}), got {len(c)}"
        )
    if np.any(c <= 0):
        raise ValueError(f"close has values <= 0 (first at index {np.argmax(c <= 0)})")
    if np.any(v < 0):
        raise ValueError(f"volume has negative values (first at index {np.argmax(v < 0)})")
    bounds = segment_bounds_of(ts, step_ms, max_missing_bars)
    if len(bounds) == 1:
        return _segment_features(h, lo, c, v, ts, cfg)
    out = {name: np.full(len(c), np.nan) for name in FEATURE_COLUMNS}
    for a, z in bounds:
        part = _segment_features(h[a:z], lo[a:z], c[a:z], v[a:z], ts[a:z], cfg)
        for name in FEATURE_COLUMNS:
            out[name][a:z] = part[name]
    return out


def _segment_features(
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
    ts: np.ndarray,
    cfg: IndicatorConfig,
) -> dict[str, np.ndarray]:
    """The feature set of one contiguous run of checked bars (TA-Lib accepts short input and
    returns NaN where a warm-up is not over)."""
    macd_line, macd_signal, macd_hist = talib.MACD(c, cfg.macd_fast, cfg.macd_slow, cfg.macd_signal)
    upper, middle, lower = talib.BBANDS(c, cfg.bb_period, cfg.bb_k, cfg.bb_k, 0)
    slowk, slowd = talib.STOCH(
        h, lo, c, cfg.stoch_k_period, cfg.stoch_k_smooth, 0, cfg.stoch_d_period, 0
    )
    log_ret = b._log_returns(c, 1)
    out = {
        "sma": talib.SMA(c, cfg.sma_period),
        "ema": talib.EMA(c, cfg.ema_period),
        "wma": talib.WMA(c, cfg.wma_period),
        "rsi": talib.RSI(c, cfg.rsi_period),
        "macd": macd_line,
        "macd_signal": macd_signal,
        "macd_hist": macd_hist,
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
        "stoch_k": slowk,
        "stoch_d": slowd,
        "atr": talib.ATR(h, lo, c, cfg.atr_period),
        "obv": talib.OBV(c, v),
        "vwap": b._vwap(h, lo, c, v, ts, cfg.vwap_session_ms),
        "log_return": log_ret,
        "volatility": b.volatility_from_returns(log_ret, cfg.volatility_period),
        "momentum": talib.MOM(c, cfg.momentum_period),
    }
    out.update(b.time_features(ts))
    return out


class StreamingIndicatorSet:
    """The streaming twin of :func:`compute_indicator_features`.

    ``update`` takes one bar and returns its features as a tuple in :data:`FEATURE_COLUMNS`
    order (NaN where an indicator is still warming up); fed the same candles from the same
    first bar, row t equals row t of the batch result (rtol 1e-10, atol 1e-8, same NaNs).
    A non-finite price, a close <= 0 or a negative volume raises ``ValueError`` and leaves
    the state unchanged.

    With ``step_ms`` (the timeframe's length) every indicator restarts when a bar arrives
    after a gap of more than ``max_missing_bars`` missing bars, as the batch function does
    (give it the same ``step_ms``); without it the stream is taken as one contiguous series.
    """

    columns: tuple[str, ...] = FEATURE_COLUMNS

    def __init__(
        self,
        config: IndicatorConfig | None = None,
        *,
        step_ms: int | None = None,
        max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
    ) -> None:
        cfg = config or IndicatorConfig()
        self.config = cfg
        self.warmup = cfg.warmup()
        self.step_ms = step_ms
        self.max_missing_bars = max_missing_bars
        self._last_open: int | None = None
        self.gaps = 0  # how many gaps this stream has restarted after
        self.bars = 0
        self._start()

    def _start(self) -> None:
        """Fresh indicator state (at the first bar and after every gap)."""
        cfg = self.config
        self._sma = s.StreamingSMA(cfg.sma_period)
        self._ema = s.StreamingEMA(cfg.ema_period)
        self._wma = s.StreamingWMA(cfg.wma_period)
        self._rsi = s.StreamingRSI(cfg.rsi_period)
        self._macd = s.StreamingMACD(cfg.macd_fast, cfg.macd_slow, cfg.macd_signal)
        self._bb = s.StreamingBollinger(cfg.bb_period, cfg.bb_k)
        self._stoch = s.StreamingStochastic(
            cfg.stoch_k_period, cfg.stoch_k_smooth, cfg.stoch_d_period
        )
        self._atr = s.StreamingATR(cfg.atr_period)
        self._obv = own.StreamingOBV()
        self._vwap = own.StreamingVWAP(cfg.vwap_session_ms)
        self._ret = own.StreamingLogReturn(1)
        self._vol = own.StreamingVolatility(cfg.volatility_period)
        self._mom = own.StreamingMomentum(cfg.momentum_period)
        self._time = own.StreamingTimeFeatures()

    def update(
        self, timestamp: int, high: float, low: float, close: float, volume: float
    ) -> tuple[float, ...]:
        """Features of one bar (``timestamp``: open time, UTC ms), in ``columns`` order."""
        if not (
            math.isfinite(high) and math.isfinite(low) and close > 0.0 and close != math.inf
        ) or not (0.0 <= volume < math.inf):
            raise ValueError(
                f"bar at {timestamp} has a non-finite price, a close <= 0 or a bad volume: "
                f"high={high} low={low} close={close} volume={volume}"
            )
        if (
            self.step_ms is not None
            and self._last_open is not None
            and is_gap(self._last_open, timestamp, self.step_ms, self.max_missing_bars)
        ):
            self._start()
            self.gaps += 1
        self._last_open = int(timestamp)
        log_ret = self._ret.update(close)
        self.bars += 1
        return (
            self._sma.update(close),
            self._ema.update(close),
            self._wma.update(close),
            self._rsi.update(close),
            *self._macd.update(close),
            *self._bb.update(close),
            *self._stoch.update(high, low, close),
            self._atr.update(high, low, close),
            self._obv.update(close, volume),
            self._vwap.update(timestamp, high, low, close, volume),
            log_ret,
            self._vol.update_return(log_ret),
            self._mom.update(close),
            *self._time.update(timestamp),
        )

    def update_many(self, candles: Candles) -> np.ndarray:
        """Feed every candle in order; a (len(candles), len(columns)) float64 array of rows."""
        rows = [
            self.update(t, h, lo, c, v)
            for t, h, lo, c, v in zip(
                candles.timestamp.tolist(),
                candles.high.tolist(),
                candles.low.tolist(),
                candles.close.tolist(),
                candles.volume.tolist(),
                strict=True,
            )
        ]
        return np.array(rows, dtype=np.float64).reshape(len(rows), len(self.columns))
