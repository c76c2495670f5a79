"""What a gap in a candle series is, and where a series splits into contiguous segments.

A *gap* is a run of missing candles longer than ``max_missing_bars`` (default
:data:`DEFAULT_MAX_MISSING_BARS`). Shorter runs are small exchange hiccups: they are bridged
as if the bars were there (indicators see consecutive rows). At a gap the series splits into
*segments*: nothing computed (indicators, pivots, model windows, labels) mixes bars from both
sides, and positions are closed at the last bar before the gap unless the user asks to hold
them (:class:`GapPolicy`). Everything here is pure numpy over sorted open times in ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np

DEFAULT_MAX_MISSING_BARS = 5
"""A missing run of more than this many bars is a gap (see docs/decisions.md)."""

MOSTLY_GAPS_SHARE = 0.5
"""A span whose missing bars exceed this share of its length is reported as mostly gaps."""


class GapPolicy(StrEnum):
    """What happens to an open position at a gap.

    ``close`` treats a gap like the end of the data followed by a new series: a replay knows
    at bar g that no bar follows for a while, exactly as it knows where its data ends. That
    is hindsight about data availability (no price or signal after g is used), so it is for
    replays only: a live feed cannot know an outage is coming, and a gap plan must never be
    built from future data there."""

    CLOSE = "close"  # exit at the close of the last bar before the gap (default)
    HOLD = "hold"  # carry the position through the gap (the user asked for it)

    @classmethod
    def parse(cls, text: str | GapPolicy) -> GapPolicy:
        if isinstance(text, GapPolicy):
            return text
        try:
            return cls(str(text).strip().lower())
        except ValueError:
            raise ValueError(f"unknown gap policy {text!r}; use close or hold") from None


@dataclass(frozen=True, slots=True)
class SeriesGap:
    """One gap: the open time of the last bar before it, the first bar after it, and how many
    bars are missing in between."""

    last_before: int
    first_after: int
    missing: int

    def describe(self, timeframe: str = "") -> str:
        unit = f" {timeframe} bars" if timeframe else " bars"
        return (
            f"{_fmt(self.last_before)} → {_fmt(self.first_after)} "
            f"({self.missing:,}{unit} missing, {_span(self.first_after - self.last_before)})"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "last_before": _fmt(self.last_before),
            "first_after": _fmt(self.first_after),
            "last_before_ms": self.last_before,
            "first_after_ms": self.first_after,
            "missing_bars": self.missing,
        }


def _fmt(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _span(ms: int) -> str:
    hours = ms / 3_600_000
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.0f} days"


def _check(step_ms: int, max_missing_bars: int) -> None:
    if step_ms <= 0:
        raise ValueError(f"bar step must be positive, got {step_ms} ms")
    if max_missing_bars < 0:
        raise ValueError(f"max_missing_bars must be >= 0, got {max_missing_bars}")


def gap_after(
    timestamps: np.ndarray, step_ms: int, max_missing_bars: int = DEFAULT_MAX_MISSING_BARS
) -> np.ndarray:
    """Boolean per bar: True where a gap follows this bar (the next bar is after a gap)."""
    _check(step_ms, max_missing_bars)
    ts = np.asarray(timestamps, dtype=np.int64)
    out = np.zeros(len(ts), dtype=bool)
    if len(ts) > 1:
        missing = np.diff(ts) // step_ms - 1
        out[:-1] = missing > max_missing_bars
    return out


def segment_starts(
    timestamps: np.ndarray, step_ms: int, max_missing_bars: int = DEFAULT_MAX_MISSING_BARS
) -> np.ndarray:
    """Boolean per bar: True on the first bar of every segment (bar 0 and each bar right
    after a gap)."""
    after = gap_after(timestamps, step_ms, max_missing_bars)
    starts = np.zeros(len(after), dtype=bool)
    if len(after):
        starts[0] = True
        starts[1:] = after[:-1]
    return starts


def segment_ids(
    timestamps: np.ndarray, step_ms: int, max_missing_bars: int = DEFAULT_MAX_MISSING_BARS
) -> np.ndarray:
    """Per bar, the index of its segment (0, 1, …): equal ids never straddle a gap."""
    return np.cumsum(segment_starts(timestamps, step_ms, max_missing_bars)) - 1


def segment_bounds(
    timestamps: np.ndarray, step_ms: int, max_missing_bars: int = DEFAULT_MAX_MISSING_BARS
) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of the contiguous segments, in order."""
    starts = np.flatnonzero(segment_starts(timestamps, step_ms, max_missing_bars))
    stops = np.append(starts[1:], len(timestamps))
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def find_series_gaps(
    timestamps: np.ndarray, step_ms: int, max_missing_bars: int = DEFAULT_MAX_MISSING_BARS
) -> list[SeriesGap]:
    """The gaps in sorted open times, oldest first."""
    ts = np.asarray(timestamps, dtype=np.int64)
    where = np.flatnonzero(gap_after(ts, step_ms, max_missing_bars))
    return [
        SeriesGap(int(ts[i]), int(ts[i + 1]), int((ts[i + 1] - ts[i]) // step_ms) - 1)
        for i in where
    ]


def window_crosses_gap(
    segments: np.ndarray, first: np.ndarray | int, last: np.ndarray | int
) -> np.ndarray:
    """Per sample, True when rows ``first..last`` (inclusive) of a series with these segment
    ids lie in more than one segment. Training drops such samples (window or label horizon
    across a gap)."""
    seg = np.asarray(segments)
    lo = np.clip(np.asarray(first), 0, len(seg) - 1)
    hi = np.clip(np.asarray(last), 0, len(seg) - 1)
    return seg[lo] != seg[hi]


@dataclass(frozen=True, slots=True)
class Coverage:
    """How much of a requested span a series covers."""

    expected_bars: int
    present_bars: int
    gaps: list[SeriesGap]

    @property
    def missing_bars(self) -> int:
        return max(0, self.expected_bars - self.present_bars)

    @property
    def missing_share(self) -> float:
        return self.missing_bars / self.expected_bars if self.expected_bars else 0.0

    @property
    def mostly_gaps(self) -> bool:
        return self.missing_share > MOSTLY_GAPS_SHARE

    def summary(self) -> str:
        return (
            f"{self.present_bars:,} of {self.expected_bars:,} bars present "
            f"({100 * self.missing_share:.1f} % missing), {len(self.gaps)} gap(s)"
        )


def coverage(
    timestamps: np.ndarray,
    step_ms: int,
    max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
    start: int | None = None,
    end: int | None = None,
) -> Coverage:
    """Coverage of ``[start, end)`` (default: first..last bar) by these open times."""
    ts = np.asarray(timestamps, dtype=np.int64)
    if not len(ts):
        expected = 0 if start is None or end is None else max(0, (end - start) // step_ms)
        return Coverage(expected, 0, [])
    lo = int(ts[0]) if start is None else int(start)
    hi = int(ts[-1]) + step_ms if end is None else int(end)
    return Coverage(
        max(0, (hi - lo) // step_ms), len(ts), find_series_gaps(ts, step_ms, max_missing_bars)
    )


def infer_step_ms(timestamps: np.ndarray) -> int | None:
    """The bar step of sorted open times when the caller does not know its timeframe: the
    smallest positive difference between neighbours (None with fewer than two distinct
    times). Callers that know the timeframe pass its length instead."""
    ts = np.asarray(timestamps, dtype=np.int64)
    if len(ts) < 2:
        return None
    diffs = np.diff(ts)
    diffs = diffs[diffs > 0]
    return int(diffs.min()) if len(diffs) else None


def segment_bounds_of(
    timestamps: np.ndarray,
    step_ms: int | None = None,
    max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
) -> list[tuple[int, int]]:
    """:func:`segment_bounds`, inferring the step (:func:`infer_step_ms`) when it is None; a
    series too short to have a step is one segment."""
    ts = np.asarray(timestamps, dtype=np.int64)
    step = infer_step_ms(ts) if step_ms is None else step_ms
    if step is None:
        return [(0, len(ts))] if len(ts) else []
    return segment_bounds(ts, step, max_missing_bars)


def is_gap(
    previous_open: int,
    open_time: int,
    step_ms: int,
    max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
) -> bool:
    """Whether a bar opening at ``open_time`` comes after a gap when the previous bar opened at
    ``previous_open`` (the streaming form of :func:`gap_after`)."""
    _check(step_ms, max_missing_bars)
    return (int(open_time) - int(previous_open)) // step_ms - 1 > max_missing_bars
