"""The columns of the trade and fill tables that the portfolio and brokers produce.

A *trade* is a round trip from flat to flat (a flip ends one and starts the next); a *fill*
is one execution. ``pivotal.backtest.result`` re-exports these, so every producer (the
simulated broker, the vectorized path) and consumer (metrics, reports) shares one schema.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

TRADE_COLUMNS: tuple[str, ...] = (
    "symbol",
    "side",
    "entry_time",
    "exit_time",
    "entry_bar",
    "exit_bar",
    "entry_price",
    "exit_price",
    "size",
    "pnl",
    "fees",
    "return_pct",
)
TRADE_DTYPES: dict[str, Any] = {
    "symbol": object,
    "side": object,
    "entry_time": np.int64,
    "exit_time": np.int64,
    "entry_bar": np.int64,
    "exit_bar": np.int64,
    "entry_price": np.float64,
    "exit_price": np.float64,
    "size": np.float64,
    "pnl": np.float64,
    "fees": np.float64,
    "return_pct": np.float64,
}

EXIT_REASON = "exit_reason"
"""An extra trade column after :data:`TRADE_COLUMNS`: why the trade closed, read from the tag
of the fill that closed it (``exit`` for a strategy's exit, ``stop``, ``take_profit``, ``gap``
for a close at the last bar before a gap in the data, ``reversal`` for a flip; empty while
open or untagged)."""


def exit_reason(tag: str) -> str:
    """The exit reason of a closing fill's ``tag`` (``"sma_cross:exit"`` → ``"exit"``)."""
    reason = tag.rsplit(":", 1)[-1] if tag else ""
    return "reversal" if reason == "entry" else reason


FILL_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "bar",
    "symbol",
    "side",
    "quantity",
    "price",
    "fee",
    "liquidity",
    "client_order_id",
    "tag",
)
FILL_DTYPES: dict[str, Any] = {
    "timestamp": np.int64,
    "bar": np.int64,
    "symbol": object,
    "side": object,
    "quantity": np.float64,
    "price": np.float64,
    "fee": np.float64,
    "liquidity": object,
    "client_order_id": object,
    "tag": object,
}


def empty_trade_frame() -> pd.DataFrame:
    """An empty trade table with :data:`TRADE_COLUMNS` (and :data:`EXIT_REASON`)."""
    columns = {c: pd.Series(dtype=d) for c, d in TRADE_DTYPES.items()}
    columns[EXIT_REASON] = pd.Series(dtype=object)
    return pd.DataFrame(columns)


def empty_fill_frame() -> pd.DataFrame:
    """An empty fill table with :data:`FILL_COLUMNS` and their dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in FILL_DTYPES.items()})
