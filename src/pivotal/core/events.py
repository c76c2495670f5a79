"""Market events: what a :class:`~pivotal.core.ports.MarketFeed` delivers to the runtime.

Every event carries ``event_time``: the UTC ms time at which it became known (a candle's
close, a trade batch's last trade, a book snapshot's time). A feed delivers the events of
one event time together, oldest time first; the runtime's kernel applies them in the order
given (:mod:`pivotal.runtime.kernel`). The events hold domain types only and do no I/O.

A consumer matches on the types it uses and ignores the others (a new event type must not
break a listener that has no use for it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pivotal.core.candles import Candles
from pivotal.core.timeframes import Timeframe
from pivotal.core.trades import Trades
from pivotal.core.types import COBData

__all__ = ["BookLevels", "BookUpdated", "CandleClosed", "MarketEvent", "TradesReceived"]


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


def _levels(symbol: str, name: str, levels: object) -> npt.NDArray[np.float64]:
    try:
        array = np.array(levels, dtype=np.float64)  # a copy: the event owns its levels
    except (TypeError, ValueError) as exc:
        raise ValueError(f"BookLevels {name} of {symbol}: not numbers ({exc})") from None
    if array.size == 0:
        array = array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(
            f"BookLevels {name} of {symbol} must have shape (n, 2) (price, quantity), "
            f"got {array.shape}"
        )
    if not np.isfinite(array).all() or (array <= 0).any():
        raise ValueError(
            f"BookLevels {name} of {symbol}: every price and quantity must be finite and above 0"
        )
    array.flags.writeable = False
    return array


@dataclass(frozen=True, slots=True, eq=False)
class BookLevels:
    """The top of ``symbol``'s order book at ``event_time`` (UTC ms): price levels as
    ``(n, 2)`` float64 arrays of ``(price, quantity)`` (quote per base unit, base units),
    best first: ``bids`` in strictly descending price, ``asks`` strictly ascending, the best
    bid below the best ask. Either side may be empty (``(0, 2)``).

    Published with each 1s COB snapshot (:class:`BookUpdated` of the same time, the same
    book): the levels a paper broker walks. The arrays are read-only copies; a value that
    breaks the rules above raises ``ValueError`` naming it.
    """

    symbol: str
    bids: npt.NDArray[np.float64]
    asks: npt.NDArray[np.float64]
    event_time: int

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise ValueError(f"BookLevels symbol must be a non-empty string, got {self.symbol!r}")
        if isinstance(self.event_time, bool) or not isinstance(self.event_time, int | np.integer):
            raise TypeError(f"BookLevels event_time must be int UTC ms, got {self.event_time!r}")
        object.__setattr__(self, "event_time", int(self.event_time))
        bids = _levels(self.symbol, "bids", self.bids)
        asks = _levels(self.symbol, "asks", self.asks)
        if len(bids) > 1 and not (np.diff(bids[:, 0]) < 0).all():
            raise ValueError(
                f"BookLevels bids of {self.symbol} must be in strictly descending price"
            )
        if len(asks) > 1 and not (np.diff(asks[:, 0]) > 0).all():
            raise ValueError(
                f"BookLevels asks of {self.symbol} must be in strictly ascending price"
            )
        if len(bids) and len(asks) and bids[0, 0] >= asks[0, 0]:
            raise ValueError(
                f"BookLevels of {self.symbol} at {self.event_time} is crossed: best bid "
                f"{float(bids[0, 0])!r} >= best ask {float(asks[0, 0])!r}"
            )
        object.__setattr__(self, "bids", bids)
        object.__setattr__(self, "asks", asks)

    @property
    def best_bid(self) -> float | None:
        return float(self.bids[0, 0]) if len(self.bids) else None

    @property
    def best_ask(self) -> float | None:
        return float(self.asks[0, 0]) if len(self.asks) else None

    @property
    def mid(self) -> float:
        """The mid price; NaN when a side is empty."""
        bid, ask = self.best_bid, self.best_ask
        return math.nan if bid is None or ask is None else (bid + ask) / 2.0


MarketEvent = CandleClosed | TradesReceived | BookUpdated | BookLevels
