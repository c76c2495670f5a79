"""Supervised-learning targets, columnar and aligned with the candles they describe.

**Alignment.** Row ``i`` of every array here is "at the close of candle ``i``": the time
``t = open_i + timeframe``, when a model acting on row ``i`` has seen candles ``0..i``
(:mod:`pivotal.features.inputs` builds its input from exactly those). A label describes what
happens **after** ``t``: bars ``i+1, i+2, ...``.

**What a label may read.** Return, direction, extrema and volume labels read only rows
``> i``, plus the *anchor* ``close[i]`` (the price the future is measured against, known at
``t``); nothing else of rows ``<= i``. Pivot labels (:func:`next_pivot_targets`) describe the
next Williams pivot after ``i``; whether a bar is a pivot depends on bars on both sides of it
(and, at higher levels, on earlier pivots), so those labels also read the past. Reading the
past is never a leak; reading further into the future than :func:`label_horizon` bars would
break the purge gaps of :mod:`pivotal.training.splits`, and no label does.

**Unknown values.** Where a label needs bars beyond the end of the data it is unknown:
NaN in float arrays, ``-1`` in class arrays. Metrics and losses ignore them.

**Gaps.** :class:`LabelSet` computes each segment between gaps (:mod:`pivotal.core.gaps`) on
its own: a label never reads bars from the other side of a gap (it is unknown there, as at
the end of the data), and pivots are those of the segment alone.

Units: returns are natural-log returns (``log(close[i+h] / close[i])``), volumes are in the
base asset, distances in bars.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field, field_validator

from pivotal.config.models import StrictModel
from pivotal.core.candles import Candles
from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, segment_bounds_of
from pivotal.features.pivots.williams import MAX_LEVELS, check_bars, williams_pivots

__all__ = [
    "DIRECTION_CLASSES",
    "EXTREMUM_CLASSES",
    "UNKNOWN_CLASS",
    "LabelConfig",
    "LabelSet",
    "direction_classes",
    "future_prices",
    "future_returns",
    "future_volume",
    "label_horizon",
    "local_extrema",
    "make_labels",
    "next_pivot_targets",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DIRECTION_CLASSES: tuple[str, str, str] = ("down", "flat", "up")
"""Class names of :func:`direction_classes`, by class index (0 = down, 1 = flat, 2 = up)."""
EXTREMUM_CLASSES: tuple[str, str] = ("no", "yes")
"""Class names of :func:`local_extrema` flags (0 = no turning point, 1 = one in the window)."""
UNKNOWN_CLASS = -1
"""The class value of a label that needs bars beyond the end of the data."""


# -- input checks ------------------------------------------------------------------------------
def _series(values: Any, name: str, *, positive: bool) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} cannot be read as float64: {exc}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} holds {int(bad.sum())} NaN/infinite value(s), first at row {first}; "
            "labels need gap-free series: drop or fill those rows first"
        )
    if positive and np.any(array <= 0):
        first = int(np.flatnonzero(array <= 0)[0])
        raise ValueError(f"{name} must be positive, got {array[first]} at row {first}")
    if not positive and np.any(array < 0):
        first = int(np.flatnonzero(array < 0)[0])
        raise ValueError(f"{name} must not be negative, got {array[first]} at row {first}")
    return array


def _horizon(value: Any, name: str = "horizon") -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int number of bars, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 bar (labels look at future bars), got {value}")
    return int(value)


def _horizons(values: Iterable[int]) -> tuple[int, ...]:
    if isinstance(values, int | np.integer):
        raise TypeError("horizons must be a sequence of ints, e.g. (1, 5, 15), not one int")
    out = tuple(_horizon(h) for h in values)
    if not out:
        raise ValueError("horizons must name at least one horizon")
    if len(set(out)) != len(out):
        raise ValueError(f"horizons repeats a value: {list(out)}")
    return out


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"series must have equal lengths, got {lengths}")


# -- returns and direction ---------------------------------------------------------------------
def _future_log_return(close: FloatArray, h: int) -> FloatArray:
    out = np.full(len(close), np.nan)
    if h < len(close):
        out[:-h] = np.log(close[h:] / close[:-h])
    return out


def future_returns(close: Any, horizons: Sequence[int] = (1, 5, 15)) -> dict[str, FloatArray]:
    """Future log returns ``log(close[i+h] / close[i])`` per horizon, keyed ``"return_{h}"``.

    NaN where ``i + h`` is past the last row. Raises ``ValueError`` on NaN/infinite or
    non-positive closes and on horizons < 1.
    """
    c = _series(close, "close", positive=True)
    return {f"return_{h}": _future_log_return(c, h) for h in _horizons(horizons)}


def future_prices(close: Any, horizons: Sequence[int] = (1, 5, 15)) -> dict[str, FloatArray]:
    """Future simple price changes ``close[i+h] / close[i] - 1``, keyed ``"price_change_{h}"``.

    NaN where ``i + h`` is past the last row; same checks as :func:`future_returns`.
    """
    c = _series(close, "close", positive=True)
    out: dict[str, FloatArray] = {}
    for h in _horizons(horizons):
        change = np.full(len(c), np.nan)
        if h < len(c):
            change[:-h] = c[h:] / c[:-h] - 1.0
        out[f"price_change_{h}"] = change
    return out


def _classes_of(returns: FloatArray, dead_band: float) -> IntArray:
    out = np.full(len(returns), UNKNOWN_CLASS, dtype=np.int64)
    known = ~np.isnan(returns)
    r = returns[known]
    out[known] = np.where(r > dead_band, 2, np.where(r < -dead_band, 0, 1))
    return out


def _dead_band(value: Any) -> float:
    try:
        band = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"dead_band must be a number (a log return), got {value!r}") from None
    if not np.isfinite(band) or band < 0:
        raise ValueError(f"dead_band must be a finite log return >= 0, got {value!r}")
    return band


def direction_classes(close: Any, horizon: int, dead_band: float) -> IntArray:
    """Direction of the ``horizon``-bar future log return ``r`` at each row (int64).

    ``0`` (down) when ``r < -dead_band``, ``2`` (up) when ``r > dead_band``, ``1`` (flat)
    otherwise (``|r| <= dead_band``); ``-1`` where ``i + horizon`` is past the last row.
    ``dead_band`` is a log return (0.001 ≈ 0.1 %). Names: :data:`DIRECTION_CLASSES`.
    """
    c = _series(close, "close", positive=True)
    return _classes_of(_future_log_return(c, _horizon(horizon)), _dead_band(dead_band))


# -- local extrema -----------------------------------------------------------------------------
def _window(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"window must be an int number of bars, got {value!r}")
    if value < 3:
        raise ValueError(
            f"window must be >= 3 bars (a turning point needs a bar on each side of it inside "
            f"the window), got {value}"
        )
    return int(value)


def _interior_peak(values: FloatArray, w: int) -> IntArray:
    """1 where ``max(values[i+1 .. i+w])`` exceeds both ``values[i+1]`` and ``values[i+w]``."""
    out = np.full(len(values), UNKNOWN_CLASS, dtype=np.int64)
    if len(values) > w:
        windows = sliding_window_view(values[1:], w)  # row i: values[i+1 .. i+w]
        top = windows.max(axis=1)
        out[: len(windows)] = ((top > windows[:, 0]) & (top > windows[:, -1])).astype(np.int64)
    return out


def local_extrema(high: Any, low: Any, window: int) -> tuple[IntArray, IntArray]:
    """Whether a turning point occurs inside the next ``window`` bars: ``(is_max, is_min)``.

    The window of row ``i`` is bars ``i+1 .. i+window``. ``is_max[i] = 1`` when the window's
    highest high lies **strictly inside** it: that high is strictly greater than both the
    high of the window's first bar (``i+1``) and that of its last bar (``i+window``), so
    prices rise after ``i+1`` and fall back before ``i+window`` (a swing top inside the
    window). ``is_min`` is the mirror image with lows (the lowest low strictly below the
    lows of bars ``i+1`` and ``i+window``). Otherwise 0. Only bars ``> i`` are read, not even
    the anchor close. ``-1`` where ``i + window`` is past the last row. ``window >= 3``.
    """
    h, lo = check_bars(high, low)
    w = _window(window)
    return _interior_peak(h, w), _interior_peak(-lo, w)


# -- next pivots -------------------------------------------------------------------------------
def next_pivot_targets(
    high: Any,
    low: Any,
    close: Any,
    levels: int = 5,
    strength: int | Sequence[int] = 2,
    *,
    max_horizon: int | None = None,
) -> dict[str, FloatArray]:
    """For each level ``L`` and kind, the next Williams pivot whose extreme bar is after ``i``.

    Keys, per level ``L`` (1 = finest) and kind (``high``/``low``, independent series as in
    :func:`~pivotal.features.pivots.williams_pivots`):

    - ``pivot{L}_{kind}_rel``: ``log(pivot price / close[i])`` of the first level-``L`` pivot
      of that kind with extreme bar ``index > i``;
    - ``pivot{L}_{kind}_bars``: ``index - i`` (bars until its extreme bar, >= 1).

    Pivots come from ``williams_pivots`` on the full series; a pivot whose extreme is after
    ``i`` may be confirmed much later: for a label that is fine. With ``max_horizon=H`` a
    pivot counts only when it is confirmed by bar ``i + H`` (``confirm_index <= i + H``),
    which makes the label a function of bars ``<= i + H`` (by the pivots' prefix property;
    the next pivot being confirmed later means the label is NaN). ``None`` means no limit:
    NaN only where no later pivot is confirmed in the data. Both arrays are NaN when unknown.
    """
    h, lo = check_bars(high, low)
    c = _series(close, "close", positive=True)
    _same_length(high=h, close=c)
    for name, values in (("high", h), ("low", lo)):
        if np.any(values <= 0):
            raise ValueError(f"{name} must be positive (log of pivot prices), got a value <= 0")
    horizon = None if max_horizon is None else _horizon(max_horizon, "max_horizon")
    pivots = williams_pivots(h, lo, levels, strength)
    rows = np.arange(len(c), dtype=np.int64)
    out: dict[str, FloatArray] = {}
    level_col = pivots["level"].to_numpy()
    kind_col = pivots["kind"].astype(str).to_numpy()
    for level in range(1, int(levels) + 1):
        for kind in ("high", "low"):
            part = (level_col == level) & (kind_col == kind)
            order = np.argsort(pivots["index"].to_numpy()[part], kind="stable")
            index = pivots["index"].to_numpy()[part][order]
            confirm = pivots["confirm_index"].to_numpy()[part][order]
            price = pivots["price"].to_numpy()[part][order]
            nxt = np.searchsorted(index, rows, side="right")  # first pivot with index > i
            known = nxt < len(index)
            if horizon is not None:
                # confirm_index rises with index within a level and kind, so a later pivot
                # cannot be confirmed earlier than the next one
                known[known] &= confirm[nxt[known]] <= rows[known] + horizon
            rel = np.full(len(c), np.nan)
            bars = np.full(len(c), np.nan)
            k = nxt[known]
            rel[known] = np.log(price[k] / c[known])
            bars[known] = (index[k] - rows[known]).astype(np.float64)
            out[f"pivot{level}_{kind}_rel"] = rel
            out[f"pivot{level}_{kind}_bars"] = bars
    return out


# -- volume ------------------------------------------------------------------------------------
def future_volume(volume: Any, horizon: int) -> FloatArray:
    """``log1p`` of the summed volume of bars ``i+1 .. i+horizon`` (base asset); NaN at the end.

    Each window is summed on its own, so the value at ``i`` depends on those bars only.
    """
    v = _series(volume, "volume", positive=False)
    h = _horizon(horizon)
    out = np.full(len(v), np.nan)
    if len(v) > h:
        out[: len(v) - h] = np.log1p(sliding_window_view(v[1:], h).sum(axis=1))
    return out


# -- the label set -----------------------------------------------------------------------------
class LabelConfig(StrictModel):
    """Which labels :func:`make_labels` builds; unknown keys are refused.

    - ``horizons``: bars ahead of the ``return_{h}`` and ``direction_{h}`` labels.
    - ``dead_band``: log return within which a move counts as flat (``direction_{h}``).
    - ``extrema_window``: bars of the ``local_max_{w}``/``local_min_{w}`` window (>= 3).
    - ``pivot_levels`` / ``pivot_strength``: Williams levels of the pivot labels (0 = none)
      and their strength; ``pivot_horizon``: a pivot counts only when confirmed within this
      many bars (``max_horizon`` of :func:`next_pivot_targets`), which bounds the labels'
      look-ahead. Level-3 pivots (strength 2) on hourly BTC are typically confirmed ~100 bars
      after their extreme and ~260 bars apart, so the default leaves many level-3 labels NaN.
    - ``volume_horizon``: bars summed by the ``volume_{h}`` label.
    """

    horizons: tuple[int, ...] = Field(default=(1, 5, 15), min_length=1)
    dead_band: float = Field(default=0.001, ge=0, allow_inf_nan=False)
    extrema_window: int = Field(default=10, ge=3)
    pivot_levels: int = Field(default=3, ge=0, le=MAX_LEVELS)
    pivot_strength: int = Field(default=2, ge=1)
    pivot_horizon: int = Field(default=256, ge=1)
    volume_horizon: int = Field(default=5, ge=1)

    @field_validator("horizons")
    @classmethod
    def _check_horizons(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(h < 1 for h in value):
            raise ValueError(f"every horizon must be >= 1 bar, got {list(value)}")
        if len(set(value)) != len(value):
            raise ValueError(f"horizons repeats a value: {list(value)}")
        return value


def label_horizon(config: LabelConfig) -> int:
    """The most future bars any label of ``config`` reads: label ``i`` uses rows ``<= i + H``.

    This is the ``label_horizon`` of :func:`pivotal.training.splits.purge_for`.
    """
    parts = [*config.horizons, config.extrema_window, config.volume_horizon]
    if config.pivot_levels:
        parts.append(config.pivot_horizon)
    return max(parts)


@dataclass(frozen=True, slots=True, eq=False)
class LabelSet:
    """The labels of one candle series: ``frame`` plus what its columns mean.

    ``frame`` has one row per candle (index ``timestamp``: the candle's open time, UTC ms;
    the label's time is that candle's close) and the columns, in this order:
    ``return_{h}`` and ``direction_{h}`` per horizon, ``local_max_{w}``, ``local_min_{w}``,
    ``pivot{L}_{high|low}_{rel|bars}`` per level, ``volume_{h}``. Float columns hold NaN,
    class columns ``-1`` where unknown.
    """

    frame: pd.DataFrame
    config: LabelConfig

    @classmethod
    def build(
        cls,
        candles: Candles,
        config: LabelConfig | None = None,
        *,
        step_ms: int | None = None,
        max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
    ) -> LabelSet:
        """Labels of ``candles`` (sorted OHLCV) under ``config`` (default config).

        Each segment between gaps (more than ``max_missing_bars`` missing bars of ``step_ms``,
        the timeframe's length; the smallest spacing of the open times when None) is labelled
        on its own, so no label reads across a gap.
        """
        if not isinstance(candles, Candles):
            raise TypeError(f"candles must be a pivotal Candles, got {type(candles).__name__}")
        cfg = config or LabelConfig()
        _series(candles.close, "close", positive=True)
        check_bars(candles.high, candles.low)
        _series(candles.volume, "volume", positive=False)
        bounds = segment_bounds_of(candles.timestamp, step_ms, max_missing_bars) or [(0, 0)]
        parts = [_label_columns(candles[a:z], cfg) for a, z in bounds]
        columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        index = pd.Index(candles.timestamp, name="timestamp")
        return cls(pd.DataFrame(columns, index=index), cfg)

    @property
    def horizon(self) -> int:
        """:func:`label_horizon` of the config."""
        return label_horizon(self.config)

    @property
    def class_columns(self) -> Mapping[str, tuple[str, ...]]:
        """Classification columns (int64, -1 unknown) → their class names by index."""
        names: dict[str, tuple[str, ...]] = {}
        for column in self.frame.columns:
            if column.startswith("direction_"):
                names[column] = DIRECTION_CLASSES
            elif column.startswith(("local_max_", "local_min_")):
                names[column] = EXTREMUM_CLASSES
        return names

    @property
    def regression_columns(self) -> tuple[str, ...]:
        """Float columns (NaN unknown), in frame order."""
        return tuple(c for c in self.frame.columns if c not in self.class_columns)

    def known(self, columns: Sequence[str] | None = None) -> npt.NDArray[np.bool_]:
        """Rows where every one of ``columns`` (default: all) is known."""
        cols = list(self.frame.columns if columns is None else columns)
        missing = [c for c in cols if c not in self.frame.columns]
        if missing:
            raise ValueError(f"no label column(s) {missing}; columns: {list(self.frame.columns)}")
        mask = np.ones(len(self.frame), dtype=bool)
        for column in cols:
            values = self.frame[column].to_numpy()
            mask &= values != UNKNOWN_CLASS if column in self.class_columns else ~np.isnan(values)
        return mask

    def rows_at(self, close_times: Any, timeframe_ms: int) -> IntArray:
        """Row indices of the candles that close at ``close_times`` (UTC ms, ``open + tf``).

        This maps the sample times of an input dataset (anchor candle closes) to label rows.
        Raises ``ValueError`` when a time is not the close of one of these candles.
        """
        if isinstance(timeframe_ms, bool) or not isinstance(timeframe_ms, int | np.integer):
            raise TypeError(f"timeframe_ms must be an int, got {timeframe_ms!r}")
        opens = np.asarray(close_times, dtype=np.int64) - int(timeframe_ms)
        stamps = self.frame.index.to_numpy()
        rows = np.searchsorted(stamps, opens)
        inside = rows < len(stamps)
        bad = ~inside
        bad[inside] = stamps[rows[inside]] != opens[inside]
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{int(bad.sum())} time(s) are not candle closes of this label set, first "
                f"{int(opens[first]) + int(timeframe_ms)} (is timeframe_ms right?)"
            )
        return rows.astype(np.int64)


def _label_columns(candles: Candles, cfg: LabelConfig) -> dict[str, np.ndarray]:
    """The label columns of one contiguous segment (checked candles)."""
    close = np.asarray(candles.close, dtype=np.float64)
    high, low = candles.high, candles.low
    columns: dict[str, np.ndarray] = {}
    for h in cfg.horizons:
        r = _future_log_return(close, h)
        columns[f"return_{h}"] = r
        columns[f"direction_{h}"] = _classes_of(r, cfg.dead_band)
    is_max, is_min = local_extrema(high, low, cfg.extrema_window)
    columns[f"local_max_{cfg.extrema_window}"] = is_max
    columns[f"local_min_{cfg.extrema_window}"] = is_min
    if cfg.pivot_levels:
        columns.update(
            next_pivot_targets(
                high,
                low,
                close,
                cfg.pivot_levels,
                cfg.pivot_strength,
                max_horizon=cfg.pivot_horizon,
            )
        )
    columns[f"volume_{cfg.volume_horizon}"] = future_volume(candles.volume, cfg.volume_horizon)
    return columns


def make_labels(candles: Candles, config: LabelConfig | None = None) -> pd.DataFrame:
    """The label frame of ``candles`` (see :class:`LabelSet` for its columns)."""
    return LabelSet.build(candles, config).frame
