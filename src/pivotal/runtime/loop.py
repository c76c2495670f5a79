"""One run loop for every mode: a market feed driving the kernel step by step.

:class:`TradingLoop` calls :meth:`Kernel.step <pivotal.runtime.kernel.Kernel.step>` for
each event time a :class:`~pivotal.core.ports.MarketFeed` reports, until the feed returns
None. It never asks which mode it runs in: a replay passes a
:class:`~pivotal.runtime.replay_feed.ReplayFeed` (which moves a
:class:`~pivotal.core.clock.ReplayClock`) and the simulated broker as the venue
(``venue=broker``: it matches orders on each closed bar); paper and live trading pass the
wall clock, an exchange feed and an exchange broker (which matches orders itself:
``venue=None``). ``pivotal.backtest.replay.replay`` is the replay builder.

Gaps, wake-ups, warm-up and the ATR the risk manager sees are the kernel's
(:mod:`pivotal.runtime.kernel`). The source must be prepared
(``source.prepare(symbol, history)``) before :meth:`TradingLoop.run`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pivotal.core.candles import Candles
from pivotal.core.clock import Clock
from pivotal.core.ports import Broker, DecisionSource, MarketFeed
from pivotal.core.timeframes import Timeframe
from pivotal.runtime.heap import frozen_heap
from pivotal.runtime.kernel import GapSchedule, Kernel, MarketListener, Venue
from pivotal.runtime.progress import run_progress
from pivotal.runtime.recorder import MemoryRecorder, RunRecorder, TeeRecorder
from pivotal.trading.execution import ActionExecutor
from pivotal.trading.risk import RiskManager

__all__ = ["LoopResult", "TradingLoop"]


@dataclass(frozen=True, slots=True, eq=False)
class LoopResult:
    """What one run of the loop produced.

    ``timestamps[i]`` is the clock's time (UTC ms) at the i-th close the loop processed (in
    a replay: the bar's open + the bar length); ``equity[i]`` the account equity then, after
    that close's decisions (quote currency). ``events`` are the records of
    :mod:`pivotal.trading.execution`, oldest first; ``decisions`` counts ``source.decide``
    calls. ``trades``, ``open_trades`` and ``fills`` are filled in by the replay builder
    from its simulated broker (bar columns index ``timestamps``, as in a backtest result); a
    loop over an exchange broker leaves them None (the fills are in ``events``). ``gaps``
    lists the gaps in the data the run met, empty without a gap plan.
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
    """Drives a decision source through the kernel, one feed event time per step.

    The arguments are the :class:`~pivotal.runtime.kernel.Kernel`'s. ``recorder``, when
    given, receives every record too (e.g. the run journal); the loop keeps its own
    :class:`~pivotal.runtime.recorder.MemoryRecorder` for the :class:`LoopResult` unless
    ``memory=False`` (a long run streaming to a journal: memory does not grow with the run;
    the result then holds no equity points or events, read them from the recorder).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        broker: Broker,
        risk: RiskManager,
        source: DecisionSource,
        executor: ActionExecutor,
        timeframe: Timeframe | str,
        venue: Venue | None = None,
        listeners: Iterable[MarketListener] = (),
        recorder: RunRecorder | None = None,
        candles_view: Callable[[str], Candles] | None = None,
        higher_view: Callable[[str, int], Mapping[Timeframe, Candles]] | None = None,
        atr_period: int = 14,
        gap_plan: GapSchedule | None = None,
        memory: bool = True,
    ) -> None:
        if not memory and recorder is None:
            raise ValueError("memory=False needs a recorder: the run's records must go somewhere")
        self.memory = MemoryRecorder()
        self.kernel = Kernel(
            clock=clock,
            broker=broker,
            risk=risk,
            source=source,
            executor=executor,
            timeframe=timeframe,
            recorder=(
                self.memory
                if recorder is None
                else TeeRecorder(self.memory, recorder)
                if memory
                else recorder
            ),
            venue=venue,
            listeners=listeners,
            candles_view=candles_view,
            higher_view=higher_view,
            atr_period=atr_period,
            gap_plan=gap_plan,
        )
        self.source = source

    def run(self, feed: MarketFeed, *, progress: bool = False) -> LoopResult:
        """Step the kernel for every event time ``feed`` reports until it returns None."""
        if not isinstance(feed, MarketFeed):
            raise TypeError(
                f"feed must have next_events() (a MarketFeed), got {type(feed).__name__}"
            )
        kernel = self.kernel
        bar = run_progress(progress, f"run {self.source.name}", unit="closes")
        closes = 0
        with frozen_heap():  # start-up objects out of the collector's way
            while (events := feed.next_events()) is not None:
                if not events:
                    continue  # a heartbeat: nothing happened
                if kernel.step(events) is not None:
                    closes += 1
                    bar.update(closes)
        bar.close()
        kernel.recorder.flush()
        times, equity = self.memory.equity_curve()
        return LoopResult(
            timestamps=times,
            equity=equity,
            events=tuple(self.memory.events),
            decisions=kernel.decisions,
        )
