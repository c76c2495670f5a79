"""What a backtest returns: the equity curve, the round-trip trades, the fills and the events.

Both the event-driven engine and the vectorized fast path build this same object, so the
metrics, reports and the JSON export do not care which produced it.

Conventions (the same as backtesting.py's, so the figures compare one to one):

- ``timestamps`` are bar **open** times (UTC ms) of the run's timeline; ``equity[i]`` is the
  account equity marked at bar i's **close**: cash plus unrealized PnL, where the exit fee
  of an open position is not deducted until it is paid.
- A *trade* is a round trip from flat to flat (or to a flip). ``entry_price`` and
  ``exit_price`` are quantity-weighted averages of its fills; ``size`` is its largest
  absolute position in base units; ``pnl`` is net of both sides' ``fees``; ``return_pct``
  is ``pnl / (entry_price * size) * 100``. Times are the fills' times (UTC ms) and
  ``entry_bar``/``exit_bar`` index ``timestamps``.
- A position still open at the end is listed in ``open_trades`` (marked at the last
  close, exit fee not deducted) and is part of ``final_equity``, not of ``trades``.
- ``trades`` has an ``exit_reason`` column after those (``exit``, ``stop``, ``take_profit``,
  ``gap``, ...). ``gaps`` lists the gaps in the data the run met, one dict per gap
  (:meth:`pivotal.core.gaps.SeriesGap.as_dict` plus ``symbol`` and ``timeframe``); with
  the ``close`` policy no trade spans one: it exits at the last bar before it, reason ``gap``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pivotal.trading.records import (
    EXIT_REASON,
    FILL_COLUMNS,
    TRADE_COLUMNS,
    empty_fill_frame,
    empty_trade_frame,
)

__all__ = [
    "EXIT_REASON",
    "FILL_COLUMNS",
    "TRADE_COLUMNS",
    "BacktestResult",
    "empty_fills",
    "empty_trades",
]


def empty_trades() -> pd.DataFrame:
    """An empty trade table with the right columns and dtypes."""
    return empty_trade_frame()


def empty_fills() -> pd.DataFrame:
    """An empty fill table with the right columns and dtypes."""
    return empty_fill_frame()


@dataclass(frozen=True, slots=True, eq=False)
class BacktestResult:
    """One backtest's outcome; see the module docstring for every convention."""

    initial_cash: float
    timestamps: npt.NDArray[np.int64]
    equity: npt.NDArray[np.float64]
    trades: pd.DataFrame
    open_trades: pd.DataFrame
    fills: pd.DataFrame
    metrics: Mapping[str, float] = field(default_factory=dict)
    events: tuple[Mapping[str, Any], ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    engine: str = "event"
    gaps: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if len(self.timestamps) != len(self.equity):
            raise ValueError(
                f"equity has {len(self.equity)} points for {len(self.timestamps)} bars"
            )
        missing = [c for c in TRADE_COLUMNS if c not in self.trades.columns]
        if missing:
            raise ValueError(f"trade table lacks columns {missing}")

    @property
    def final_equity(self) -> float:
        return float(self.equity[-1]) if len(self.equity) else float(self.initial_cash)

    @property
    def fees_paid(self) -> float:
        if self.fills.empty:
            return 0.0
        return float(self.fills["fee"].astype(float).sum())

    def equity_series(self) -> pd.Series:
        """Equity indexed by UTC bar open time."""
        index = pd.to_datetime(self.timestamps, unit="ms", utc=True)
        return pd.Series(self.equity, index=index, name="equity")
