"""Support/resistance levels and pivot-based normalization bounds (seed 003's ``PivotBounds``).

Both are computed at a bar ``now_index`` from the pivots known then (``confirm_index <=
now_index``), never from later ones, so they can feed models and strategies without look-ahead.

* **Resistance** of a level at price ``p``: the known *high* pivot of that level with the
  lowest price strictly above ``p``; **support**: the known *low* pivot with the highest price
  strictly below ``p``. On equal prices the most recently confirmed pivot wins. ``touches``
  counts the considered pivots of that level (highs and lows, so a broken resistance later
  defended as support counts) whose price lies within ``tolerance`` (relative) of the level.
* **PivotBounds**: the price range ``[price_min, price_max]`` spanned by the last ``count``
  pivots (highs and lows) of one level known at ``now_index``; it needs at least one high and
  one low among them and a positive range. ``normalize`` maps ``price_min → 0`` and
  ``price_max → 1`` (or ``-1``/``+1`` with ``signed=True``), linearly and without clipping
  unless asked: prices beyond the recent swings land outside the interval.

Gaps (:mod:`pivotal.core.gaps`): ``since_index`` (the first bar of ``now_index``'s segment)
keeps pivots from before a gap out of the levels and bounds; :func:`pivot_bounds_series`
given the bars' ``timestamps`` restarts after every gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, segment_bounds_of

FloatArray = npt.NDArray[np.float64]


def _level_rows(
    pivots: pd.DataFrame, level: int, now_index: int | None, since_index: int | None = None
) -> pd.DataFrame:
    """Pivots of ``level`` known at ``now_index`` whose extreme bar is at or after
    ``since_index``, in confirmation order (stable)."""
    rows = pivots[pivots["level"].to_numpy() == level]
    if now_index is not None:
        rows = rows[rows["confirm_index"].to_numpy() <= now_index]
    if since_index is not None:
        rows = rows[rows["index"].to_numpy() >= since_index]
    order = np.argsort(rows["confirm_index"].to_numpy(), kind="stable")
    return rows.iloc[order]


def _check_count(count: int, name: str = "count") -> None:
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 2:
        raise ValueError(f"{name} must be an int >= 2 (pivots spanning a range), got {count!r}")


@dataclass(frozen=True, slots=True)
class PriceLevel:
    """A support or resistance level from one pivot (see the module docstring)."""

    level: int
    side: Literal["support", "resistance"]
    price: float
    index: int  # the pivot's extreme bar
    confirm_index: int
    touches: int


def support_resistance(
    pivots: pd.DataFrame,
    now_index: int,
    price: float,
    *,
    levels: tuple[int, ...] | None = None,
    recent: int | None = None,
    tolerance: float = 0.001,
    since_index: int | None = None,
) -> tuple[PriceLevel, ...]:
    """Nearest resistance above and support below ``price`` per pivot level, at ``now_index``.

    ``levels`` restricts the pivot levels (default: all in ``pivots``); ``recent`` keeps only the
    last ``recent`` known pivots of each level (default: all); ``tolerance`` is the relative
    distance within which a pivot touches a level; ``since_index`` ignores pivots whose extreme
    bar is earlier (pass the first bar after the last gap). Returns levels sorted by pivot level,
    resistance before support; a side with no qualifying pivot is left out.
    """
    if not np.isfinite(price) or price <= 0:
        raise ValueError(f"price must be a positive finite number, got {price!r}")
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative fraction, got {tolerance!r}")
    if recent is not None and (isinstance(recent, bool) or recent < 1):
        raise ValueError(f"recent must be a positive int or None, got {recent!r}")
    wanted = sorted(set(pivots["level"].tolist())) if levels is None else sorted(set(levels))
    out: list[PriceLevel] = []
    for level in wanted:
        rows = _level_rows(pivots, int(level), now_index, since_index)
        if recent is not None:
            rows = rows.iloc[-recent:]
        prices = rows["price"].to_numpy()
        is_high = (rows["kind"].astype(str) == "high").to_numpy()
        for side, mask in (
            ("resistance", is_high & (prices > price)),
            ("support", ~is_high & (prices < price)),
        ):
            candidates = np.flatnonzero(mask)
            if not len(candidates):
                continue
            gap = np.abs(prices[candidates] - price)
            # the nearest; among equals the last (most recently confirmed) one
            best = candidates[len(gap) - 1 - int(np.argmin(gap[::-1]))]
            level_price = float(prices[best])
            touches = int(np.sum(np.abs(prices - level_price) <= tolerance * level_price))
            out.append(
                PriceLevel(
                    level=int(level),
                    side=side,  # type: ignore[arg-type]
                    price=level_price,
                    index=int(rows["index"].iloc[best]),
                    confirm_index=int(rows["confirm_index"].iloc[best]),
                    touches=touches,
                )
            )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PivotBounds:
    """Pivot-based normalization bounds: the range of the recent swings of one level.

    ``as_of_index`` is the bar at which the bounds were computed (only pivots confirmed by then
    were used); ``n_pivots`` how many pivots span the range; ``support_levels`` and
    ``resistance_levels`` the prices of the low and high pivots used, oldest first.
    """

    level: int
    price_min: float
    price_max: float
    as_of_index: int
    n_pivots: int
    support_levels: tuple[float, ...] = ()
    resistance_levels: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not (np.isfinite(self.price_min) and np.isfinite(self.price_max)):
            raise ValueError(f"PivotBounds prices must be finite, got {self!r}")
        if self.price_max <= self.price_min:
            raise ValueError(
                f"PivotBounds needs price_max > price_min, got {self.price_min}..{self.price_max}"
            )

    @property
    def span(self) -> float:
        """``price_max - price_min`` (> 0)."""
        return self.price_max - self.price_min

    @classmethod
    def from_pivots(
        cls,
        pivots: pd.DataFrame,
        now_index: int,
        level: int = 1,
        count: int = 10,
        since_index: int | None = None,
    ) -> PivotBounds:
        """Bounds from the last ``count`` pivots of ``level`` confirmed at or before ``now_index``
        (and extreme at or after ``since_index``: the first bar after the last gap).

        Raises ``ValueError`` when those pivots hold no high or no low, or span no range (too
        early in the data: wait for more bars or use a finer level).
        """
        _check_count(count)
        rows = _level_rows(pivots, level, now_index, since_index).iloc[-count:]
        is_high = (rows["kind"].astype(str) == "high").to_numpy()
        prices = rows["price"].to_numpy(dtype=np.float64)
        if not is_high.any() or is_high.all():
            raise ValueError(
                f"PivotBounds at bar {now_index}: the last {len(rows)} level-{level} pivots hold "
                "no high or no low pivot yet; wait for more bars or use a finer level"
            )
        return cls(
            level=level,
            price_min=float(prices.min()),
            price_max=float(prices.max()),
            as_of_index=int(now_index),
            n_pivots=len(rows),
            support_levels=tuple(float(p) for p in prices[~is_high]),
            resistance_levels=tuple(float(p) for p in prices[is_high]),
        )

    def normalize(self, prices: Any, signed: bool = False, clip: bool = False) -> FloatArray:
        """Map prices to ``[0, 1]`` (``signed``: ``[-1, 1]``) linearly; ``clip`` to that range."""
        x = (np.asarray(prices, dtype=np.float64) - self.price_min) / self.span
        if signed:
            x = 2.0 * x - 1.0
        if clip:
            x = np.clip(x, -1.0 if signed else 0.0, 1.0)
        return x

    def denormalize(self, values: Any, signed: bool = False) -> FloatArray:
        """The inverse of :meth:`normalize` (without clipping)."""
        x = np.asarray(values, dtype=np.float64)
        if signed:
            x = (x + 1.0) / 2.0
        return self.price_min + x * self.span


def pivot_bounds_series(
    pivots: pd.DataFrame,
    n_bars: int,
    level: int = 1,
    count: int = 10,
    *,
    timestamps: Any = None,
    step_ms: int | None = None,
    max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
) -> tuple[FloatArray, FloatArray]:
    """Per-bar ``(price_min, price_max)`` of :meth:`PivotBounds.from_pivots` for bars 0..n_bars-1.

    Bar ``t`` uses the pivots confirmed at or before ``t``; NaN where ``from_pivots`` would
    raise (warm-up). Vectorized: rolling min/max over the pivot sequence, then carried forward.
    With the bars' ``timestamps`` each segment between gaps uses only its own pivots (as
    ``since_index`` does), starting again with NaN after a gap.
    """
    _check_count(count)
    if timestamps is not None:
        out_lo, out_hi = np.full(n_bars, np.nan), np.full(n_bars, np.nan)
        index = pivots["index"].to_numpy()
        for a, z in segment_bounds_of(np.asarray(timestamps)[:n_bars], step_ms, max_missing_bars):
            part = pivots[(index >= a) & (index < z)].copy()
            part["index"] -= a
            part["confirm_index"] -= a
            out_lo[a:z], out_hi[a:z] = pivot_bounds_series(part, z - a, level, count)
        return out_lo, out_hi
    rows = _level_rows(pivots, level, None)
    prices = pd.Series(rows["price"].to_numpy(dtype=np.float64))
    is_high = pd.Series((rows["kind"].astype(str) == "high").to_numpy(dtype=np.float64))
    lo = prices.rolling(count, min_periods=1).min().to_numpy()
    hi = prices.rolling(count, min_periods=1).max().to_numpy()
    highs_in = is_high.rolling(count, min_periods=1).sum().to_numpy()
    size = np.minimum(np.arange(1, len(prices) + 1), count)
    valid = (highs_in > 0) & (highs_in < size) & (hi > lo)
    lo = np.where(valid, lo, np.nan)
    hi = np.where(valid, hi, np.nan)
    last_row = np.searchsorted(rows["confirm_index"].to_numpy(), np.arange(n_bars), "right") - 1
    known = last_row >= 0
    out_lo = np.full(n_bars, np.nan)
    out_hi = np.full(n_bars, np.nan)
    out_lo[known] = lo[last_row[known]]
    out_hi[known] = hi[last_row[known]]
    return out_lo, out_hi
