"""The paper broker's orders: working state, snapshots, events, ids and the journal.

Private to :mod:`pivotal.trading.brokers.paper`: the broker decides *what* happens to an
order; :class:`PaperLedger` makes the frozen :class:`~pivotal.core.orders.Order` snapshot of
each change (through :data:`~pivotal.core.orders.ORDER_TRANSITIONS`), queues the events and
fills for ``drain_events`` and, with an :class:`~pivotal.core.journal.OrderJournal`, the
journal entries the exchange broker writes (``intent``, ``cancel_request``, ``order``,
``fill``), made durable by :meth:`PaperLedger.flush` before the broker returns.

Ids are deterministic counters: orders ``{prefix}-o{n:08d}`` (also their
``venue_order_id``), client ids the broker assigns ``{prefix}-{n:08d}``, fills'
``venue_trade_id`` ``{prefix}-t{n:08d}``.
"""

from __future__ import annotations

from typing import Any

from pivotal.core.journal import (
    NewEntry,
    OrderJournal,
    fill_to_dict,
    order_to_dict,
    request_to_dict,
)
from pivotal.core.orders import (
    ORDER_TRANSITIONS,
    Fill,
    Liquidity,
    Order,
    OrderEvent,
    OrderRequest,
    OrderStatus,
)

__all__ = ["ARMED", "RESTING", "WAIT_BOOK", "PaperLedger", "PaperOrder"]

#: Where a working order is: waiting for a book to take liquidity from (a market order, a
#: limit before it reached the venue, a triggered stop), resting on the book (a limit the
#: prints may fill), or armed (a stop or take-profit waiting for its trigger print).
WAIT_BOOK, RESTING, ARMED = 0, 1, 2

_FIELDS = frozenset({"quantity", "filled_quantity", "average_fill_price", "fees_paid"})


class PaperOrder:
    """One order's mutable working state beside its frozen :class:`Order` snapshot.

    ``lots``/``quantity``: the size in whole lots and in base units; ``eligible_ms``: the
    earliest event time of a book or print it may use; ``after_book``: the serial of the
    newest book when it started waiting (it takes a later one); ``limit``/``trigger``: its
    prices on the tick grid.
    """

    __slots__ = (
        "after_book",
        "average",
        "eligible_ms",
        "filled_lots",
        "filled_qty",
        "limit",
        "lots",
        "note",
        "order",
        "phase",
        "quantity",
        "request",
        "seq",
        "trigger",
    )

    def __init__(self, order: Order, seq: int) -> None:
        self.order = order
        self.request = order.request
        self.seq = seq
        self.lots = 0
        self.quantity = 0.0
        self.filled_lots = 0
        self.filled_qty = 0.0
        self.average: float | None = None
        self.eligible_ms = 0
        self.after_book = 0
        self.phase = WAIT_BOOK
        self.limit: float | None = None
        self.trigger: float | None = None
        self.note = ""

    @property
    def symbol(self) -> str:
        return self.request.symbol

    @property
    def remaining_lots(self) -> int:
        return self.lots - self.filled_lots

    @property
    def remaining_qty(self) -> float:
        return max(self.quantity - self.filled_qty, 0.0)


class PaperLedger:
    """Orders by client id, the queued events and journal entries, and the id counters."""

    def __init__(self, prefix: str, journal: OrderJournal | None) -> None:
        self.prefix = prefix
        self.journal = journal
        self.orders: dict[str, PaperOrder] = {}
        self.events: list[OrderEvent | Fill] = []
        self._entries: list[NewEntry] = []
        self._seq = 0
        self._auto = 0
        self._trades = 0

    def resume(self, *, order_seq: int, auto: int, trades: int) -> None:
        """Continue the id counters after a restored journal's highest ids (never lower)."""
        self._seq = max(self._seq, order_seq)
        self._auto = max(self._auto, auto)
        self._trades = max(self._trades, trades)

    def next_client_id(self) -> str:
        while True:
            self._auto += 1
            cid = f"{self.prefix}-{self._auto:08d}"
            if cid not in self.orders:
                return cid

    def work(self, client_order_id: str) -> PaperOrder:
        work = self.orders.get(client_order_id)
        if work is None:
            raise KeyError(
                f"no order with client_order_id {client_order_id!r} was submitted to this "
                "paper broker"
            )
        return work

    def open(self, request: OrderRequest, cid: str, now: int) -> PaperOrder:
        """Register a NEW order and journal its ``intent`` (made durable at once)."""
        self._seq += 1
        order_id = f"{self.prefix}-o{self._seq:08d}"
        order = Order(
            request=request,
            client_order_id=cid,
            order_id=order_id,
            status=OrderStatus.NEW,
            created_ms=now,
            updated_ms=now,
            quantity=None,
            venue_order_id=order_id,
        )
        work = PaperOrder(order, self._seq)
        self.orders[cid] = work
        data = {"request": request_to_dict(request), "order_id": order_id}
        self.note(now, "intent", data, cid, request.symbol)
        self.flush()
        return work

    def transition(
        self, work: PaperOrder, status: OrderStatus, reason: str, ts: int, **changes: Any
    ) -> None:
        """Move ``work`` to ``status`` through ``ORDER_TRANSITIONS``; queue the event."""
        old = work.order
        if status not in ORDER_TRANSITIONS[old.status]:
            raise RuntimeError(
                f"illegal order transition {old.status.value} -> {status.value} for "
                f"{old.client_order_id!r} ({reason}): a bug in the paper broker"
            )
        if changes.keys() - _FIELDS:
            raise TypeError(f"unknown order fields {sorted(changes.keys() - _FIELDS)}")
        order = Order(
            request=old.request,
            client_order_id=old.client_order_id,
            order_id=old.order_id,
            status=status,
            created_ms=old.created_ms,
            updated_ms=ts,
            quantity=changes.get("quantity", old.quantity),
            filled_quantity=changes.get("filled_quantity", old.filled_quantity),
            average_fill_price=changes.get("average_fill_price", old.average_fill_price),
            fees_paid=changes.get("fees_paid", old.fees_paid),
            reason=reason,
            venue_order_id=old.venue_order_id,
        )
        work.order = order
        self.events.append(OrderEvent(ts, order, old.status, reason))
        self.note(ts, "order", {"order": order_to_dict(order)}, order.client_order_id, old.symbol)

    def fill(
        self,
        work: PaperOrder,
        *,
        quantity: float,
        price: float,
        fee: float,
        liquidity: Liquidity,
        ts: int,
    ) -> Fill:
        """Queue one execution of ``work`` (the caller books it and moves the order)."""
        self._trades += 1
        order = work.order
        fill = Fill(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            quantity=quantity,
            price=price,
            fee=fee,
            liquidity=liquidity,
            timestamp=ts,
            tag=order.request.tag,
            venue_order_id=order.venue_order_id,
            venue_trade_id=f"{self.prefix}-t{self._trades:08d}",
        )
        self.events.append(fill)
        self.note(ts, "fill", {"fill": fill_to_dict(fill)}, fill.client_order_id, fill.symbol)
        return fill

    def note(
        self, ts: int, kind: str, data: dict[str, Any], cid: str | None, symbol: str | None
    ) -> None:
        """Queue a journal entry (nothing without a journal)."""
        if self.journal is not None:
            self._entries.append(NewEntry(int(ts), kind, data, cid, symbol))

    def flush(self) -> None:
        """Make the queued journal entries durable (one append)."""
        if self._entries and self.journal is not None:
            entries, self._entries = self._entries, []
            self.journal.append(entries)

    def drain(self) -> list[OrderEvent | Fill]:
        self.flush()
        events, self.events = self.events, []
        return events
