"""The replayer: every flow merged by time, applied to the markets, fanned out to the venues.

Market time is the replay cursor, kept by a :class:`MarketClock` that the server's REST
answers read (``/api/v3/time`` returns it, so a client's "now" matches the replay).
:meth:`Replayer.step_to` applies every event up to a market time, calling
``MarketState.advance`` at each market-second boundary it crosses (kline pushes) and each
sink's ``on_event``/``on_klines``/``on_second``; :meth:`Replayer.run` paces it against the
loop's monotonic clock at ``speed`` market ms per wall ms (the only place wall time is
read). After the flows end the market clock keeps moving (klines still close on time)
until the server stops.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.localexchange.flow import FlowEvent, Kline, SymbolFlow
from pivotal.localexchange.market import MarketState

log = logging.getLogger(__name__)

SECOND_MS = 1000
#: Events applied before the paced loop yields to the server's other tasks.
CHUNK_EVENTS = 2000
#: Longest wall sleep between two pacing checks (seconds).
MAX_SLEEP_S = 0.05


class MarketClock:
    """The market time of the replay (UTC ms); a :class:`pivotal.core.clock.Clock`."""

    def __init__(self, start_ms: int) -> None:
        self._now = int(start_ms)

    def now_ms(self) -> int:
        return self._now

    def set(self, now_ms: int) -> None:
        """Move to ``now_ms`` (never backwards; an earlier time is ignored)."""
        if now_ms > self._now:
            self._now = int(now_ms)


class Sink(Protocol):
    """Where the replay goes (a venue site)."""

    def on_event(self, symbol: Symbol, event: FlowEvent) -> None: ...

    def on_klines(self, symbol: Symbol, klines: Mapping[Timeframe, list[Kline]]) -> None: ...

    def on_second(self, now_ms: int) -> None: ...

    def on_replay_end(self) -> None: ...


class Replayer:
    """Drives ``flows`` (merged by event time; ties by flow order) into ``markets``/``sinks``."""

    def __init__(
        self,
        flows: Sequence[SymbolFlow],
        markets: Mapping[Symbol, MarketState],
        sinks: Sequence[Sink],
        clock: MarketClock,
    ) -> None:
        self.flows = list(flows)
        self.markets = markets
        self.sinks = list(sinks)
        self.clock = clock
        self.start_ms = min(f.start_ms for f in self.flows)
        self.end_ms = max(f.end_ms for f in self.flows)
        self.events_applied = 0
        self.sink_errors = 0
        self.finished = False
        self._heap: list[tuple[int, int, int, FlowEvent]] = []
        self._iters: list[Iterator[FlowEvent]] = [f.events() for f in self.flows]
        self._seq = 0
        for index in range(len(self._iters)):
            self._pull(index)
        self._next_second = (self.start_ms // SECOND_MS + 1) * SECOND_MS

    def _pull(self, index: int) -> None:
        event = next(self._iters[index], None)
        if event is not None:
            self._seq += 1
            heapq.heappush(self._heap, (event.time_ms, index, self._seq, event))

    def next_event_ms(self) -> int | None:
        """Market time of the next event, or None after the last."""
        return self._heap[0][0] if self._heap else None

    def next_wake_ms(self) -> int:
        """The next market time something happens (an event or a second boundary)."""
        nxt = self.next_event_ms()
        return self._next_second if nxt is None else min(nxt, self._next_second)

    def step_to(self, target_ms: int, max_events: int | None = None) -> bool:
        """Apply events with ``time_ms <= target_ms``; True when the cursor reached the target.

        With ``max_events`` it stops early (the clock stays at the last event applied) so a
        paced loop can yield; call again to continue.
        """
        applied = 0
        while self._heap and self._heap[0][0] <= target_ms:
            if max_events is not None and applied >= max_events:
                return False
            time_ms, index, _, event = heapq.heappop(self._heap)
            self._seconds_until(time_ms)
            self.clock.set(time_ms)
            flow = self.flows[index]
            self.markets[flow.symbol].apply(event)
            for sink in self.sinks:
                try:
                    sink.on_event(flow.symbol, event)
                except Exception:
                    self.sink_errors += 1
                    log.exception("venue site failed on %s event at %s", flow.symbol, time_ms)
            self.events_applied += 1
            applied += 1
            self._pull(index)
        self._seconds_until(target_ms + 1)
        self.clock.set(target_ms)
        if not self._heap and not self.finished:
            self.finished = True
            for sink in self.sinks:
                try:
                    sink.on_replay_end()
                except Exception:
                    self.sink_errors += 1
                    log.exception("venue site failed at the end of the replay")
        return True

    def _seconds_until(self, time_ms: int) -> None:
        """Cross every second boundary ``<= time_ms - 1`` before an event at ``time_ms``.

        A boundary ``b`` is crossed when the cursor moves to ``b`` or later; the markets'
        klines are advanced to ``b`` before events at ``b`` apply. Runs of boundaries with no
        event between them are advanced once, to the last of them (``MarketState.advance``
        reports every kline closed up to then).
        """
        if time_ms <= self._next_second:
            return
        last = (time_ms - 1) // SECOND_MS * SECOND_MS  # the last boundary before time_ms
        self._cross(last)

    def _cross(self, boundary: int) -> None:
        self.clock.set(boundary)
        for symbol, market in self.markets.items():
            changed = market.advance(boundary)
            if not any(changed.values()):
                continue
            for sink in self.sinks:
                try:
                    sink.on_klines(symbol, changed)
                except Exception:
                    self.sink_errors += 1
                    log.exception("venue site failed on %s klines at %s", symbol, boundary)
        for sink in self.sinks:
            try:
                sink.on_second(boundary)
            except Exception:
                self.sink_errors += 1
                log.exception("venue site failed at second %s", boundary)
        self._next_second = boundary + SECOND_MS

    async def run(self, speed: float) -> None:
        """Replay paced at ``speed`` market ms per wall ms until cancelled."""
        loop = asyncio.get_running_loop()
        wall0 = loop.time()
        market0 = self.clock.now_ms()
        while True:
            target = market0 + int((loop.time() - wall0) * 1000.0 * speed)
            if not self.step_to(target, CHUNK_EVENTS):
                await asyncio.sleep(0)  # behind: let the server answer, then catch up
                continue
            wake_at = wall0 + (self.next_wake_ms() - market0) / (1000.0 * speed)
            await asyncio.sleep(min(MAX_SLEEP_S, max(0.0, wake_at - loop.time())))
