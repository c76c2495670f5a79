"""Warm the orchestrator's frame with stored bars before a session's first live step.

A live session starts at the venue's time ``t0`` (the first event the feed delivered). The
orchestrator's experts need ``warmup_bars`` bars of every timeframe they read: those come from
the store, **only bars closed at or before** ``t0`` (no look-ahead: a store may hold later bars,
e.g. the replayed month the local exchange plays back), pushed through the orchestrator's
``on_event`` in close-time order, per symbol, the way :mod:`pivotal.orchestrator.pushed` warms a
pushed replay. Bars the feed's first step carries itself are skipped, so no bar reaches the
frame twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pivotal.core.events import CandleClosed, MarketEvent
from pivotal.core.orders import AccountSnapshot
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.series import SeriesKey
from pivotal.data.store import MarketDataStore
from pivotal.runtime.kernel import MarketListener
from pivotal.runtime.replay_feed import CandleStream, ReplayFeed

__all__ = ["learn_span", "warm_up"]


def warm_up(
    listener: MarketListener,
    store: MarketDataStore,
    exchange: str,
    symbols: Sequence[str],
    timeframes: Iterable[Timeframe],
    *,
    t0: int,
    bars: int,
    skip: Sequence[MarketEvent] = (),
    after: int | None = None,
) -> dict[str, int]:
    """Push up to ``bars`` stored bars per (symbol, timeframe) closed by ``t0`` (UTC ms) into
    ``listener``; bars of ``skip`` (the first live step) are left out, and with ``after`` only
    bars closed after it (a top-up of what an earlier warm-up pushed). Bars pushed per symbol."""
    held = {
        (e.symbol, e.timeframe, int(e.candle.timestamp[0]))
        for e in skip
        if isinstance(e, CandleClosed)
    }
    tfs = sorted(set(timeframes), key=lambda t: t.ms)
    pushed: dict[str, int] = {}
    for symbol in symbols:
        streams = []
        for tf in tfs:
            if bars <= 0:
                continue
            end = t0 - tf.ms + 1  # open < end  <=>  open + tf <= t0: closed by t0
            newest = (t0 - tf.ms) // tf.ms * tf.ms  # the open of the newest bar closed by t0
            start = newest - (bars - 1) * tf.ms  # ``bars`` bars on the timeframe's grid
            if after is not None:
                start = max(start, after - tf.ms + 1)  # closed after ``after``
            if start >= end:
                continue
            key = SeriesKey(exchange, Symbol.parse(symbol), tf)
            streams.append(
                CandleStream(
                    symbol,
                    tf,
                    lambda lo, hi, key=key: store.read_candles(key, lo, hi),
                    start=start,
                    end=end,
                )
            )
        count = 0
        streams = [s for s in streams if s.next_close is not None]  # none stored: nothing
        if streams:
            feed = ReplayFeed(streams)
            while (events := feed.next_events()) is not None:
                for event in events:
                    if (
                        isinstance(event, CandleClosed)
                        and (
                            event.symbol,
                            event.timeframe,
                            int(event.candle.timestamp[0]),
                        )
                        in held
                    ):
                        continue
                    listener.on_event(event)
                    count += 1
        pushed[symbol] = count
    return pushed


def learn_span(
    orchestrator: Any,
    store: MarketDataStore,
    exchange: str,
    symbols: Sequence[str],
    timeframes: Iterable[Timeframe],
    base: Timeframe,
    account: AccountSnapshot,
    *,
    since: int,
    until: int,
    skip: Sequence[MarketEvent] = (),
) -> dict[str, int]:
    """The run file's learning span before a session trades: every stored base bar opened in
    ``[since, until)`` runs through the orchestrator's learning loop without orders (models
    infer, predictions mature, candidates train and are promoted), the other timeframes' bars
    closed by then pushed in close-time order, as :func:`pivotal.orchestrator.pushed.run_pushed`
    does for a replay. ``until`` is the session's first bar, so only data before the session
    is learned from; the session then starts from the state a replay would have at that bar.
    Bars of ``skip`` (the first live step) are left out. Steps per symbol."""
    held = _bars_of(skip)
    tfs = sorted(set(timeframes) | {base}, key=lambda t: t.ms)
    steps: dict[str, int] = {}
    for symbol in symbols:
        key = SeriesKey(exchange, Symbol.parse(symbol), base)
        bars = store.read_candles(key, since, until)
        if not len(bars):
            steps[symbol] = 0
            continue
        streams = []
        for tf in tfs:
            start, end = since - tf.ms + 1, until - tf.ms + 1  # bars closed in (since, until]
            tf_key = SeriesKey(exchange, Symbol.parse(symbol), tf)
            stream = CandleStream(
                symbol,
                tf,
                lambda lo, hi, k=tf_key: store.read_candles(k, lo, hi),
                start=start,
                end=end,
            )
            if stream.next_close is not None:
                streams.append(stream)
        feed = _Without(ReplayFeed(streams), held) if streams else None
        steps[symbol] = orchestrator.learn(symbol, bars, account, feed=feed)
    return steps


def _bars_of(events: Sequence[MarketEvent]) -> set[tuple[str, Timeframe, int]]:
    return {
        (e.symbol, e.timeframe, int(e.candle.timestamp[0]))
        for e in events
        if isinstance(e, CandleClosed)
    }


class _Without:
    """A feed without the bars of ``held`` (they reach the frame with the first live step)."""

    def __init__(self, feed: ReplayFeed, held: set[tuple[str, Timeframe, int]]) -> None:
        self.feed = feed
        self.held = held

    def next_events(self) -> Sequence[MarketEvent] | None:
        events = self.feed.next_events()
        if events is None or not self.held:
            return events
        return [
            e
            for e in events
            if not (
                isinstance(e, CandleClosed)
                and (e.symbol, e.timeframe, int(e.candle.timestamp[0])) in self.held
            )
        ]
