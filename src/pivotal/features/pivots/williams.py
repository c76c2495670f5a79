"""Williams market structure: recursive swing pivots, batch computation.

Definitions (``n`` is the strength of the level being computed):

* **Level-1 swing high** at bar ``i``: ``high[i]`` is *strictly greater* than each of the ``n``
  highs before it and *greater than or equal to* each of the ``n`` highs after it. On a flat
  top the **leftmost** bar of the equal run is the pivot (its right-hand equals do not beat it,
  while each later equal bar has an equal bar on its left). A **swing low** is the mirror
  image: ``low[i]`` strictly below the ``n`` lows before it and ``<=`` the ``n`` lows after it.
  A bar needs ``n`` full bars on each side: bars ``0..n-1`` are never level-1 pivots.
* **Confirmation**: a level-1 pivot at ``i`` is known at bar ``i + n`` (the first bar at which
  all ``n`` right-hand bars exist), so ``confirm_index = i + n``. Anything acting at bar ``t``
  (after bar ``t`` has closed) may use exactly the pivots with ``confirm_index <= t``.
* **Level k+1** applies the same rule to the sequence of level-k *high* pivots (for highs) and
  level-k *low* pivots (for lows), in bar order, with ``n`` counted in pivots. A level-(k+1)
  pivot keeps its bar (``index``) and ``price``; it is confirmed when the ``n``-th later
  level-k pivot of its kind is confirmed, so its ``confirm_index`` is that pivot's.
* **No forced alternation**: highs and lows are two independent series at every level, so two
  highs may follow each other without a low between them, and one bar (an outside bar) may be
  both a high and a low pivot. Enforcing alternation would make a pivot depend on pivots of
  the other kind, and the rule would need arbitrary choices (which of two highs to keep).

These rules make every pivot a function of the bars up to its ``confirm_index`` only, which
gives the **prefix property**: the pivots computed on bars ``[0, m)`` are exactly the full
run's pivots with ``confirm_index < m``. Level-1 confirm indices strictly increase with the
bar, hence so do those of each level's highs (and lows).

``williams_pivots`` returns one row per pivot, sorted by ``confirm_index``, then ``level``,
then ``kind`` (high before low): the order in which :class:`StreamingWilliamsPivots` emits
them. Timestamps are UTC milliseconds (int64); datetime64 input is converted.

**Gaps** (:mod:`pivotal.core.gaps`): when timestamps are given, the bars are split into
contiguous segments at every missing run longer than ``max_missing_bars`` bars and each
segment is computed as a separate series, so no pivot's window (at any level) spans a gap.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, segment_bounds_of
from pivotal.core.symbols import Symbol
from pivotal.core.types import PivotKind, PivotPoint

MAX_LEVELS = 10  # PivotPoint.level allows 1..10
KINDS: tuple[str, str] = ("high", "low")
BASE_COLUMNS: tuple[str, ...] = ("level", "kind", "index", "confirm_index", "price")
TIME_COLUMNS: tuple[str, ...] = ("timestamp", "confirm_timestamp")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Pivot:
    """One pivot, as the streaming detector emits it (a row of :func:`williams_pivots`).

    ``index`` is the extreme bar, ``confirm_index`` the first bar at which the pivot is known;
    ``timestamp``/``confirm_timestamp`` are those bars' open times (UTC ms) when known.
    """

    level: int
    kind: str
    index: int
    confirm_index: int
    price: float
    timestamp: int | None = None
    confirm_timestamp: int | None = None


# -- input checks ------------------------------------------------------------------------------
def check_levels_strength(levels: int, strength: int | Sequence[int]) -> tuple[int, ...]:
    """Validate ``levels`` and ``strength``; return the strength of each level (level 1 first)."""
    if isinstance(levels, bool) or not isinstance(levels, int | np.integer):
        raise TypeError(f"levels must be an int, got {levels!r}")
    if not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"levels must be between 1 and {MAX_LEVELS}, got {levels}")
    if isinstance(strength, int | np.integer) and not isinstance(strength, bool):
        strengths: tuple[Any, ...] = (strength,) * int(levels)
    elif isinstance(strength, Sequence) and not isinstance(strength, str):
        strengths = tuple(strength)
        if len(strengths) != levels:
            raise ValueError(
                f"strength has {len(strengths)} entries but levels={levels}; "
                "give one int for all levels or one per level"
            )
    else:
        raise TypeError(f"strength must be an int or a sequence of ints, got {strength!r}")
    for s in strengths:
        if isinstance(s, bool) or not isinstance(s, int | np.integer):
            raise TypeError(f"strength values must be ints, got {s!r}")
        if s < 1:
            raise ValueError(f"strength must be >= 1 (bars or pivots on each side), got {s}")
    return tuple(int(s) for s in strengths)


def _as_prices(values: Any, name: str) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be numeric, got {exc}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} holds {int(bad.sum())} NaN/infinite value(s), first at bar {first}; "
            "drop or fill those bars before computing pivots"
        )
    return array


def _as_timestamps(values: Any, n: int) -> IntArray:
    array = np.asarray(values)
    if array.ndim != 1 or len(array) != n:
        raise ValueError(f"timestamps must be one-dimensional with {n} entries, got {array.shape}")
    if array.dtype.kind == "M":
        return array.astype("datetime64[ms]").astype(np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"timestamps must be int UTC milliseconds or datetime64, got {array.dtype}")
    return array.astype(np.int64)


def check_bars(high: Any, low: Any) -> tuple[FloatArray, FloatArray]:
    """Validate and convert ``high``/``low``: 1-D, equal length, finite, ``high >= low``."""
    h = _as_prices(high, "high")
    lo = _as_prices(low, "low")
    if len(h) != len(lo):
        raise ValueError(f"high and low must have equal lengths, got {len(h)} and {len(lo)}")
    inverted = h < lo
    if inverted.any():
        first = int(np.flatnonzero(inverted)[0])
        raise ValueError(
            f"high < low on {int(inverted.sum())} bar(s), first at bar {first} "
            f"(high={h[first]}, low={lo[first]}); are the columns swapped?"
        )
    return h, lo


# -- swing detection ---------------------------------------------------------------------------
def _window_max(values: FloatArray, width: int) -> FloatArray:
    """``out[k] = max(values[k : k + width])`` for ``k`` in ``0..len-width`` (O(N log width))."""
    acc = values
    span = 1
    while span * 2 <= width:
        acc = np.maximum(acc[:-span], acc[span:])
        span *= 2
    if span == width:
        return acc
    rest = width - span
    return np.maximum(acc[: len(acc) - rest], acc[rest:])


def swing_positions(values: FloatArray, n: int) -> IntArray:
    """Positions ``j`` with ``values[j] > max(values[j-n:j])`` and ``>= max(values[j+1:j+n+1])``."""
    m = len(values)
    if m < 2 * n + 1:
        return np.empty(0, dtype=np.int64)
    wmax = _window_max(values, n)  # wmax[k] = max(values[k:k+n]), length m - n + 1
    centre = values[n : m - n]
    mask = centre > wmax[: m - 2 * n]
    mask &= centre >= wmax[n + 1 : m - n + 1]
    return np.flatnonzero(mask).astype(np.int64) + n


def _chain(
    extremes: FloatArray, sign: float, strengths: tuple[int, ...]
) -> list[tuple[IntArray, IntArray, FloatArray]]:
    """(index, confirm_index, price) of each level's pivots of one kind, in bar order."""
    n1 = strengths[0]
    pos = swing_positions(extremes if sign > 0 else -extremes, n1)
    index, confirm, price = pos, pos + n1, extremes[pos]
    out = [(index, confirm, price)]
    for n in strengths[1:]:
        pos = swing_positions(price if sign > 0 else -price, n)
        index, confirm, price = index[pos], confirm[pos + n], price[pos]
        out.append((index, confirm, price))
    return out


def williams_pivots(
    high: Any,
    low: Any,
    levels: int = 5,
    strength: int | Sequence[int] = 2,
    timestamps: Any = None,
    *,
    step_ms: int | None = None,
    max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
) -> pd.DataFrame:
    """Williams market-structure pivots of ``levels`` levels (definitions: module docstring).

    ``strength`` is an int for every level or one int per level (level 1 in bars, higher levels
    in pivots). Returns columns ``level`` (int64, 1 = finest), ``kind`` (categorical
    ``high``/``low``), ``index`` (extreme bar), ``confirm_index`` (first bar at which the pivot is
    known), ``price`` (the extreme bar's high or low) and, when ``timestamps`` (open times, UTC
    ms or datetime64) are given, ``timestamp`` and ``confirm_timestamp`` (int64 ms). Rows are
    sorted by ``confirm_index``, ``level``, ``kind``. Raises ``ValueError``/``TypeError`` on
    mismatched lengths, NaN or infinity, ``high < low``, ``strength < 1`` or ``levels < 1``.

    With ``timestamps``, each segment between gaps (more than ``max_missing_bars`` missing bars
    of ``step_ms``; the smallest spacing of the timestamps when None) is computed on its own.
    """
    strengths = check_levels_strength(levels, strength)
    h, lo = check_bars(high, low)
    ts = None if timestamps is None else _as_timestamps(timestamps, len(h))
    bounds = [(0, len(h))] if ts is None else segment_bounds_of(ts, step_ms, max_missing_bars)
    parts: list[tuple[int, int, tuple[IntArray, IntArray, FloatArray]]] = []
    for a, z in bounds:
        for kind_code, (extremes, sign) in enumerate(((h[a:z], 1.0), (lo[a:z], -1.0))):
            for level, (idx, conf, price) in enumerate(_chain(extremes, sign, strengths), start=1):
                parts.append((level, kind_code, (idx + a, conf + a, price)))
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        parts.append((1, 0, (empty, empty, np.empty(0, dtype=np.float64))))
    sizes = [len(a[0]) for _, _, a in parts]
    level_col = np.repeat(np.array([p[0] for p in parts], dtype=np.int64), sizes)
    kind_codes = np.repeat(np.array([p[1] for p in parts], dtype=np.int8), sizes)
    index = np.concatenate([a[0] for _, _, a in parts])
    confirm = np.concatenate([a[1] for _, _, a in parts])
    price = np.concatenate([a[2] for _, _, a in parts])
    order = np.lexsort((kind_codes, level_col, confirm))
    return _frame(
        level_col[order], kind_codes[order], index[order], confirm[order], price[order], ts
    )


def _frame(
    level: IntArray,
    kind_codes: npt.NDArray[np.int8],
    index: IntArray,
    confirm: IntArray,
    price: FloatArray,
    ts: IntArray | None,
) -> pd.DataFrame:
    data: dict[str, Any] = {
        "level": level.astype(np.int64, copy=False),
        "kind": pd.Categorical.from_codes(kind_codes, categories=list(KINDS)),
        "index": index.astype(np.int64, copy=False),
        "confirm_index": confirm.astype(np.int64, copy=False),
        "price": price.astype(np.float64, copy=False),
    }
    if ts is not None:
        data["timestamp"] = ts[index]
        data["confirm_timestamp"] = ts[confirm]
    return pd.DataFrame(data)


def pivots_to_frame(pivots: Sequence[Pivot], with_timestamps: bool | None = None) -> pd.DataFrame:
    """The :func:`williams_pivots` frame of a list of :class:`Pivot` (e.g. streaming output).

    Timestamp columns are included when ``with_timestamps`` is true, or, when it is None, when
    the first pivot carries a timestamp.
    """
    if with_timestamps is None:
        with_timestamps = bool(pivots) and pivots[0].timestamp is not None
    get = operator.attrgetter
    level = np.fromiter(map(get("level"), pivots), np.int64, len(pivots))
    codes = np.fromiter((KINDS.index(p.kind) for p in pivots), np.int8, len(pivots))
    index = np.fromiter(map(get("index"), pivots), np.int64, len(pivots))
    confirm = np.fromiter(map(get("confirm_index"), pivots), np.int64, len(pivots))
    price = np.fromiter(map(get("price"), pivots), np.float64, len(pivots))
    frame = _frame(level, codes, index, confirm, price, None)
    if with_timestamps:
        if any(p.timestamp is None or p.confirm_timestamp is None for p in pivots):
            raise ValueError("with_timestamps=True but some pivots carry no timestamp")
        frame["timestamp"] = np.fromiter(map(get("timestamp"), pivots), np.int64, len(pivots))
        frame["confirm_timestamp"] = np.fromiter(
            map(get("confirm_timestamp"), pivots), np.int64, len(pivots)
        )
    return frame


def pivots_known_at(pivots: pd.DataFrame, now_index: int) -> pd.DataFrame:
    """The pivots usable at bar ``now_index`` (after it closed): ``confirm_index <= now_index``."""
    return pivots[pivots["confirm_index"].to_numpy() <= now_index]


def to_pivot_points(
    pivots: pd.DataFrame,
    symbol: Symbol | str,
    timestamps: Any = None,
    *,
    bar_ms: int,
) -> list[PivotPoint]:
    """:class:`PivotPoint` objects for the rows of a pivot frame.

    ``timestamp`` is the open time of the extreme bar; ``confirmed_at`` is the time the pivot
    becomes known: the *close* of its confirm bar (its open time + ``bar_ms``, the bars'
    duration in ms), since the confirm bar's high and low are final only then. Open times come
    from ``timestamps`` (bar open times, UTC ms) or, when None, from the frame's
    ``timestamp``/``confirm_timestamp`` columns.
    """
    if isinstance(bar_ms, bool) or not isinstance(bar_ms, int | np.integer) or bar_ms < 1:
        raise ValueError(f"bar_ms must be the bars' duration in ms (>= 1), got {bar_ms!r}")
    sym = Symbol.parse(symbol)
    if timestamps is not None:
        ts = np.asarray(timestamps)
        if ts.dtype.kind == "M":
            ts = ts.astype("datetime64[ms]").astype(np.int64)
        if len(pivots) and int(pivots["confirm_index"].max()) >= len(ts):
            raise ValueError(
                f"timestamps has {len(ts)} entries but a pivot is confirmed at bar "
                f"{int(pivots['confirm_index'].max())}; pass the timestamps of the same bars"
            )
        extreme_ts = ts[pivots["index"].to_numpy()]
        confirm_ts = ts[pivots["confirm_index"].to_numpy()]
    elif "timestamp" in pivots.columns and "confirm_timestamp" in pivots.columns:
        extreme_ts = pivots["timestamp"].to_numpy()
        confirm_ts = pivots["confirm_timestamp"].to_numpy()
    else:
        raise ValueError("pivots have no timestamp columns; pass the bars' timestamps")
    return [
        PivotPoint(
            symbol=sym,
            timestamp=int(t),
            confirmed_at=int(c) + int(bar_ms),
            price=float(p),
            kind=PivotKind(str(k)),
            level=int(lv),
        )
        for t, c, p, k, lv in zip(
            extreme_ts,
            confirm_ts,
            pivots["price"].to_numpy(),
            pivots["kind"].astype(str).to_numpy(),
            pivots["level"].to_numpy(),
            strict=True,
        )
    ]
