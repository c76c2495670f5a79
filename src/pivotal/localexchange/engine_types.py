"""The matching engine's types: order specs, orders, fills, updates, rejections, symbol rules.

Venue-agnostic: names follow Binance spot (``BUY``/``SELL``, ``LIMIT``, ``NEW`` ...) because
they are the most common vocabulary, but nothing here speaks a wire format; each venue site
maps them to its own (``binance_trade``, ``bybit_trade``).

Numbers are :class:`~decimal.Decimal` (exact tick/step checks, balances that add up to the
last unit): prices in the quote asset, quantities in the base asset, times in UTC ms of the
market clock.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pivotal.core.symbols import Symbol

Side = Literal["BUY", "SELL"]
OrderType = Literal[
    "MARKET",
    "LIMIT",
    "LIMIT_MAKER",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
]
TimeInForce = Literal["GTC", "IOC", "FOK"]
Status = Literal["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED"]
Execution = Literal["NEW", "TRADE", "CANCELED", "EXPIRED"]

ORDER_TYPES: tuple[str, ...] = (
    "MARKET", "LIMIT", "LIMIT_MAKER", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
)  # fmt: skip
#: Order types that wait for a trigger price.
STOP_TYPES = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"})
#: Order types with a limit price.
PRICED_TYPES = frozenset({"LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"})
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
ZERO = Decimal(0)
#: Balances and commissions are kept to 8 decimals (Binance's asset precision).
UNIT = Decimal("0.00000001")


def dec(value: Decimal | float | int | str) -> Decimal:
    """An exact Decimal: floats through their shortest repr (``0.1`` → ``Decimal("0.1")``)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def text8(value: Decimal) -> str:
    """``value`` with 8 decimals, as Binance writes amounts (``"0.01000000"``)."""
    return f"{value.quantize(UNIT, rounding=ROUND_HALF_UP):f}"


class OrderRejected(Exception):
    """The engine refused an order; nothing was placed and no balance changed.

    ``reason`` is one of :data:`REJECT_REASONS`; ``filter`` names the failed exchange filter
    for ``reason == "filter"`` (``LOT_SIZE``, ``PRICE_FILTER``, ``MARKET_LOT_SIZE``,
    ``NOTIONAL``/``MIN_NOTIONAL``, ``MAX_NUM_ORDERS``, ``MAX_NUM_ALGO_ORDERS``); ``message``
    is Binance's text for it (venues map both to their own code and text).
    """

    def __init__(self, reason: str, message: str, filter: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.filter = filter


#: ``OrderRejected.reason`` values: ``filter`` (an exchange filter failed), ``invalid`` (a
#: missing/meaningless parameter), ``unsupported`` (order type not allowed on the symbol),
#: ``insufficient_balance``, ``duplicate`` (client id of an open order), ``would_take``
#: (LIMIT_MAKER crossing the book), ``would_trigger`` (stop already past its trigger).
REJECT_REASONS = (
    "filter", "invalid", "unsupported", "insufficient_balance", "duplicate", "would_take",
    "would_trigger",
)  # fmt: skip


class UnknownOrder(Exception):
    """No order with that id (or client id) on that symbol, or (``open_only``) none open."""


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """A new order as the venue site parsed it.

    ``quantity`` (base) or, for MARKET only, ``quote_quantity`` (quote to spend or receive);
    ``price`` for the limit types; ``stop_price`` for the stop/take-profit types;
    ``client_order_id`` None: the engine makes one.
    """

    symbol: Symbol
    side: Side
    type: OrderType
    quantity: Decimal | None = None
    quote_quantity: Decimal | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = "GTC"
    client_order_id: str | None = None


@dataclass(slots=True)
class Order:
    """One order's state in the engine (a snapshot when handed out: do not mutate).

    ``quantity`` is the ordered base quantity (for a ``quote_quantity`` MARKET order: the
    executed quantity once done); ``working_ms`` is when the order entered the book (-1 for a
    stop not triggered yet); ``locked`` of ``locked_asset`` is what the open order holds.
    """

    order_id: int
    client_order_id: str
    symbol: Symbol
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal
    quote_quantity: Decimal
    price: Decimal
    stop_price: Decimal
    created_ms: int
    status: Status = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    updated_ms: int = 0
    working_ms: int = -1
    triggered: bool = False
    locked_asset: str = ""
    locked: Decimal = ZERO

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def is_stop(self) -> bool:
        return self.type in STOP_TYPES

    @property
    def resting(self) -> bool:
        """Open and in the book as a limit (not a stop waiting for its trigger)."""
        return self.is_open and (not self.is_stop or self.triggered)

    def snapshot(self) -> Order:
        return copy.copy(self)

    def to_binance(self) -> dict[str, Any]:
        """The order as Binance's ``GET /api/v3/order`` answers it."""
        return {
            "symbol": self.symbol.exchange_id,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": text8(self.price),
            "origQty": text8(self.quantity),
            "executedQty": text8(self.executed_qty),
            "cummulativeQuoteQty": text8(self.cum_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "stopPrice": text8(self.stop_price),
            "icebergQty": text8(ZERO),
            "time": self.created_ms,
            "updateTime": self.updated_ms,
            "isWorking": self.working_ms >= 0,
            "workingTime": self.working_ms,
            "origQuoteOrderQty": text8(self.quote_quantity),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one order: ``fill_id`` is the venue trade id (unique per engine).

    ``commission`` is in ``commission_asset`` (the asset the order received); ``maker``
    True when the order was resting (filled by a replayed trade print).
    """

    fill_id: int
    order_id: int
    client_order_id: str
    symbol: Symbol
    side: Side
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    maker: bool

    def to_binance(self) -> dict[str, Any]:
        """The fill as Binance's ``GET /api/v3/myTrades`` row (plus ``clientOrderId``)."""
        return {
            "symbol": self.symbol.exchange_id,
            "id": self.fill_id,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": text8(self.price),
            "qty": text8(self.qty),
            "quoteQty": text8(self.quote_qty),
            "commission": text8(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time_ms,
            "isBuyer": self.side == "BUY",
            "isMaker": self.maker,
            "isBestMatch": True,
        }


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """An order changed: ``execution`` NEW (accepted), TRADE (``fill`` set), CANCELED, EXPIRED.

    ``order`` is the state after the change; ``cancel_client_order_id`` is the id the cancel
    request carried (Binance's ``c`` of a cancel report; the order's own id goes in ``C``).
    """

    time_ms: int
    execution: Execution
    order: Order
    fill: Fill | None = None
    cancel_client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class BalanceUpdate:
    """Balances changed by one engine action: asset → (free, locked) after it."""

    time_ms: int
    balances: Mapping[str, tuple[Decimal, Decimal]]


EngineUpdate = OrderUpdate | BalanceUpdate


def _step_ok(value: Decimal, base: Decimal, step: Decimal) -> bool:
    return step <= 0 or (value - base) % step == 0


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """A symbol's trading filters (Binance's names; a zero bound or step is not checked).

    ``notional_filter`` is the name of the notional filter reported on failure
    (``NOTIONAL`` or the older ``MIN_NOTIONAL``); ``max_notional`` None: no maximum.
    """

    symbol: Symbol
    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_step: Decimal = ZERO
    market_min_qty: Decimal = ZERO
    market_max_qty: Decimal = ZERO
    min_notional: Decimal = ZERO
    apply_min_to_market: bool = True
    max_notional: Decimal | None = None
    apply_max_to_market: bool = False
    notional_filter: str = "NOTIONAL"
    order_types: frozenset[str] = field(default_factory=lambda: frozenset(ORDER_TYPES))
    max_orders: int = 200
    max_stop_orders: int = 5

    @classmethod
    def from_binance(cls, symbol: Symbol, entry: Mapping[str, Any]) -> SymbolRules:
        """Rules from a Binance ``exchangeInfo`` symbol entry (its ``filters``/``orderTypes``)."""
        f = {item["filterType"]: item for item in entry.get("filters", [])}
        price, lot = f.get("PRICE_FILTER", {}), f.get("LOT_SIZE", {})
        market = f.get("MARKET_LOT_SIZE", {})
        notional = f.get("NOTIONAL") or f.get("MIN_NOTIONAL") or {}
        name = "NOTIONAL" if "NOTIONAL" in f else "MIN_NOTIONAL"
        max_notional = notional.get("maxNotional")

        def d(item: Mapping[str, Any], key: str) -> Decimal:
            return dec(str(item.get(key, "0")))

        return cls(
            symbol=symbol,
            tick_size=d(price, "tickSize"),
            min_price=d(price, "minPrice"),
            max_price=d(price, "maxPrice"),
            step_size=d(lot, "stepSize"),
            min_qty=d(lot, "minQty"),
            max_qty=d(lot, "maxQty"),
            market_step=d(market, "stepSize"),
            market_min_qty=d(market, "minQty"),
            market_max_qty=d(market, "maxQty"),
            min_notional=d(notional, "minNotional"),
            apply_min_to_market=bool(
                notional.get("applyMinToMarket", notional.get("applyToMarket", True))
            ),
            max_notional=None if max_notional is None else dec(str(max_notional)),
            apply_max_to_market=bool(notional.get("applyMaxToMarket", False)),
            notional_filter=name,
            order_types=frozenset(entry.get("orderTypes", ORDER_TYPES)),
            max_orders=int(f.get("MAX_NUM_ORDERS", {}).get("maxNumOrders", 200)),
            max_stop_orders=int(f.get("MAX_NUM_ALGO_ORDERS", {}).get("maxNumAlgoOrders", 5)),
        )

    def check_price(self, price: Decimal) -> None:
        """PRICE_FILTER: within [min, max] and on the tick grid (from ``min_price``)."""
        if price <= 0:
            raise OrderRejected("invalid", "Invalid price.")
        if (
            (self.min_price > 0 and price < self.min_price)
            or (self.max_price > 0 and price > self.max_price)
            or not _step_ok(price, self.min_price, self.tick_size)
        ):
            raise OrderRejected("filter", "Filter failure: PRICE_FILTER", "PRICE_FILTER")

    def check_quantity(self, qty: Decimal, *, market: bool) -> None:
        """LOT_SIZE for every order; MARKET_LOT_SIZE as well for MARKET orders."""
        if qty <= 0:
            raise OrderRejected("invalid", "Invalid quantity.")
        bounds = [("LOT_SIZE", self.min_qty, self.max_qty, self.step_size)]
        if market:
            bounds.append(
                ("MARKET_LOT_SIZE", self.market_min_qty, self.market_max_qty, self.market_step)
            )
        for name, low, high, step in bounds:
            if (low > 0 and qty < low) or (high > 0 and qty > high) or not _step_ok(qty, low, step):
                raise OrderRejected("filter", f"Filter failure: {name}", name)

    def check_notional(self, notional: Decimal, *, market: bool) -> None:
        """The notional filter (price × quantity in quote); MARKET orders per its flags."""
        name = self.notional_filter
        if (not market or self.apply_min_to_market) and notional < self.min_notional:
            raise OrderRejected("filter", f"Filter failure: {name}", name)
        cap = self.max_notional
        if cap is not None and (not market or self.apply_max_to_market) and notional > cap:
            raise OrderRejected("filter", f"Filter failure: {name}", name)

    def floor_quantity(self, qty: Decimal) -> Decimal:
        """``qty`` rounded down to the lot step (for quote-sized MARKET orders)."""
        if self.step_size <= 0:
            return qty.quantize(UNIT, rounding=ROUND_DOWN)
        return (qty / self.step_size).to_integral_value(rounding=ROUND_DOWN) * self.step_size
