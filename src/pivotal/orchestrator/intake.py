"""How market data reaches the orchestrator's frame: pushed events, or a prepared history.

There is one way into the :class:`~pivotal.orchestrator.frame.MarketFrame`: a
:class:`~pivotal.orchestrator.subscriptions.StreamUpdate` published to the
:class:`~pivotal.orchestrator.subscriptions.DataSubscriptionManager` and applied when the
orchestrator's thread drains it at its next step. Two sources feed it:

- **pushed** (paper, live, and replays with ``--no-accelerate``): the runtime hands every
  :class:`~pivotal.core.events.MarketEvent` to :meth:`BarIntake.push` as it arrives (a
  closed candle of any timeframe, trades, a book snapshot);
- **prepared** (the replay accelerator): a history given up front with :meth:`prepare`;
  at each step :meth:`due` publishes the rows of every timeframe that have closed by the
  step's time and were not published yet (the warm-up before the first step included), so
  the frame sees exactly what the pushed path would have pushed by then.

:meth:`due` then drains the manager and says which of the symbol's timeframes gained a
candle since the symbol's previous step: the coordinator runs the experts reading those.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.events import (
    BookLevels,
    BookUpdated,
    CandleClosed,
    MarketEvent,
    TradesReceived,
)
from pivotal.core.timeframes import Timeframe
from pivotal.orchestrator.subscriptions import (
    DataSubscriptionManager,
    StreamKey,
    StreamKind,
    StreamUpdate,
)

__all__ = ["BarIntake"]


class _Prepared:
    """One symbol's prepared histories and, per timeframe, the next row to publish."""

    __slots__ = ("closes", "next_row", "streams")

    def __init__(self, streams: Mapping[Timeframe, Candles]) -> None:
        self.streams = dict(streams)
        self.closes: dict[Timeframe, npt.NDArray[np.int64]] = {
            tf: c.timestamp + tf.ms for tf, c in self.streams.items()
        }
        self.next_row: dict[Timeframe, int] = dict.fromkeys(self.streams, 0)

    def extend(self, streams: Mapping[Timeframe, Candles]) -> None:
        """Take longer histories of the same series; rows already published stay so."""
        published = {
            tf: int(self.closes[tf][row - 1]) if row else None for tf, row in self.next_row.items()
        }
        self.streams = dict(streams)
        self.closes = {tf: c.timestamp + tf.ms for tf, c in self.streams.items()}
        self.next_row = {
            tf: 0
            if published.get(tf) is None
            else int(np.searchsorted(self.closes[tf], published[tf], side="right"))
            for tf in self.streams
        }


class BarIntake:
    """Publishes market data into the orchestrator's subscriptions (module docstring)."""

    def __init__(self, subscriptions: DataSubscriptionManager) -> None:
        self.subscriptions = subscriptions
        self._prepared: dict[str, _Prepared] = {}
        self._fresh: dict[str, set[Timeframe]] = {}
        self._keys: dict[tuple[StreamKind, str, Timeframe | None], StreamKey] = {}
        self._canonical: dict[str, str] = {}

    # -- sources ---------------------------------------------------------------------------
    def push(self, event: MarketEvent) -> None:
        """Publish one pushed event (applied at the symbol's next step)."""
        if isinstance(event, CandleClosed):
            key = self._key(StreamKind.CANDLES, event.symbol, event.timeframe)
            self.subscriptions.publish(StreamUpdate(key, int(event.event_time), event.candle))
        elif isinstance(event, TradesReceived):
            key = self._key(StreamKind.TRADES, event.symbol, None)
            self.subscriptions.publish(StreamUpdate(key, int(event.event_time), event.trades))
        elif isinstance(event, BookUpdated):
            key = self._key(StreamKind.COB, event.symbol, None)
            self.subscriptions.publish(StreamUpdate(key, int(event.event_time), event.snapshot))
        elif isinstance(event, BookLevels):
            return  # the raw top of book is for a paper broker; the frame reads COB snapshots
        else:
            raise TypeError(
                "expected a market event (CandleClosed, TradesReceived, BookUpdated, "
                f"BookLevels), got {type(event).__name__}"
            )

    def prepare(self, symbol: str, streams: Mapping[Timeframe, Candles]) -> None:
        """Keep ``symbol``'s histories to publish step by step (the replay accelerator)."""
        held = self._prepared.get(symbol)
        if held is None:
            self._prepared[symbol] = _Prepared(streams)
        else:
            held.extend(streams)
        for tf in streams:
            self._key(StreamKind.CANDLES, symbol, tf)

    def prepared(self, symbol: str) -> dict[Timeframe, Candles] | None:
        held = self._prepared.get(symbol)
        return None if held is None else dict(held.streams)

    # -- the step --------------------------------------------------------------------------
    def due(self, symbol: str, t: int) -> set[Timeframe]:
        """Publish ``symbol``'s prepared rows closed by ``t`` (UTC ms), apply everything
        published so far to the frame, and return the timeframes of ``symbol`` that gained
        candles since its previous step."""
        held = self._prepared.get(symbol)
        if held is not None:
            for tf, closes in held.closes.items():
                start = held.next_row[tf]
                stop = int(closes.searchsorted(t, side="right"))
                if stop > start:
                    key = self._key(StreamKind.CANDLES, symbol, tf)
                    rows = held.streams[tf].rows(start, stop)  # views of checked columns
                    self.subscriptions.publish(StreamUpdate(key, int(closes[stop - 1]), rows))
                    held.next_row[tf] = stop
        for key in self.subscriptions.drain():
            if key.kind is StreamKind.CANDLES and key.timeframe is not None:
                self._fresh.setdefault(key.symbol, set()).add(key.timeframe)
        canonical = self._canonical.get(symbol)
        if canonical is None:
            canonical = self._canonical[symbol] = StreamKey(StreamKind.COB, symbol).symbol
        return self._fresh.pop(canonical, set())

    def _key(self, kind: StreamKind, symbol: str, tf: Timeframe | None) -> StreamKey:
        """The stream's key, built (and subscribed) once; every later bar reuses it."""
        marker = (kind, symbol, tf)
        key = self._keys.get(marker)
        if key is None:
            key = self._keys[marker] = StreamKey(kind, symbol, tf)
            self.subscriptions.subscribe(key)
        return key
