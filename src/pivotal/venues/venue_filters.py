"""A symbol's trading filters, applied before an order is sent.

:class:`SymbolFilters` is read from a ccxt market (``precision`` and ``limits``; on Binance
also the raw ``MARKET_LOT_SIZE`` and ``NOTIONAL`` filters). :meth:`SymbolFilters.apply`
returns the request as the venue will accept it, or the reason it would be refused, so a
refusal is an order ``REJECTED`` with a reason that names the filter and the numbers instead
of a round trip ending in Binance -1013.

Rounding (all with decimal arithmetic, so 0.3 stays 0.3):

- **quantity**: down to the lot step (never more than asked for);
- **limit price**: buys down, sells up to the tick: never pay more, never sell for less than
  the price asked;
- **stop / take-profit trigger**: toward the market, so the trigger fires no later than
  asked (a sell stop and a buy take-profit up, a buy stop and a sell take-profit down).

Units: quantities in the base asset, prices in the quote asset, notional = quantity × price
in the quote asset.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from pivotal.core.orders import OrderRequest, OrderSide, OrderType

__all__ = ["FilterResult", "SymbolFilters", "round_to_step"]

_TICK_SIZE = 4  # ccxt's precisionMode values
_DECIMAL_PLACES = 2


def round_to_step(value: float, step: float | None, *, up: bool = False) -> float:
    """``value`` rounded down (or ``up``) to a multiple of ``step`` (unchanged without one)."""
    if not step or step <= 0:
        return value
    d_step = Decimal(repr(step))
    units = (Decimal(repr(value)) / d_step).to_integral_value(ROUND_CEILING if up else ROUND_FLOOR)
    return float(units * d_step)


def _fmt(value: float) -> str:
    """``value`` in plain notation (0.00001, not 1e-05), at most 12 significant digits."""
    text = format(Decimal(f"{value:.12g}").normalize(), "f")
    return text


@dataclass(frozen=True, slots=True)
class FilterResult:
    """``request`` adjusted to the filters, or ``refusal`` (the reason) when it cannot pass;
    ``notes`` list what was changed (``quantity 0.123456 → 0.12345 (step 0.00001)``)."""

    request: OrderRequest | None
    refusal: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.refusal is None


@dataclass(frozen=True, slots=True)
class SymbolFilters:
    """One symbol's filters (None: the venue sets no such limit)."""

    symbol: str
    base: str
    quote: str
    amount_step: float | None = None
    price_tick: float | None = None
    min_qty: float | None = None
    max_qty: float | None = None
    market_min_qty: float | None = None
    market_max_qty: float | None = None
    market_step: float | None = None
    min_notional: float | None = None
    max_notional: float | None = None
    notional_applies_to_market: bool = True
    min_price: float | None = None
    max_price: float | None = None
    active: bool = True
    spot: bool = True

    @classmethod
    def from_market(
        cls, market: Mapping[str, Any], precision_mode: int = _TICK_SIZE
    ) -> SymbolFilters:
        """The filters of a ccxt market (``client.markets[symbol]``)."""

        def step(value: Any) -> float | None:
            if value is None:
                return None
            number = float(value)
            if precision_mode == _DECIMAL_PLACES:
                return 10.0 ** (-number)
            return number if number > 0 else None

        def num(value: Any) -> float | None:
            if value is None:
                return None
            number = float(value)
            return number if math.isfinite(number) and number > 0 else None

        precision = market.get("precision") or {}
        limits = market.get("limits") or {}
        amount = limits.get("amount") or {}
        price = limits.get("price") or {}
        cost = limits.get("cost") or {}
        mkt = limits.get("market") or {}
        raw_filters = {
            f.get("filterType"): f
            for f in ((market.get("info") or {}).get("filters") or [])
            if isinstance(f, Mapping)
        }
        market_lot = raw_filters.get("MARKET_LOT_SIZE") or {}
        notional = raw_filters.get("NOTIONAL") or {}
        applies = notional.get("applyMinToMarket")
        return cls(
            symbol=str(market["symbol"]),
            base=str(market.get("base") or market["symbol"].split("/")[0]),
            quote=str(market.get("quote") or market["symbol"].split("/")[-1]),
            amount_step=step(precision.get("amount")),
            price_tick=step(precision.get("price")),
            min_qty=num(amount.get("min")),
            max_qty=num(amount.get("max")),
            market_min_qty=num(mkt.get("min")),
            market_max_qty=num(mkt.get("max")),
            market_step=num(market_lot.get("stepSize")),
            min_notional=num(cost.get("min")),
            max_notional=num(cost.get("max")),
            notional_applies_to_market=True if applies is None else bool(applies),
            min_price=num(price.get("min")),
            max_price=num(price.get("max")),
            active=market.get("active") is not False,
            spot=bool(market.get("spot", True)),
        )

    def quantity(self, quantity: float, *, market_order: bool) -> float:
        """``quantity`` rounded down to the step that applies to the order type."""
        step = self.market_step if market_order and self.market_step else self.amount_step
        return round_to_step(quantity, step)

    def price(self, price: float, *, up: bool) -> float:
        return round_to_step(price, self.price_tick, up=up)

    def apply(self, request: OrderRequest, reference_price: float | None = None) -> FilterResult:
        """``request`` checked and rounded (module docstring). ``reference_price`` prices a
        market order for the notional check (the last mark); without one that check is
        skipped for market orders and a note says so."""
        if request.quantity is None:
            return FilterResult(None, "the order has no quantity (equity_fraction only)")
        notes: list[str] = []
        is_market = request.type is not OrderType.LIMIT
        qty = self.quantity(request.quantity, market_order=is_market)
        step = self.market_step if is_market and self.market_step else self.amount_step
        if qty != request.quantity:
            notes.append(
                f"quantity {_fmt(request.quantity)} → {_fmt(qty)} (step {_fmt(step or 0)})"
            )
        min_qty = self.market_min_qty if is_market and self.market_min_qty else self.min_qty
        max_qty = self.market_max_qty if is_market and self.market_max_qty else self.max_qty
        unit = self.base
        if qty <= 0 or (min_qty is not None and qty < min_qty):
            return FilterResult(
                None,
                f"filter min_qty: quantity {_fmt(request.quantity)} {unit} (rounded down to "
                f"{_fmt(qty)} at step {_fmt(step or 0)}) is below the minimum "
                f"{_fmt(min_qty or 0)} {unit} of {self.symbol}",
                tuple(notes),
            )
        if max_qty is not None and qty > max_qty:
            return FilterResult(
                None,
                f"filter max_qty: quantity {_fmt(qty)} {unit} is above the maximum "
                f"{_fmt(max_qty)} {unit} of {self.symbol}",
                tuple(notes),
            )
        changes: dict[str, Any] = {"quantity": qty}
        sell = request.side is OrderSide.SELL
        limit_price = request.limit_price
        if limit_price is not None:
            limit_price = self.price(limit_price, up=sell)
            if limit_price <= 0:
                return FilterResult(
                    None,
                    f"filter price_tick: limit price {_fmt(request.limit_price or 0)} rounds to "
                    f"0 at tick {_fmt(self.price_tick or 0)}",
                    tuple(notes),
                )
            if limit_price != request.limit_price:
                notes.append(f"limit price {_fmt(request.limit_price or 0)} → {_fmt(limit_price)}")
            changes["limit_price"] = limit_price
        stop_price = request.stop_price
        if stop_price is not None:
            # toward the market: sell stop / buy take-profit up, buy stop / sell TP down
            up = sell if request.type is OrderType.STOP_MARKET else not sell
            stop_price = self.price(stop_price, up=up)
            if stop_price <= 0:
                return FilterResult(
                    None,
                    f"filter price_tick: stop price {_fmt(request.stop_price or 0)} rounds to 0 "
                    f"at tick {_fmt(self.price_tick or 0)}",
                    tuple(notes),
                )
            if stop_price != request.stop_price:
                notes.append(f"stop price {_fmt(request.stop_price or 0)} → {_fmt(stop_price)}")
            changes["stop_price"] = stop_price
        for name, value in (("limit", limit_price), ("stop", stop_price)):
            if value is None:
                continue
            if self.min_price is not None and value < self.min_price:
                return FilterResult(
                    None,
                    f"filter min_price: {name} price {_fmt(value)} {self.quote} is below the "
                    f"minimum {_fmt(self.min_price)} of {self.symbol}",
                    tuple(notes),
                )
            if self.max_price is not None and value > self.max_price:
                return FilterResult(
                    None,
                    f"filter max_price: {name} price {_fmt(value)} {self.quote} is above the "
                    f"maximum {_fmt(self.max_price)} of {self.symbol}",
                    tuple(notes),
                )
        price = limit_price or stop_price or reference_price
        check_min = self.min_notional is not None and (
            not is_market or self.notional_applies_to_market
        )
        if price is None:
            if check_min:
                notes.append("minimum notional not checked: no price known yet")
        else:
            value = qty * price
            if check_min and self.min_notional is not None and value < self.min_notional:
                return FilterResult(
                    None,
                    f"filter min_notional: order value {_fmt(value)} {self.quote} "
                    f"({_fmt(qty)} {unit} × {_fmt(price)}) is below the minimum "
                    f"{_fmt(self.min_notional)} {self.quote} of {self.symbol}",
                    tuple(notes),
                )
            if self.max_notional is not None and value > self.max_notional:
                return FilterResult(
                    None,
                    f"filter max_notional: order value {_fmt(value)} {self.quote} is above "
                    f"the maximum {_fmt(self.max_notional)} {self.quote} of {self.symbol}",
                    tuple(notes),
                )
        return FilterResult(dataclasses.replace(request, **changes), None, tuple(notes))
