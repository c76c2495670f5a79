"""Prediction outcomes: when a prediction's horizon has passed, what did the market do?

:class:`OutcomeTracker` keeps, per symbol, the inferences made at each base bar's close and
matures them ``horizon_bars`` base bars later against that bar's close (seed 003 §4.6,
"evaluates prediction accuracy against actual price movements after sufficient time has
passed"). The realized return is ``close[matured] / close[predicted] - 1`` and its label is
BUY above the dead band, SELL below minus the band, HOLD inside it (:func:`label_return`).

Bars are counted by the caller's ``bar_index`` (the position of the base bar in its series),
not by time, so gaps in the data do not shift the horizon. Calls must come in bar order per
symbol: a prediction never matures against a close that was known when it was made.

:class:`AccuracyTracker` turns matured predictions into rolling accuracy per model and symbol
over time, with the best seen (for degradation alerts).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from pivotal.core.types import Action
from pivotal.orchestrator.contracts import Inference, Outcome

__all__ = ["AccuracyTracker", "OutcomeTracker", "label_return"]


def label_return(realized_return: float, dead_band: float) -> Action:
    """BUY if ``realized_return > dead_band``, SELL if ``< -dead_band``, else HOLD.

    Both are fractions (0.001 = 0.1 %). A return exactly on the band is HOLD.
    """
    if not math.isfinite(realized_return):
        raise ValueError(f"realized_return must be finite, got {realized_return!r}")
    if not math.isfinite(dead_band) or dead_band < 0:
        raise ValueError(f"dead_band must be a finite fraction >= 0, got {dead_band!r}")
    if realized_return > dead_band:
        return Action.BUY
    if realized_return < -dead_band:
        return Action.SELL
    return Action.HOLD


@dataclass(frozen=True, slots=True)
class _Pending:
    timestamp: int
    bar_index: int
    close: float
    inferences: Mapping[str, Inference]


def _check_close(close: float, where: str) -> float:
    value = float(close)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: close must be a finite price > 0, got {close!r}")
    return value


class OutcomeTracker:
    """Pending predictions per symbol, matured ``horizon_bars`` base bars after they were made.

    ``add`` registers the inferences made at a bar's close; ``mature`` (once per bar, in
    order) returns every pending prediction whose horizon has passed, paired with its
    :class:`Outcome`, oldest first. Memory is bounded by ``horizon_bars`` steps per symbol
    when ``mature`` is called every bar.
    """

    def __init__(self, horizon_bars: int, dead_band: float) -> None:
        if isinstance(horizon_bars, bool) or not isinstance(horizon_bars, int) or horizon_bars < 1:
            raise ValueError(f"horizon_bars must be an int >= 1, got {horizon_bars!r}")
        label_return(0.0, dead_band)  # validates the band
        self.horizon_bars = horizon_bars
        self.dead_band = float(dead_band)
        self._pending: dict[str, deque[_Pending]] = {}
        self._last_added: dict[str, int] = {}
        self._last_matured: dict[str, int] = {}

    def add(
        self,
        symbol: str,
        timestamp: int,
        bar_index: int,
        close: float,
        inferences: Mapping[str, Inference],
    ) -> None:
        """Register the predictions made at the close (``timestamp``, UTC ms) of bar
        ``bar_index`` of ``symbol``, whose close price is ``close``. Bars must increase."""
        where = f"OutcomeTracker.add({symbol!r}, bar {bar_index})"
        value = _check_close(close, where)
        last = self._last_added.get(symbol)
        if last is not None and bar_index <= last:
            raise ValueError(
                f"{where}: bars must increase per symbol; bar {last} was already added"
            )
        self._last_added[symbol] = bar_index
        if not inferences:
            return
        entry = _Pending(int(timestamp), int(bar_index), value, dict(inferences))
        self._pending.setdefault(symbol, deque()).append(entry)

    def mature(
        self, symbol: str, bar_index: int, timestamp: int, close: float
    ) -> list[tuple[Outcome, Mapping[str, Inference]]]:
        """Mature every pending prediction of ``symbol`` made at a bar ``b`` with
        ``b + horizon_bars <= bar_index`` against this bar's ``close`` (at ``timestamp``).

        Returns ``(outcome, inferences)`` oldest first. ``Outcome.horizon_bars`` is the number
        of bars that actually passed (more than the horizon only when bars were skipped).
        """
        where = f"OutcomeTracker.mature({symbol!r}, bar {bar_index})"
        value = _check_close(close, where)
        last = self._last_matured.get(symbol)
        if last is not None and bar_index < last:
            raise ValueError(f"{where}: bars must not go back; bar {last} was already matured")
        self._last_matured[symbol] = bar_index
        queue = self._pending.get(symbol)
        out: list[tuple[Outcome, Mapping[str, Inference]]] = []
        while queue and queue[0].bar_index + self.horizon_bars <= bar_index:
            entry = queue.popleft()
            realized = value / entry.close - 1.0
            outcome = Outcome(
                symbol=symbol,
                timestamp=entry.timestamp,
                matured_at=int(timestamp),
                horizon_bars=bar_index - entry.bar_index,
                realized_return=realized,
                label=label_return(realized, self.dead_band),
            )
            out.append((outcome, entry.inferences))
        return out

    def pending(self, symbol: str | None = None) -> int:
        """Predictions (steps) not yet matured, of ``symbol`` or of all symbols."""
        if symbol is not None:
            return len(self._pending.get(symbol, ()))
        return sum(len(q) for q in self._pending.values())


# --- accuracy over time ----------------------------------------------------------------------


class AccuracyTracker:
    """Rolling accuracy per (model, symbol) over the last ``window`` matured predictions.

    ``best`` is the highest rolling accuracy seen with at least half a window of samples
    (an early lucky streak of three does not set it). :meth:`frame` is the accuracy over
    time: one row per update while there are at most ``max_rows`` rows; beyond that every
    other row is dropped and from then on only every ``k``-th update of each (model, symbol)
    is recorded (``k`` doubles at each thinning), so memory stays bounded on long runs.
    """

    def __init__(self, window: int, *, max_rows: int = 200_000) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an int >= 1, got {window!r}")
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 2:
            raise ValueError(f"max_rows must be an int >= 2, got {max_rows!r}")
        self.window = window
        self.max_rows = max_rows
        self._hits: dict[tuple[str, str], deque[bool]] = {}
        self._correct: dict[tuple[str, str], int] = {}
        self._updates: dict[tuple[str, str], int] = {}
        self._best: dict[tuple[str, str], float | None] = {}
        self._rows: list[tuple[int, str, str, float, int, int]] = []
        self._stride = 1

    def update(self, model: str, symbol: str, timestamp: int, correct: bool) -> float:
        """Add one matured prediction; returns the rolling accuracy in [0, 1]."""
        key = (model, symbol)
        hits = self._hits.setdefault(key, deque(maxlen=self.window))
        total = self._correct.get(key, 0)
        if len(hits) == self.window:
            total -= int(hits[0])
        hits.append(bool(correct))
        total += int(bool(correct))
        self._correct[key] = total
        accuracy = total / len(hits)
        if self._enough(len(hits)):
            best = self._best.get(key)
            self._best[key] = accuracy if best is None else max(best, accuracy)
        count = self._updates.get(key, 0) + 1
        self._updates[key] = count
        if count % self._stride == 0:
            self._rows.append((int(timestamp), model, symbol, accuracy, len(hits), count))
            if len(self._rows) > self.max_rows:
                self._stride *= 2
                self._rows = [r for r in self._rows if r[5] % self._stride == 0]
        return accuracy

    def _enough(self, n: int) -> bool:
        return 2 * n >= self.window

    def samples(self, model: str, symbol: str) -> int:
        """Predictions in the current window."""
        return len(self._hits.get((model, symbol), ()))

    def current(self, model: str, symbol: str) -> float | None:
        """The rolling accuracy, or None before the first matured prediction."""
        hits = self._hits.get((model, symbol))
        return self._correct[(model, symbol)] / len(hits) if hits else None

    def best(self, model: str, symbol: str) -> float | None:
        """The best rolling accuracy (with at least half a window) since the last reset."""
        return self._best.get((model, symbol))

    def degraded(self, model: str, symbol: str, drop: float) -> bool:
        """Whether the rolling accuracy (at least half a window) is more than ``drop`` below
        its best."""
        best, current = self.best(model, symbol), self.current(model, symbol)
        if best is None or current is None or not self._enough(self.samples(model, symbol)):
            return False
        return current < best - drop

    def reset_best(self, model: str) -> None:
        """Forget the best of every symbol of ``model`` (after a retrain)."""
        for key in self._best:
            if key[0] == model:
                self._best[key] = None

    def keys(self) -> list[tuple[str, str]]:
        """The (model, symbol) pairs tracked, in first-seen order."""
        return list(self._hits)

    def frame(self) -> pd.DataFrame:
        """Accuracy over time: ``timestamp`` (UTC ms of the maturing step), ``model``,
        ``symbol``, ``accuracy`` (rolling), ``n`` (predictions in the window) and ``update``
        (the pair's update count; see the class docstring for thinning)."""
        columns = ["timestamp", "model", "symbol", "accuracy", "n", "update"]
        frame = pd.DataFrame(self._rows, columns=columns)
        return frame.astype(
            {"timestamp": "int64", "accuracy": "float64", "n": "int64", "update": "int64"}
        )
