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

from pivotal.core.events import CandleClosed, MarketEvent
from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.data.series import SeriesKey
from pivotal.data.store import MarketDataStore
from pivotal.runtime.kernel import MarketListener
from pivotal.runtime.replay_feed import CandleStream, ReplayFeed

__all__ = ["warm_up"]


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
) -> dict[str, int]:
    """Push up to ``bars`` stored bars per (symbol, timeframe) closed by ``t0`` (UTC ms) into
    ``listener``; bars of ``skip`` (the first live step) are left out. Bars pushed per symbol."""
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
