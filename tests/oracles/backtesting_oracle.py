"""backtesting.py as a test oracle: the classic SMA cross run with its own conventions.

Used by tests only: backtesting.py is a dev dependency, so this oracle lives under ``tests/``,
not in the shipped package. Without backtesting.py installed, :func:`run_sma_cross` skips the
calling test (``pytest.importorskip``) instead of failing it. The SMAs are
TA-Lib's on the **raw** close, passed in as data columns and read inside ``next`` (not via
``self.I``), because ``FractionalBacktest`` rescales OHLC by its fractional unit and SMAs of
the rescaled close can break float ties differently (see the reference conventions).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
import talib

from pivotal.backtest.result import TRADE_COLUMNS
from pivotal.core.candles import Candles

#: backtesting.py's ``buy()`` default size: "all in", as a fraction just below 1.
BACKTESTING_ALL_IN = 1 - 2.2e-16


@dataclass(frozen=True)
class OracleRun:
    trades: pd.DataFrame
    open_trade: pd.DataFrame
    equity: np.ndarray
    final_equity: float
    stats: pd.Series


def backtesting_frame(candles: Candles, fast: int, slow: int) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "Open": candles.open,
            "High": candles.high,
            "Low": candles.low,
            "Close": candles.close,
            "Volume": candles.volume,
            "SmaFast": talib.SMA(candles.close, fast),
            "SmaSlow": talib.SMA(candles.close, slow),
        },
        index=pd.to_datetime(candles.timestamp, unit="ms"),
    )
    return frame


def run_sma_cross(
    candles: Candles,
    *,
    fast: int = 10,
    slow: int = 30,
    cash: float = 100_000.0,
    commission: float = 0.001,
    fractional_unit: float = 1e-8,
    symbol: str = "BTC/USDT",
) -> OracleRun:
    """backtesting.py's ``FractionalBacktest`` over an SMA(fast)/SMA(slow) cross, long only:
    buy on an up-cross when flat, close on a down-cross."""
    pytest.importorskip(
        "backtesting", reason="backtesting.py (a dev dependency, the oracle) is not installed"
    )
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest

    class SmaCross(Strategy):
        def init(self) -> None:
            pass

        def next(self) -> None:
            f, s = self.data.SmaFast, self.data.SmaSlow
            if len(f) < 2:
                return
            up = f[-2] < s[-2] and f[-1] > s[-1]
            down = f[-2] > s[-2] and f[-1] < s[-1]
            if up and not self.position:
                self.buy()
            elif down and self.position:
                self.position.close()

    frame = backtesting_frame(candles, fast, slow)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = FractionalBacktest(
            frame,
            SmaCross,
            cash=cash,
            commission=commission,
            fractional_unit=fractional_unit,
            finalize_trades=False,
        )
        stats = bt.run()
    trades = _to_trades(stats["_trades"], candles, symbol)
    equity = stats["_equity_curve"]["Equity"].to_numpy()
    open_trade = _open_trade(stats, fractional_unit)
    return OracleRun(trades, open_trade, equity, float(stats["Equity Final [$]"]), stats)


def _to_trades(raw: pd.DataFrame, candles: Candles, symbol: str) -> pd.DataFrame:
    entry_bar = raw["EntryBar"].to_numpy(dtype=np.int64)
    exit_bar = raw["ExitBar"].to_numpy(dtype=np.int64)
    size = raw["Size"].to_numpy(dtype=np.float64)
    out: dict[str, Any] = {
        "symbol": [symbol] * len(raw),
        "side": np.where(size > 0, "long", "short"),
        "entry_time": candles.timestamp[entry_bar],
        "exit_time": candles.timestamp[exit_bar],
        "entry_bar": entry_bar,
        "exit_bar": exit_bar,
        "entry_price": raw["EntryPrice"].to_numpy(dtype=np.float64),
        "exit_price": raw["ExitPrice"].to_numpy(dtype=np.float64),
        "size": np.abs(size),
        "pnl": raw["PnL"].to_numpy(dtype=np.float64),
        "fees": raw["Commission"].to_numpy(dtype=np.float64),
        "return_pct": raw["ReturnPct"].to_numpy(dtype=np.float64) * 100,
    }
    return pd.DataFrame(out, columns=list(TRADE_COLUMNS))


def _open_trade(stats: pd.Series, unit: float) -> pd.DataFrame:
    """The trade still open at the end (FractionalBacktest keeps it in lots and scaled
    prices; converted back to base units and real prices here)."""
    strategy = stats["_strategy"]
    trades = list(getattr(strategy, "trades", ()) or ())
    rows = [
        {"size": abs(t.size) * unit, "entry_price": t.entry_price / unit, "entry_bar": t.entry_bar}
        for t in trades
    ]
    return pd.DataFrame(rows, columns=["size", "entry_price", "entry_bar"])
