"""The live broker's in-memory book: its orders, what changed since the last drain, the
venue's balances, the marks and the stops it watches itself.

Everything here runs on the broker's one caller thread (the trading loop); the user stream
only hands raw venue data over a queue. Each change becomes an :class:`OrderEvent` / a
:class:`Fill` for ``drain_events`` and, unless told otherwise, a journal entry; the broker
appends the collected entries in one batch (:meth:`BrokerBook.take_entries`).

Status changes follow :data:`~pivotal.core.orders.ORDER_TRANSITIONS`; an update that would go
backwards (an older stream message after a newer REST reply: a terminal order reopened, a
filled quantity shrinking, PARTIALLY_FILLED back to OPEN) is stale and ignored.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from pivotal.core.journal import NewEntry, fill_entry_data, order_to_dict
from pivotal.core.orders import (
    ORDER_TRANSITIONS,
    Fill,
    Order,
    OrderEvent,
    OrderSide,
    OrderStatus,
    OrderType,
)
from pivotal.core.ports import BrokerEvent

__all__ = ["LOCAL_STOP_REASON", "BrokerBook", "LocalStop"]

log = logging.getLogger(__name__)

LOCAL_STOP_REASON = "stop watched locally (venue has no spot stop orders)"
_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class LocalStop:
    """A stop or take-profit the broker watches: it fires a market order (with the stop's
    own client id) when a trade or candle crosses ``stop_price``."""

    client_order_id: str
    symbol: str
    side: OrderSide
    kind: OrderType
    stop_price: float

    def crossed(self, low: float, high: float) -> bool:
        """Whether prices from ``low`` to ``high`` reach the trigger: a sell stop and a buy
        take-profit at or below it, a buy stop and a sell take-profit at or above it."""
        falling = (self.kind is OrderType.STOP_MARKET) == (self.side is OrderSide.SELL)
        return low <= self.stop_price if falling else high >= self.stop_price


class BrokerBook:
    """Orders by client id, balances, marks, local stops, and the pending events/entries."""

    def __init__(self, now_ms: Any) -> None:
        self._now = now_ms
        self.orders: dict[str, Order] = {}
        self.by_venue_id: dict[str, str] = {}
        self.balances: dict[str, tuple[float, float]] = {}
        self.marks: dict[str, float] = {}
        self.local_stops: dict[str, LocalStop] = {}
        self._events: list[BrokerEvent] = []
        self._entries: list[NewEntry] = []
        self.stale_updates = 0

    # -- pending output -------------------------------------------------------------------
    def take_events(self) -> list[BrokerEvent]:
        events, self._events = self._events, []
        return events

    def take_entries(self) -> list[NewEntry]:
        entries, self._entries = self._entries, []
        return entries

    def journal(self, kind: str, data: dict[str, Any], order: Order | None = None) -> None:
        """Queue a journal entry (about ``order`` when given)."""
        self._entries.append(
            NewEntry(
                self._now(),
                kind,
                data,
                order.client_order_id if order else None,
                order.symbol if order else None,
            )
        )

    # -- orders ---------------------------------------------------------------------------
    def add_new(self, order: Order) -> None:
        """A NEW order (its intent is journaled by the caller)."""
        self.orders[order.client_order_id] = order

    def client_id_of(self, venue_order_id: Any) -> str | None:
        return self.by_venue_id.get(str(venue_order_id)) if venue_order_id else None

    def record(
        self, order: Order, reason: str = "", *, journal: bool = True, force: bool = False
    ) -> bool:
        """Take ``order`` as the latest snapshot of its client id when it is a legal step
        from the current one (or ``force``: reconciliation, the venue's word); emits an
        :class:`OrderEvent` and queues an ``order`` entry. Returns whether it was taken."""
        cid = order.client_order_id
        old = self.orders.get(cid)
        previous = old.status if old is not None else None
        if old is not None and not force and not self._advances(old, order):
            return False
        if old is not None and old.fees_paid > order.fees_paid:
            order = dataclasses.replace(order, fees_paid=old.fees_paid)
        self.orders[cid] = order
        if order.venue_order_id:
            self.by_venue_id[str(order.venue_order_id)] = cid
        if order.status.is_terminal:
            self.local_stops.pop(cid, None)
        changed = (
            old is None
            or old.status is not order.status
            or (abs(old.filled_quantity - order.filled_quantity) > _EPS)
        )
        if changed:
            self._events.append(OrderEvent(self._now(), order, previous, reason or order.reason))
        if journal and (changed or old is None or old.venue_order_id != order.venue_order_id):
            self._entries.append(
                NewEntry(
                    self._now(),
                    "order",
                    {"order": order_to_dict(order)},
                    cid,
                    order.symbol,
                )
            )
        return True

    def _advances(self, old: Order, new: Order) -> bool:
        if old.status.is_terminal:
            if new.status is not old.status or new.filled_quantity > old.filled_quantity + _EPS:
                self.stale_updates += 1
            return False
        if new.filled_quantity < old.filled_quantity - _EPS:
            self.stale_updates += 1
            return False
        if new.status is old.status:
            return abs(new.filled_quantity - old.filled_quantity) > _EPS or (
                new.venue_order_id is not None and new.venue_order_id != old.venue_order_id
            )
        if old.status is OrderStatus.PENDING_CANCEL and new.status is OrderStatus.OPEN:
            return False  # only a refused cancel reopens an order (the broker forces that)
        if new.status not in ORDER_TRANSITIONS[old.status]:
            self.stale_updates += 1
            return False
        return True

    def transition(
        self, cid: str, status: OrderStatus, reason: str, *, journal: bool = True
    ) -> Order:
        """Move an order to ``status`` (a local decision: sent, cancelled locally...)."""
        old = self.orders[cid]
        new = dataclasses.replace(old, status=status, updated_ms=self._now(), reason=reason)
        self.record(new, reason, journal=journal, force=True)
        return self.orders[cid]

    def add_fee(self, cid: str, fee: float) -> None:
        order = self.orders.get(cid)
        if order is not None and fee:
            self.orders[cid] = dataclasses.replace(order, fees_paid=order.fees_paid + fee)

    def fill(self, fill: Fill, *, journal: bool = True) -> None:
        """Emit a new fill (the caller checked it is new) and queue its ``fill`` entry."""
        self._events.append(fill)
        self.add_fee(fill.client_order_id, fill.fee)
        if journal:
            self._entries.append(
                NewEntry(
                    self._now(), "fill", fill_entry_data(fill), fill.client_order_id,
                    fill.symbol,
                )
            )  # fmt: skip

    def active(self, symbol: str | None = None) -> list[Order]:
        return [
            o
            for o in self.orders.values()
            if o.status.is_active and (symbol is None or o.symbol == symbol)
        ]

    # -- balances, marks, stops -------------------------------------------------------------
    def set_balances(self, balances: dict[str, tuple[float, float]], *, replace: bool) -> None:
        """Merge (or with ``replace``, set) ``{asset: (free, locked)}``."""
        if replace:
            self.balances = dict(balances)
        else:
            self.balances.update(balances)

    def held(self, asset: str) -> float:
        free, locked = self.balances.get(asset, (0.0, 0.0))
        return free + locked

    def free(self, asset: str) -> float:
        return self.balances.get(asset, (0.0, 0.0))[0]

    def arm(self, order: Order) -> None:
        request = order.request
        assert request.stop_price is not None
        self.local_stops[order.client_order_id] = LocalStop(
            order.client_order_id, order.symbol, order.side, order.type, request.stop_price
        )

    def crossed_stops(self, symbol: str, low: float, high: float) -> list[LocalStop]:
        return [s for s in self.local_stops.values() if s.symbol == symbol and s.crossed(low, high)]
