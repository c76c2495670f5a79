"""The simulated broker's internal working state: per-symbol books and per-order state.

Mutable and private to :mod:`pivotal.trading.brokers.simulated`; nothing else should touch
these objects (the broker hands out frozen :class:`~pivotal.core.orders.Order` snapshots).
"""

from __future__ import annotations

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.orders import Order, OrderType
from pivotal.trading.brokers.matching import LIMIT, MARKET, STOP, TAKE_PROFIT

PHASE = {
    OrderType.MARKET: MARKET,
    OrderType.STOP_MARKET: STOP,
    OrderType.TAKE_PROFIT: TAKE_PROFIT,
    OrderType.LIMIT: LIMIT,
}


_NO_BAR = Candles.empty()


class Book:
    """One symbol's newest bar and working orders (internal, mutable).

    ``bar`` is the number of the newest bar pushed (the count of bars pushed so far minus
    one; -1 before any), ``ts`` its open time (UTC ms); its prices are read on demand from
    row ``row`` of the candles it came in (``source``), so pushing a bar copies nothing.
    """

    __slots__ = (
        "active",
        "bar",
        "budget_bar",
        "budget_lots",
        "has_position",
        "maker",
        "row",
        "source",
        "symbol",
        "taker",
        "trade_price",
        "trade_time",
        "ts",
    )

    def __init__(self, symbol: str, maker: float, taker: float) -> None:
        self.symbol = symbol
        self.maker = maker
        self.taker = taker
        self.active: list[Working] = []
        self.bar = -1
        self.ts = -1
        self.source = _NO_BAR
        self.row = 0
        self.has_position = False
        self.budget_bar = -1
        self.budget_lots = 0
        self.trade_time: np.ndarray | None = None
        self.trade_price: np.ndarray | None = None

    # the newest bar's prices (the empty source before any bar raises IndexError)
    @property
    def open(self) -> float:
        value: float = self.source.open.item(self.row)
        return value

    @property
    def high(self) -> float:
        value: float = self.source.high.item(self.row)
        return value

    @property
    def low(self) -> float:
        value: float = self.source.low.item(self.row)
        return value

    @property
    def close(self) -> float:
        value: float = self.source.close.item(self.row)
        return value

    @property
    def volume(self) -> float:
        value: float = self.source.volume.item(self.row)
        return value


class Working:
    """An order's mutable working state beside its frozen :class:`Order` snapshot."""

    __slots__ = (
        "average",
        "book",
        "eligible_ms",
        "filled_lots",
        "filled_qty",
        "lots",
        "order",
        "phase",
        "quantity",
        "request",
        "seq",
    )

    def __init__(
        self, order: Order, seq: int, book: Book | None, eligible_ms: int, phase: int
    ) -> None:
        self.order = order
        self.request = order.request
        self.seq = seq
        self.book = book
        self.eligible_ms = eligible_ms
        self.phase = phase
        self.lots: int | None = None
        self.quantity: float | None = None
        self.filled_lots = 0
        self.filled_qty = 0.0
        self.average: float | None = None
