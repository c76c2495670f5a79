"""One (symbol, timeframe) series of the :class:`~pivotal.orchestrator.frame.MarketFrame`.

A :class:`FrameSeries` is a :class:`~pivotal.features.inputs.rolling.RollingCandles` (the
newest ``capacity`` candles, their columns, raw indicators and confirmed pivots, updated per
candle) plus a *backlog*: candles the frame was given ahead of time (a replay's
:meth:`~pivotal.orchestrator.frame.MarketFrame.load`) that are fed into the rolling window
only when the cursor reaches their close, so nothing is derived ahead of the cursor and the
window's memory stays bounded. The backlog is the caller's arrays (views, not copies).

The readers cache what a decision step asks for repeatedly: the indicator dict of the newest
closed row and the tuple of newest pivots (only pivots confirmed since the last read are
turned into :class:`~pivotal.core.types.PivotPoint` objects). :meth:`FrameSeries.window`
cuts an input's candle window straight from the rows, with the running count of invalid
candles that lets the frame's input check skip scanning it. :func:`check_candles` is what
the frame refuses of the candles it is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.gaps import is_gap
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.core.types import PivotKind, PivotPoint
from pivotal.features.indicators.feature_set import FEATURE_COLUMNS
from pivotal.features.inputs.columns import ColumnsConfig
from pivotal.features.inputs.rolling import RollingCandles

__all__ = ["FrameSeries", "check_candles", "check_order", "columns_key"]


def columns_key(columns: ColumnsConfig) -> str:
    """One key per distinct set of per-candle columns a window computes (COB never)."""
    return columns.model_copy(update={"cob": False}).model_dump_json()


_KINDS = {"high": PivotKind.HIGH, "low": PivotKind.LOW}


def check_order(candles: Any, where: str) -> Candles:
    """``candles`` when they are Candles with strictly increasing open times; ``where``
    names the caller in the error."""
    if not isinstance(candles, Candles):
        raise TypeError(f"{where}: expected Candles, got {type(candles).__name__}")
    ts = candles.timestamp
    if len(ts) > 1 and np.any(ts[1:] <= ts[:-1]):
        i = int(np.flatnonzero(ts[1:] <= ts[:-1])[0]) + 1
        raise ValueError(
            f"{where}: open times must strictly increase, but row {i} opens at {ts[i]} after "
            f"{ts[i - 1]}; sort and de-duplicate the candles first"
        )
    return candles


def _valid_bar(candle: Candles) -> bool:
    o, h, lo, c, v = (
        float(candle.open[0]),
        float(candle.high[0]),
        float(candle.low[0]),
        float(candle.close[0]),
        float(candle.volume[0]),
    )
    finite = math.isfinite(o) and math.isfinite(h) and math.isfinite(lo) and math.isfinite(c)
    return finite and math.isfinite(v) and v >= 0 and c > 0 and h >= lo


def check_candles(candles: Any, where: str) -> Candles:
    """Refuses what would break the derived data later: unsorted or repeated open times,
    NaN or infinite values, ``close <= 0``, negative volume, ``high < low``."""
    ts = check_order(candles, where).timestamp
    if len(ts) == 1 and _valid_bar(candles):  # the live path: one bar, checked in Python
        return candles
    problems = (
        ("is NaN or infinite", lambda c: ~np.isfinite(c.open + c.high + c.low + c.close)),
        (
            "has a NaN, infinite or negative volume",
            lambda c: ~(np.isfinite(c.volume) & (c.volume >= 0)),
        ),
        ("has close <= 0", lambda c: c.close <= 0),
        ("has high < low", lambda c: c.high < c.low),
    )
    for what, test in problems:
        bad = test(candles)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{where}: the candle opening at {ts[i]} {what} ({int(bad.sum())} such row(s)); "
                "fix or drop those candles first"
            )
    return candles


class FrameSeries:
    """A rolling candle window with a backlog and cached readers (module docstring)."""

    __slots__ = (
        "_backlog",
        "_backlog_pos",
        "_backlog_ts",
        "_closed",
        "_ind_keys",
        "_ind_row",
        "_piv_cache",
        "gap_bars",
        "others",
        "rolling",
        "symbol",
        "tf",
        "tf_ms",
    )

    def __init__(
        self,
        symbol: Symbol,
        tf: Timeframe,
        *,
        capacity: int,
        columns: ColumnsConfig,
        max_missing_bars: int,
        max_pivots: int,
        other_columns: Sequence[ColumnsConfig] = (),
    ) -> None:
        self.symbol = symbol
        self.tf = tf
        self.tf_ms = tf.ms
        self.gap_bars = max_missing_bars
        self.rolling = RollingCandles(
            tf,
            capacity=capacity,
            columns=columns,
            max_missing_bars=max_missing_bars,
            pivot_capacity=max(capacity, max_pivots),
        )
        # windows with other per-candle columns (another expert's job), fed the same rows
        self.others: dict[str, RollingCandles] = {
            columns_key(c): RollingCandles(
                tf, capacity=capacity, columns=c, max_missing_bars=max_missing_bars
            )
            for c in other_columns
        }
        self._backlog: Candles | None = None
        self._backlog_ts: list[int] = []
        self._backlog_pos = 0
        self._closed = (-1, -1, 0)  # (t, total, closed rows) of the last closed_end call
        self._ind_keys = tuple(f"{tf}/{name}" for name in FEATURE_COLUMNS)
        self._ind_row: tuple[int, dict[str, float]] = (-1, {})
        self._piv_cache: tuple[int, int, tuple[PivotPoint, ...]] = (0, 0, ())

    # -- data in ------------------------------------------------------------------------
    @property
    def held(self) -> int:
        """Candles held: in the rolling window plus those still in the backlog."""
        return len(self.rolling) + self.backlog_left

    @property
    def backlog_left(self) -> int:
        return len(self._backlog_ts) - self._backlog_pos

    def last_open(self) -> int | None:
        """Open time of the newest candle held (window or backlog)."""
        if self.backlog_left:
            return self._backlog_ts[-1]
        return self.rolling.last_open

    def add_backlog(self, candles: Candles) -> None:
        """Candles (checked, sorted, all after the newest held) to feed as the cursor
        reaches their close."""
        if not len(candles):
            return
        if self.backlog_left:
            assert self._backlog is not None
            rest = self._backlog.rows(self._backlog_pos, len(self._backlog_ts))
            candles = Candles.concat([rest, candles])
        self._backlog = candles
        self._backlog_ts = candles.timestamp.tolist()
        self._backlog_pos = 0

    def feed(self, t: int) -> None:
        """Move the backlog's candles closed at ``t`` into the rolling window."""
        pos, times = self._backlog_pos, self._backlog_ts
        stop = pos
        limit = t - self.tf_ms
        while stop < len(times) and times[stop] <= limit:
            stop += 1
        if stop == pos:
            return
        assert self._backlog is not None
        self.extend(self._backlog.rows(pos, stop))
        self._backlog_pos = stop
        if stop == len(times):
            self._backlog, self._backlog_ts, self._backlog_pos = None, [], 0

    def extend(self, rows: Candles) -> None:
        """Fold closed candles into the window and every other-columns window."""
        self.rolling.extend(rows)
        for other in self.others.values():
            other.extend(rows)

    def window_for(self, columns: ColumnsConfig) -> RollingCandles | None:
        """The window whose per-candle columns are ``columns`` (COB excluded); None when the
        frame was not told to keep them."""
        key = columns_key(columns)
        if key == columns_key(self.rolling.stream.config):
            return self.rolling
        return self.others.get(key)

    def contains(self, times: np.ndarray) -> np.ndarray:
        """Per open time (each before the newest held), whether the series holds it or it is
        older than the oldest candle the window still keeps after dropping older ones (the
        frame can no longer tell, and takes it as held: the frame only grows at its end)."""
        held = self.rolling.timestamps
        found = np.zeros(len(times), dtype=bool)
        if len(held):
            i = np.minimum(held.searchsorted(times), len(held) - 1)
            found |= held[i] == times
            if self.rolling.first_index:  # older rows were dropped from the window
                found |= times < held[0]
        if self.backlog_left:
            back = np.asarray(self._backlog_ts[self._backlog_pos :], dtype=np.int64)
            i = np.minimum(back.searchsorted(times), len(back) - 1)
            found |= back[i] == times
        return found

    # -- reading ------------------------------------------------------------------------
    def closed_end(self, t: int) -> int:
        """Rows of the window closed at ``t``: ``open + tf.ms <= t``."""
        last_t, last_total, end = self._closed
        total = self.rolling.total
        if t != last_t or total != last_total:
            end = self.rolling.closed_count(t)
            self._closed = (t, total, end)
        return end

    def window(
        self, end: int, frames: int, handed: dict[int, tuple[Candles, npt.NDArray[np.int64]]]
    ) -> Candles:
        """The newest ``frames`` of the first ``end`` (>= 1) window rows, starting no earlier
        than the segment of the newest of them (an input's window never spans a gap), as
        read-only views; kept in ``handed`` by the window's id with its running invalid
        counts (:meth:`~pivotal.features.inputs.rolling.RollingCandles.invalid_counts`).

        The rows :func:`~pivotal.features.inputs.builder.closed_window` cuts from the first
        ``end`` rows: each row's segment start was set as it arrived, by the same gap rule
        (:func:`~pivotal.core.gaps.is_gap` between consecutive candles)."""
        rolling = self.rolling
        start = max(0, end - frames, rolling.segment_start(end - 1) - rolling.first_index)
        window = rolling.rows(start, end)
        handed[id(window)] = (window, rolling.invalid_counts(start, end))
        return window

    def stale(self, end: int, t: int) -> bool:
        """Whether a gap separates the newest of the first ``end`` rows from ``t``."""
        return end > 0 and is_gap(
            int(self.rolling.timestamps[end - 1]), t, self.tf_ms, self.gap_bars
        )

    def indicator_row(self, position: int) -> dict[str, float]:
        """``{"<tf>/<name>": value}`` of the window row at ``position`` (cached per row)."""
        absolute = self.rolling.first_index + position
        cached, values = self._ind_row
        if cached != absolute:
            raw = self.rolling.raw_row(position).tolist()
            values = dict(zip(self._ind_keys, raw, strict=True)) if raw else {}
            self._ind_row = (absolute, values)
        return values

    def pivot_count(self, t: int) -> int:
        """Pivots confirmed since the first candle whose confirm bar closed by ``t``."""
        pivots = self.rolling.pivots
        ahead = 0
        limit = t - self.tf_ms
        for i in range(len(pivots) - 1, -1, -1):
            stamp = pivots[i].confirm_timestamp
            if stamp is None or stamp <= limit:
                break
            ahead += 1
        return self.rolling.pivots_seen - ahead

    def segment_pivots(self, count: int, end: int, t: int, most: int) -> int:
        """How many (at most ``most``) of the first ``count`` pivots belong to the segment of
        window row ``end - 1`` (0 when a gap separates that row from ``t``)."""
        if not end or self.stale(end, t):
            return 0
        rolling = self.rolling
        first = rolling.segment_start(end - 1)  # absolute index of the segment's first bar
        pivots = rolling.pivots
        last = count - (rolling.pivots_seen - len(pivots)) - 1  # deque position of pivot count-1
        n = 0
        while n < most and last - n >= 0 and pivots[last - n].index >= first:
            n += 1
        return n

    def pivot_points(self, count: int, keep: int) -> tuple[PivotPoint, ...]:
        """The newest ``keep`` of the first ``count`` pivots (oldest first), as PivotPoints;
        converts only the pivots that the cached tuple lacks."""
        start = max(0, count - keep)
        c_count, c_keep, cached = self._piv_cache
        if (c_count, c_keep) == (count, keep):
            return cached
        c_start = c_count - len(cached)
        if cached and c_start <= start <= c_count <= count:
            points = cached[start - c_start :] + self._convert(c_count, count)
        else:
            points = self._convert(start, count)
        self._piv_cache = (count, keep, points)
        return points

    def _convert(self, lo: int, hi: int) -> tuple[PivotPoint, ...]:
        pivots = self.rolling.pivots
        offset = self.rolling.pivots_seen - len(pivots)
        out = []
        for k in range(max(lo, offset), hi):
            p = pivots[k - offset]
            assert p.timestamp is not None and p.confirm_timestamp is not None
            out.append(
                PivotPoint(
                    self.symbol,
                    p.timestamp,
                    p.confirm_timestamp + self.tf_ms,
                    p.price,
                    _KINDS[p.kind],
                    p.level,
                )
            )
        return tuple(out)
