"""An open trade's exit time is unknown: the JSON export writes null, not 1969-12-31 (the -1
sentinel read as a time)."""

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
