"""Orders, fills and account snapshots: the vocabulary of the ``Broker`` protocol.

Everything here is a frozen value: built once, validated when built, never mutated. A
broker returns a new :class:`Order` snapshot whenever the order changes, together with an
:class:`OrderEvent` that says what changed and why.

Units: quantities in the base asset (BTC for BTC/USDT), prices and money in the quote
asset (USDT), times in UTC milliseconds since the epoch. Fees are positive numbers paid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell."""
        return 1 if self is OrderSide.BUY else -1

    @property
    def opposite(self) -> OrderSide:
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY


class OrderType(StrEnum):
    """Market, limit, stop-market (a stop-loss) and take-profit (a market order on a trigger).

    - ``MARKET`` fills at the next available price (see the broker's fill timing).
    - ``LIMIT`` fills at ``limit_price`` or better once the market trades through it.
    - ``STOP_MARKET`` becomes a market order when the price moves *against* the order's
      side through ``stop_price`` (a buy stop above the market, a sell stop below it).
    - ``TAKE_PROFIT`` becomes a market order when the price moves *with* the order's side
      through ``stop_price`` (a sell take-profit above the market, a buy one below it).
    """

    MARKET = "market"
    LIMIT = "limit"
    STOP_MARKET = "stop_market"
    TAKE_PROFIT = "take_profit"


class OrderStatus(StrEnum):
    """Lifecycle: new → (submitted →) open → partially filled → filled / cancelled / rejected /
    expired, with ``pending_cancel`` between a cancel request and the venue's answer.

    ``SUBMITTED`` and ``PENDING_CANCEL`` are the in-flight states of a venue that answers
    asynchronously (an exchange): sent but not yet acknowledged, cancel sent but not yet
    confirmed (fills may still arrive then). Both count as active. A broker that answers at
    once (the simulated one) goes NEW → OPEN and straight to CANCELLED.
    """

    NEW = "new"
    SUBMITTED = "submitted"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    PENDING_CANCEL = "pending_cancel"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_active(self) -> bool:
        return not self.is_terminal


_TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)

#: Allowed status changes; anything else is a bug in the broker and raises.
ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.NEW: frozenset(
        {
            OrderStatus.SUBMITTED,
            OrderStatus.OPEN,
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.REJECTED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
        }
    ),
    OrderStatus.OPEN: frozenset(
        {
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
            OrderStatus.REJECTED,
            OrderStatus.PENDING_CANCEL,
        }
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset(
        {
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
            OrderStatus.PENDING_CANCEL,
        }
    ),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.SUBMITTED: frozenset(
        {
            OrderStatus.OPEN,
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.REJECTED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
            OrderStatus.PENDING_CANCEL,
        }
    ),
    OrderStatus.PENDING_CANCEL: frozenset(
        {
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
            OrderStatus.OPEN,  # the venue refused the cancel: the order works on
        }
    ),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
    OrderStatus.EXPIRED: frozenset(),
}


class TimeInForce(StrEnum):
    """GTC rests until filled or cancelled; IOC fills what it can on its first fill
    opportunity and cancels the rest; GTD expires at ``expire_at_ms``."""

    GTC = "gtc"
    IOC = "ioc"
    GTD = "gtd"


class Liquidity(StrEnum):
    MAKER = "maker"
    TAKER = "taker"


def _check_price(name: str, value: float | None) -> None:
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite price above 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a strategy (through the risk manager) asks a broker to do.

    Size: ``quantity`` (base units) is what a venue executes. ``equity_fraction`` is the
    sizing *intent*: the share of the account's *available* margin (equity minus margin
    already used, times leverage) to commit. At least one is set:

    - ``quantity`` alone: a fixed size;
    - both (what the risk manager sends): ``quantity`` was computed from the fraction at the
      decision price (fees and lot size included); an exchange broker executes
      ``quantity``; the simulated broker, with ``size_at_fill`` on (its default, for
      backtesting.py parity), re-sizes from the fraction at the fill price instead;
    - ``equity_fraction`` alone: sized **at fill time** from the fill price and the fee,
      rounded down to the lot size (the way backtesting.py sizes ``buy(size=0.999…)`` from
      its ``margin_available``; when flat, available = equity). Only a broker that can
      size at fill (the simulated one) accepts it; an exchange broker refuses it.

    ``reduce_only`` orders may only shrink the position; a broker cuts them to the
    position's size and rejects them when flat. ``client_order_id`` makes submission
    idempotent: submitting the same id twice returns the existing order.
    """

    symbol: str
    side: OrderSide
    type: OrderType = OrderType.MARKET
    quantity: float | None = None
    equity_fraction: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    reduce_only: bool = False
    time_in_force: TimeInForce = TimeInForce.GTC
    expire_at_ms: int | None = None
    client_order_id: str | None = None
    tag: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise ValueError(f"order symbol must be a non-empty string, got {self.symbol!r}")
        object.__setattr__(self, "side", OrderSide(self.side))
        object.__setattr__(self, "type", OrderType(self.type))
        object.__setattr__(self, "time_in_force", TimeInForce(self.time_in_force))
        if self.quantity is None and self.equity_fraction is None:
            raise ValueError(
                "give quantity (base units), equity_fraction (share of equity) or both; got neither"
            )
        if self.quantity is not None and (
            not isinstance(self.quantity, int | float)
            or not math.isfinite(self.quantity)
            or self.quantity <= 0
        ):
            raise ValueError(
                f"order quantity must be a finite number above 0, got {self.quantity!r}"
            )
        if self.equity_fraction is not None and (
            not isinstance(self.equity_fraction, int | float)
            or not math.isfinite(self.equity_fraction)
            or self.equity_fraction <= 0
        ):
            raise ValueError(
                f"equity_fraction must be a finite number above 0, got {self.equity_fraction!r}"
            )
        _check_price("limit_price", self.limit_price)
        _check_price("stop_price", self.stop_price)
        if self.type is OrderType.LIMIT:
            if self.limit_price is None:
                raise ValueError("a limit order needs limit_price")
            if self.stop_price is not None:
                raise ValueError("a limit order takes no stop_price; use STOP_MARKET for stops")
        elif self.limit_price is not None:
            raise ValueError(
                f"a {self.type.value} order takes no limit_price; use type=LIMIT for a limit order"
            )
        if self.type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT):
            if self.stop_price is None:
                raise ValueError(f"a {self.type.value} order needs stop_price (its trigger)")
        elif self.type is OrderType.MARKET and self.stop_price is not None:
            raise ValueError("a market order takes no stop_price; use STOP_MARKET or TAKE_PROFIT")
        if self.time_in_force is TimeInForce.GTD and self.expire_at_ms is None:
            raise ValueError("time_in_force GTD needs expire_at_ms")
        if self.time_in_force is not TimeInForce.GTD and self.expire_at_ms is not None:
            raise ValueError("expire_at_ms is only valid with time_in_force GTD")

    @property
    def sized_at_fill(self) -> bool:
        """Whether only ``equity_fraction`` is set: the size is known only at the fill."""
        return self.quantity is None

    @property
    def is_taker(self) -> bool:
        """Market, stop and take-profit orders take liquidity; limit orders make it."""
        return self.type is not OrderType.LIMIT


@dataclass(frozen=True, slots=True)
class Order:
    """A broker's snapshot of one order. ``quantity`` is None until an equity-fraction order
    is sized at its first fill.

    ``order_id`` is the broker's own id; ``venue_order_id`` the id the venue (exchange)
    gave the order, None until it acknowledged it; ``raw`` the venue's last payload about
    the order as received (for audit and debugging; never read by the trading logic).
    """

    request: OrderRequest
    client_order_id: str
    order_id: str
    status: OrderStatus
    created_ms: int
    updated_ms: int
    quantity: float | None
    filled_quantity: float = 0.0
    average_fill_price: float | None = None
    fees_paid: float = 0.0
    reason: str = ""
    venue_order_id: str | None = None
    raw: Mapping[str, Any] | None = None

    @property
    def symbol(self) -> str:
        return self.request.symbol

    @property
    def side(self) -> OrderSide:
        return self.request.side

    @property
    def type(self) -> OrderType:
        return self.request.type

    @property
    def remaining_quantity(self) -> float | None:
        if self.quantity is None:
            return None
        return max(self.quantity - self.filled_quantity, 0.0)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. ``fee`` is positive and in the quote asset.

    ``venue_order_id``/``venue_trade_id`` are the venue's ids of the order and of this
    execution (a live broker deduplicates fills by ``venue_trade_id``); ``raw`` the venue's
    payload as received. None where the venue gives none.
    """

    order_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    quantity: float
    price: float
    fee: float
    liquidity: Liquidity
    timestamp: int
    tag: str = ""
    venue_order_id: str | None = None
    venue_trade_id: str | None = None
    raw: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.quantity) and self.quantity > 0):
            raise ValueError(f"fill quantity must be above 0, got {self.quantity!r}")
        _check_price("fill price", self.price)
        if not (math.isfinite(self.fee) and self.fee >= 0):
            raise ValueError(f"fill fee must be 0 or more, got {self.fee!r}")

    @property
    def notional(self) -> float:
        return self.quantity * self.price


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """An order changed status (or filled a part); ``reason`` says why in plain words."""

    timestamp: int
    order: Order
    previous_status: OrderStatus | None
    reason: str = ""

    @property
    def status(self) -> OrderStatus:
        return self.order.status


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    """A net position: ``quantity`` is signed (negative = short)."""

    symbol: str
    quantity: float
    average_entry_price: float
    mark_price: float
    realized_pnl: float
    unrealized_pnl: float
    fees_paid: float
    opened_ms: int | None

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0.0

    @property
    def notional(self) -> float:
        """Absolute position value at the mark price."""
        return abs(self.quantity) * self.mark_price


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """The account in the quote currency.

    ``cash`` is the settled balance: the initial deposit plus realized PnL minus fees (a
    margin account: opening a position does not spend its notional). ``equity`` is
    ``cash + Σ unrealized PnL``; ``margin_used`` is ``Σ |notional| / leverage``;
    ``available`` is ``max(equity - margin_used, 0)``.
    """

    timestamp: int
    currency: str
    cash: float
    equity: float
    margin_used: float
    available: float
    leverage: float
    fees_paid: float
    realized_pnl: float
    unrealized_pnl: float
    positions: dict[str, PositionSnapshot] = field(default_factory=dict)

    @property
    def gross_exposure(self) -> float:
        return sum(p.notional for p in self.positions.values())

    @property
    def net_exposure(self) -> float:
        return sum(p.quantity * p.mark_price for p in self.positions.values())
