"""The paper broker's rules as functions of their arguments: price grid, admission, prints.

Private to :mod:`pivotal.trading.brokers.paper`, whose docstring states the rules;
:class:`Market` is one symbol's state there (newest book, working orders, steps and fees).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from pivotal.core.events import BookLevels
from pivotal.core.orders import OrderSide, OrderType
from pivotal.core.symbols import Symbol
from pivotal.trading.brokers.matching import position_lots, px, qty, to_lots
from pivotal.trading.brokers.paper_account import SpotAccount
from pivotal.trading.brokers.paper_config import PaperBrokerConfig
from pivotal.trading.brokers.paper_orders import ARMED, PaperOrder

__all__ = [
    "TRIGGERED",
    "Market",
    "first_trigger",
    "on_grid",
    "print_shares",
    "protects_entry",
    "submit_refusal",
]

TRIGGERED = (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT)


def on_grid(price: float, tick: float | None, mode: str) -> float:
    """``price`` on the ``tick`` grid: ``mode`` "down", "up" or "nearest" (a price within
    float error of a grid point is that point); unchanged without a tick."""
    if tick is None:
        return price
    steps = price / tick
    nearest = round(steps)
    if abs(steps - nearest) <= 1e-9 * max(1.0, abs(steps)):
        k = nearest
    elif mode == "down":
        k = math.floor(steps)
    elif mode == "up":
        k = math.ceil(steps)
    else:
        k = nearest
    return round(k * tick, 12)


class Market:
    """One symbol's newest book, the depth taken from it, and its working orders."""

    __slots__ = ("active", "base", "book", "lot", "maker", "serial", "symbol", "taker", "tick")

    def __init__(self, symbol: str, config: PaperBrokerConfig) -> None:
        self.symbol = symbol
        self.base = Symbol.parse(symbol).base
        self.lot = config.lot(symbol)
        self.tick = config.tick(symbol)
        self.maker, self.taker = config.fees.rates(symbol)
        self.book: BookLevels | None = None
        self.serial = 0  # books received so far
        self.active: list[PaperOrder] = []


def submit_refusal(
    work: PaperOrder, market: Market, account: SpotAccount, config: PaperBrokerConfig, now: int
) -> str | None:
    """Why ``work`` is refused at ``now`` (UTC ms), or None to accept it; sets its size
    (``lots``, ``quantity``), its prices on the tick grid and its phase."""
    request = work.request
    if request.quantity is None:
        return (
            "an equity_fraction order without a quantity: the paper broker executes "
            "quantities as an exchange does and cannot size at the fill; give the quantity "
            "(the risk manager computes it at the decision)"
        )
    if request.expire_at_ms is not None and request.expire_at_ms <= now:
        return f"expire time {request.expire_at_ms} has already passed (now {now})"
    lots = to_lots(request.quantity, market.lot)
    if lots == 0:
        return (
            f"quantity {request.quantity!r} is below the lot size {market.lot!r} of "
            f"{market.symbol}; order at least one lot"
        )
    work.lots = lots
    as_lots = lots * market.lot
    exact = abs(as_lots - request.quantity) <= 1e-12 * request.quantity
    work.quantity = float(request.quantity) if exact else as_lots
    buy = request.side is OrderSide.BUY
    if request.type is OrderType.LIMIT:
        work.limit = on_grid(request.limit_price or 0.0, market.tick, "down" if buy else "up")
    elif request.type in TRIGGERED:
        work.trigger = on_grid(request.stop_price or 0.0, market.tick, "nearest")
        work.phase = ARMED
    if (work.limit is not None and work.limit <= 0) or (
        work.trigger is not None and work.trigger <= 0
    ):
        return f"price below one tick ({market.tick!r}) of {market.symbol}"
    held = account.held(market.symbol)
    if request.reduce_only:
        if buy:
            return "reduce-only buy: a spot account holds no short position to reduce"
        if position_lots(held, market.lot) == 0 and not (
            request.type in TRIGGERED and protects_entry(market, work)
        ):
            return f"reduce-only order while flat: no {market.base} held to sell"
    elif not buy:
        free = account.base_free(market.symbol)
        if lots > to_lots(max(free, 0.0), market.lot):
            return (
                f"short selling is not possible on spot: selling {qty(work.quantity)} "
                f"{market.base} with {qty(held)} held ({qty(max(free, 0.0))} not reserved "
                "by other open sells)"
            )
    book = market.book
    if request.type is OrderType.MARKET:
        if book is None:
            return (
                f"no order book of {market.symbol} yet: a market order fills against the "
                "feed's BookLevels; wait for the first book"
            )
        age = now - book.event_time
        if age > config.book_stale_ms:
            return (
                f"the newest {market.symbol} book is {age} ms old (book_stale_ms="
                f"{config.book_stale_ms}): market orders wait for a fresh book"
            )
    if buy and not request.reduce_only:
        price = work.limit or work.trigger or (book.best_ask if book is not None else None)
        if price is not None:
            rate = max(market.maker, market.taker) if work.limit else market.taker
            need = work.quantity * price * (1.0 + rate)
            free = account.quote_free()
            if need > free * (1.0 + 1e-12):
                return (
                    f"insufficient funds: buying {qty(work.quantity)} {market.base} at "
                    f"{px(price)} needs {px(need)} {account.currency} with fees, "
                    f"{px(max(free, 0.0))} {account.currency} available"
                )
    return None


def protects_entry(market: Market, work: PaperOrder) -> bool:
    """Whether an active buy that is not reduce-only was submitted before ``work``."""
    return any(
        not other.request.reduce_only
        and other.request.side is OrderSide.BUY
        and other.seq < work.seq
        and other.order.status.is_active
        for other in market.active
    )


def first_trigger(
    times: npt.NDArray[np.int64],
    prices: npt.NDArray[np.float64],
    start: int,
    trigger: float,
    upward: bool,
) -> int | None:
    """Index of the first print at or after ``start`` (UTC ms) that reaches ``trigger``
    (``price >= trigger`` when ``upward``, else ``price <= trigger``), or None."""
    hit = (times >= start) & (prices >= trigger if upward else prices <= trigger)
    found = np.flatnonzero(hit)
    return int(found[0]) if len(found) else None


def print_shares(available: npt.NDArray[np.float64], size: float) -> npt.NDArray[np.float64]:
    """How much of each print's ``available`` volume a fill of ``size`` uses, in print order
    (the first prints first; the total is ``min(size, available.sum())``)."""
    before = np.concatenate(([0.0], np.cumsum(available)[:-1]))
    return np.clip(size - before, 0.0, available)
