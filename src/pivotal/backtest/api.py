"""One call from candles and a strategy name to a result with its metrics.

``engine="event"`` runs the event-driven engine (every broker and risk feature);
``engine="vectorized"`` runs the fast path over the same signals, which supports one
symbol, market orders and a fixed-fraction size only, and refuses settings it cannot honour
rather than ignoring them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from pivotal.backtest.engine import run_backtest
from pivotal.backtest.metrics import compute_metrics
from pivotal.backtest.result import BacktestResult
from pivotal.backtest.strategies import make_strategy
from pivotal.backtest.timeline import Timeline
from pivotal.backtest.vectorized import run_signals
from pivotal.core.candles import Candles
from pivotal.core.orders import Liquidity
from pivotal.core.timeframes import Timeframe
from pivotal.trading.settings import TradingSettings

__all__ = ["attach_metrics", "backtest", "vectorized_unsupported"]

Engine = Literal["event", "vectorized"]


def backtest(
    candles: Mapping[str, Candles],
    strategy: str,
    params: Mapping[str, Any] | None = None,
    *,
    timeframe: Timeframe | str,
    settings: TradingSettings | None = None,
    engine: Engine = "event",
    progress: bool = False,
) -> BacktestResult:
    """Backtest a reference strategy (``sma_cross``, ``rsi_reversion``, ``buy_and_hold``)."""
    settings = settings or TradingSettings()
    source = make_strategy(strategy, params)
    if engine == "event":
        result = run_backtest(
            candles, source, timeframe=timeframe, settings=settings, progress=progress
        )
    elif engine == "vectorized":
        problems = vectorized_unsupported(settings, len(candles))
        if problems:
            raise ValueError(
                "the vectorized engine cannot honour: "
                + "; ".join(problems)
                + " — use --engine event"
            )
        ((symbol, bars),) = candles.items()
        source.prepare(symbol, bars)
        entries, exits = source.signals(symbol)
        broker = settings.broker
        result = run_signals(
            bars,
            (entries, exits),
            symbol=symbol,
            cash=broker.initial_cash,
            fee=broker.fees.rate(symbol, Liquidity.TAKER),
            lot_size=broker.lot_size,
            fraction=settings.risk.fraction,
            fill_timing=broker.fill_timing,
            bar_ms=Timeframe.parse(timeframe).ms,
            gaps=settings.gaps,
            max_missing_bars=settings.max_missing_bars,
        )
        result = dataclasses.replace(
            result,
            settings={
                **result.settings,
                "source": strategy,
                "params": dict(source.params),
                "timeframe": str(Timeframe.parse(timeframe)),
            },
        )
    else:
        raise ValueError(f"unknown engine {engine!r}; use 'event' or 'vectorized'")
    return attach_metrics(result, candles, Timeframe.parse(timeframe))


def vectorized_unsupported(settings: TradingSettings, n_symbols: int) -> list[str]:
    """What in ``settings`` the vectorized path would not honour (empty = fine)."""
    default = TradingSettings()
    problems = []
    if n_symbols != 1:
        problems.append(f"{n_symbols} symbols (it runs one)")
    b, d = settings.broker, default.broker
    for name in (
        "latency_ms",
        "slippage",
        "slippage_bps",
        "max_volume_fraction",
        "leverage",
        "allow_short",
    ):
        if getattr(b, name) != getattr(d, name):
            problems.append(f"broker.{name}={getattr(b, name)!r}")
    r, rd = settings.risk, default.risk
    for name, value in r.model_dump().items():
        if name in ("fraction", "var_confidence", "var_window"):
            continue
        if value != getattr(rd, name):
            problems.append(f"risk.{name}={value!r}")
    if r.sizing != "fixed_fraction":
        problems.append(f"risk.sizing={r.sizing!r}")
    if r.fraction > 1.0:
        problems.append(f"risk.fraction={r.fraction} (above 1 needs leverage)")
    return sorted(set(problems))


def attach_metrics(
    result: BacktestResult, candles: Mapping[str, Candles], timeframe: Timeframe
) -> BacktestResult:
    """``result`` with :func:`~pivotal.backtest.metrics.compute_metrics` filled in.

    Buy-and-hold is the equal-weighted basket of the symbols' closes on the run's timeline,
    bought at the first bar where the basket has a price.
    """
    timeline = Timeline.build(candles, timeframe.ms)
    rel = [m / m[np.flatnonzero(~np.isnan(m))[0]] for m in timeline.marks.values()]
    basket = np.nanmean(np.vstack(rel), axis=0) if len(rel) > 1 else rel[0]
    priced = np.flatnonzero(np.isfinite(basket))
    metrics = compute_metrics(
        result.timestamps,
        result.equity,
        result.trades,
        initial_cash=result.initial_cash,
        fees_paid=result.fees_paid,
        closes=basket,
        first_trading_bar=int(priced[0]) if len(priced) else 0,
    )
    return dataclasses.replace(result, metrics=metrics)
