"""A :class:`~pivotal.core.ports.MarketFeed` that producers push events into: the live feed.

Paper and live trading get their market events from the venue edge (``pivotal collect``'s
streams, :mod:`pivotal.venues.collector`), which runs asynchronous I/O on its own thread;
the trading loop runs on another. :class:`PushedFeed` is the queue between them: producers
call :meth:`PushedFeed.publish` from any thread, the loop's :meth:`PushedFeed.next_events`
returns them grouped by event time, in the feed's fixed order.

Grouping: events of one event time ``T`` are held until every *expected* stream
(``(symbol, timeframe)`` base candles of the traded symbols) has delivered its bar closing
at ``T``, or ``grace_ms`` has passed on the clock since the first event of ``T`` arrived, or an
event of a later time arrived (then ``T`` cannot gain anything on time). This keeps two
symbols' bars of the same close in one kernel step, as in a replay, without ever waiting
long for a stream that is down. Events older than the last delivered time are *late*: they
are delivered with the next group (never dropped) and counted in :attr:`PushedFeed.late`.

``next_events`` returns an empty sequence (a heartbeat) when nothing was delivered within
``heartbeat_ms``, and ``None`` once :meth:`PushedFeed.close` was called and the queue is
empty. The clock is asked for time; the wait itself is a condition variable's timeout.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Iterable, Sequence

from pivotal.core.clock import Clock, ReplayClock
from pivotal.core.events import CandleClosed, MarketEvent
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe

__all__ = ["PushedFeed"]


def _order_key(event: MarketEvent, expected: dict[tuple[str, Timeframe], int]) -> tuple[int, int]:
    """Base candles of the traded symbols first (in the order given), then everything else."""
    if isinstance(event, CandleClosed):
        rank = expected.get((event.symbol, event.timeframe))
        if rank is not None:
            return (0, rank)
        return (1, 0)
    return (2, 0)


class PushedFeed:
    """Thread-safe queue of market events grouped by event time (see the module docstring).

    ``expected`` lists the streams whose bars a step waits for: ``(symbol, timeframe)``,
    e.g. the traded symbols on the base timeframe. ``max_pending`` bounds the queue: a
    producer that would exceed it blocks until the loop catches up (back-pressure, counted
    in :attr:`waits`), so nothing is dropped and memory stays bounded.
    """

    def __init__(
        self,
        clock: Clock,
        expected: Iterable[tuple[str | Symbol, Timeframe | str]] = (),
        *,
        grace_ms: int = 2_000,
        heartbeat_ms: int = 1_000,
        max_pending: int = 100_000,
        moves: ReplayClock | None = None,
    ) -> None:
        if grace_ms < 0 or heartbeat_ms <= 0 or max_pending < 1:
            raise ValueError(
                "PushedFeed needs grace_ms >= 0, heartbeat_ms > 0 and max_pending >= 1; "
                f"got {grace_ms}, {heartbeat_ms}, {max_pending}"
            )
        self._clock = clock
        self._moves = moves
        self._expected: dict[tuple[str, Timeframe], int] = {}
        for i, (symbol, timeframe) in enumerate(expected):
            key = (str(Symbol.parse(symbol)), Timeframe.parse(timeframe))
            self._expected.setdefault(key, i)
        self._grace_ms = grace_ms
        self._heartbeat_ms = heartbeat_ms
        self._max_pending = max_pending
        # queued events by event time, each with the clock time its first event came
        self._groups: dict[int, tuple[int, list[MarketEvent]]] = {}
        self._times: list[int] = []  # a heap of the queued event times
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False
        self._last_delivered: int | None = None
        #: Events delivered after a later time had been delivered already.
        self.late = 0
        #: Times a producer waited because ``max_pending`` events were queued.
        self.waits = 0
        #: Events published so far.
        self.published = 0

    # -- producers -------------------------------------------------------------------
    def publish(self, events: Sequence[MarketEvent]) -> None:
        """Queue ``events`` (any thread). Blocks while the queue is full; refuses after close."""
        if not events:
            return
        with self._cond:
            if self._closed:
                raise RuntimeError("PushedFeed.publish after close(): the feed has finished")
            while self._count >= self._max_pending and not self._closed:
                self.waits += 1
                self._cond.wait(0.1)
            now = self._clock.now_ms()
            for event in events:
                group = self._groups.get(event.event_time)
                if group is None:
                    group = self._groups[event.event_time] = (now, [])
                    heapq.heappush(self._times, event.event_time)
                group[1].append(event)
            self._count += len(events)
            self.published += len(events)
            self._cond.notify_all()

    def close(self) -> None:
        """No more events: ``next_events`` drains the queue, then returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Events queued and not yet delivered."""
        with self._cond:
            return self._count

    # -- the loop ----------------------------------------------------------------------
    def next_events(self) -> Sequence[MarketEvent] | None:
        """The events of the next event time; ``[]`` on a quiet heartbeat; None when done."""
        deadline = time.monotonic() + self._heartbeat_ms / 1000.0  # the pacing edge
        with self._cond:
            while True:
                ready = self._ready_time()
                if ready is not None:
                    return self._take(ready)
                if self._closed:
                    return self._take(self._times[0]) if self._times else None
                left_ms = (deadline - time.monotonic()) * 1000.0
                if left_ms <= 0:
                    return []
                timeout = left_ms
                if self._times:
                    oldest = self._groups[self._times[0]][0]
                    due = oldest + self._grace_ms - self._clock.now_ms()
                    timeout = max(1.0, min(timeout, float(due)))
                self._cond.wait(timeout / 1000.0)

    def _ready_time(self) -> int | None:
        if not self._times:
            return None
        first = self._times[0]
        if self._last_delivered is not None and first <= self._last_delivered:
            return first  # late events go out at once
        if len(self._times) > 1:  # a later time came: this one cannot gain anything
            return first
        seen, events = self._groups[first]
        if self._expected:
            arrived = {(e.symbol, e.timeframe) for e in events if isinstance(e, CandleClosed)}
            if all(key in arrived for key in self._expected):
                return first
        elif self._grace_ms == 0:
            return first
        if self._clock.now_ms() - seen >= self._grace_ms:
            return first
        return None

    def _take(self, until: int) -> list[MarketEvent]:
        group: list[MarketEvent] = []
        while self._times and self._times[0] <= until:
            group.extend(self._groups.pop(heapq.heappop(self._times))[1])
        self._count -= len(group)
        if self._last_delivered is not None and until <= self._last_delivered:
            self.late += len(group)
        else:
            self._last_delivered = until
            if self._moves is not None:
                self._moves.advance_to(until)
        group.sort(key=lambda e: (e.event_time, *_order_key(e, self._expected)))
        self._cond.notify_all()
        return group
