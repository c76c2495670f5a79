"""Market events: what a :class:`~pivotal.core.ports.MarketFeed` delivers to the runtime.

Every event carries ``event_time``: the UTC ms time at which it became known (a candle's
close, a trade batch's last trade, a book snapshot's time). A feed delivers the events of
one event time together, oldest time first; the runtime's kernel applies them in the order
given (:mod:`pivotal.runtime.kernel`). The events hold domain types only and do no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from pivotal.core.candles import Candles
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.core.types import COBData

__all__ = ["BookUpdated", "CandleClosed", "MarketEvent", "TradesReceived"]


@dataclass(frozen=True, slots=True)
class CandleClosed:
    """``symbol``'s ``timeframe`` bar ``candle`` (one row, opened at ``candle.timestamp``)
    has closed; ``event_time`` is its close: the open plus the timeframe's length (UTC ms)."""

    symbol: str
    timeframe: Timeframe
    candle: Candles
    event_time: int

    def __post_init__(self) -> None:
        if not isinstance(self.timeframe, Timeframe):
            object.__setattr__(self, "timeframe", Timeframe.parse(self.timeframe))

    @property
    def open_time(self) -> int:
        """The bar's open time (UTC ms)."""
        return int(self.candle.timestamp[0])


@dataclass(frozen=True, slots=True)
class TradesReceived:
    """Public trades of ``symbol`` that happened up to ``event_time`` (UTC ms)."""

    symbol: str
    trades: Trades
    event_time: int


@dataclass(frozen=True, slots=True)
class BookUpdated:
    """An order book snapshot of ``symbol`` taken at ``event_time`` (UTC ms)."""

    symbol: str
    snapshot: COBData
    event_time: int


MarketEvent = CandleClosed | TradesReceived | BookUpdated
