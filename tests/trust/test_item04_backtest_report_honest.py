"""Honest backtest exports and tables: an open trade's exit time is null (not 1969-12-31
from the -1 sentinel), and an ill-conditioned Sharpe is not printed as a number."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pivotal.backtest.export import trade_records


def test_an_open_trades_exit_time_is_null_and_a_closed_ones_is_kept() -> None:
    trades = pd.DataFrame(
        {
            "symbol": ["BTC/USDT", "ETH/USDT"],
            "side": ["long", "long"],
            "entry_time": np.array([1_700_000_000_000, 1_700_000_060_000], dtype=np.int64),
            "exit_time": np.array([1_700_000_120_000, -1], dtype=np.int64),
            "entry_price": [1.0, 2.0],
            "exit_price": [1.5, np.nan],
            "size": [1.0, 1.0],
        }
    )
    closed, still_open = trade_records(trades)
    assert closed["exit_time"] == "2023-11-14T22:15:20.000Z"
    assert closed["exit_time_ms"] == 1_700_000_120_000
    assert still_open["exit_time"] is None and still_open["exit_time_ms"] is None
    assert still_open["entry_time_ms"] == 1_700_000_060_000


def test_an_ill_conditioned_sharpe_is_shown_as_not_available() -> None:
    """A span that is mostly a gap collapses the geometric volatility to ~0; the table must
    not print a Sharpe of -7e10 (seen on BTC 1m 2020-06..2021-11)."""
    from pivotal.backtest.metrics import format_metrics

    shown = dict(format_metrics({"sharpe": -72_445_311_527.1, "sortino": -1.5}))
    assert shown["Sharpe ratio"] == "n/a (volatility ≈ 0)"
    assert dict(format_metrics({"sharpe": -2.25}))["Sharpe ratio"] == "-2.250"
