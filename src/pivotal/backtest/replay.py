"""The replay builder: a backtest's parts around the runtime's feed-driven loop.

:func:`replay` builds what a backtest builds (a :class:`~pivotal.core.clock.ReplayClock`
moved by a :class:`~pivotal.runtime.replay_feed.ReplayFeed`, a
:class:`~pivotal.trading.brokers.simulated.SimulatedBroker` as the venue, a
:class:`~pivotal.trading.risk.RiskManager`, the executor and the gap plan) and runs
:class:`~pivotal.runtime.loop.TradingLoop` over historical candles, every bar, as a live run
would. It gives the same fills, trades and equity curve as
:class:`~pivotal.backtest.engine.BacktestEngine`, bar for bar; the engine is faster because
it skips quiet bars, which a live loop cannot. This module (like the engine) is where the
replay mode is chosen; the runtime below never asks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from pivotal.backtest.gaps import GapPlan
from pivotal.backtest.timeline import Timeline, closed_streams, to_timeline_steps
from pivotal.core.candles import Candles
from pivotal.core.ports import DecisionSource
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.core.types import COBData
from pivotal.runtime.loop import LoopResult, TradingLoop
from pivotal.runtime.recorder import RunRecorder
from pivotal.runtime.replay_feed import ReplayFeed
from pivotal.trading.brokers.simulated import SimulatedBroker
from pivotal.trading.execution import ActionExecutor
from pivotal.trading.risk import RiskManager
from pivotal.trading.settings import TradingSettings

__all__ = ["replay"]


def replay(
    candles: Mapping[str, Candles],
    source: DecisionSource,
    *,
    timeframe: Timeframe | str,
    settings: TradingSettings | None = None,
    higher: Mapping[str, Mapping[Timeframe, Candles]] | None = None,
    trades: Mapping[str, Trades] | None = None,
    books: Mapping[str, Sequence[COBData]] | None = None,
    recorder: RunRecorder | None = None,
    progress: bool = False,
) -> LoopResult:
    """Run ``source`` over historical ``candles`` through the feed-driven loop.

    ``higher``, ``trades`` and ``books`` mean what they mean to
    :func:`~pivotal.backtest.engine.run_backtest` (the higher timeframes are also delivered
    as :class:`~pivotal.core.events.CandleClosed` events to the loop's listeners; the
    decision context shows those closed by the decision time). ``recorder`` receives every
    record as it happens (e.g. the run journal). The result's ``timestamps`` are the bars'
    closes and its trades and fills come from the simulated broker, bar columns indexing
    the timeline, so they equal a backtest's.
    """
    settings = settings if settings is not None else TradingSettings()
    tf = Timeframe.parse(timeframe)
    candles = dict(candles)
    timeline = Timeline.build(candles, tf.ms)
    streams = {s: dict(v) for s, v in (higher or {}).items()}
    unknown = sorted(set(streams) - set(candles))
    if unknown:
        raise ValueError(f"higher-timeframe candles given for symbols not traded: {unknown}")
    feed = ReplayFeed.from_candles(candles, timeframe=tf, higher=streams)
    broker = SimulatedBroker(
        feed.clock,
        settings.broker,
        bar_ms=tf.ms,
        symbols=list(candles),
        trades=trades,
        books=books,
    )
    risk = RiskManager(settings.risk)
    executor = ActionExecutor(
        broker, risk, fees=settings.broker.fees, lot_size=settings.broker.lot_size
    )
    for symbol, bars in candles.items():
        source.prepare(symbol, bars)
    plan = GapPlan.build(candles, tf, settings.gaps, settings.max_missing_bars)
    loop = TradingLoop(
        clock=feed.clock,
        broker=broker,
        risk=risk,
        source=source,
        executor=executor,
        timeframe=tf,
        venue=broker,
        recorder=recorder,
        candles_view=candles.__getitem__,
        higher_view=(lambda s, now: closed_streams(streams.get(s), now)) if streams else None,
        atr_period=settings.atr_period,
        gap_plan=plan,
    )
    result = loop.run(feed, progress=progress)
    return dataclasses.replace(
        result,
        trades=to_timeline_steps(broker.closed_trades(), timeline, ("entry_bar", "exit_bar")),
        open_trades=to_timeline_steps(broker.open_trades(), timeline, ("entry_bar",)),
        fills=to_timeline_steps(broker.fills_frame(), timeline, ("bar",)),
        gaps=tuple(plan.records()),
    )
