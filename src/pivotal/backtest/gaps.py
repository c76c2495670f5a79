"""The gaps a run meets and where the ``close`` policy flattens a position.

:class:`GapPlan` is built once per run from each symbol's candles (what a gap is:
:mod:`pivotal.core.gaps`). Under :attr:`GapPolicy.CLOSE` it marks, per symbol, the last bar
before every gap: there the backtest engine, the vectorized path and the run loop take no
new entry and close the position at that bar's close (:mod:`pivotal.trading.gaps`). Under
:attr:`GapPolicy.HOLD` nothing is marked and a run is exactly what it was before gaps were
known; the gaps are listed either way, in every result and report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.gaps import (
    DEFAULT_MAX_MISSING_BARS,
    Coverage,
    GapPolicy,
    SeriesGap,
    coverage,
    find_series_gaps,
    gap_after,
)
from pivotal.core.timeframes import Timeframe

__all__ = ["GapPlan", "gap_lines", "gap_records", "mostly_gaps_warnings"]


@dataclass(frozen=True, slots=True, eq=False)
class GapPlan:
    """Per symbol: its gaps, and (``close`` policy only) a bool per bar, True on the last bar
    before a gap, where the position is closed and no entry is taken."""

    policy: GapPolicy
    timeframe: Timeframe
    max_missing_bars: int
    gaps: Mapping[str, list[SeriesGap]]
    closes: Mapping[str, npt.NDArray[np.bool_]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        candles: Mapping[str, Candles],
        timeframe: Timeframe | str,
        policy: GapPolicy | str = GapPolicy.CLOSE,
        max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
    ) -> GapPlan:
        tf = Timeframe.parse(timeframe)
        policy = GapPolicy.parse(policy)
        gaps: dict[str, list[SeriesGap]] = {}
        closes: dict[str, npt.NDArray[np.bool_]] = {}
        for symbol, bars in candles.items():
            ts = np.asarray(bars.timestamp, dtype=np.int64)
            gaps[symbol] = find_series_gaps(ts, tf.ms, max_missing_bars)
            after = gap_after(ts, tf.ms, max_missing_bars)
            closes[symbol] = after if policy is GapPolicy.CLOSE else np.zeros_like(after)
        return cls(policy, tf, max_missing_bars, gaps, closes)

    def closes_after(self, symbol: str, bar_index: int) -> bool:
        """Whether ``symbol``'s bar ``bar_index`` is the last before a gap it closes at."""
        marks = self.closes.get(symbol)
        return marks is not None and 0 <= bar_index < len(marks) and bool(marks[bar_index])

    def close_bars(self, symbol: str) -> npt.NDArray[np.int64]:
        """``symbol``'s bar indices where the policy closes (empty under ``hold``)."""
        marks = self.closes.get(symbol)
        return np.empty(0, np.int64) if marks is None else np.flatnonzero(marks)

    def records(self) -> list[dict[str, Any]]:
        """Every gap as a plain dict (:meth:`SeriesGap.as_dict` plus symbol and timeframe)."""
        return gap_records(self.gaps, self.timeframe)


def gap_records(
    gaps: Mapping[str, list[SeriesGap]], timeframe: Timeframe | str
) -> list[dict[str, Any]]:
    """Gaps per symbol as dicts with ``symbol`` and ``timeframe``, in symbol order."""
    tf = str(Timeframe.parse(timeframe))
    return [
        {"symbol": symbol, "timeframe": tf, **gap.as_dict()}
        for symbol, found in gaps.items()
        for gap in found
    ]


def mostly_gaps_warnings(
    candles: Mapping[str, Candles],
    timeframe: Timeframe | str,
    max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
    start: int | None = None,
    end: int | None = None,
) -> list[str]:
    """One line per symbol whose candles cover less than half of the span asked for
    (``start``..``end``, else first..last bar), with its coverage summary."""
    tf = Timeframe.parse(timeframe)
    lines = []
    for symbol, bars in candles.items():
        cover: Coverage = coverage(
            np.asarray(bars.timestamp, dtype=np.int64), tf.ms, max_missing_bars, start, end
        )
        if cover.mostly_gaps:
            lines.append(f"{symbol} {tf} is mostly gaps: {cover.summary()}")
    return lines


def gap_lines(gaps: Sequence[Mapping[str, Any]], *, limit: int = 10) -> list[str]:
    """Human lines for gap records (:func:`gap_records`), longest first, at most ``limit``
    (plus a line saying how many more)."""
    ordered = sorted(gaps, key=lambda g: -int(g["first_after_ms"]) + int(g["last_before_ms"]))
    lines = [
        SeriesGap(
            int(g["last_before_ms"]), int(g["first_after_ms"]), int(g["missing_bars"])
        ).describe(str(g.get("timeframe", "")))
        for g in ordered[:limit]
    ]
    lines = [
        f"{g.get('symbol', '')} {line}".strip()
        for g, line in zip(ordered[:limit], lines, strict=True)
    ]
    if len(ordered) > limit:
        lines.append(f"… and {len(ordered) - limit} shorter gap(s)")
    return lines
