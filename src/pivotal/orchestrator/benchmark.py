"""The one buy-and-hold benchmark of an orchestrated run, and the figures shown beside it.

**Buy-and-hold** (:data:`BUY_AND_HOLD_TEXT`): the initial cash split equally across the
run's symbols, each share fully invested at the close of the symbol's first bar in the run
and held to the last bar's close, with no fees. It is the equal-weight basket of
:func:`pivotal.backtest.api.attach_metrics` (the ``Buy & hold return`` of ``pivotal
backtest``), built as a result of its own so that its equity curve, its metrics (exposure,
drawdown, Sharpe) and the strategy's ``buy_and_hold_return_pct`` are one and the same
figure. A symbol's share stays in cash until its first priced bar. Each holding is listed
as one closed trade ending at the last bar (exit reason ``end of data``), so its exposure
reads about 100 %.

**Sharpe on daily returns** (:func:`daily_risk`): backtesting.py's annualised volatility
(``pivotal.backtest.metrics``) is ill-conditioned when the returns fall steeply (a basket
down 34 % in a month reads a volatility of 1.4 % and a Sharpe of -69). The orchestrator's
report, summary and JSON add the textbook figures: the equity's daily simple returns
``r`` (the first day from the initial cash), ``volatility = std(r, ddof=1) * sqrt(A) * 100``
and ``sharpe = mean(r) / std(r, ddof=1) * sqrt(A)`` with ``A`` = 365 for data that trades
at weekends (crypto), else 252; NaN with fewer than :data:`MIN_DAILY_RETURNS` daily returns
or no spread.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pivotal.backtest.metrics import compute_metrics
from pivotal.backtest.result import BacktestResult, empty_fills
from pivotal.core.candles import Candles
from pivotal.trading.records import TRADE_DTYPES

__all__ = [
    "BUY_AND_HOLD",
    "BUY_AND_HOLD_TEXT",
    "DAILY_RISK_LABELS",
    "buy_and_hold",
    "daily_risk",
    "edge_note",
    "in_market_pct",
    "with_benchmark",
]

BUY_AND_HOLD = "buy and hold"
BUY_AND_HOLD_TEXT = (
    "buy-and-hold = the initial cash split equally across the symbols, each bought at the "
    "close of its first bar in the run and held to the last bar's close, no fees"
)
DAILY_RISK_LABELS = {
    "volatility_daily_ann_pct": "Volatility (daily returns, ann.) [%]",
    "sharpe_daily": "Sharpe ratio (daily returns)",
}
END_OF_DATA = "end of data"
#: Fewer daily returns than this leave the volatility and Sharpe undefined (NaN): annualised
#: from a few days they are noise (3 days of -1 % read a Sharpe of -55).
MIN_DAILY_RETURNS = 7
_MS_PER_DAY = 86_400_000


def buy_and_hold(
    timestamps: npt.ArrayLike,
    candles: Mapping[str, Candles],
    initial_cash: float,
) -> BacktestResult:
    """The buy-and-hold benchmark (module docstring) on the run's bar times, metrics attached.

    ``timestamps``: the run's bar open times (UTC ms); each symbol's close at a bar is that of
    its candle opened then or the latest before it. ``ValueError`` when no symbol has a price.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    if ts.ndim != 1 or len(ts) == 0:
        raise ValueError("buy-and-hold needs the run's bar times; the run has no bars")
    cash = float(initial_cash)
    holdings: list[tuple[str, int, npt.NDArray[np.float64]]] = []
    for symbol, series in candles.items():
        if not len(series):
            continue
        at = np.searchsorted(series.timestamp, ts, side="right") - 1
        close = np.where(at >= 0, series.close[np.clip(at, 0, None)], np.nan)
        priced = np.flatnonzero(np.isfinite(close) & (close > 0))
        if len(priced):
            first = int(priced[0])
            filled = pd.Series(close).ffill().to_numpy(dtype=np.float64)
            holdings.append((str(symbol), first, filled))
    if not holdings:
        raise ValueError("buy-and-hold needs a price: no symbol has a candle in the run")
    share = cash / len(holdings)
    relative = []
    rows = []
    for symbol, first, close in holdings:
        rel = np.where(np.arange(len(ts)) < first, 1.0, close / close[first])
        relative.append(rel)
        size = share / close[first]
        pnl = size * (close[-1] - close[first])
        times = (int(ts[first]), int(ts[-1]), first, len(ts) - 1)
        prices = (float(close[first]), float(close[-1]))
        rows.append(
            (symbol, "long", *times, *prices, size, pnl, 0.0, pnl / share * 100, END_OF_DATA)
        )
    basket = np.mean(np.vstack(relative), axis=0)
    equity = cash * basket
    columns = [*TRADE_DTYPES, "exit_reason"]
    trades = pd.DataFrame.from_records(rows, columns=columns).astype(TRADE_DTYPES)
    result = BacktestResult(
        initial_cash=cash,
        timestamps=ts,
        equity=equity,
        trades=trades,
        open_trades=trades.iloc[0:0].copy(),
        fills=empty_fills(),
        settings={"benchmark": BUY_AND_HOLD_TEXT, "symbols": [h[0] for h in holdings]},
        engine="buy-and-hold",
    )
    first_bar = min(h[1] for h in holdings)
    metrics = compute_metrics(
        ts,
        equity,
        trades,
        initial_cash=cash,
        fees_paid=0.0,
        closes=basket,
        first_trading_bar=first_bar,
    )
    metrics.update(daily_risk(ts, equity, cash))
    return dataclasses.replace(result, metrics=metrics)


def with_benchmark(result: BacktestResult, benchmark: BacktestResult) -> BacktestResult:
    """``result`` whose ``buy_and_hold_return_pct`` is ``benchmark``'s return (one figure
    everywhere) and with the daily-return volatility and Sharpe added."""
    metrics: dict[str, Any] = dict(result.metrics)
    metrics["buy_and_hold_return_pct"] = float(benchmark.metrics["total_return_pct"])
    metrics.update(daily_risk(result.timestamps, result.equity, result.initial_cash))
    return dataclasses.replace(result, metrics=metrics)


def daily_risk(
    timestamps: npt.ArrayLike, equity: npt.ArrayLike, initial_cash: float
) -> dict[str, float]:
    """``volatility_daily_ann_pct`` and ``sharpe_daily`` (module docstring)."""
    ts = np.asarray(timestamps, dtype=np.int64)
    eq = np.asarray(equity, dtype=np.float64)
    nan = {"volatility_daily_ann_pct": math.nan, "sharpe_daily": math.nan}
    if len(ts) == 0:
        return nan
    days = pd.Series(eq, index=pd.to_datetime(ts, unit="ms")).resample("D").last().dropna()
    closes = np.r_[float(initial_cash), days.to_numpy(dtype=np.float64)]
    returns = np.diff(closes) / closes[:-1]
    if len(returns) < MIN_DAILY_RETURNS:
        return nan
    spread = float(np.std(returns, ddof=1))
    weekend = float(np.mean((ts // _MS_PER_DAY + 3) % 7 >= 5)) > 2 / 7 * 0.6
    per_year = 365 if weekend else 252
    if not math.isfinite(spread) or spread == 0:
        return {"volatility_daily_ann_pct": 0.0, "sharpe_daily": math.nan}
    return {
        "volatility_daily_ann_pct": spread * math.sqrt(per_year) * 100,
        "sharpe_daily": float(np.mean(returns)) / spread * math.sqrt(per_year),
    }


def in_market_pct(result: BacktestResult) -> float:
    """Share of the run's bars (percent) with at least one position open, the positions
    still open at the end included (``exposure_time_pct`` counts closed trades only)."""
    n = len(result.timestamps)
    if n == 0:
        return math.nan
    delta = np.zeros(n + 1, dtype=np.int64)
    for table, is_open in ((result.trades, False), (result.open_trades, True)):
        if table is None or table.empty or "entry_bar" not in table.columns:
            continue
        entry = np.clip(table["entry_bar"].to_numpy(dtype=np.int64), 0, n - 1)
        if is_open or "exit_bar" not in table.columns:
            exit_ = np.full(len(entry), n - 1)
        else:
            exit_ = np.clip(table["exit_bar"].to_numpy(dtype=np.int64), 0, n - 1)
        np.add.at(delta, entry, 1)
        np.add.at(delta, exit_ + 1, -1)
    return float((np.cumsum(delta[:n]) > 0).mean() * 100)


def edge_note(strategy_return: float, hold_return: float, in_market: float) -> str | None:
    """A plain sentence when the edge over buy-and-hold comes mostly from staying out of a
    falling market, else None.

    A strategy in cash throughout would beat a falling buy-and-hold by ``-hold_return``
    points; when that is at least half of the edge (the strategy's own return is at most
    ``-hold_return``) and the strategy was out of the market most of the time (in it less
    than 50 % of the bars), most of the edge is from staying out rather than from the trades.
    """
    values = (strategy_return, hold_return, in_market)
    if not all(math.isfinite(v) for v in values) or hold_return >= 0 or in_market >= 50:
        return None
    edge = strategy_return - hold_return
    if edge <= 0 or strategy_return > -hold_return:
        return None
    own = "lost" if strategy_return < 0 else "made"
    return (
        f"The strategy was in the market {in_market:.1f} % of the time; most of its "
        f"{edge:.2f}-point edge over buy-and-hold comes from staying out while the market fell "
        f"{-hold_return:.2f} %, not from its trades (it {own} {abs(strategy_return):.2f} % "
        "itself)."
    )
