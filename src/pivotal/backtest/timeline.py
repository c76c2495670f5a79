"""The replay timeline: one grid of bar open times shared by every symbol of a run.

Symbols may miss bars (exchange outages are real and are not filled), so each symbol keeps
its own candles and the timeline maps each step to that symbol's bar index, or -1 where it
has no bar. Closes are forward-filled onto the timeline for marking positions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
import pandas as pd

from pivotal.core.candles import Candles
from pivotal.core.timeframes import Timeframe

NO_STREAMS: Mapping[Timeframe, Candles] = MappingProxyType({})


@dataclass(frozen=True, slots=True, eq=False)
class Timeline:
    """Bar open times (UTC ms) and, per symbol, the bar index at each step (-1 = no bar)."""

    timestamps: npt.NDArray[np.int64]
    bar_ms: int
    index: Mapping[str, npt.NDArray[np.int64]]
    bar_steps: Mapping[str, npt.NDArray[np.int64]]
    marks: Mapping[str, npt.NDArray[np.float64]]

    @classmethod
    def build(cls, candles: Mapping[str, Candles], bar_ms: int) -> Timeline:
        """Union of the symbols' bar times; every symbol's candles must be on the bar grid."""
        if not candles:
            raise ValueError("a backtest needs candles for at least one symbol")
        if bar_ms <= 0:
            raise ValueError(f"bar_ms must be positive, got {bar_ms}")
        for symbol, bars in candles.items():
            if len(bars) == 0:
                raise ValueError(f"no candles for {symbol}: load data for the requested range")
            if np.any(np.diff(bars.timestamp) <= 0):
                raise ValueError(f"{symbol} candles are not strictly increasing in time")
            if np.any(bars.timestamp % bar_ms):
                raise ValueError(
                    f"{symbol} candles are not aligned to the {bar_ms} ms bar grid; "
                    "resample them to the backtest timeframe first"
                )
        if len(candles) == 1:
            ((symbol, bars),) = candles.items()
            ts = np.asarray(bars.timestamp)
            steps = np.arange(len(ts), dtype=np.int64)
            return cls(
                ts, bar_ms, {symbol: steps}, {symbol: steps}, {symbol: np.asarray(bars.close)}
            )
        ts = np.unique(np.concatenate([np.asarray(b.timestamp) for b in candles.values()]))
        index: dict[str, npt.NDArray[np.int64]] = {}
        marks: dict[str, npt.NDArray[np.float64]] = {}
        bar_steps: dict[str, npt.NDArray[np.int64]] = {}
        for symbol, bars in candles.items():
            pos = np.searchsorted(bars.timestamp, ts)
            present = (pos < len(bars)) & (bars.timestamp[np.minimum(pos, len(bars) - 1)] == ts)
            index[symbol] = np.where(present, pos, -1).astype(np.int64)
            bar_steps[symbol] = np.flatnonzero(present).astype(np.int64)
            last = np.searchsorted(bars.timestamp, ts, side="right") - 1
            marks[symbol] = np.where(last >= 0, bars.close[np.maximum(last, 0)], np.nan)
        return cls(ts, bar_ms, index, bar_steps, marks)

    def __len__(self) -> int:
        return len(self.timestamps)

    def step_of(self, symbol: str, bar_index: int) -> int:
        """The timeline step of a symbol's bar (``len(self)`` when past its last bar)."""
        steps = self.bar_steps[symbol]
        return int(steps[bar_index]) if 0 <= bar_index < len(steps) else len(self)


def closed_streams(
    streams: Mapping[Timeframe, Candles] | None, now: int
) -> Mapping[Timeframe, Candles]:
    """Each timeframe's candles whose close (open + length) is at or before ``now``."""
    if not streams:
        return NO_STREAMS
    view: dict[Timeframe, Candles] = {}
    for tf, bars in streams.items():
        closed = int(np.searchsorted(bars.timestamp + tf.ms, now, side="right"))
        view[tf] = bars[:closed]
    return view


def to_timeline_steps(
    frame: pd.DataFrame, timeline: Timeline, columns: tuple[str, ...]
) -> pd.DataFrame:
    """Per-symbol bar indices in ``columns`` → timeline steps (the same with one symbol)."""
    if len(timeline.bar_steps) == 1 or frame.empty:
        return frame
    frame = frame.copy()
    for column in columns:
        bars = frame[column].to_numpy(dtype=np.int64)
        steps = np.full(len(frame), -1, dtype=np.int64)
        for symbol, bar_steps in timeline.bar_steps.items():
            rows = (frame["symbol"].to_numpy() == symbol) & (bars >= 0)
            steps[rows] = bar_steps[bars[rows]]
        frame[column] = steps
    return frame
