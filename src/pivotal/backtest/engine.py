"""The event-driven backtest engine: the runtime's kernel plus quiet-bar skipping.

The engine builds a replay clock, the SimulatedBroker, the RiskManager and the executor
around a :class:`~pivotal.runtime.kernel.Kernel` and runs the kernel's pieces once per busy
bar of the timeline, in this order (the order of every mode: paper and live trading run
the same kernel with the wall clock and an exchange broker in place of the first two):

1. the replay clock moves to the bar's **close**;
2. the broker processes the bar for each symbol that has one (market orders fill at its
   open, stops/limits trigger intrabar, positions are marked at its close);
3. the risk manager observes the new equity (drawdown breaker, daily loss, VaR);
4. the decision source is asked for actions for each symbol whose wake-up has come (the
   bar's close is at or after ``source.next_wake``, a UTC ms time); the
   :class:`~pivotal.trading.execution.ActionExecutor` puts each action through
   ``RiskManager.review`` and the orders it returns to ``Broker.submit``;
5. equity at the bar's close is recorded.

**Gaps** (:mod:`pivotal.core.gaps`). With the ``close`` policy (``settings.gaps``, the
default), on a symbol's last bar before a gap step 4 is replaced for that symbol by a close:
its active orders are cancelled and its position leaves through a reduce-only market order
filled at that bar's close (exit reason ``gap``, :mod:`pivotal.trading.gaps`); the source is
not asked, so no entry is taken there. With ``hold`` the position is carried through. Either
way the result lists the gaps (``BacktestResult.gaps``).

**Quiet bars are skipped, not approximated.** When no order is active and no decision
source wants to wake before bar k, the bars in between cannot produce a fill or a
decision; positions are constant there, so their equity is ``cash + Σ q·(close − entry)``
computed as one array operation, the risk manager observes that array, and the broker is
marked at the span's last close. A test runs the same strategy with every bar woken and
checks the equity curve, trades and fills are identical.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from pivotal.backtest.gaps import GapPlan
from pivotal.backtest.result import BacktestResult
from pivotal.backtest.timeline import Timeline, closed_streams, to_timeline_steps
from pivotal.core.candles import Candles
from pivotal.core.clock import ReplayClock
from pivotal.core.ports import DecisionSource
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.core.types import COBData
from pivotal.runtime.heap import frozen_heap
from pivotal.runtime.kernel import ClosedBar, Kernel
from pivotal.runtime.progress import run_progress
from pivotal.runtime.recorder import MemoryRecorder
from pivotal.trading.brokers.simulated import SimulatedBroker
from pivotal.trading.execution import ActionExecutor
from pivotal.trading.risk import RiskManager
from pivotal.trading.settings import TradingSettings

__all__ = ["BacktestEngine", "run_backtest"]

#: Most pre-decision equity points held back from the risk manager when no halt depends on
#: them (bounded so a long run's risk metrics stay current to within this many bars).
_OBSERVE_BATCH = 65_536


class BacktestEngine:
    """Replays candles of one or more symbols through a decision source.

    ``candles`` maps each symbol (``"BTC/USDT"``) to its candles on ``timeframe``'s grid.
    ``higher`` optionally maps a symbol to candles of other timeframes; the decision
    context then shows only those whose close is at or before the decision time.
    """

    def __init__(
        self,
        candles: Mapping[str, Candles],
        source: DecisionSource,
        *,
        timeframe: Timeframe | str,
        settings: TradingSettings | None = None,
        higher: Mapping[str, Mapping[Timeframe, Candles]] | None = None,
        trades: Mapping[str, Trades] | None = None,
        books: Mapping[str, Sequence[COBData]] | None = None,
    ) -> None:
        self.timeframe = Timeframe.parse(timeframe)
        self.settings = settings or TradingSettings()
        self.candles = dict(candles)
        self.source = source
        self.higher = {s: dict(v) for s, v in (higher or {}).items()}
        unknown = sorted(set(self.higher) - set(self.candles))
        if unknown:
            raise ValueError(f"higher-timeframe candles given for symbols not traded: {unknown}")
        self.timeline = Timeline.build(self.candles, self.timeframe.ms)
        self.clock = ReplayClock(int(self.timeline.timestamps[0]))
        self.broker = SimulatedBroker(
            self.clock,
            self.settings.broker,
            bar_ms=self.timeframe.ms,
            symbols=list(self.candles),
            trades=trades,
            books=books,
        )
        self.risk = RiskManager(self.settings.risk)
        self._executor = ActionExecutor(
            self.broker,
            self.risk,
            fees=self.settings.broker.fees,
            lot_size=self.settings.broker.lot_size,
        )
        self.gap_plan = GapPlan.build(
            self.candles, self.timeframe, self.settings.gaps, self.settings.max_missing_bars
        )
        self.recorder = MemoryRecorder()
        higher_streams = self.higher
        self.kernel = Kernel(
            clock=self.clock,
            broker=self.broker,
            risk=self.risk,
            source=source,
            executor=self._executor,
            timeframe=self.timeframe,
            recorder=self.recorder,
            venue=self.broker,
            candles_view=self.candles.__getitem__,
            higher_view=lambda s, now: closed_streams(higher_streams.get(s), now),
            atr_period=self.settings.atr_period,
            gap_plan=self.gap_plan,
        )
        closing: dict[int, list[str]] = {}
        for symbol in self.candles:
            for step in self.timeline.bar_steps[symbol][self.gap_plan.close_bars(symbol)]:
                closing.setdefault(int(step), []).append(symbol)
        self._closing = closing
        self._gap_steps = np.array(sorted(closing), dtype=np.int64)

    # -- the loop ------------------------------------------------------------------------
    def run(self, *, progress: bool = False) -> BacktestResult:
        tl = self.timeline
        n = len(tl)
        bar_ms = tl.bar_ms
        ts = tl.timestamps
        symbols = list(self.candles)
        index = tl.index
        broker = self.broker
        portfolio = broker.portfolio
        equity = np.empty(n, dtype=np.float64)
        # Equity at each bar's close *before* that bar's decisions: what the risk manager
        # observes. It is handed over in one array just before each decision (and at the
        # end), so quiet spans cost no per-bar call; the alerts keep their bars' times.
        self._pre = np.empty(n, dtype=np.float64)
        self._observed = 0
        # Without a drawdown or daily-loss limit, what the risk manager observed cannot
        # change a review, so observations are handed over in large batches instead.
        self._halts = (
            self.settings.risk.max_drawdown is not None
            or self.settings.risk.daily_loss_limit is not None
        )

        kernel = self.kernel
        apply_bar = kernel.apply_bar
        candles = self.candles
        for symbol, bars in candles.items():
            self.source.prepare(symbol, bars)
        wake_step = {s: self._first_wake_step(s) for s in symbols}

        bar = run_progress(progress, f"backtest {self.source.name}", total=n)
        with frozen_heap():  # start-up objects out of the collector's way
            k = 0
            while k < n:
                t_close = int(ts[k]) + bar_ms
                self.clock.advance_to(t_close)
                for s in symbols:
                    j = int(index[s][k])
                    if j >= 0:
                        apply_bar(s, candles[s].rows(j, j + 1))
                self._pre[k] = portfolio.equity
                closing = self._closing.get(k, ())
                due = [s for s in symbols if wake_step[s] == k]
                if due and (self._halts or k + 1 - self._observed >= _OBSERVE_BATCH):
                    self._observe_until(k + 1)
                if due or closing:
                    bars = [
                        ClosedBar(s, j, t_close, candles[s].rows(j, j + 1))
                        for s in symbols
                        if (s in due or s in closing) and (j := int(index[s][k])) >= 0
                    ]
                    kernel.decide(bars, t_close)
                    for b in bars:
                        if b.symbol in due:
                            wake_step[b.symbol] = self._wake_step(b.symbol, b.bar_index + 1)
                equity[k] = portfolio.equity
                kernel.collect()
                nxt = min(min(wake_step.values()), self._next_gap_step(k + 1))
                if nxt > k + 1 and not broker.has_active_orders():
                    end = min(nxt, n)
                    self._quiet_span(k + 1, end, equity)
                    k = end
                else:
                    k += 1
                bar.update(k)
        bar.close()
        self._observe_until(n)
        kernel.collect()
        return BacktestResult(
            initial_cash=float(self.settings.broker.initial_cash),
            timestamps=np.asarray(ts, dtype=np.int64),
            equity=equity,
            trades=to_timeline_steps(broker.closed_trades(), tl, ("entry_bar", "exit_bar")),
            open_trades=to_timeline_steps(broker.open_trades(), tl, ("entry_bar",)),
            fills=to_timeline_steps(broker.fills_frame(), tl, ("bar",)),
            events=tuple(self.recorder.events),
            settings={
                "source": self.source.name,
                "timeframe": str(self.timeframe),
                "symbols": symbols,
                "decisions": kernel.decisions,
                **self.settings.model_dump(mode="json"),
            },
            engine="event",
            gaps=tuple(self.gap_plan.records()),
        )

    # -- pieces --------------------------------------------------------------------------
    def _first_wake_step(self, symbol: str) -> int:
        """Timeline step of ``symbol``'s first wake-up: the kernel asks the source from the
        close of the first bar past the warm-up (n = never)."""
        bars = self.candles[symbol]
        first = self.kernel.warmup
        if first >= len(bars):
            return len(self.timeline)
        self.kernel.start(symbol, int(bars.timestamp[first]) + self.timeline.bar_ms)
        return self._wake_step(symbol, first)

    def _wake_step(self, symbol: str, start: int) -> int:
        """Timeline step of the bar the kernel wakes ``symbol`` at next: its first bar (from
        bar ``start`` on, whose close is after the last asked time) with a close at or after
        the wake-up time (n = never)."""
        wake = self.kernel.wake(symbol)
        if wake is None:
            return len(self.timeline)
        bar_ms = self.timeline.bar_ms
        opens = self.candles[symbol].timestamp
        if start < len(opens) and wake <= int(opens[start]) + bar_ms:
            return self.timeline.step_of(symbol, start)  # the next bar (every-bar sources)
        # close >= wake  <=>  open >= wake - bar length
        j = int(np.searchsorted(opens, wake - bar_ms, side="left"))
        return self.timeline.step_of(symbol, j)

    def _next_gap_step(self, step: int) -> int:
        """The first step at or after ``step`` where a position is closed before a gap."""
        at = int(np.searchsorted(self._gap_steps, step, side="left"))
        return int(self._gap_steps[at]) if at < len(self._gap_steps) else len(self.timeline)

    def _observe_until(self, stop: int) -> None:
        """Hand the risk manager the pre-decision equity of steps not yet observed."""
        start = self._observed
        if stop <= start:
            return
        tl = self.timeline
        if stop - start == 1:
            self.risk.observe(int(tl.timestamps[start]) + tl.bar_ms, float(self._pre[start]))
        else:
            closes = tl.timestamps[start:stop] + tl.bar_ms
            self.risk.observe_many(closes, self._pre[start:stop])
        self._observed = stop

    def _quiet_span(self, start: int, end: int, equity: npt.NDArray[np.float64]) -> None:
        """Steps ``start..end-1``: no active order, no decision; positions are constant."""
        tl = self.timeline
        portfolio = self.broker.portfolio
        unrealized = np.zeros(end - start, dtype=np.float64)
        for symbol in self.candles:
            quantity = portfolio.quantity(symbol)
            if quantity != 0.0:
                average = portfolio.average_entry_price(symbol)
                unrealized += quantity * (tl.marks[symbol][start:end] - average)
        span = portfolio.cash + unrealized
        equity[start:end] = span
        self._pre[start:end] = span
        self.clock.advance_to(int(tl.timestamps[end - 1]) + tl.bar_ms)
        for symbol in self.candles:
            steps = tl.bar_steps[symbol]
            first = int(np.searchsorted(steps, start, side="left"))
            last = int(np.searchsorted(steps, end, side="left")) - 1
            if last >= first:  # the symbol's bars in the span, pushed for their closes
                self.broker.mark(symbol, self.candles[symbol].rows(first, last + 1))


def run_backtest(
    candles: Mapping[str, Candles],
    source: DecisionSource,
    *,
    timeframe: Timeframe | str,
    settings: TradingSettings | None = None,
    higher: Mapping[str, Mapping[Timeframe, Candles]] | None = None,
    trades: Mapping[str, Trades] | None = None,
    books: Mapping[str, Sequence[COBData]] | None = None,
    progress: bool = False,
) -> BacktestResult:
    """Run ``source`` over ``candles`` and return the result (metrics not yet attached;
    :func:`pivotal.backtest.api.backtest` adds them)."""
    engine = BacktestEngine(
        candles,
        source,
        timeframe=timeframe,
        settings=settings,
        higher=higher,
        trades=trades,
        books=books,
    )
    return engine.run(progress=progress)
