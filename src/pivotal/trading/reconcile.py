"""Reconciliation: compare the journal's state with the venue's and let the venue win.

:func:`reconcile` is pure: it reads a :class:`~pivotal.trading.journal_state.JournalState`
and a :class:`VenueState` (what the broker fetched: open orders, the orders it looked up by
client id, recent fills, balances) and returns a :class:`ReconcileReport`. The caller journals
``report.to_entries(ts)`` in one append (applying them to its state brings it to the venue's),
cancels ``report.cancel`` at the venue, and decides what to do when ``report.ok`` is False.
Reconciling again the same venue state after journaling the entries finds nothing (a test).

What it finds, and what it does:

- ``order_status``: an order the journal has (active, or terminal but seen at the venue)
  whose venue status, filled quantity or venue id differs, or whose last entry was
  ``unknown``: the venue's snapshot is adopted (keeping the journal's request, order id and
  creation time); resolved.
- ``order_lost``: an order the journal sent or maybe sent (NEW / SUBMITTED / ``unknown``)
  that the venue does not know: marked REJECTED, reason "never reached the venue"; resolved.
  ``VenueState.orders_by_client_id`` must therefore hold the venue's answer for every
  client id of ``local.intents_without_ack()`` (absent = the venue said "unknown order").
- ``order_missing``: an order the venue had acknowledged (OPEN, PARTIALLY_FILLED,
  PENDING_CANCEL) that it no longer knows: marked CANCELLED locally so that nothing counts
  on it, and left **unresolved** (a person checks the venue's history).
- ``foreign_order``: an open order at the venue with a client id the journal never wrote
  (placed by hand, by another program, or before the journal): per ``unknown``: ``report``
  (unresolved), ``adopt`` (journaled as this session's order; resolved) or ``cancel``
  (listed in ``report.cancel`` for the caller to cancel; resolved).
- ``missing_fill``: a venue fill of one of our orders (by client id, else by venue order id)
  that the journal lacks (a fill while the node was down, a dropped stream): booked once
  (:func:`~pivotal.trading.journal_state.fill_key`); resolved. Fills of foreign orders are
  not booked (the balances carry their effect), except those of adopted orders.
- ``balance``: an asset whose total (free + locked) differs from the journal's *after* the
  bookings above (so a missing fill is not also reported as a balance difference), beyond
  ``tolerance`` (relative, floored at 1 unit): the venue's balance is adopted; resolved.
  When the journal knows no balances yet, every non-zero venue balance is adopted (a live
  session's initial balances).
- ``position``: the same difference seen as the position ``ASSET/QUOTE`` (the spot rule:
  position = base balance), recorded for the reader; adopted with the balance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pivotal.core.journal import JournalEntry, NewEntry, fill_entry_data, order_to_dict
from pivotal.core.orders import Fill, Order, OrderStatus
from pivotal.trading.journal_state import JournalState, fill_key

__all__ = ["Difference", "ReconcileReport", "UnknownPolicy", "VenueState", "reconcile"]

UnknownPolicy = Literal["report", "adopt", "cancel"]
_POLICIES: Final = ("report", "adopt", "cancel")
LOST_REASON: Final = "never reached the venue"
MISSING_REASON: Final = "the venue no longer knows this acknowledged order (reconciliation)"
_SUBJECT_KEY: Final = {
    "balance": "asset",
    "position": "symbol",
    "missing_fill": "client_order_id",
}


@dataclass(frozen=True, slots=True)
class VenueState:
    """The venue's view at ``ts`` (UTC ms), as the broker fetched it.

    ``open_orders``: every open order on the account (ours and foreign);
    ``balances``: ``{asset: (free, locked)}`` in asset units; ``fills``: recent executions
    (at least since the journal's last fill); ``orders_by_client_id``: the venue's answer
    for the client ids the broker looked up (every one of
    ``JournalState.intents_without_ack()`` and the journal's open orders); an id absent
    from both order collections is one the venue does not know.
    """

    ts: int
    open_orders: list[Order]
    balances: dict[str, tuple[float, float]]
    fills: list[Fill] = field(default_factory=list)
    orders_by_client_id: dict[str, Order] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Difference:
    """One thing the journal and the venue disagree on (module docstring lists ``field``).

    ``subject``: the client order id, asset or symbol; ``local``/``venue``: the two values
    (JSON data; None where one side has nothing); ``action``: what was done (``adopted``,
    ``rejected``, ``cancelled locally``, ``booked``, ``reported``, ``cancel``);
    ``resolved``: False when a person (or a policy) still has to act; ``message``: one line.
    """

    field: str
    subject: str
    local: Any
    venue: Any
    action: str
    resolved: bool
    message: str

    def to_data(self) -> dict[str, Any]:
        """The ``reconcile`` entry's data (what :class:`JournalState` reads back)."""
        key = _SUBJECT_KEY.get(self.field, "client_order_id")
        return {
            "field": self.field,
            key: self.subject,
            "local": self.local,
            "venue": self.venue,
            "action": self.action,
            "resolved": self.resolved,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What :func:`reconcile` found and decided (module docstring).

    ``order_updates``: snapshots of the journal's orders to journal (venue's status adopted,
    lost orders REJECTED, missing ones CANCELLED); ``adopt``: foreign orders taken over;
    ``cancel``: client ids of foreign orders to cancel at the venue; ``book_fills``: fills
    to book. ``venue_ts``: when the venue state was fetched (UTC ms).
    """

    venue_ts: int
    differences: list[Difference] = field(default_factory=list)
    adopt: list[Order] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    book_fills: list[Fill] = field(default_factory=list)
    order_updates: list[Order] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No unresolved difference (everything found was adopted, booked or is cancelled
        by the caller)."""
        return all(d.resolved for d in self.differences)

    @property
    def unresolved(self) -> list[Difference]:
        return [d for d in self.differences if not d.resolved]

    def lines(self) -> list[str]:
        """For people: a headline, then one line per difference."""
        n, bad = len(self.differences), len(self.unresolved)
        if not n:
            head = "reconciliation: the journal agrees with the venue"
        else:
            head = f"reconciliation: {n} difference{'s' if n != 1 else ''}, " + (
                f"{bad} unresolved (needs a person)" if bad else "all resolved (venue adopted)"
            )
        marks = ["  " + ("" if d.resolved else "UNRESOLVED ") + d.message for d in self.differences]
        return [head, *marks]

    def to_entries(self, ts: int) -> list[NewEntry]:
        """The entries to journal in ONE append, at ``ts`` (UTC ms): ``order`` snapshots and
        ``fill`` bookings first, then one ``reconcile`` entry per difference (balance
        adoptions last, so they land on top of the booked fills)."""
        out = [
            NewEntry(ts, "order", {"order": order_to_dict(o)}, o.client_order_id, o.symbol)
            for o in [*self.order_updates, *self.adopt]
        ]
        out += [
            NewEntry(ts, "fill", fill_entry_data(f), f.client_order_id, f.symbol)
            for f in self.book_fills
        ]
        for diff in sorted(self.differences, key=lambda d: d.field == "balance"):
            key = _SUBJECT_KEY.get(diff.field, "client_order_id")
            out.append(
                NewEntry(
                    ts,
                    "reconcile",
                    diff.to_data(),
                    client_order_id=diff.subject if key == "client_order_id" else None,
                    symbol=diff.subject if key == "symbol" else None,
                )
            )
        return out


def reconcile(
    local: JournalState,
    venue: VenueState,
    *,
    unknown: UnknownPolicy = "report",
    quote: str = "USDT",
    tolerance: float = 1e-9,
) -> ReconcileReport:
    """Compare ``local`` with ``venue``; the venue wins (module docstring).

    ``unknown``: what to do with open venue orders the journal never wrote; ``quote``: the
    quote currency (positions are ``ASSET/quote``); ``tolerance``: the relative balance
    difference ignored (float dust), applied to ``max(1, |local|, |venue|)``.
    """
    if unknown not in _POLICIES:
        raise ValueError(f"unknown must be one of {', '.join(_POLICIES)}, got {unknown!r}")
    if not (0 <= tolerance < 1):
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")
    diffs: list[Difference] = []
    updates: list[Order] = []
    venue_orders: dict[str, Order] = {o.client_order_id: o for o in venue.open_orders}
    venue_orders.update(venue.orders_by_client_id)
    by_venue_id = {
        str(o.venue_order_id): cid for cid, o in venue_orders.items() if o.venue_order_id
    }
    unknown_ids = set(local.unknown_orders())
    # the orders whose venue fills are ours: by client id, and by venue order id (for fills
    # that carry only the venue's order id)
    ours: dict[str, Order] = {}
    ours_by_venue_id: dict[str, Order] = {}

    for mine in local.orders():
        cid = mine.client_order_id
        theirs = venue_orders.pop(cid, None)
        if theirs is None and mine.venue_order_id is not None:
            other = by_venue_id.get(str(mine.venue_order_id))
            theirs = venue_orders.pop(other, None) if other is not None else None
        if theirs is not None:
            ours[cid] = mine
            if theirs.venue_order_id is not None:
                ours_by_venue_id[str(theirs.venue_order_id)] = mine
            if cid in unknown_ids or _differs(mine, theirs):
                adopted = _adopt(mine, theirs)
                updates.append(adopted)
                diffs.append(_status_difference(mine, adopted, cid in unknown_ids))
            continue
        if mine.status.is_terminal:
            continue
        ours[cid] = mine
        unacked = mine.status in (OrderStatus.NEW, OrderStatus.SUBMITTED) or cid in unknown_ids
        reason = LOST_REASON if unacked else MISSING_REASON
        status = OrderStatus.REJECTED if unacked else OrderStatus.CANCELLED
        updates.append(dataclasses.replace(mine, status=status, reason=reason, updated_ms=venue.ts))
        what = "rejected: never reached the venue" if unacked else "cancelled locally"
        diffs.append(
            Difference(
                "order_lost" if unacked else "order_missing",
                cid,
                mine.status.value,
                None,
                "rejected" if unacked else "cancelled locally",
                unacked,
                f"order {cid} ({mine.symbol} {mine.side.value}): journal {mine.status.value}, "
                f"the venue does not know it -> {what}"
                + ("" if unacked else "; check the venue's order history by hand"),
            )
        )

    adopt: list[Order] = []
    cancel: list[str] = []
    for cid, theirs in venue_orders.items():
        if not theirs.status.is_active:
            continue
        action = {"report": "reported", "adopt": "adopted", "cancel": "cancel"}[unknown]
        if unknown == "adopt":
            adopt.append(theirs)
            ours[cid] = theirs
            if theirs.venue_order_id is not None:
                ours_by_venue_id[str(theirs.venue_order_id)] = theirs
        elif unknown == "cancel":
            cancel.append(cid)
        hint = " (reconcile with unknown='adopt' or 'cancel')" if unknown == "report" else ""
        diffs.append(
            Difference(
                "foreign_order",
                cid,
                None,
                theirs.status.value,
                action,
                unknown != "report",
                f"order {cid} ({theirs.symbol} {theirs.side.value} {theirs.quantity}, "
                f"{theirs.status.value}) is open at the venue but not in the journal -> "
                f"{action}{hint}",
            )
        )

    book: list[Fill] = []
    seen: set[tuple[Any, ...]] = set()
    for fill in venue.fills:
        owner = ours.get(fill.client_order_id) or local.order(fill.client_order_id)
        if owner is None and fill.venue_order_id is not None:
            owner = ours_by_venue_id.get(str(fill.venue_order_id)) or local.order_by_venue_id(
                str(fill.venue_order_id)
            )
        if owner is None:
            continue  # a foreign order's fill: the balances carry it
        if (fill.client_order_id, fill.order_id) != (owner.client_order_id, owner.order_id):
            fill = dataclasses.replace(
                fill, client_order_id=owner.client_order_id, order_id=owner.order_id
            )
        key = fill_key(fill)
        if key in seen or local.has_fill(fill):
            continue
        seen.add(key)
        book.append(fill)
        diffs.append(
            Difference(
                "missing_fill",
                fill.client_order_id,
                None,
                {"venue_trade_id": fill.venue_trade_id, "quantity": fill.quantity,
                 "price": fill.price, "side": fill.side.value, "fee": fill.fee},
                "booked",
                True,
                f"fill {fill.venue_trade_id} of order {fill.client_order_id}: "
                f"{fill.side.value} {fill.quantity} {fill.symbol} @ {fill.price} at the venue, "
                "not in the journal -> booked",
            )
        )  # fmt: skip

    bookings = ReconcileReport(venue.ts, list(diffs), adopt, cancel, book, updates)
    diffs += _balance_differences(local, venue, bookings, quote, tolerance)
    return ReconcileReport(venue.ts, diffs, adopt, cancel, book, updates)


def _differs(mine: Order, theirs: Order) -> bool:
    if mine.status is not theirs.status:
        return True
    if theirs.venue_order_id is not None and mine.venue_order_id != theirs.venue_order_id:
        return True
    scale = max(1.0, abs(theirs.filled_quantity))
    return abs(mine.filled_quantity - theirs.filled_quantity) > 1e-12 * scale


def _adopt(mine: Order, theirs: Order) -> Order:
    """The venue's snapshot with the journal's request, ids and creation time."""
    return dataclasses.replace(
        theirs,
        request=mine.request,
        client_order_id=mine.client_order_id,
        order_id=mine.order_id,
        created_ms=mine.created_ms,
        quantity=theirs.quantity if theirs.quantity is not None else mine.quantity,
        venue_order_id=theirs.venue_order_id or mine.venue_order_id,
    )


def _status_difference(mine: Order, adopted: Order, was_unknown: bool) -> Difference:
    local = "unknown" if was_unknown else mine.status.value
    return Difference(
        "order_status",
        mine.client_order_id,
        {"status": local, "filled_quantity": mine.filled_quantity},
        {"status": adopted.status.value, "filled_quantity": adopted.filled_quantity},
        "adopted",
        True,
        f"order {mine.client_order_id} ({mine.symbol} {mine.side.value}): journal {local} "
        f"filled {mine.filled_quantity}, venue {adopted.status.value} filled "
        f"{adopted.filled_quantity} -> venue's adopted",
    )


def _balance_differences(
    local: JournalState, venue: VenueState, bookings: ReconcileReport, quote: str, tol: float
) -> list[Difference]:
    """Balances after ``bookings`` (orders and fills to journal) vs the venue's."""
    after = local.copy()
    seq = after.last_seq
    for entry in bookings.to_entries(venue.ts):
        if entry.kind != "reconcile":
            seq += 1
            after.apply(JournalEntry(seq, entry.ts, entry.kind, entry.data,
                                     entry.client_order_id, entry.symbol))  # fmt: skip
    totals: Mapping[str, tuple[float, float]] = venue.balances
    assets = sorted(set(totals) | {a for a, v in after.balances.items() if v != 0.0})
    out: list[Difference] = []
    for asset in assets:
        free, locked = totals.get(asset, (0.0, 0.0))
        theirs = float(free) + float(locked)
        mine: float | None = after.balance(asset) if local.balances_known else None
        if mine is None and theirs == 0.0:
            continue
        if mine is not None and abs(mine - theirs) <= tol * max(1.0, abs(mine), abs(theirs)):
            continue
        shown = "none" if mine is None else f"{mine:.10g}"
        out.append(
            Difference(
                "balance",
                asset,
                mine,
                {"free": float(free), "locked": float(locked)},
                "adopted",
                True,
                f"balance {asset}: journal {shown}, venue {theirs:.10g} (free {free:.10g}, "
                f"locked {locked:.10g}) -> venue's adopted",
            )
        )
        if asset != quote:
            symbol = f"{asset}/{quote}"
            out.append(
                Difference(
                    "position",
                    symbol,
                    mine,
                    theirs,
                    "adopted",
                    True,
                    f"position {symbol}: journal {shown}, venue {theirs:.10g} (the {asset} "
                    "balance) -> venue's adopted",
                )
            )
    return out
