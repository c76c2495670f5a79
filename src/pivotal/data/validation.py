"""Validation of candles and trades before anything reaches the store.

Checks (vectorized, one pass per rule): timestamps strictly increasing (no out-of-order
rows, no duplicates) and on the timeframe's grid; prices finite and positive; volumes
finite and not negative; ``low <= open, close <= high``. A failed check never writes: the
caller gets a :class:`ValidationReport` that says how many rows, which ones and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import PRICE_COLUMNS, Candles
from pivotal.core.errors import DataError
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades


@dataclass(frozen=True, slots=True)
class Problem:
    """One rule that some rows break; ``rows`` are 0-based positions in the batch."""

    reason: str
    rows: npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ValidationReport:
    rows: int
    timestamps: npt.NDArray[np.int64]
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_mask(self) -> npt.NDArray[np.bool_]:
        mask = np.zeros(self.rows, dtype=bool)
        for problem in self.problems:
            mask[problem.rows] = True
        return mask

    @property
    def bad_rows(self) -> int:
        return int(self.bad_mask.sum())

    def describe(self, where: str = "", first_line: int = 0, examples: int = 3) -> str:
        """Human-readable summary; ``first_line`` maps row 0 to a file line (2 after a header)."""
        if self.ok:
            return (
                f"{where}: {self.rows} rows, all valid" if where else f"{self.rows} rows, all valid"
            )
        head = f"{where}: " if where else ""
        lines = [f"{head}{self.bad_rows} of {self.rows} rows refused"]
        for problem in self.problems:
            shown = []
            for row in problem.rows[:examples]:
                label = f"line {row + first_line}" if first_line else f"row {row}"
                ts = int(self.timestamps[row]) if row < len(self.timestamps) else None
                when = f" ({np.datetime64(ts, 'ms')}Z)" if ts is not None and ts >= 0 else ""
                shown.append(f"{label}{when}")
            more = (
                f" and {len(problem.rows) - examples} more" if len(problem.rows) > examples else ""
            )
            lines.append(f"  - {len(problem.rows)} × {problem.reason}: {', '.join(shown)}{more}")
        return "\n".join(lines)

    def raise_if_invalid(self, where: str = "", first_line: int = 0) -> None:
        if not self.ok:
            raise InvalidDataError(self, self.describe(where, first_line))


class InvalidDataError(DataError):
    """Rows failed validation; ``report`` holds the details. Nothing was written."""

    def __init__(self, report: ValidationReport, message: str) -> None:
        super().__init__(
            message + "\nNothing was written. Fix the rows, or re-run with --drop-invalid "
            "to store only the valid ones."
        )
        self.report = report


def _rows(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    return np.flatnonzero(mask).astype(np.int64)


def validate_candles(candles: Candles, timeframe: Timeframe) -> ValidationReport:
    """Check candles against every rule; rows are positions in ``candles``."""
    ts = candles.timestamp
    problems: list[Problem] = []

    def add(reason: str, mask: npt.NDArray[np.bool_]) -> None:
        if mask.any():
            problems.append(Problem(reason, _rows(mask)))

    if len(ts) > 1:
        step = np.diff(ts)
        before = np.concatenate(([False], step < 0))
        dup = np.concatenate(([False], step == 0))
        add("timestamp earlier than the row before (out of order; sort the file)", before)
        add("duplicate timestamp (same open time as the row before)", dup)
    add(
        f"timestamp not on the {timeframe} grid (open times must be multiples of "
        f"{timeframe.ms} ms since the epoch)",
        ts % timeframe.ms != 0,
    )
    add("negative timestamp", ts < 0)
    nan = np.zeros(len(ts), dtype=bool)
    for name in (*PRICE_COLUMNS, "volume"):
        nan |= ~np.isfinite(getattr(candles, name))
    add("NaN or infinite price or volume", nan)
    with np.errstate(invalid="ignore"):
        nonpositive = np.zeros(len(ts), dtype=bool)
        for name in PRICE_COLUMNS:
            nonpositive |= getattr(candles, name) <= 0
        add("price zero or negative", nonpositive)
        add("negative volume", candles.volume < 0)
        body_low = np.minimum(candles.open, candles.close)
        body_high = np.maximum(candles.open, candles.close)
        add("low above open or close", candles.low > body_low)
        add("high below open or close", candles.high < body_high)
    return ValidationReport(len(ts), ts, tuple(problems))


def validate_trades(trades: Trades) -> ValidationReport:
    """Trades must be time-ordered, have unique ids, positive prices and positive quantities."""
    ts = trades.timestamp
    problems: list[Problem] = []

    def add(reason: str, mask: npt.NDArray[np.bool_]) -> None:
        if mask.any():
            problems.append(Problem(reason, _rows(mask)))

    if len(ts) > 1:
        add(
            "trade time earlier than the trade before (sort by time)",
            np.concatenate(([False], np.diff(ts) < 0)),
        )
    ids = trades.trade_id
    if len(ids) > 1:
        order = np.argsort(ids, kind="stable")
        dup_sorted = np.concatenate(([False], np.diff(ids[order]) == 0))
        dup = np.zeros(len(ids), dtype=bool)
        dup[order[dup_sorted]] = True
        add("duplicate trade id", dup)
    add("negative timestamp", ts < 0)
    with np.errstate(invalid="ignore"):
        add("price NaN, zero or negative", ~(trades.price > 0) | ~np.isfinite(trades.price))
        add(
            "quantity NaN, zero or negative", ~(trades.quantity > 0) | ~np.isfinite(trades.quantity)
        )
    return ValidationReport(len(ts), ts, tuple(problems))
