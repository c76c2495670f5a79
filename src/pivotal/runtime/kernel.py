"""The kernel: the one step every mode runs at a close time.

:class:`Kernel` knows a :class:`~pivotal.core.clock.Clock`, the
:class:`~pivotal.core.ports.Broker` protocol, the :class:`~pivotal.trading.risk.RiskManager`,
a :class:`~pivotal.core.ports.DecisionSource`, the one
:class:`~pivotal.trading.execution.ActionExecutor` and a :class:`~pivotal.runtime.recorder.
RunRecorder`. It never asks which mode it runs in. :meth:`Kernel.step` takes the events a
:class:`~pivotal.core.ports.MarketFeed` delivered for one event time and does, in order:

1. **time**: reads the clock (``now``, UTC ms; a replay feed has moved its clock there, a
   live clock is already past it) and refuses a clock that went back;
2. **market**: each event goes to the venue and the listeners: a base-timeframe
   :class:`~pivotal.core.events.CandleClosed` of a traded symbol is stepped by the venue
   (``venue.on_bar(symbol, candle)``: the simulated broker's matching; None when the
   exchange matches itself), then every event reaches each :class:`MarketListener` (the
   orchestrator's frame, a recorder of market data);
3. **risk**: the risk manager observes the account equity at ``now``;
4. **decisions**: on a symbol's last bar before a gap (a :class:`GapSchedule`, replays only)
   its orders are cancelled and its position closed instead of asking the source; a bar that
   reaches the step after its close (a live stream's late bar; a replay has none) is recorded
   as ``late_bar`` and not decided on; every other symbol whose wake-up has come (the bar's
   close ≥ ``source.next_wake``, time-keyed, after ``warmup_bars()`` bars) gets a
   :class:`~pivotal.core.ports.DecisionContext` and the actions go through the executor (risk
   review, then ``Broker.submit``);
5. **record**: the equity after the decisions, then the broker's events (fills and order
   changes) and the risk alerts, go to the recorder.

A step with no base bar (only trades, books or higher-timeframe candles) does steps 1-2 only.

The backtest engine calls the pieces (:meth:`apply_bar`, :meth:`decide`, :meth:`collect`)
itself so it can skip quiet bars; :class:`~pivotal.runtime.loop.TradingLoop` calls
:meth:`step` for every event time; the RL environment calls :meth:`decide` (its agent's
action as the source's answer), :meth:`apply_bars`, :meth:`close_before_gap` and
:meth:`collect`.

**Bar index.** ``candles_view(symbol)`` returns the symbol's candles (row ``i`` = bar ``i``)
including every closed bar, e.g. a replay's whole series: a bar's index is its row there.
Without it the kernel keeps the bars it is given (they must then come from bar 0 without
holes; the symbol's first bar is bar 0). A source never sees rows after the bar that closed.

**ATR.** The risk manager's ATR at bar ``j`` is ``talib.ATR`` over the symbol's candles up
to ``j``, computed over the candles known when first needed and again only when a later bar
is asked for; TA-Lib's ATR at ``j`` depends on bars ``<= j`` only, so a replay over a whole
series gets exactly the values of one batch computation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import talib

from pivotal.core.candles import Candles
from pivotal.core.clock import Clock
from pivotal.core.events import CandleClosed, MarketEvent
from pivotal.core.orders import Fill
from pivotal.core.ports import Broker, DecisionContext, DecisionSource
from pivotal.core.timeframes import Timeframe
from pivotal.runtime.history import CandleHistory
from pivotal.runtime.recorder import MemoryRecorder, RunRecorder
from pivotal.trading.execution import ActionExecutor, alert_record, broker_event_record
from pivotal.trading.gaps import flatten_before_gap
from pivotal.trading.risk import RiskManager

__all__ = ["ClosedBar", "GapSchedule", "Kernel", "MarketListener", "Venue"]

_NO_STREAMS: Mapping[Timeframe, Candles] = MappingProxyType({})


@runtime_checkable
class Venue(Protocol):
    """A venue that matches orders locally: it steps each closed base bar."""

    def on_bar(self, symbol: str, candle: Candles) -> None: ...


@runtime_checkable
class MarketListener(Protocol):
    """Receives every market event the kernel applies, in order (e.g. the market frame)."""

    def on_event(self, event: MarketEvent) -> None: ...


@runtime_checkable
class GapSchedule(Protocol):
    """Which bars are a symbol's last before a gap where the position is closed (hindsight
    about where the data stops: replays only; ``pivotal.backtest.gaps.GapPlan`` is one)."""

    def closes_after(self, symbol: str, bar_index: int) -> bool: ...


@dataclass(frozen=True, slots=True, eq=False)
class ClosedBar:
    """A base-timeframe bar of a traded symbol that has closed at ``close_time`` (UTC ms);
    ``bar_index`` is its row in the symbol's candles, ``candle`` the one-row bar."""

    symbol: str
    bar_index: int
    close_time: int
    candle: Candles


class Kernel:
    """One step of a run (module docstring); the pieces are public for the engine."""

    def __init__(
        self,
        *,
        clock: Clock,
        broker: Broker,
        risk: RiskManager,
        source: DecisionSource,
        executor: ActionExecutor,
        timeframe: Timeframe | str,
        recorder: RunRecorder | None = None,
        venue: Venue | None = None,
        listeners: Iterable[MarketListener] = (),
        candles_view: Callable[[str], Candles] | None = None,
        higher_view: Callable[[str, int], Mapping[Timeframe, Candles]] | None = None,
        atr_period: int = 14,
        gap_plan: GapSchedule | None = None,
    ) -> None:
        _check_parts(clock, broker, risk, source, executor)
        if isinstance(atr_period, bool) or not isinstance(atr_period, int) or atr_period < 1:
            raise ValueError(f"atr_period must be a whole number of bars >= 1, got {atr_period!r}")
        if recorder is not None and not isinstance(recorder, RunRecorder):
            raise TypeError(
                "recorder must implement pivotal.runtime.recorder.RunRecorder (equity, "
                f"decision, event, fill, flush, close), got {type(recorder).__name__}"
            )
        if venue is not None and not isinstance(venue, Venue):
            raise TypeError(f"venue must have on_bar(symbol, candle), got {type(venue).__name__}")
        self.listeners = tuple(listeners)
        for listener in self.listeners:
            if not isinstance(listener, MarketListener):
                raise TypeError(
                    f"a listener must have on_event(event), got {type(listener).__name__}"
                )
        if gap_plan is not None and not isinstance(gap_plan, GapSchedule):
            raise TypeError(
                f"gap_plan must have closes_after(symbol, bar_index), got {type(gap_plan)}"
            )
        self.clock = clock
        self.broker = broker
        self.risk = risk
        self.source = source
        self.executor = executor
        self.timeframe = Timeframe.parse(timeframe)
        self.recorder: RunRecorder = recorder if recorder is not None else MemoryRecorder()
        self.venue = venue
        self.candles_view = candles_view
        self.higher_view = higher_view
        self.atr_period = atr_period
        self.gap_plan = gap_plan
        self.warmup = max(int(source.warmup_bars()), 0)
        self.decisions = 0
        #: Base bars that reached a step after their close (live feeds only): not decided on.
        self.late_bars = 0
        self._history: dict[str, CandleHistory] = {}
        self._atr: dict[str, npt.NDArray[np.float64]] = {}
        self._wake: dict[str, int] = {}
        self._previous: int | None = None

    # -- the step ------------------------------------------------------------------------
    def step(self, events: Sequence[MarketEvent]) -> int | None:
        """Apply one event time's ``events`` (module docstring); the close time processed
        (the clock's ``now``, UTC ms), or None when no base bar closed (no decision step)."""
        now = self.now()
        bars = self.apply(events, now)
        if not bars:
            return None
        self.risk.observe(now, self.broker.account().equity)
        self.decide(bars, now)
        self.recorder.equity(now, self.broker.account().equity)
        self.collect()
        return now

    def now(self) -> int:
        """The clock's time (UTC ms); ``ValueError`` if it is not after the previous step's."""
        now = int(self.clock.now_ms())
        previous = self._previous
        if previous is not None and now <= previous:
            raise ValueError(
                f"the clock reads {now} after a step at {previous}: the feed must move the "
                "clock forward to each new event time"
            )
        self._previous = now
        return now

    # -- pieces ----------------------------------------------------------------------------
    def apply(self, events: Sequence[MarketEvent], now: int) -> list[ClosedBar]:
        """Step 2: the venue steps each base bar, the listeners get every event; returns the
        base bars (in the feed's order)."""
        bars: list[ClosedBar] = []
        base = self.timeframe
        venue = self.venue
        listeners = self.listeners
        for event in events:
            if isinstance(event, CandleClosed) and event.timeframe is base:
                bar = self._closed_bar(event, now)
                if venue is not None:
                    venue.on_bar(bar.symbol, bar.candle)
                bars.append(bar)
            for listener in listeners:
                listener.on_event(event)
        return bars

    def apply_bars(self, bars: Sequence[ClosedBar]) -> None:
        """Step 2 for bars the caller already indexed (the RL env)."""
        venue = self.venue
        if venue is not None:
            for bar in bars:
                venue.on_bar(bar.symbol, bar.candle)

    def apply_bar(self, symbol: str, candle: Candles) -> None:
        """Step 2 for one base bar (one row) the caller knows closed (the engine's hot path:
        no event or :class:`ClosedBar` is built for a bar that needs no decision)."""
        if self.venue is not None:
            self.venue.on_bar(symbol, candle)

    def decide(self, bars: Sequence[ClosedBar], now: int) -> None:
        """Step 4 for the base bars that closed at ``now`` (gap closes, due decisions)."""
        plan = self.gap_plan
        closing: list[str] = []
        if plan is not None:
            closing = [b.symbol for b in bars if plan.closes_after(b.symbol, b.bar_index)]
            self.close_before_gap(closing)  # in the feed's order: deterministic
        warmup = self.warmup
        wake = self._wake
        for bar in bars:
            if bar.bar_index < warmup:
                continue
            if bar.close_time < now:  # a live stream's late bar: its moment has passed
                self.late_bars += 1
                self.recorder.event(_late_bar_record(now, bar))
                continue
            symbol = bar.symbol
            due = wake.get(symbol)
            if due is None:
                due = wake[symbol] = self._ask(symbol, bar.close_time)
            if bar.close_time < due:
                continue
            if symbol not in closing:  # no entry on the last bar before a gap
                self._decide(bar, now)
            wake[symbol] = self._ask(symbol, bar.close_time + 1)

    def close_before_gap(self, symbols: Iterable[str]) -> None:
        """The gap close of each of ``symbols``: its active orders are cancelled and its
        position leaves through a reduce-only market order (exit reason ``gap``), filled at
        the bar's close by a broker that can (:func:`pivotal.trading.gaps.flatten_before_gap`)."""
        for symbol in symbols:
            flatten_before_gap(self.broker, symbol)

    def collect(self) -> None:
        """Step 5's events: the broker's fills and order changes, then the risk alerts."""
        recorder = self.recorder
        for event in self.broker.drain_events():
            record = broker_event_record(event)
            recorder.event(record)
            if isinstance(event, Fill):
                recorder.fill(record)
        for alert in self.risk.drain_alerts():
            recorder.event(alert_record(alert))

    def start(self, symbol: str, first_close: int) -> int:
        """Ask the source for ``symbol``'s first wake-up from ``first_close`` (the close of
        its first bar past the warm-up) and keep it; the wake-up time (UTC ms)."""
        due = self._wake[symbol] = self._ask(symbol, first_close)
        return due

    def wake(self, symbol: str) -> int | None:
        """``symbol``'s next wake-up (a close time, UTC ms); None before it was asked."""
        return self._wake.get(symbol)

    # -- inside ------------------------------------------------------------------------------
    def _closed_bar(self, event: CandleClosed, now: int) -> ClosedBar:
        candle = event.candle
        if len(candle) != 1:
            raise ValueError(
                f"a CandleClosed carries one bar, got {len(candle)} for {event.symbol}"
            )
        opened = int(candle.timestamp[0])
        close = opened + self.timeframe.ms
        if close > now:
            raise ValueError(
                f"{event.symbol} bar opened at {opened} closes at {close}, after the clock's "
                f"{now}: a feed reports a bar only once it has closed"
            )
        return ClosedBar(event.symbol, self._index(event.symbol, candle), close, candle)

    def _index(self, symbol: str, candle: Candles) -> int:
        opened = int(candle.timestamp[0])
        if self.candles_view is None:
            history = self._history.get(symbol)
            if history is None:
                history = self._history[symbol] = CandleHistory(symbol)
            return history.append(candle)
        view = self.candles_view(symbol)
        j = int(np.searchsorted(view.timestamp, opened))
        if j >= len(view) or int(view.timestamp[j]) != opened:
            raise ValueError(
                f"{symbol}'s bar opened at {opened} is not in candles_view({symbol!r}): the "
                "view must include every closed bar"
            )
        return j

    def _view(self, symbol: str) -> Candles:
        if self.candles_view is not None:
            return self.candles_view(symbol)
        return self._history[symbol].view()

    def _ask(self, symbol: str, now_ms: int) -> int:
        wake = int(self.source.next_wake(symbol, now_ms))
        if wake < now_ms:
            raise ValueError(
                f"{self.source.name}.next_wake({symbol!r}, {now_ms}) returned {wake}, an "
                "earlier time; it must return a close time >= the time it was given"
            )
        return wake

    def _decide(self, bar: ClosedBar, now: int) -> None:
        symbol = bar.symbol
        j = bar.bar_index
        view = self._view(symbol)
        broker = self.broker
        context = DecisionContext(
            timestamp=now,
            symbol=symbol,
            bar_index=j,
            candles=view.head(j + 1),
            account=broker.account(),
            open_orders=tuple(broker.open_orders(symbol)),
            higher=_NO_STREAMS if self.higher_view is None else self.higher_view(symbol, now),
        )
        actions = self.source.decide(context)
        self.decisions += 1
        recorder = self.recorder
        recorder.decision(_decision_record(now, symbol, j, len(actions), self.source.name))
        for record in self.executor.execute(
            actions,
            context.account,
            symbol=symbol,
            timestamp=now,
            price=float(view.close[j]),
            atr=self._atr_at(symbol, view, j),
        ):
            recorder.event(record)

    def _atr_at(self, symbol: str, view: Candles, j: int) -> float:
        """ATR at bar ``j`` (NaN during warm-up), from ``talib.ATR`` over the known candles;
        NaN without computing it when the risk manager reads no ATR (a live run's history
        grows by a bar per step: recomputing it there every step would cost O(history))."""
        if not self.risk.config.uses_atr:
            return math.nan
        atr = self._atr.get(symbol)
        if atr is None or j >= len(atr):
            atr = talib.ATR(view.high, view.low, view.close, timeperiod=self.atr_period)
            self._atr[symbol] = atr
        return float(atr[j])


def _late_bar_record(now: int, bar: ClosedBar) -> dict[str, Any]:
    return {
        "timestamp": now,
        "kind": "late_bar",
        "symbol": bar.symbol,
        "bar_index": bar.bar_index,
        "close_time": bar.close_time,
        "message": f"{bar.symbol}'s bar closing at {bar.close_time} reached the loop at {now}: "
        "no decision on it (its moment has passed); its data still reaches the models",
    }


def _decision_record(now: int, symbol: str, j: int, actions: int, source: str) -> dict[str, Any]:
    return {
        "timestamp": now,
        "kind": "decision",
        "symbol": symbol,
        "bar_index": j,
        "actions": actions,
        "source": source,
    }


def _check_parts(
    clock: Clock,
    broker: Broker,
    risk: RiskManager,
    source: DecisionSource,
    executor: ActionExecutor,
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
            "the executor must submit to the kernel's broker and review with its risk "
            "manager: build it as ActionExecutor(broker, risk, ...) with the same objects"
        )
