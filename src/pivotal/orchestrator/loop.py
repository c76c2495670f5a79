"""One run loop for every mode: a clock, a bar feed, the Broker protocol and a decision source.

:class:`TradingLoop` knows only a :class:`~pivotal.core.clock.Clock`, a
:class:`~pivotal.core.ports.Broker`, the :class:`~pivotal.trading.risk.RiskManager`, a
:class:`~pivotal.core.ports.DecisionSource` (a reference strategy or the orchestrator), the
:class:`~pivotal.trading.execution.ActionExecutor` and a :class:`BarFeed`. It never asks
which mode it runs in: a replay passes :class:`ReplayFeed` (historical bars that move a
:class:`~pivotal.core.clock.ReplayClock`) and the
:class:`~pivotal.trading.brokers.simulated.SimulatedBroker`, whose ``on_bar`` is the venue's
matching step; paper and live trading pass the wall clock, a feed of closed exchange bars
and an exchange broker (which matches orders itself: ``on_bar=None``).

Per close time the feed reports (every symbol whose bar closes then, in the feed's order):

1. the feed has moved the clock to the close (or, live, the clock is already past it); the
   loop only reads the clock (``now``, UTC ms) and stamps everything with it;
2. the venue steps each closed bar (``on_bar(symbol, bar_index)``);
3. the risk manager observes the account equity at ``now`` (drawdown breaker, daily loss);
4. each symbol whose wake-up bar has come (``bar_index >= source.next_wake(symbol, ...)``)
   gets a :class:`~pivotal.core.ports.DecisionContext` (its candles up to and including the
   bar, the account, its open orders, higher timeframes closed by ``now``);
   ``source.decide`` answers with actions and the executor reviews and submits them;
5. the broker's events and the risk alerts are drained into the event log, and the equity
   after the decisions is recorded.

**Gaps.** ``gap_plan`` (a :class:`~pivotal.backtest.gaps.GapPlan`, data like the rest)
says which bars are the last before a gap in a symbol's data under the ``close`` policy. On
such a bar step 4 is replaced, for that symbol, by a close: its active orders are cancelled
and its position leaves through a reduce-only market order (exit reason ``gap``,
:mod:`pivotal.trading.gaps`), filled at the bar's close by a broker that can; the source is
not asked, so no entry is taken there. Without a plan (or under ``hold``) nothing changes.
:func:`replay` builds the plan from ``settings.gaps`` and lists the gaps in its result.
The plan is hindsight about where the data stops (:class:`~pivotal.core.gaps.GapPolicy`):
replays only; a live builder passes none.

The source must be prepared (``source.prepare(symbol, history)``) before :meth:`run`;
:func:`replay` prepares it with the whole series, as the backtest engine does.

**ATR.** The risk manager's ATR at bar ``j`` is ``talib.ATR`` over the symbol's candles up to
``j``: computed over the candles known when first needed and again only when a later bar is
asked for. TA-Lib's ATR at ``j`` depends on bars ``<= j`` only, so a replay (whose view is
the whole series, computed once) gets exactly the backtest engine's values.

:func:`replay` runs this loop over historical candles and gives the same fills, trades and
equity curve as :class:`~pivotal.backtest.engine.BacktestEngine`, bar for bar; the engine
is faster because it skips quiet bars, which a live loop cannot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import pandas as pd
import talib

from pivotal.backtest.config import BacktestSettings
from pivotal.backtest.gaps import GapPlan
from pivotal.backtest.timeline import NO_STREAMS, Timeline, closed_streams, to_timeline_steps
from pivotal.core.candles import CANDLE_COLUMNS, Candles
from pivotal.core.clock import Clock, ReplayClock
from pivotal.core.ports import Broker, DecisionContext, DecisionSource
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.core.types import COBData
from pivotal.trading.brokers.simulated import SimulatedBroker
from pivotal.trading.execution import ActionExecutor, alert_record, broker_event_record
from pivotal.trading.gaps import flatten_before_gap
from pivotal.trading.risk import RiskManager

__all__ = ["BarFeed", "LoopResult", "ReplayFeed", "TradingLoop", "replay"]

_BUFFER_ROWS = 1024


@runtime_checkable
class BarFeed(Protocol):
    """The venue edge that produces closed bars.

    ``next_bars()`` returns the bars of the next close time, all symbols closing at that
    time, as ``(symbol, bar_index, candle)`` with a one-row :class:`Candles`; the clock must
    read that close time or later when it returns. ``bar_index`` counts the symbol's bars
    (the row index in the symbol's candle history). ``None`` means the feed has finished.
    A live feed blocks until the next bar closes.
    """

    def next_bars(self) -> Sequence[tuple[str, int, Candles]] | None: ...


@dataclass(frozen=True, slots=True, eq=False)
class LoopResult:
    """What one run of the loop produced.

    ``timestamps[i]`` is the clock's time (UTC ms) at the i-th close the loop processed (in
    a replay: the bar's open + the bar length); ``equity[i]`` the account equity then, after
    that close's decisions (quote currency). ``events`` are the records of
    :mod:`pivotal.trading.execution`, oldest first; ``decisions`` counts ``source.decide``
    calls. ``trades``, ``open_trades`` and ``fills`` are filled in by :func:`replay` from its
    simulated broker (bar columns index ``timestamps``, as in a backtest result); a loop over
    an exchange broker leaves them None (the fills are in ``events``). ``gaps`` lists the
    gaps in the data the run met (:meth:`GapPlan.records`), empty without a plan.
    """

    timestamps: npt.NDArray[np.int64]
    equity: npt.NDArray[np.float64]
    events: tuple[Mapping[str, Any], ...]
    decisions: int
    trades: pd.DataFrame | None = None
    open_trades: pd.DataFrame | None = None
    fills: pd.DataFrame | None = None
    gaps: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if len(self.timestamps) != len(self.equity):
            raise ValueError(
                f"equity has {len(self.equity)} points for {len(self.timestamps)} closes"
            )


class TradingLoop:
    """Drives a decision source bar by bar through the risk manager to a broker.

    ``candles_view(symbol)`` returns the symbol's candles whose row ``i`` is its bar ``i``,
    including at least every closed bar (a replay passes the whole series; the loop never
    shows a source rows after the bar that just closed). Without it the loop keeps the bars
    the feed delivers, which must then start at bar 0 and come without gaps. ``on_bar`` is
    the venue's matching step for a closed bar (``SimulatedBroker.on_bar``); None when the
    venue matches orders itself. ``higher_view(symbol, now)`` returns the symbol's other
    timeframes' candles closed by ``now``. ``atr_period`` is the ATR the risk manager sees.
    ``gap_plan`` marks the bars where a position is closed before a gap (module docstring).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        broker: Broker,
        risk: RiskManager,
        source: DecisionSource,
        executor: ActionExecutor,
        candles_view: Callable[[str], Candles] | None = None,
        on_bar: Callable[[str, int], None] | None = None,
        higher_view: Callable[[str, int], Mapping[Timeframe, Candles]] | None = None,
        atr_period: int = 14,
        gap_plan: GapPlan | None = None,
    ) -> None:
        if not isinstance(clock, Clock):
            raise TypeError(f"clock must have now_ms() (a Clock), got {type(clock).__name__}")
        if not isinstance(broker, Broker):
            raise TypeError(
                f"broker must implement pivotal.core.ports.Broker, got {type(broker).__name__}"
            )
        if not isinstance(risk, RiskManager):
            raise TypeError(f"risk must be a RiskManager, got {type(risk).__name__}")
        if not isinstance(source, DecisionSource):
            raise TypeError(
                "source must implement pivotal.core.ports.DecisionSource (name, warmup_bars, "
                f"prepare, next_wake, decide), got {type(source).__name__}"
            )
        if not isinstance(executor, ActionExecutor):
            raise TypeError(f"executor must be an ActionExecutor, got {type(executor).__name__}")
        if executor.broker is not broker or executor.risk is not risk:
            raise ValueError(
                "the executor must submit to the loop's broker and review with the loop's risk "
                "manager: build it as ActionExecutor(broker, risk, ...) with the same objects"
            )
        if isinstance(atr_period, bool) or not isinstance(atr_period, int) or atr_period < 1:
            raise ValueError(f"atr_period must be a whole number of bars >= 1, got {atr_period!r}")
        self.clock = clock
        self.broker = broker
        self.risk = risk
        self.source = source
        self.executor = executor
        self.candles_view = candles_view
        self.on_bar = on_bar
        self.higher_view = higher_view
        self.atr_period = atr_period
        self.gap_plan = gap_plan
        self._buffers: dict[str, _CandleBuffer] = {}
        self._atr: dict[str, npt.NDArray[np.float64]] = {}

    # -- the loop ------------------------------------------------------------------------
    def run(self, feed: BarFeed, *, progress: bool = False) -> LoopResult:
        """Process every close ``feed`` reports until it returns None (module docstring)."""
        if not isinstance(feed, BarFeed):
            raise TypeError(f"feed must have next_bars() (a BarFeed), got {type(feed).__name__}")
        clock = self.clock
        broker = self.broker
        risk = self.risk
        on_bar = self.on_bar
        keep = self.candles_view is None
        warmup = max(int(self.source.warmup_bars()), 0)
        wake: dict[str, int] = {}
        times: list[int] = []
        equity: list[float] = []
        events: list[dict[str, Any]] = []
        decisions = 0
        previous: int | None = None
        total = len(feed) if hasattr(feed, "__len__") else None
        bar = _progress(progress, total, f"run {self.source.name}")
        while (bars := feed.next_bars()) is not None:
            if not bars:
                continue  # nothing closed
            now = int(clock.now_ms())
            if previous is not None and now <= previous:
                raise ValueError(
                    f"the clock reads {now} after a close processed at {previous}: the feed "
                    "must move the clock forward to each new close"
                )
            previous = now
            for symbol, j, row in bars:
                if row.timestamp.item(0) >= now:
                    raise ValueError(
                        f"{symbol} bar {j} opens at {row.timestamp.item(0)}, not before the "
                        f"clock's {now}: a feed reports a bar only once it has closed"
                    )
                if on_bar is not None:
                    on_bar(symbol, j)
                if keep:
                    self._keep(symbol, j, row)
            risk.observe(now, broker.account().equity)
            closing = self._closing(bars)
            for symbol in closing:
                flatten_before_gap(broker, symbol)
            for symbol, j, _ in bars:
                due = wake.get(symbol)
                if due is None:
                    due = wake[symbol] = self._next_wake(symbol, warmup)
                if j >= due and symbol in closing:
                    wake[symbol] = self._next_wake(symbol, j + 1)  # no entry before a gap
                elif j >= due:
                    decisions += 1
                    events.extend(self._decide(symbol, j, now))
                    wake[symbol] = self._next_wake(symbol, j + 1)
            equity.append(broker.account().equity)
            times.append(now)
            for event in broker.drain_events():
                events.append(broker_event_record(event))
            for alert in risk.drain_alerts():
                events.append(alert_record(alert))
            bar.update(len(times))
        bar.close()
        return LoopResult(
            timestamps=np.asarray(times, dtype=np.int64),
            equity=np.asarray(equity, dtype=np.float64),
            events=tuple(events),
            decisions=decisions,
        )

    # -- pieces --------------------------------------------------------------------------
    def _closing(self, bars: Sequence[tuple[str, int, Candles]]) -> set[str]:
        """The symbols whose bar that just closed is the last before a gap to close at."""
        plan = self.gap_plan
        if plan is None:
            return set()
        return {symbol for symbol, j, _ in bars if plan.closes_after(symbol, j)}

    def _next_wake(self, symbol: str, bar_index: int) -> int:
        wake = int(self.source.next_wake(symbol, bar_index))
        if wake < bar_index:
            raise ValueError(
                f"{self.source.name}.next_wake({symbol!r}, {bar_index}) returned {wake}, "
                "an earlier bar; it must return a bar index >= the one it was given"
            )
        return wake

    def _decide(self, symbol: str, j: int, now: int) -> list[dict[str, Any]]:
        view = self._view(symbol)
        if j >= len(view):
            raise ValueError(
                f"the candles of {symbol} hold {len(view)} bars but bar {j} has closed: "
                "candles_view must include every closed bar"
            )
        broker = self.broker
        context = DecisionContext(
            timestamp=now,
            symbol=symbol,
            bar_index=j,
            candles=view.head(j + 1),
            account=broker.account(),
            open_orders=tuple(broker.open_orders(symbol)),
            higher=NO_STREAMS if self.higher_view is None else self.higher_view(symbol, now),
        )
        actions = self.source.decide(context)
        return self.executor.execute(
            actions,
            context.account,
            symbol=symbol,
            timestamp=now,
            price=float(view.close[j]),
            atr=self._atr_at(symbol, view, j),
        )

    def _view(self, symbol: str) -> Candles:
        if self.candles_view is not None:
            return self.candles_view(symbol)
        return self._buffers[symbol].view()

    def _keep(self, symbol: str, j: int, row: Candles) -> None:
        buffer = self._buffers.get(symbol)
        if buffer is None:
            buffer = self._buffers[symbol] = _CandleBuffer(symbol)
        buffer.append(j, row)

    def _atr_at(self, symbol: str, view: Candles, j: int) -> float:
        """ATR at bar ``j`` (NaN during warm-up), from ``talib.ATR`` over the known candles."""
        atr = self._atr.get(symbol)
        if atr is None or j >= len(atr):
            atr = talib.ATR(view.high, view.low, view.close, timeperiod=self.atr_period)
            self._atr[symbol] = atr
        return float(atr[j])


class _CandleBuffer:
    """A symbol's bars as the feed delivered them (bar i at row i), grown by doubling."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._rows = 0
        self._columns = {
            name: np.empty(_BUFFER_ROWS, dtype=np.int64 if name == "timestamp" else np.float64)
            for name in CANDLE_COLUMNS
        }
        self._whole = self._freeze()

    def append(self, j: int, row: Candles) -> None:
        if len(row) != 1:
            raise ValueError(f"a feed reports one candle per bar, got {len(row)} for {self.symbol}")
        if j != self._rows:
            raise ValueError(
                f"{self.symbol} bar {j} arrived after {self._rows} bars: without candles_view "
                "the feed must deliver every bar from bar 0 on; pass candles_view to start "
                "from a history"
            )
        if self._rows == len(self._columns["timestamp"]):
            for name, column in self._columns.items():
                grown = np.empty(2 * len(column), dtype=column.dtype)
                grown[: self._rows] = column
                self._columns[name] = grown
            self._whole = self._freeze()
        for name, column in self._columns.items():
            column[self._rows] = getattr(row, name)[0]
        self._rows += 1

    def view(self) -> Candles:
        return self._whole.head(self._rows)

    def _freeze(self) -> Candles:
        views = []
        for name in CANDLE_COLUMNS:
            view = self._columns[name][:]
            view.flags.writeable = False
            views.append(view)
        return Candles(*views)


class ReplayFeed:
    """Historical candles in timeline order (:class:`~pivotal.backtest.timeline.Timeline`).

    Each :meth:`next_bars` moves ``clock`` to the next step's close (its open time plus the
    bar length) and returns the symbols that have a bar at that step, in ``candles``' order.
    ``clock`` defaults to a :class:`ReplayClock` at the first bar's open.
    """

    def __init__(
        self,
        candles: Mapping[str, Candles],
        *,
        timeframe: Timeframe | str,
        clock: ReplayClock | None = None,
    ) -> None:
        self.timeframe = Timeframe.parse(timeframe)
        self.candles = dict(candles)
        self.timeline = Timeline.build(self.candles, self.timeframe.ms)
        self.clock = clock if clock is not None else ReplayClock(int(self.timeline.timestamps[0]))
        self._symbols = [(s, self.timeline.index[s], self.candles[s]) for s in self.candles]
        self._opens = self.timeline.timestamps
        self._step = 0

    def __len__(self) -> int:
        return len(self.timeline)

    def next_bars(self) -> list[tuple[str, int, Candles]] | None:
        k = self._step
        if k >= len(self._opens):
            return None
        self._step = k + 1
        self.clock.advance_to(int(self._opens[k]) + self.timeline.bar_ms)
        bars = []
        for symbol, index, series in self._symbols:
            j = int(index[k])
            if j >= 0:
                bars.append((symbol, j, _row(series, j)))
        return bars


def replay(
    candles: Mapping[str, Candles],
    source: DecisionSource,
    *,
    timeframe: Timeframe | str,
    settings: BacktestSettings | None = None,
    higher: Mapping[str, Mapping[Timeframe, Candles]] | None = None,
    trades: Mapping[str, Trades] | None = None,
    books: Mapping[str, Sequence[COBData]] | None = None,
    progress: bool = False,
) -> LoopResult:
    """Run ``source`` over historical ``candles`` through :class:`TradingLoop`.

    Builds what a backtest builds (a :class:`ReplayClock`, a :class:`SimulatedBroker` with
    ``settings.broker``, a :class:`RiskManager` with ``settings.risk``, the executor) and a
    :class:`ReplayFeed`; the broker's ``on_bar`` is the venue step. ``higher``, ``trades``
    and ``books`` mean what they mean to :func:`~pivotal.backtest.engine.run_backtest`. The
    result's ``timestamps`` are the bars' closes and its trades and fills come from the
    simulated broker, bar columns indexing the timeline, so they equal a backtest's.
    """
    settings = settings if settings is not None else BacktestSettings()
    feed = ReplayFeed(candles, timeframe=timeframe)
    candles = feed.candles
    streams = {s: dict(v) for s, v in (higher or {}).items()}
    unknown = sorted(set(streams) - set(candles))
    if unknown:
        raise ValueError(f"higher-timeframe candles given for symbols not traded: {unknown}")
    broker = SimulatedBroker(
        candles,
        feed.clock,
        settings.broker,
        bar_ms=feed.timeframe.ms,
        trades=trades,
        books=books,
    )
    risk = RiskManager(settings.risk)
    executor = ActionExecutor(
        broker, risk, fees=settings.broker.fees, lot_size=settings.broker.lot_size
    )
    for symbol, bars in candles.items():
        source.prepare(symbol, bars)
    plan = GapPlan.build(candles, feed.timeframe, settings.gaps, settings.max_missing_bars)
    loop = TradingLoop(
        clock=feed.clock,
        broker=broker,
        risk=risk,
        source=source,
        executor=executor,
        candles_view=candles.__getitem__,
        on_bar=broker.on_bar,
        higher_view=(lambda s, now: closed_streams(streams.get(s), now)) if streams else None,
        atr_period=settings.atr_period,
        gap_plan=plan,
    )
    result = loop.run(feed, progress=progress)
    timeline = feed.timeline
    return dataclasses.replace(
        result,
        trades=to_timeline_steps(broker.closed_trades(), timeline, ("entry_bar", "exit_bar")),
        open_trades=to_timeline_steps(broker.open_trades(), timeline, ("entry_bar",)),
        fills=to_timeline_steps(broker.fills_frame(), timeline, ("bar",)),
        gaps=tuple(plan.records()),
    )


def _row(series: Candles, j: int) -> Candles:
    """Row ``j`` of ``series`` as one-row views, without re-validating the columns (the
    ``Candles.head`` shortcut: slices of validated, read-only columns keep the schema)."""
    row = object.__new__(Candles)
    for name in CANDLE_COLUMNS:
        object.__setattr__(row, name, getattr(series, name)[j : j + 1])
    return row


class _NoProgress:
    def update(self, done: int) -> None:
        pass

    def close(self) -> None:
        pass


class _RichProgress:
    def __init__(self, total: int | None, label: str) -> None:
        from rich.progress import BarColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,} closes"),
            transient=True,
        )
        self._task = self._progress.add_task(label, total=total)
        self._every = max((total or 0) // 200, 1)
        self._last = 0
        self._progress.start()

    def update(self, done: int) -> None:
        if done - self._last >= self._every:
            self._progress.update(self._task, completed=done)
            self._last = done

    def close(self) -> None:
        self._progress.stop()


def _progress(enabled: bool, total: int | None, label: str) -> _NoProgress | _RichProgress:
    return _RichProgress(total, label) if enabled else _NoProgress()
