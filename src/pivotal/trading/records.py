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
    """An empty trade table with :data:`TRADE_COLUMNS` and their dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in TRADE_DTYPES.items()})


def empty_fill_frame() -> pd.DataFrame:
    """An empty fill table with :data:`FILL_COLUMNS` and their dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in FILL_DTYPES.items()})
