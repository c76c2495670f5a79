"""ccxt structures (orders, trades, balances) to pivotal's domain values, at the edge.

- :func:`order_status`: ccxt's ``open``/``closed``/``canceled``/... plus the filled amount
  → :class:`~pivotal.core.orders.OrderStatus` (``open`` with a fill is PARTIALLY_FILLED).
- :func:`request_from_venue`: an :class:`OrderRequest` for an order pivotal did not place
  (adopted at reconciliation); stop-limit orders become stop orders (their trigger kept).
- :func:`order_from_venue`: the venue's view of one order as a new :class:`Order` snapshot.
- :func:`fill_from_trade`: one execution; the fee converted to the quote currency (a fee in
  the base asset × the trade price; another asset × its quote mark when known, else 0 with
  the raw fee kept in ``raw``).
- :func:`balances_from`: ``{asset: (free, locked)}`` from a ccxt balance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from pivotal.core.orders import (
    Fill,
    Liquidity,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
)

__all__ = [
    "balances_from",
    "fill_from_trade",
    "order_from_venue",
    "order_status",
    "request_from_venue",
    "trade_client_id",
]

_STATUSES = {
    "closed": OrderStatus.FILLED,
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "cancelled": OrderStatus.CANCELLED,
    "canceling": OrderStatus.PENDING_CANCEL,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}


def _num(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def order_status(raw: Mapping[str, Any]) -> OrderStatus:
    """The status of a ccxt order (no status: acknowledged, OPEN)."""
    status = str(raw.get("status") or "open").lower()
    if status in _STATUSES:
        return _STATUSES[status]
    filled = _num(raw.get("filled")) or 0.0
    return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.OPEN


def _trigger(raw: Mapping[str, Any]) -> float | None:
    for key in ("triggerPrice", "stopPrice", "stopLossPrice", "takeProfitPrice"):
        value = _num(raw.get(key))
        if value is not None and value > 0:
            return value
    return None


def request_from_venue(raw: Mapping[str, Any], *, symbol: str | None = None) -> OrderRequest | None:
    """A request describing a venue order; None when it has no usable size or side."""
    side = str(raw.get("side") or "").lower()
    if side not in ("buy", "sell"):
        return None
    quantity = _num(raw.get("amount")) or _num(raw.get("filled"))
    if quantity is None or quantity <= 0:
        return None
    kind = str(raw.get("type") or "market").lower()
    trigger = _trigger(raw)
    price = _num(raw.get("price"))
    if trigger is not None or "stop" in kind or "take_profit" in kind:
        order_type = OrderType.TAKE_PROFIT if "take_profit" in kind else OrderType.STOP_MARKET
        return OrderRequest(
            symbol=symbol or str(raw["symbol"]),
            side=OrderSide(side),
            type=order_type,
            quantity=quantity,
            stop_price=trigger or price,
            client_order_id=raw.get("clientOrderId"),
        )
    if kind.startswith("limit") and price is not None and price > 0:
        return OrderRequest(
            symbol=symbol or str(raw["symbol"]),
            side=OrderSide(side),
            type=OrderType.LIMIT,
            quantity=quantity,
            limit_price=price,
            client_order_id=raw.get("clientOrderId"),
        )
    return OrderRequest(
        symbol=symbol or str(raw["symbol"]),
        side=OrderSide(side),
        type=OrderType.MARKET,
        quantity=quantity,
        client_order_id=raw.get("clientOrderId"),
    )


def order_from_venue(
    raw: Mapping[str, Any],
    *,
    existing: Order | None,
    request: OrderRequest | None,
    now_ms: int,
    fees_paid: float | None = None,
    reason: str | None = None,
) -> Order | None:
    """The order as the venue reports it (``existing``: our last snapshot of it, whose
    request and creation time are kept). None when ``raw`` cannot be read as an order."""
    req = existing.request if existing is not None else request
    if req is None:
        req = request_from_venue(raw)
        if req is None:
            return None
    # our own id wins over the reply's: Binance answers a cancel with the cancel request's
    # id in ``clientOrderId`` (the order's is ``origClientOrderId``), and ccxt reads that one
    cid = existing.client_order_id if existing is not None else str(raw.get("clientOrderId") or "")
    if not cid:
        cid = f"venue-{raw.get('id')}"
    status = order_status(raw)
    filled = _num(raw.get("filled"))
    if filled is None:
        filled = existing.filled_quantity if existing is not None else 0.0
    average = _num(raw.get("average"))
    if average is None and filled > 0:
        cost = _num(raw.get("cost"))
        average = cost / filled if cost else (existing.average_fill_price if existing else None)
    updated = (
        raw.get("lastUpdateTimestamp") or raw.get("lastTradeTimestamp") or raw.get("timestamp")
    )
    created = existing.created_ms if existing is not None else int(raw.get("timestamp") or now_ms)
    quantity = _num(raw.get("amount"))
    if quantity is None:
        quantity = existing.quantity if existing is not None else req.quantity
    if status is OrderStatus.FILLED and quantity is not None and filled < quantity:
        # a market buy sized in quote (or a venue that reports "closed" for fully filled)
        quantity = filled if filled > 0 else quantity
    venue_id = raw.get("id")
    return Order(
        request=req,
        client_order_id=cid,
        order_id=existing.order_id if existing is not None else cid,
        status=status,
        created_ms=created,
        updated_ms=int(updated or now_ms),
        quantity=quantity,
        filled_quantity=float(filled),
        average_fill_price=average,
        fees_paid=fees_paid if fees_paid is not None else (existing.fees_paid if existing else 0.0),
        reason=reason if reason is not None else (existing.reason if existing else ""),
        venue_order_id=str(venue_id)
        if venue_id not in (None, "")
        else (existing.venue_order_id if existing else None),
        raw=raw.get("info") if isinstance(raw.get("info"), Mapping) else None,
    )


def trade_client_id(raw: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The client order id a trade carries (ccxt's ``clientOrderId`` or the venue's raw
    field named in ``keys``), or None."""
    cid = raw.get("clientOrderId")
    if cid:
        return str(cid)
    info = raw.get("info")
    if isinstance(info, Mapping):
        for key in keys:
            value = info.get(key)
            if value:
                return str(value)
    return None


def _fee_in_quote(
    raw: Mapping[str, Any],
    *,
    base: str,
    quote: str,
    price: float,
    mark_of: Callable[[str], float | None],
) -> float:
    fees = raw.get("fees") or ([raw["fee"]] if raw.get("fee") else [])
    total = 0.0
    for fee in fees:
        if not isinstance(fee, Mapping):
            continue
        cost = _num(fee.get("cost"))
        if not cost:
            continue
        currency = str(fee.get("currency") or quote)
        if currency == quote:
            total += cost
        elif currency == base:
            total += cost * price
        else:
            mark = mark_of(f"{currency}/{quote}")
            total += cost * mark if mark else 0.0
    return abs(total)


def fill_from_trade(
    raw: Mapping[str, Any],
    *,
    client_order_id: str,
    base: str,
    quote: str,
    mark_of: Callable[[str], float | None],
    tag: str = "",
    now_ms: int,
    venue_order_id: str | None = None,
    symbol: str | None = None,
    side: str | None = None,
) -> Fill | None:
    """One execution as a :class:`Fill` (None when it has no positive amount and price)."""
    amount = _num(raw.get("amount"))
    price = _num(raw.get("price"))
    if not amount or amount <= 0 or not price or price <= 0:
        return None
    side_text = str(raw.get("side") or side or "").lower()
    if side_text not in ("buy", "sell"):
        return None
    fee = _fee_in_quote(raw, base=base, quote=quote, price=price, mark_of=mark_of)
    trade_id = raw.get("id")
    return Fill(
        order_id=client_order_id,
        client_order_id=client_order_id,
        symbol=symbol or str(raw.get("symbol")),
        side=OrderSide(side_text),
        quantity=amount,
        price=price,
        fee=fee,
        liquidity=Liquidity.MAKER if raw.get("takerOrMaker") == "maker" else Liquidity.TAKER,
        timestamp=int(raw.get("timestamp") or now_ms),
        tag=tag,
        venue_order_id=str(raw.get("order") or venue_order_id or "") or None,
        venue_trade_id=None if trade_id in (None, "") else str(trade_id),
        raw=raw.get("info") if isinstance(raw.get("info"), Mapping) else None,
    )


def balances_from(raw: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """``{asset: (free, locked)}`` of a ccxt balance (assets with numbers only)."""
    out: dict[str, tuple[float, float]] = {}
    skip = {"info", "free", "used", "total", "timestamp", "datetime", "debt"}
    for asset, entry in raw.items():
        if asset in skip or not isinstance(entry, Mapping):
            continue
        free = _num(entry.get("free"))
        used = _num(entry.get("used"))
        total = _num(entry.get("total"))
        if free is None and used is None and total is None:
            continue
        if free is None:
            free = max((total or 0.0) - (used or 0.0), 0.0)
        if used is None:
            used = max((total or 0.0) - free, 0.0)
        out[str(asset)] = (free, used)
    return out
