"""The order journal's port and its codecs: what a trading node writes *before* it acts.

Every decision, order intent, submission, acknowledgement, order change, fill, cancel
request, reconciliation difference, equity snapshot, alert and kill-switch action of a paper
or live session is one :class:`JournalEntry`. ``OrderJournal.append`` makes a batch durable
(one transaction) before it returns, so a node that crashes right after an ``append`` finds
the entries at restart; a node rebuilds its orders, fills and positions from the entries
(:mod:`pivotal.trading.journal_state`) and then reconciles with the venue.

Entry kinds (``JournalEntry.kind``) and what ``data`` holds:

- ``session``: a node started or stopped (``event``: start | stop | restart, ``mode``,
  ``venue``, ``run_file``);
- ``decision``: a decision record (the kernel's);
- ``intent``: an order about to be sent: ``request`` (:func:`request_to_dict`), written
  before the first byte goes to the venue;
- ``submitted``: the request left (``attempt``: 1, 2, ...);
- ``unknown``: the reply was lost (timeout, 5xx, Binance -1007): the order is looked up by
  its client id, never sent again blindly (``error``);
- ``order``: the venue's view of the order changed (``order``: :func:`order_to_dict`);
- ``fill``: one execution (``fill``: :func:`fill_to_dict`), deduplicated by
  ``venue_trade_id``; ``fee_assets`` when the venue charged the fee in other assets than the
  quote (:func:`fill_entry_data`);
- ``cancel_request``: a cancel about to be sent;
- ``reconcile``: one difference found at reconciliation (``field``, ``local``, ``venue``,
  ``action``);
- ``equity``: ``equity``, ``cash``, ``positions``;
- ``alert``: ``level``, ``message``;
- ``kill``: the kill switch fired (``reason``, ``cancelled``, ``flattened``);
- ``command``: a person's command to a running node (thresholds, entries, force exit, kill,
  process toggles), written before it is applied (``phase``: ``request``, with ``command``,
  ``args``, ``source``) and again with its outcome (``phase``: ``result``, ``accepted``,
  ``detail``); see :mod:`pivotal.node.commands`.

Times are UTC ms from the node's clock. ``data`` is JSON data (str, int, float, bool, None,
lists and mappings of those).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

from pivotal.core.orders import (
    Fill,
    Liquidity,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)

__all__ = [
    "KINDS",
    "JournalEntry",
    "JournalKind",
    "NewEntry",
    "OrderJournal",
    "fee_assets",
    "fill_entry_data",
    "fill_from_dict",
    "fill_to_dict",
    "order_from_dict",
    "order_to_dict",
    "request_from_dict",
    "request_to_dict",
]

JournalKind = Literal[
    "session",
    "decision",
    "intent",
    "submitted",
    "unknown",
    "order",
    "fill",
    "cancel_request",
    "reconcile",
    "equity",
    "alert",
    "kill",
    "command",
]
KINDS: Final[tuple[str, ...]] = JournalKind.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry to append (the journal gives it its ``seq``)."""

    ts: int
    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)
    client_order_id: str | None = None
    symbol: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"journal kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if isinstance(self.ts, bool) or not isinstance(self.ts, int):
            raise TypeError(f"journal ts must be int UTC ms, got {self.ts!r}")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A stored entry: ``seq`` counts from 1 in append order across the whole journal."""

    seq: int
    ts: int
    kind: str
    data: Mapping[str, Any]
    client_order_id: str | None = None
    symbol: str | None = None


@runtime_checkable
class OrderJournal(Protocol):
    """A durable, append-only log of a trading session (module docstring)."""

    def append(self, entries: Sequence[NewEntry]) -> list[int]:
        """Write ``entries`` in one transaction; durable when this returns; their seqs."""
        ...

    def entries(
        self, *, since_seq: int = 0, kinds: Sequence[str] | None = None
    ) -> Iterator[JournalEntry]:
        """Entries with ``seq > since_seq`` (of ``kinds`` when given), in seq order."""
        ...

    def close(self) -> None: ...


# -- codecs: domain values <-> JSON data ------------------------------------------------------
def request_to_dict(request: OrderRequest) -> dict[str, Any]:
    return {
        "symbol": request.symbol,
        "side": request.side.value,
        "type": request.type.value,
        "quantity": request.quantity,
        "equity_fraction": request.equity_fraction,
        "limit_price": request.limit_price,
        "stop_price": request.stop_price,
        "reduce_only": request.reduce_only,
        "time_in_force": request.time_in_force.value,
        "expire_at_ms": request.expire_at_ms,
        "client_order_id": request.client_order_id,
        "tag": request.tag,
    }


def request_from_dict(data: Mapping[str, Any]) -> OrderRequest:
    return OrderRequest(
        symbol=str(data["symbol"]),
        side=OrderSide(data["side"]),
        type=OrderType(data.get("type", "market")),
        quantity=data.get("quantity"),
        equity_fraction=data.get("equity_fraction"),
        limit_price=data.get("limit_price"),
        stop_price=data.get("stop_price"),
        reduce_only=bool(data.get("reduce_only", False)),
        time_in_force=TimeInForce(data.get("time_in_force", "gtc")),
        expire_at_ms=data.get("expire_at_ms"),
        client_order_id=data.get("client_order_id"),
        tag=str(data.get("tag", "")),
    )


def order_to_dict(order: Order) -> dict[str, Any]:
    """The order without ``raw`` (the venue's payload is journaled with the entry that
    brought it when wanted, not with every snapshot)."""
    return {
        "request": request_to_dict(order.request),
        "client_order_id": order.client_order_id,
        "order_id": order.order_id,
        "status": order.status.value,
        "created_ms": order.created_ms,
        "updated_ms": order.updated_ms,
        "quantity": order.quantity,
        "filled_quantity": order.filled_quantity,
        "average_fill_price": order.average_fill_price,
        "fees_paid": order.fees_paid,
        "reason": order.reason,
        "venue_order_id": order.venue_order_id,
    }


def order_from_dict(data: Mapping[str, Any]) -> Order:
    return Order(
        request=request_from_dict(data["request"]),
        client_order_id=str(data["client_order_id"]),
        order_id=str(data["order_id"]),
        status=OrderStatus(data["status"]),
        created_ms=int(data["created_ms"]),
        updated_ms=int(data["updated_ms"]),
        quantity=data.get("quantity"),
        filled_quantity=float(data.get("filled_quantity", 0.0)),
        average_fill_price=data.get("average_fill_price"),
        fees_paid=float(data.get("fees_paid", 0.0)),
        reason=str(data.get("reason", "")),
        venue_order_id=data.get("venue_order_id"),
    )


def fill_to_dict(fill: Fill) -> dict[str, Any]:
    return {
        "order_id": fill.order_id,
        "client_order_id": fill.client_order_id,
        "symbol": fill.symbol,
        "side": fill.side.value,
        "quantity": fill.quantity,
        "price": fill.price,
        "fee": fill.fee,
        "liquidity": fill.liquidity.value,
        "timestamp": fill.timestamp,
        "tag": fill.tag,
        "venue_order_id": fill.venue_order_id,
        "venue_trade_id": fill.venue_trade_id,
    }


def fee_assets(raw: Mapping[str, Any] | None) -> dict[str, float]:
    """The fee of a venue trade per asset it was paid in (a ccxt trade's ``fee`` / ``fees``
    with ``currency`` and ``cost``, or Binance's ``commission`` / ``commissionAsset``); empty
    when it names none. Binance charges the
    received asset (BTC on a buy of BTC/USDT): a ``fill`` entry carries this as
    ``fee_assets`` so the journal's balances leave the fee where the venue took it."""
    if not isinstance(raw, Mapping):
        return {}
    fees = raw.get("fees") or ([raw["fee"]] if raw.get("fee") else [])
    if not fees and raw.get("commissionAsset"):  # Binance's own trade (myTrades, FULL fills)
        fees = [{"currency": raw["commissionAsset"], "cost": raw.get("commission")}]
    if not fees and isinstance(raw.get("info"), Mapping):  # a ccxt trade without its fee
        return fee_assets(raw["info"])
    out: dict[str, float] = {}
    for fee in fees:
        if not isinstance(fee, Mapping) or not fee.get("currency"):
            continue
        try:
            cost = abs(float(fee.get("cost") or 0.0))
        except (TypeError, ValueError):
            continue
        if cost:
            asset = str(fee["currency"])
            out[asset] = out.get(asset, 0.0) + cost
    return out


def fill_entry_data(fill: Fill) -> dict[str, Any]:
    """The ``data`` of a ``fill`` entry: the fill, and ``fee_assets`` when its raw trade
    names the assets the fee was paid in."""
    data: dict[str, Any] = {"fill": fill_to_dict(fill)}
    native = fee_assets(fill.raw)
    if native:
        data["fee_assets"] = native
    return data


def fill_from_dict(data: Mapping[str, Any]) -> Fill:
    return Fill(
        order_id=str(data["order_id"]),
        client_order_id=str(data["client_order_id"]),
        symbol=str(data["symbol"]),
        side=OrderSide(data["side"]),
        quantity=float(data["quantity"]),
        price=float(data["price"]),
        fee=float(data["fee"]),
        liquidity=Liquidity(data.get("liquidity", "taker")),
        timestamp=int(data["timestamp"]),
        tag=str(data.get("tag", "")),
        venue_order_id=data.get("venue_order_id"),
        venue_trade_id=data.get("venue_trade_id"),
    )
