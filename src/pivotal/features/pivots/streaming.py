"""Bar-by-bar Williams pivots that equal :func:`~pivotal.features.pivots.williams_pivots`.

Each (level, kind) pair is one :class:`_SwingDetector` holding the last ``2n + 1`` items of its
input sequence: bars for level 1, the pivots of the level below for higher levels. When a new
item arrives the middle item is tested against the ``n`` items on each side with the batch
rule (strictly above the left ones, at least the right ones); a swing is confirmed by the
arriving item, so it takes that item's ``confirm_index``. Every item is tested once, so an
update costs O(sum of strengths), a constant independent of the history length (O(1) per bar
for a fixed configuration), and memory is O(sum of strengths) too: the detector keeps no
history, so collect the returned pivots if you need them (:func:`pivots_to_frame`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

from pivotal.core.gaps import DEFAULT_MAX_MISSING_BARS, is_gap
from pivotal.features.pivots.williams import KINDS, Pivot, check_levels_strength


class _Item(NamedTuple):
    value: float  # price for highs, -price for lows: swings are always maxima
    price: float
    index: int
    confirm_index: int
    timestamp: int | None  # open time of bar ``index``


class _SwingDetector:
    """Swing maxima with strength ``n`` over a stream of items (the batch rule, incrementally)."""

    __slots__ = ("_n", "_window")

    def __init__(self, n: int) -> None:
        self._n = n
        self._window: deque[_Item] = deque(maxlen=2 * n + 1)

    def push(self, item: _Item) -> _Item | None:
        """Add ``item``; return the swing it confirms (with ``item``'s confirm_index), if any."""
        window = self._window
        window.append(item)
        n = self._n
        if len(window) <= 2 * n:
            return None
        centre = window[n]
        value = centre.value
        for k in range(n):
            if window[k].value >= value:
                return None
        for k in range(n + 1, 2 * n + 1):
            if window[k].value > value:
                return None
        return centre._replace(confirm_index=item.confirm_index)


class StreamingWilliamsPivots:
    """Williams pivots one bar at a time; the concatenated output equals the batch frame.

    ``update(high, low, timestamp)`` takes the bar that has just closed and returns the pivots
    it confirms (``confirm_index`` = that bar's index), in the batch order: by level, high
    before low. Timestamps (bar open times, UTC ms) are either given for every bar or for none.

    With ``step_ms`` (the timeframe's length) and timestamps, the detectors restart when a bar
    arrives after a gap of more than ``max_missing_bars`` missing bars, as the batch function
    does with the same ``step_ms``: no pivot's window spans a gap.
    """

    def __init__(
        self,
        levels: int = 5,
        strength: int | Sequence[int] = 2,
        *,
        step_ms: int | None = None,
        max_missing_bars: int = DEFAULT_MAX_MISSING_BARS,
    ) -> None:
        self.strengths = check_levels_strength(levels, strength)
        self.levels = len(self.strengths)
        self.step_ms = step_ms
        self.max_missing_bars = max_missing_bars
        self._detectors = self._fresh()
        self._count = 0
        self._with_ts: bool | None = None
        self._last_ts: int | None = None
        self.gaps = 0  # how many gaps the detectors restarted after

    def _fresh(self) -> dict[str, list[_SwingDetector]]:
        return {kind: [_SwingDetector(n) for n in self.strengths] for kind in KINDS}

    @property
    def bars_seen(self) -> int:
        """How many bars have been passed to :meth:`update`."""
        return self._count

    def update(self, high: float, low: float, timestamp: int | None = None) -> list[Pivot]:
        """Feed the next closed bar; return the pivots confirmed at it (possibly none)."""
        h, lo = float(high), float(low)
        t = self._count
        if not (math.isfinite(h) and math.isfinite(lo)):
            raise ValueError(f"bar {t}: high={high!r}, low={low!r} must be finite (no NaN)")
        if h < lo:
            raise ValueError(f"bar {t}: high {h} < low {lo}; are the arguments swapped?")
        with_ts = timestamp is not None
        if self._with_ts is None:
            self._with_ts = with_ts
        elif with_ts != self._with_ts:
            raise ValueError(
                f"bar {t}: timestamps must be given for every bar or for none "
                f"(first bar {'had' if self._with_ts else 'had no'} timestamp)"
            )
        self._count = t + 1
        ts = None if timestamp is None else int(timestamp)
        if (
            ts is not None
            and self.step_ms is not None
            and self._last_ts is not None
            and is_gap(self._last_ts, ts, self.step_ms, self.max_missing_bars)
        ):
            self._detectors = self._fresh()
            self.gaps += 1
        self._last_ts = ts
        out: list[Pivot] = []
        for kind, sign, price in (("high", 1.0, h), ("low", -1.0, lo)):
            item = _Item(sign * price, price, t, t, ts)
            for level, detector in enumerate(self._detectors[kind], start=1):
                swing = detector.push(item)
                if swing is None:
                    break
                out.append(Pivot(level, kind, swing.index, t, swing.price, swing.timestamp, ts))
                item = swing
        out.sort(key=lambda p: (p.level, KINDS.index(p.kind)))
        return out
