"""The pushed replay: the orchestrator fed one bar at a time from the store, as live.

``pivotal run RUN_FILE --no-accelerate`` (``RunConfig.accelerate = false``) runs this path:
nothing is prepared over the whole range. Per symbol, in the run's symbol order, the
warm-up bars of every timeframe the experts read are pushed into the orchestrator's market
frame, then (with ``learn_from``) the learning span is replayed through
:meth:`~pivotal.orchestrator.orchestrator.Orchestrator.learn` from a feed; the trading span
is then the runtime's :class:`~pivotal.runtime.loop.TradingLoop` over a
:class:`~pivotal.runtime.replay_feed.ReplayFeed` that reads the store in bounded chunks,
with the orchestrator as the loop's market listener and decision source and the
:class:`~pivotal.trading.brokers.simulated.SimulatedBroker` as its venue. Each timeframe's
bars start where the accelerated run's histories start (``warmup_bars`` bars of that
timeframe before the first learning bar), so the frame's streaming indicators and pivots
see the same bars as the accelerator's batch computation, and the decisions, fills and
equity are the same (a test proves it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pivotal.backtest.gaps import GapPlan
from pivotal.backtest.result import BacktestResult
from pivotal.backtest.timeline import Timeline, to_timeline_steps
from pivotal.core.candles import Candles
from pivotal.core.orders import AccountSnapshot
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.run_journal import RunJournal
from pivotal.data.series import SeriesKey
from pivotal.data.store import MarketDataStore
from pivotal.orchestrator.decision_log import SOURCE, present
from pivotal.runtime.loop import TradingLoop
from pivotal.runtime.replay_feed import CandleStream, ReplayFeed
from pivotal.trading.brokers.simulated import SimulatedBroker
from pivotal.trading.execution import ActionExecutor
from pivotal.trading.risk import RiskManager

if TYPE_CHECKING:
    from pivotal.orchestrator.orchestrator import Orchestrator
    from pivotal.orchestrator.run_file import RunConfig
    from pivotal.trading.settings import TradingSettings

__all__ = ["flat_account", "replay_loop", "run_pushed"]


def _closed_by(tf: Timeframe, t: int) -> int:
    """The bound on open times of ``tf`` bars closed by ``t``: ``open < bound`` exactly
    when ``open + tf <= t``."""
    return t - tf.ms + 1


def _feed(
    store: MarketDataStore,
    run: RunConfig,
    symbols: Sequence[str],
    timeframes: Sequence[Timeframe],
    start: Mapping[Timeframe, int],
    end: Mapping[Timeframe, int],
) -> ReplayFeed | None:
    """Bars of ``symbols`` on ``timeframes`` opened in ``[start[tf], end[tf])``, read from the
    store in chunks; base timeframe first (the kernel steps on it), then the others."""
    streams: list[CandleStream] = []
    for tf in timeframes:
        if start[tf] >= end[tf]:
            continue
        for symbol in symbols:
            key = SeriesKey(run.exchange, Symbol.parse(symbol), tf)
            streams.append(
                CandleStream(
                    symbol,
                    tf,
                    lambda lo, hi, key=key: store.read_candles(key, lo, hi),
                    start=start[tf],
                    end=end[tf],
                )
            )
    return ReplayFeed(streams) if streams else None


def flat_account(run: RunConfig, timestamp: int) -> AccountSnapshot:
    cash = float(run.settings.broker.initial_cash)
    return AccountSnapshot(
        timestamp=timestamp,
        currency=run.settings.broker.currency,
        cash=cash,
        equity=cash,
        margin_used=0.0,
        available=cash,
        leverage=float(run.settings.broker.leverage),
        fees_paid=0.0,
        realized_pnl=0.0,
        unrealized_pnl=0.0,
    )


def replay_loop(
    feed: ReplayFeed,
    orchestrator: Orchestrator,
    settings: TradingSettings,
    base: Timeframe,
    symbols: Sequence[str],
    *,
    gap_plan: GapPlan | None = None,
    journal: RunJournal | None = None,
) -> tuple[TradingLoop, SimulatedBroker]:
    """The runtime's loop for a pushed replay: ``feed``'s clock, a simulated broker as the
    venue, the risk manager and executor of ``settings``, the orchestrator as the market
    listener and decision source; records to ``journal`` only (no run-length lists) when
    one is given."""
    broker = SimulatedBroker(feed.clock, settings.broker, bar_ms=base.ms, symbols=symbols)
    risk = RiskManager(settings.risk)
    executor = ActionExecutor(
        broker, risk, fees=settings.broker.fees, lot_size=settings.broker.lot_size
    )
    loop = TradingLoop(
        clock=feed.clock,
        broker=broker,
        risk=risk,
        source=orchestrator,
        executor=executor,
        timeframe=base,
        venue=broker,
        listeners=(orchestrator,),
        atr_period=settings.atr_period,
        gap_plan=gap_plan,
        recorder=journal,
        memory=journal is None,
    )
    return loop, broker


def run_pushed(
    store: MarketDataStore,
    run: RunConfig,
    orchestrator: Orchestrator,
    candles: Mapping[str, Candles],
    *,
    journal: RunJournal | None = None,
    progress: bool = False,
) -> BacktestResult:
    """The run's learning span and backtest with every bar pushed (module docstring).

    ``candles``: each symbol's base bars of the trading span (they define the timeline the
    result's bar columns index, and where the gap plan closes positions). ``journal``: the
    run journal every record streams to (equity, decisions, events, fills), so the run's
    memory does not grow with its length; the result is read back from it at the end.
    """
    base = run.base
    timeframes = [base, *(tf for tf in orchestrator.timeframes if tf != base)]
    first = int(run.learn_from if run.learn_from is not None else run.since or 0)
    if run.since is None:
        first = min(int(c.timestamp[0]) for c in candles.values())
    since = int(run.since) if run.since is not None else first
    warm = {tf: first - run.warmup_bars * tf.ms for tf in timeframes}
    learn = {tf: _closed_by(tf, first) for tf in timeframes}
    trade = {tf: _closed_by(tf, since) for tf in timeframes}
    until = max(int(c.timestamp[-1]) for c in candles.values()) + base.ms
    for symbol in run.symbols:
        orchestrator.prepare(symbol, candles[symbol])
        warmup = _feed(store, run, [symbol], timeframes, warm, learn)
        while warmup is not None and (events := warmup.next_events()) is not None:
            for event in events:
                orchestrator.on_event(event)
        if run.learn_from is not None and since > first:
            key = SeriesKey(run.exchange, Symbol.parse(symbol), base)
            bars = store.read_candles(key, first, since)
            if len(bars):
                span = _feed(store, run, [symbol], timeframes, learn, trade)
                orchestrator.learn(symbol, bars, flat_account(run, first), feed=span)
    ends = dict.fromkeys(timeframes, until)
    feed = _feed(store, run, run.symbols, timeframes, trade, ends)
    if feed is None:
        raise ValueError(f"no bars to replay in [{since}, {until})")
    settings = run.settings
    plan = GapPlan.build(candles, base, settings.gaps, settings.max_missing_bars)
    loop, broker = replay_loop(
        feed, orchestrator, settings, base, run.symbols, gap_plan=plan, journal=journal
    )
    result = loop.run(feed, progress=progress)
    times, equity, events = result.timestamps, result.equity, tuple(result.events)
    if journal is not None:
        journal.flush()
        curve = journal.equity_frame()
        times = curve["timestamp"].to_numpy(np.int64)
        equity = curve["equity"].to_numpy(np.float64)
        events = _broker_events(journal)
    timeline = Timeline.build(dict(candles), base.ms)
    return BacktestResult(
        initial_cash=float(settings.broker.initial_cash),
        # a backtest result's bars are labelled by their open time; the loop's by its close
        timestamps=np.asarray(times, dtype=np.int64) - base.ms,
        equity=np.asarray(equity, dtype=np.float64),
        trades=to_timeline_steps(broker.closed_trades(), timeline, ("entry_bar", "exit_bar")),
        open_trades=to_timeline_steps(broker.open_trades(), timeline, ("entry_bar",)),
        fills=to_timeline_steps(broker.fills_frame(), timeline, ("bar",)),
        events=events,
        settings={
            "source": orchestrator.name,
            "timeframe": str(base),
            "symbols": list(run.symbols),
            "decisions": result.decisions,
            **settings.model_dump(mode="json"),
        },
        engine="pushed",
        gaps=tuple(plan.records()),
    )


def _broker_events(journal: RunJournal) -> tuple[dict[str, Any], ...]:
    """The run's order and risk events from the journal (the orchestrator's own events are
    read by the orchestrator)."""
    rows = journal.events_frame().to_dict(orient="records")
    return tuple(present(row) for row in rows if row.get("source") != SOURCE)
