"""The simulated broker's order ledger: ids, order snapshots, events and the fill record.

Private to :mod:`pivotal.trading.brokers.simulated`: the broker decides *what* happens to
an order; the ledger makes the frozen :class:`~pivotal.core.orders.Order` snapshot of each
change (through :data:`~pivotal.core.orders.ORDER_TRANSITIONS`), queues the events and fills
for ``drain_events`` and keeps the fill rows of ``fills_frame``.
"""

from __future__ import annotations

import pandas as pd

from pivotal.core.orders import (
    ORDER_TRANSITIONS,
    Fill,
    Liquidity,
    Order,
    OrderEvent,
    OrderRequest,
    OrderStatus,
)
from pivotal.trading.brokers.working import Book, Working
from pivotal.trading.records import FILL_COLUMNS, FILL_DTYPES, empty_fill_frame

_FIELDS = frozenset({"quantity", "filled_quantity", "average_fill_price", "fees_paid"})


class OrderLedger:
    """Orders by client id, the pending events, the fill rows, and the id counters.

    Ids are deterministic: orders ``f"{prefix}-o{n:08d}"`` (also their ``venue_order_id``),
    automatic client ids ``f"{prefix}-{n:08d}"``, fills' ``venue_trade_id``
    ``f"{prefix}-t{n:08d}"``; ``raw`` (the venue payload) stays None.
    """

    def __init__(self, prefix: str) -> None:
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("id_prefix must be a non-empty string")
        self.prefix = prefix
        self.orders: dict[str, Working] = {}
        self.events: list[OrderEvent | Fill] = []
        self.rows: list[tuple[int, int, str, str, float, float, float, str, str, str]] = []
        self.seq = 0
        self._auto_id = 0
        self._trades = 0

    def next_client_id(self) -> str:
        while True:
            self._auto_id += 1
            cid = f"{self.prefix}-{self._auto_id:08d}"
            if cid not in self.orders:
                return cid

    def work(self, client_order_id: str) -> Working:
        work = self.orders.get(client_order_id)
        if work is None:
            raise KeyError(
                f"no order with client_order_id {client_order_id!r} was submitted to this broker"
            )
        return work

    def open(
        self,
        request: OrderRequest,
        cid: str,
        now: int,
        book: Book | None,
        eligible_ms: int,
        phase: int,
    ) -> Working:
        """Register a NEW order (no event yet: its first transition says OPEN or REJECTED)."""
        self.seq += 1
        order_id = f"{self.prefix}-o{self.seq:08d}"
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
        work = Working(order, self.seq, book, eligible_ms, phase)
        self.orders[cid] = work
        return work

    def transition(
        self, work: Working, status: OrderStatus, reason: str, ts: int, **changes: object
    ) -> None:
        """Move ``work`` to ``status`` through ``ORDER_TRANSITIONS`` and emit its event."""
        previous = work.order.status
        if status not in ORDER_TRANSITIONS[previous]:
            raise RuntimeError(
                f"illegal order transition {previous.value} -> {status.value} for "
                f"{work.order.client_order_id!r} ({reason}): a bug in the simulated broker"
            )
        if changes.keys() - _FIELDS:
            raise TypeError(
                f"transition got unknown order fields {sorted(changes.keys() - _FIELDS)}"
            )
        old = work.order
        order = Order(  # built directly: dataclasses.replace costs 3× more on this hot path
            request=old.request,
            client_order_id=old.client_order_id,
            order_id=old.order_id,
            status=status,
            created_ms=old.created_ms,
            updated_ms=ts,
            quantity=changes.get("quantity", old.quantity),  # type: ignore[arg-type]
            filled_quantity=changes.get("filled_quantity", old.filled_quantity),  # type: ignore[arg-type]
            average_fill_price=changes.get("average_fill_price", old.average_fill_price),  # type: ignore[arg-type]
            fees_paid=changes.get("fees_paid", old.fees_paid),  # type: ignore[arg-type]
            reason=reason,
            venue_order_id=old.venue_order_id,
        )
        work.order = order
        self.events.append(
            OrderEvent(timestamp=ts, order=order, previous_status=previous, reason=reason)
        )
        if status.is_terminal and work.book is not None and work in work.book.active:
            work.book.active.remove(work)

    def fill(
        self,
        work: Working,
        book: Book,
        *,
        quantity: float,
        price: float,
        fee: float,
        liquidity: Liquidity,
        ts: int,
    ) -> Fill:
        """Record one execution of ``work`` in ``book``'s newest bar; returns the fill."""
        self._trades += 1
        request = work.request
        event = Fill(
            order_id=work.order.order_id,
            client_order_id=work.order.client_order_id,
            symbol=book.symbol,
            side=request.side,
            quantity=quantity,
            price=price,
            fee=fee,
            liquidity=liquidity,
            timestamp=ts,
            tag=request.tag,
            venue_order_id=work.order.venue_order_id,
            venue_trade_id=f"{self.prefix}-t{self._trades:08d}",
        )
        self.events.append(event)
        self.rows.append(
            (
                ts,
                book.bar,
                book.symbol,
                request.side.value,
                quantity,
                price,
                fee,
                liquidity.value,
                work.order.client_order_id,
                request.tag,
            )
        )
        return event

    def drain(self) -> list[OrderEvent | Fill]:
        events, self.events = self.events, []
        return events

    def fills_frame(self) -> pd.DataFrame:
        if not self.rows:
            return empty_fill_frame()
        frame = pd.DataFrame.from_records(self.rows, columns=list(FILL_COLUMNS))
        return frame.astype(FILL_DTYPES)
