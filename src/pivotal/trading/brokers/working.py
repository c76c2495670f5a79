"""The simulated broker's internal working state: per-symbol books and per-order state.

Mutable and private to :mod:`pivotal.trading.brokers.simulated`; nothing else should touch
these objects (the broker hands out frozen :class:`~pivotal.core.orders.Order` snapshots).
"""

from __future__ import annotations

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.orders import Order, OrderType

MARKET, STOP, TAKE_PROFIT, LIMIT = 0, 1, 2, 3
PHASE = {
    OrderType.MARKET: MARKET,
    OrderType.STOP_MARKET: STOP,
    OrderType.TAKE_PROFIT: TAKE_PROFIT,
    OrderType.LIMIT: LIMIT,
}
MARGIN_TOLERANCE = 1e-12
NO_SHORT = "short selling is disabled (allow_short=False): the rest would open a short"


def first_trade(
    times: np.ndarray, prices: np.ndarray, start: int, end: int
) -> tuple[int, float] | None:
    """Time and price of the first trade with ``start <= time < end``, or None."""
    k = int(np.searchsorted(times, start, side="left"))
    if k < len(times) and times[k] < end:
        return int(times[k]), float(prices[k])
    return None


def px(value: float) -> str:
    return f"{value:.12g}"


def qty(value: float) -> str:
    return repr(round(value, 12))


class Book:
    """One symbol's candles and working orders (internal, mutable)."""

    __slots__ = (
        "active",
        "budget_bar",
        "budget_lots",
        "close",
        "has_position",
        "high",
        "last_index",
        "low",
        "maker",
        "n",
        "open",
        "symbol",
        "taker",
        "timestamp",
        "trade_price",
        "trade_time",
        "volume",
    )

    def __init__(self, symbol: str, candles: Candles, maker: float, taker: float) -> None:
        self.symbol = symbol
        self.timestamp = candles.timestamp
        self.open = candles.open
        self.high = candles.high
        self.low = candles.low
        self.close = candles.close
        self.volume = candles.volume
        self.n = len(candles)
        self.maker = maker
        self.taker = taker
        self.active: list[Working] = []
        self.last_index = -1
        self.has_position = False
        self.budget_bar = -1
        self.budget_lots = 0
        self.trade_time: np.ndarray | None = None
        self.trade_price: np.ndarray | None = None


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
