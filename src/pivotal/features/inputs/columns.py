"""Per-candle feature columns the encoder appends after the OHLCV channels.

Each function returns ``(layout, matrix)``: a :class:`~pivotal.features.scalers.FeatureLayout`
and a float64 matrix aligned row for row with the candles (row ``i`` is what is known when
candle ``i`` closes; NaN where a value is not known yet, which the encoder turns into 0).
:func:`candle_columns` joins them into the ``ExtraFeatures`` the encoder and the bulk
dataset take. All three are causal: row ``i`` depends on candles ``0..i`` (and COB snapshots
taken by candle ``i``'s close) only, so computing them on a prefix gives the same rows.

Scale-free by design, so one scaler serves a series whose price moves by orders of
magnitude:

- **indicators** (:func:`indicator_columns`): price-level indicators as ``log(value / close)``
  (``sma, ema, wma, bb_upper, bb_middle, bb_lower, vwap``); ``macd, macd_signal, macd_hist,
  atr, momentum`` divided by close; ``rsi, stoch_k, stoch_d`` divided by 100; OBV as the
  signed share of volume over ``obv_window`` bars, ``(OBV_i - OBV_{i-w}) / Σ volume`` (the
  raw cumulative OBV depends on where the history starts, this does not); log return,
  volatility and the time features as they are.
- **pivots** (:func:`pivot_columns`): for each level and kind, the most recent pivot
  *confirmed* by row ``i`` (``confirm_index <= i``): ``log(price / close_i)`` and
  ``log1p(bars since its extreme bar)``; NaN when there is none yet.
- **gaps**: indicators and pivots restart after every gap (:mod:`pivotal.core.gaps`): rows
  after a gap equal those of the segment computed alone (NaN while it warms up again), and a
  pivot from before a gap is never the "newest pivot" of a row after it.
- **COB** (:func:`cob_columns`): the newest snapshot taken at or before the candle's close:
  imbalance over the central buckets and over all, the central imbalance moving averages,
  log bid and ask volume, the snapshot's age in seconds (log1p), and a presence flag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field

from pivotal.config.models import StrictModel
from pivotal.core.candles import Candles
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, segment_bounds_of
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import COBData
from pivotal.features.indicators.feature_set import (
    FEATURE_COLUMNS,
    IndicatorConfig,
    compute_indicator_features,
)
from pivotal.features.pivots.williams import williams_pivots
from pivotal.features.scalers import FeatureLayout

__all__ = [
    "COB_COLUMNS",
    "ColumnsConfig",
    "candle_columns",
    "cob_columns",
    "cob_layout",
    "cob_summary",
    "indicator_columns",
    "indicator_layout",
    "pivot_columns",
    "pivot_layout",
]

FloatMatrix = npt.NDArray[np.float64]
_LOG_RATIO = ("sma", "ema", "wma", "bb_upper", "bb_middle", "bb_lower", "vwap")
_PER_CLOSE = ("macd", "macd_signal", "macd_hist", "atr", "momentum")
_PER_HUNDRED = ("rsi", "stoch_k", "stoch_d")


def _renamed(name: str) -> str:
    if name in _LOG_RATIO:
        return f"{name}_logrel"
    if name in _PER_CLOSE:
        return f"{name}_rel"
    if name in _PER_HUNDRED:
        return f"{name}_unit"
    if name == "obv":
        return "obv_share"
    return name


def indicator_layout() -> FeatureLayout:
    """Names of :func:`indicator_columns`, in :data:`FEATURE_COLUMNS` order."""
    return FeatureLayout(tuple(f"ind_{_renamed(n)}" for n in FEATURE_COLUMNS))


def indicator_columns(
    candles: Candles,
    config: IndicatorConfig | None = None,
    *,
    obv_window: int = 20,
    raw: Mapping[str, FloatMatrix] | None = None,
    step_ms: int | None = None,
    max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
) -> tuple[FeatureLayout, FloatMatrix]:
    """The indicator feature set made scale-free (see the module docstring); accepts fewer
    candles than the warm-up (NaN where an indicator is not valid yet). ``raw`` is
    ``compute_indicator_features(candles, config, allow_short=True, step_ms=step_ms,
    max_missing_bars=max_missing_bars)`` when the caller already has it. Each segment between
    gaps is computed on its own."""
    if obv_window < 1:
        raise ValueError(f"obv_window must be >= 1, got {obv_window}")
    if raw is None:
        raw = compute_indicator_features(
            candles, config, allow_short=True, step_ms=step_ms, max_missing_bars=max_missing_bars
        )
    bounds = segment_bounds_of(candles.timestamp, step_ms, max_missing_bars)
    close = candles.close
    out = np.empty((len(candles), len(FEATURE_COLUMNS)), dtype=np.float64)
    for j, name in enumerate(FEATURE_COLUMNS):
        values = raw[name]
        if name in _LOG_RATIO:
            out[:, j] = np.log(values / close)
        elif name in _PER_CLOSE:
            out[:, j] = values / close
        elif name in _PER_HUNDRED:
            out[:, j] = values / 100.0
        elif name == "obv":
            for a, z in bounds:
                out[a:z, j] = _obv_share(values[a:z], candles.volume[a:z], obv_window)
        else:
            out[:, j] = values
    return indicator_layout(), out


def _obv_share(obv: FloatMatrix, volume: FloatMatrix, window: int) -> FloatMatrix:
    out = np.full(len(obv), np.nan)
    if len(obv) > window:
        cum = np.cumsum(volume)
        total = cum[window:] - cum[:-window]
        flow = obv[window:] - obv[:-window]
        np.divide(flow, total, out=out[window:], where=total > 0)
        out[window:][total <= 0] = 0.0
    return out


def pivot_layout(levels: int = 5) -> FeatureLayout:
    """Names of :func:`pivot_columns` for ``levels`` levels."""
    names = []
    for level in range(1, levels + 1):
        for kind in ("high", "low"):
            names += [f"pivot{level}_{kind}_logrel", f"pivot{level}_{kind}_log_age"]
    return FeatureLayout(tuple(names))


def pivot_columns(
    candles: Candles,
    pivots: pd.DataFrame | None = None,
    *,
    levels: int = 5,
    strength: int | Sequence[int] = 2,
    step_ms: int | None = None,
    max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
) -> tuple[FeatureLayout, FloatMatrix]:
    """The newest confirmed pivot of each level and kind at every row (module docstring).

    ``pivots`` is ``williams_pivots(candles.high, candles.low, ..., timestamps=...)``'s frame
    for these very candles; when None it is computed with ``levels`` and ``strength``. A row
    only sees pivots of its own segment (none from before a gap).
    """
    bounds = segment_bounds_of(candles.timestamp, step_ms, max_missing_bars)
    if pivots is None:
        pivots = williams_pivots(
            candles.high,
            candles.low,
            levels=levels,
            strength=strength,
            timestamps=candles.timestamp,
            step_ms=step_ms,
            max_missing_bars=max_missing_bars,
        )
    n = len(candles)
    segment_start = np.zeros(n, dtype=np.int64)
    for a, z in bounds:
        segment_start[a:z] = a
    layout = pivot_layout(levels)
    out = np.full((n, len(layout)), np.nan)
    rows = np.arange(n)
    level_col = pivots["level"].to_numpy()
    kind_col = pivots["kind"].astype(str).to_numpy()
    j = 0
    for level in range(1, levels + 1):
        for kind in ("high", "low"):
            mask = (level_col == level) & (kind_col == kind)
            confirm = pivots["confirm_index"].to_numpy()[mask]
            if len(confirm) and (np.diff(confirm) < 0).any():
                order = np.argsort(confirm, kind="stable")
            else:
                order = slice(None)
            confirm = confirm[order]
            extreme = pivots["index"].to_numpy()[mask][order]
            price = pivots["price"].to_numpy()[mask][order]
            if len(confirm) and int(confirm.max()) >= n:
                raise ValueError(
                    f"a level-{level} pivot is confirmed at bar {int(confirm.max())} but there "
                    f"are {n} candles; pass the pivots of these very candles"
                )
            latest = np.searchsorted(confirm, rows, side="right") - 1
            known = latest >= 0
            known[known] = extreme[latest[known]] >= segment_start[known]
            pick = latest[known]
            out[known, j] = np.log(price[pick] / candles.close[known])
            out[known, j + 1] = np.log1p(rows[known] - extreme[pick])
            j += 2
    return layout, out


COB_COLUMNS: tuple[str, ...] = (
    "cob_imbalance_central",
    "cob_imbalance_all",
    "cob_log_bid_volume",
    "cob_log_ask_volume",
    "cob_log_age_s",
    "cob_present",
)


def cob_layout(ma_windows_s: Sequence[int] = (1, 5, 15, 60)) -> FeatureLayout:
    """Names of :func:`cob_columns` for the given imbalance moving-average windows."""
    ma = tuple(f"cob_imbalance_ma{w}s" for w in ma_windows_s)
    return FeatureLayout(COB_COLUMNS[:2] + ma + COB_COLUMNS[2:])


def cob_columns(
    candles: Candles,
    timeframe: Timeframe | str,
    snapshots: Sequence[COBData],
    *,
    central: int = 5,
    ma_windows_s: Sequence[int] = (1, 5, 15, 60),
) -> tuple[FeatureLayout, FloatMatrix]:
    """COB summary of the newest snapshot at or before each candle's close (docstring above).

    ``snapshots`` must be sorted by time. ``central`` is how many buckets each side of the
    mid count as central (seed 003: ±5). A window's moving average absent from a snapshot is
    NaN.
    """
    tf = Timeframe.parse(timeframe)
    layout = cob_layout(ma_windows_s)
    n = len(candles)
    out = np.full((n, len(layout)), np.nan)
    present = layout.names.index("cob_present")
    out[:, present] = 0.0
    if not snapshots:
        return layout, out
    summary = cob_summary(snapshots, central=central, ma_windows_s=ma_windows_s)
    times = summary[:, -1].astype(np.int64)
    close_time = candles.timestamp + tf.ms
    latest = np.searchsorted(times, close_time, side="right") - 1
    known = latest >= 0
    age = layout.names.index("cob_log_age_s")
    out[known, :age] = summary[latest[known], :age]
    out[known, age] = np.log1p((close_time[known] - times[latest[known]]) / 1000.0)
    out[known, present] = 1.0
    return layout, out


def cob_summary(
    snapshots: Sequence[COBData],
    *,
    central: int = 5,
    ma_windows_s: Sequence[int] = (1, 5, 15, 60),
) -> FloatMatrix:
    """One row per snapshot: the columns of :func:`cob_layout` before ``cob_log_age_s``, then
    the snapshot time (UTC ms, as float). Snapshots must be sorted by time."""
    if central < 1:
        raise ValueError(f"central must be >= 1 bucket each side, got {central}")
    width = 2 + len(ma_windows_s) + 2
    out = np.empty((len(snapshots), width + 1), dtype=np.float64)
    previous = None
    for i, snap in enumerate(snapshots):
        if previous is not None and snap.timestamp < previous:
            raise ValueError(
                f"COB snapshots must be sorted by timestamp; snapshot {i} ({snap.timestamp}) "
                f"precedes the one before it ({previous})"
            )
        previous = snap.timestamp
        bid, ask = snap.bid_volume, snap.ask_volume
        half = len(bid) // 2
        lo, hi = max(0, half - central), min(len(bid), half + central)
        bid_c, ask_c, bid_all, ask_all = bid[lo:hi].sum(), ask[lo:hi].sum(), bid.sum(), ask.sum()
        row = out[i]
        row[0] = (bid_c - ask_c) / (bid_c + ask_c) if bid_c + ask_c > 0 else 0.0
        row[1] = (bid_all - ask_all) / (bid_all + ask_all) if bid_all + ask_all > 0 else 0.0
        for k, w in enumerate(ma_windows_s):
            ma = snap.imbalance_ma.get(int(w))
            row[2 + k] = float(np.mean(ma)) if ma is not None and len(ma) else np.nan
        row[width - 2] = np.log1p(bid_all)
        row[width - 1] = np.log1p(ask_all)
        row[width] = snap.timestamp
    return out


class ColumnsConfig(StrictModel):
    """Which per-candle column groups to compute, and their settings (unknown keys refused)."""

    indicators: bool = True
    indicator: IndicatorConfig = Field(default_factory=IndicatorConfig)
    obv_window: int = Field(default=20, ge=1)
    pivots: bool = True
    pivot_levels: int = Field(default=5, ge=1, le=10)
    pivot_strength: int = Field(default=2, ge=1)
    cob: bool = False
    cob_central: int = Field(default=5, ge=1)
    cob_ma_windows_s: tuple[int, ...] = (1, 5, 15, 60)

    def layout(self) -> FeatureLayout:
        """The joined layout of the enabled groups: indicators, then pivots, then COB."""
        names: tuple[str, ...] = ()
        if self.indicators:
            names += indicator_layout().names
        if self.pivots:
            names += pivot_layout(self.pivot_levels).names
        if self.cob:
            names += cob_layout(self.cob_ma_windows_s).names
        if not names:
            raise ValueError("ColumnsConfig enables no column group; enable at least one")
        return FeatureLayout(names)

    def warmup(self) -> int:
        """Bars before the indicator columns are all valid (pivots need more, see levels)."""
        return self.indicator.warmup() if self.indicators else 0


def candle_columns(
    candles: Candles,
    timeframe: Timeframe | str,
    config: ColumnsConfig | None = None,
    cob_snapshots: Sequence[COBData] = (),
    *,
    indicators: Mapping[str, FloatMatrix] | None = None,
    pivots: pd.DataFrame | None = None,
    max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
) -> tuple[FeatureLayout, FloatMatrix]:
    """The enabled column groups of ``config`` for ``candles``, joined (``config.layout()``).

    Fewer candles than the indicators' warm-up are accepted: each indicator column is NaN
    (unknown yet) until its own warm-up ends, so a young series still encodes. A caller that
    already computed the raw indicators (``compute_indicator_features(..., allow_short=True)``)
    or the pivots (``williams_pivots`` with the config's levels and strength) of these candles
    passes them instead of having them computed again (with the same gap settings).
    Indicators and pivots restart after every gap of more than ``max_missing_bars`` bars of
    ``timeframe``.
    """
    cfg = config or ColumnsConfig()
    step = Timeframe.parse(timeframe).ms
    gaps = {"step_ms": step, "max_missing_bars": max_missing_bars}
    parts: list[FloatMatrix] = []
    if cfg.indicators:
        parts.append(
            indicator_columns(
                candles, cfg.indicator, obv_window=cfg.obv_window, raw=indicators, **gaps
            )[1]
        )
    if cfg.pivots:
        parts.append(
            pivot_columns(
                candles,
                pivots,
                levels=cfg.pivot_levels,
                strength=cfg.pivot_strength,
                **gaps,
            )[1]
        )
    if cfg.cob:
        parts.append(
            cob_columns(
                candles,
                timeframe,
                cob_snapshots,
                central=cfg.cob_central,
                ma_windows_s=cfg.cob_ma_windows_s,
            )[1]
        )
    layout = cfg.layout()
    return layout, np.hstack(parts) if len(parts) > 1 else parts[0]
