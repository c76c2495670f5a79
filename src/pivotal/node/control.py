"""The node's loop controls: the market clock and the feed wrapper that runs the node's
periodic duties between kernel steps.

- :class:`MarketClock`: the session's clock. It starts at the venue's time and is moved by
  the feed to each event time it delivers (never backwards: an event older than the clock
  leaves it where it is). Against a venue this is the venue's own time; against a local
  exchange replaying a past month at 100x it is that month's time, so the orchestrator, the
  risk manager's days and the journal all live in market time.
- :class:`ControlledFeed`: wraps the :class:`~pivotal.runtime.pushed_feed.PushedFeed` the
  :class:`~pivotal.runtime.loop.TradingLoop` reads. Before each delivery it calls the node's
  ``tick`` (stop requests, the kill switch, reconciliation, the duration); ``tick`` returning
  False ends the run (the loop sees None: no new step, so no new order after a stop signal).
  Events whose time is not after the last step's (late trades, a first burst older than the
  venue time the clock started at) are held and delivered with the next step, so the kernel's
  clock always moves forward and nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pivotal.core.clock import ReplayClock
from pivotal.core.events import MarketEvent
from pivotal.core.ports import MarketFeed

__all__ = ["ControlledFeed", "MarketClock"]


class MarketClock(ReplayClock):
    """A replay clock that a late event cannot move back (module docstring)."""

    def advance_to(self, timestamp_ms: int) -> None:
        if timestamp_ms > self.now_ms():
            super().advance_to(timestamp_ms)


class ControlledFeed:
    """A :class:`~pivotal.core.ports.MarketFeed` over ``feed`` with the node's ``tick``."""

    def __init__(self, feed: MarketFeed, clock: MarketClock, tick: Callable[[], bool]) -> None:
        self.feed = feed
        self.clock = clock
        self.tick = tick
        self.held = 0
        self._stash: list[MarketEvent] = []
        self._last: int | None = None

    def next_events(self) -> Sequence[MarketEvent] | None:
        if not self.tick():
            return None
        events = self.feed.next_events()
        if events is None:
            return None  # the session ends: events still held are older than its last step
        if not events:
            return events
        now = self.clock.now_ms()
        if self._last is not None and now <= self._last:
            self._stash.extend(events)  # no step at a time already stepped: held, not lost
            self.held += len(events)
            return []
        self._last = now
        if self._stash:
            events = [*self._stash, *events]
            self._stash = []
        return events
