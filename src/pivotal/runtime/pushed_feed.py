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

**Bar boundaries.** A venue sends a bar only after its close, so trades and books of the next
bar usually arrive *before* the bar itself. With expected streams, the feed therefore holds
everything from a base bar's close time ``B`` on until the expected bars closing at ``B`` have
come (then ``B``'s group goes first, and the step at ``B`` sees the bar at its own close
time), or ``grace_ms`` passed (the feed then gives up on ``B``: counted in
:attr:`PushedFeed.missed_closes`), or each stream still missing at ``B`` has already sent a
later bar (a gap in that stream at ``B``: its bar will never come), or has sent no bar at
all while another stream is already past ``B`` (it has not started). Nothing else releases a
boundary: not trades or books, and not another symbol's next bar either (two symbols'
streams lag differently; one symbol's bar must not push the other's out of its step).

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
        #: Bar closes given up on after ``grace_ms`` (their bars had not come).
        self.missed_closes = 0
        tfs = {tf for _, tf in self._expected}
        self._bar_ms = min(tf.ms for tf in tfs) if tfs else None
        self._due: int | None = None  # the next base close the feed waits for
        self._bar_times: dict[int, int] = {}  # expected bars queued, by close time
        self._latest_bar: dict[tuple[str, Timeframe], int] = {}  # newest bar per stream

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
            expected = self._expected
            for event in events:
                t = event.event_time
                group = self._groups.get(t)
                if group is None:
                    group = self._groups[t] = (now, [])
                    heapq.heappush(self._times, t)
                group[1].append(event)
                key = (event.symbol, event.timeframe) if isinstance(event, CandleClosed) else None
                if key is not None and key in expected:
                    self._bar_times[t] = self._bar_times.get(t, 0) + 1
                    self._latest_bar[key] = max(self._latest_bar.get(key, t), t)
                if self._due is None and self._bar_ms is not None:
                    self._due = -(-t // self._bar_ms) * self._bar_ms  # the first close >= t
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
        due = self._due
        if due is not None and first >= due:
            return self._boundary_ready(first, due)
        if len(self._times) > 1:  # a later time came: this one cannot gain anything
            return first
        if self._bar_ms is not None and first % self._bar_ms:
            return first  # not a close time: no expected bar can join this group
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

    def _boundary_ready(self, first: int, due: int) -> int | None:
        """``first`` is at or past the close ``due``: only ``due``'s bars, a later expected
        bar, or the grace release it (module docstring)."""
        seen, events = self._groups[first]
        arrived: set[tuple[str, Timeframe]] = set()
        if first == due:
            arrived = {(e.symbol, e.timeframe) for e in events if isinstance(e, CandleClosed)}
        latest = self._latest_bar
        missing = [k for k in self._expected if due % k[1].ms == 0 and k not in arrived]
        moved_on = any(t > due for t in latest.values())
        if all(latest[k] > due if k in latest else moved_on for k in missing):
            # each missing stream sent a later bar (a gap at ``due``), or none at all while
            # another stream is already past ``due`` (it has not started)
            return first
        if self._clock.now_ms() - seen >= self._grace_ms:
            if first > due or due not in self._bar_times:
                self.missed_closes += 1
            return first
        return None

    def _take(self, until: int) -> list[MarketEvent]:
        group: list[MarketEvent] = []
        while self._times and self._times[0] <= until:
            t = heapq.heappop(self._times)
            group.extend(self._groups.pop(t)[1])
            self._bar_times.pop(t, None)
        self._count -= len(group)
        bar = self._bar_ms
        if bar is not None and self._due is not None and until >= self._due:
            self._due = (until // bar + 1) * bar  # the next close after this step
        if self._last_delivered is not None and until <= self._last_delivered:
            self.late += len(group)
        else:
            self._last_delivered = until
            if self._moves is not None:
                self._moves.advance_to(until)
        group.sort(key=lambda e: (e.event_time, *_order_key(e, self._expected)))
        self._cond.notify_all()
        return group
