"""Keeping :class:`~pivotal.venues.exchange_broker.ExchangeBroker` in step with its venue
(a mixin): the user stream's data applied to the book and journaled, the venue's state
fetched, and reconciliation.

- ``_pump``: takes what the user stream queued (orders, trades, balances, stream up/down) on
  the broker's caller thread, applies it, and journals the changes in ONE append. Fills are
  booked once per venue trade id (``JournalState.has_fill``); a trade whose order the broker
  cannot name yet (its acknowledgement not seen) waits for a later pump (at most
  ``ORPHAN_PUMPS``; reconciliation books it otherwise).
- ``venue_state``: open orders per symbol, a look-up by client id of every order the journal
  holds unacknowledged or active, the account's trades since the journal's last fill minus
  ``fills_margin_ms`` (or ``fills_lookback_ms`` back without one), and the balances, as a
  :class:`~pivotal.trading.reconcile.VenueState`. The stops this broker watches itself and
  that have not fired are part of it: for them, the broker *is* the venue.
- ``reconcile``: :func:`~pivotal.trading.reconcile.reconcile` (the venue wins), its entries
  journaled in one append, the book brought along (events for drain_events), foreign orders
  cancelled when the policy says so, an ``alert`` for unresolved differences.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from pivotal.core.errors import OperationalError, PivotalError, TransientError
from pivotal.core.journal import JournalEntry, NewEntry
from pivotal.core.orders import Fill, Order
from pivotal.trading.journal_state import fill_key
from pivotal.trading.reconcile import ReconcileReport, UnknownPolicy, VenueState, reconcile
from pivotal.venues.exchange_broker_convert import (
    balances_from,
    fill_from_trade,
    order_from_venue,
    trade_client_id,
)
from pivotal.venues.exchange_broker_ops import RawVenueState
from pivotal.venues.order_stream import (
    BalanceSeen,
    OrdersSeen,
    ReconcileWanted,
    StreamDown,
    StreamUp,
    TradesSeen,
)

if TYPE_CHECKING:
    from pivotal.venues.exchange_broker import ExchangeBroker

__all__ = ["ORPHAN_PUMPS", "VenueSync"]

log = logging.getLogger(__name__)

ORPHAN_PUMPS: Final = 50


class VenueSync:
    """Stream data in, venue state, reconciliation (module docstring)."""

    # -- journal ----------------------------------------------------------------------------
    def _append(self: ExchangeBroker, entries: list[NewEntry]) -> None:
        if not entries:
            return
        seqs = self.journal.append(entries)
        for seq, e in zip(seqs, entries, strict=True):
            self._jstate.apply(JournalEntry(seq, e.ts, e.kind, e.data, e.client_order_id, e.symbol))

    def _flush(self: ExchangeBroker) -> None:
        """Journal what the book queued (one append) and publish the snapshots the stream's
        poller reads from its thread."""
        self._append(self.book.take_entries())
        self._pending_fills.clear()
        if self._ops is not None:
            self._active_snapshot = tuple(
                (o.symbol, o.client_order_id, self._ops.is_native_stop(o.request))
                for o in self.book.active()
                if o.client_order_id not in self.book.local_stops
            )

    def _alert(self: ExchangeBroker, level: str, message: str) -> None:
        self.book.journal("alert", {"level": level, "message": message, "venue": self.venue})
        (log.warning if level != "info" else log.info)("%s: %s", self.venue, message)

    # -- the stream's data ------------------------------------------------------------------
    def _pump(self: ExchangeBroker) -> None:
        """Apply what the user stream queued; journal it in one append."""
        items: list[Any] = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for item in items:
            if isinstance(item, OrdersSeen):
                for raw in item.orders:
                    self._apply_venue_order(raw, f"venue update ({item.source})")
            elif isinstance(item, TradesSeen):
                for raw in item.trades:
                    self._apply_trade(raw)
            elif isinstance(item, BalanceSeen):
                self.book.set_balances(balances_from(item.balance), replace=item.source == "poll")
            elif isinstance(item, StreamDown):
                self._alert("warning", f"user stream {item.method} down ({item.error}); "
                            "polling the venue over REST while it redials")  # fmt: skip
            elif isinstance(item, StreamUp):
                self._alert("info", f"user stream {item.method} back after {item.down_s:.1f} s")
            elif isinstance(item, ReconcileWanted):
                self._reconcile_wanted = item.reason
        if self._orphans:
            waiting, self._orphans = self._orphans, []
            for raw, pumps in waiting:
                self._apply_trade(raw, pumps=pumps + 1)
        self._flush()

    def _apply_venue_order(self: ExchangeBroker, raw: Mapping[str, Any], reason: str) -> None:
        cid = raw.get("clientOrderId")
        existing = self.book.orders.get(str(cid)) if cid else None
        if existing is None:  # a cancel's update may carry the cancel request's own id
            cid = self.book.client_id_of(raw.get("id"))
            existing = self.book.orders.get(cid) if cid else None
        if existing is None:
            self.foreign_updates += 1  # not ours (or not yet known): reconciliation decides
            return
        order = order_from_venue(raw, existing=existing, request=None, now_ms=self.clock.now_ms())
        if order is not None:
            self.book.record(order, reason)

    def _apply_trade(
        self: ExchangeBroker,
        raw: Mapping[str, Any],
        *,
        pumps: int = 0,
        client_order_id: str | None = None,
    ) -> None:
        """Book one ccxt trade of the account (``client_order_id``: its order, when the trade
        names none, e.g. the fills in Binance's FULL order reply)."""
        cid = (
            client_order_id
            or trade_client_id(raw, self.profile.trade_client_id_keys)
            or self.book.client_id_of(raw.get("order"))
        )
        order = self.book.orders.get(cid) if cid else None
        if order is None:
            if pumps < ORPHAN_PUMPS:
                self._orphans.append((dict(raw), pumps))
            else:
                log.warning("%s: trade %s of an unknown order left to reconciliation",
                            self.venue, raw.get("id"))  # fmt: skip
            return
        filters = self.filters[order.symbol]
        fill = fill_from_trade(
            raw,
            client_order_id=order.client_order_id,
            base=filters.base,
            quote=filters.quote,
            mark_of=self.book.marks.get,
            tag=order.request.tag,
            now_ms=int(order.updated_ms),
            venue_order_id=order.venue_order_id,
            symbol=order.symbol,
            side=order.side.value,
        )
        if fill is None:
            return
        self._book_fill(fill)

    def _book_fill(self: ExchangeBroker, fill: Fill, *, journal: bool = True) -> None:
        key = fill_key(fill)
        if key in self._pending_fills or self._jstate.has_fill(fill):
            return
        self._pending_fills.add(key)
        self.book.fill(fill, journal=journal)
        self._last_fill_ms = max(self._last_fill_ms or 0, fill.timestamp)

    # -- the venue's state --------------------------------------------------------------------
    def _fills_since(self: ExchangeBroker) -> int:
        if self._last_fill_ms:
            return max(0, self._last_fill_ms - self.config.fills_margin_ms)
        return max(0, self.vclock.venue_now_ms() - self.config.fills_lookback_ms)

    def venue_state(self: ExchangeBroker) -> VenueState:
        """The venue's open orders, looked-up orders, recent fills and balances (module
        docstring). Raises ``TransientError`` when the venue cannot be read."""
        self._require_client()
        lookups: dict[str, tuple[str, bool]] = {}
        orders: Iterable[Order] = [
            *self._jstate.intents_without_ack(),
            *self._jstate.open_orders(),
            *self.book.active(),
        ]
        for order in orders:
            if order.symbol in self.filters:
                lookups[order.client_order_id] = (
                    order.symbol,
                    self._ops.is_native_stop(order.request),
                )
        since = self._fills_since()
        known = list(self.book.by_venue_id)
        raw = self._call(
            lambda: self._ops.snapshot(
                self.symbols, since_ms=since, lookups=lookups, known_venue_ids=known,
                ts=self.clock.now_ms(),
            ),
            "venue state",
        )  # fmt: skip
        return self._venue_state_from(raw)

    def _known_order(self: ExchangeBroker, cid: str | None) -> Order | None:
        if not cid:
            return None
        return self.book.orders.get(cid) or self._jstate.order(cid)

    def _venue_state_from(self: ExchangeBroker, raw: RawVenueState) -> VenueState:
        now = self.clock.now_ms()

        def convert(item: Mapping[str, Any]) -> Order | None:
            cid = item.get("clientOrderId")
            known = self._known_order(str(cid) if cid else None) or self._known_order(
                self.book.client_id_of(item.get("id"))
            )
            return order_from_venue(item, existing=known, request=None, now_ms=now)

        open_orders = [o for rs in raw.open_orders.values() for r in rs if (o := convert(r))]
        by_cid = {cid: o for cid, r in raw.looked_up.items() if r and (o := convert(r))}
        venue_ids = {str(o.venue_order_id): o for o in [*open_orders, *by_cid.values()]}
        for venue_id, item in raw.by_venue_id.items():
            order = convert(item)
            if order is not None:
                venue_ids[venue_id] = order
        fills: list[Fill] = []
        for symbol, trades in raw.trades.items():
            filters = self.filters[symbol]
            for trade in trades:
                cid = trade_client_id(trade, self.profile.trade_client_id_keys)
                venue_id = str(trade.get("order") or "")
                owner = self._known_order(cid) or venue_ids.get(venue_id)
                if owner is None and venue_id:
                    owner = self._known_order(self.book.client_id_of(venue_id))
                fill = fill_from_trade(
                    trade,
                    client_order_id=owner.client_order_id if owner else (cid or ""),
                    base=filters.base,
                    quote=filters.quote,
                    mark_of=self.book.marks.get,
                    tag=owner.request.tag if owner else "",
                    now_ms=now,
                    venue_order_id=venue_id or None,
                    symbol=symbol,
                )
                if fill is not None:
                    fills.append(fill)
        open_ids = {o.client_order_id for o in open_orders}
        for cid in list(self.book.local_stops):
            if cid in by_cid or cid in open_ids:
                self.book.local_stops.pop(cid)  # its market order reached the venue
            else:
                open_orders.append(self.book.orders[cid])
        return VenueState(
            ts=now,
            open_orders=open_orders,
            balances=balances_from(raw.balance),
            fills=fills,
            orders_by_client_id=by_cid,
        )

    def reconcile(self: ExchangeBroker, policy: UnknownPolicy | None = None) -> ReconcileReport:
        """Reconcile the journal with the venue (module docstring); returns the report.
        ``policy``: what to do with venue orders the journal lacks (default from config)."""
        self._require_client()
        self._pump()
        state = self.venue_state()
        chosen = policy or self.config.unknown_orders
        report = reconcile(self._jstate, state, unknown=chosen, quote=self.config.quote)
        for order in [*report.order_updates, *report.adopt]:
            self.book.record(order, "reconciliation: the venue's state", journal=False, force=True)
        for fill in report.book_fills:
            self._book_fill(fill, journal=False)
        self.book.set_balances(state.balances, replace=True)
        self._append(report.to_entries(self.clock.now_ms()))
        symbols = {o.client_order_id: o.symbol for o in state.open_orders}
        for cid in report.cancel:
            try:
                self._call(lambda c=cid: self._ops.cancel(symbols[c], c), f"cancel foreign {cid}")
            except (PivotalError, Exception) as exc:  # report and go on
                self._alert("warning", f"could not cancel foreign order {cid}: {exc}")
        if not report.ok:
            self._alert("warning", "; ".join(report.lines()))
        unresolved = {o.client_order_id for o in self._jstate.intents_without_ack()}
        self._pending_lookups &= unresolved
        self.last_report = report
        self._flush()
        return report

    def _reconcile_if_wanted(self: ExchangeBroker) -> None:
        now = self.clock.now_ms()
        if self._pending_lookups and now >= self._next_lookup_ms and not self._reconcile_wanted:
            self._reconcile_wanted = "orders whose state is unknown"
        if not self._reconcile_wanted:
            return
        reason, self._reconcile_wanted = self._reconcile_wanted, None
        self._next_lookup_ms = now + int(self.config.poll_interval_s * 1000)
        try:
            report = self.reconcile()
        except (TransientError, OperationalError) as exc:
            self._alert("warning", f"reconciliation ({reason}) failed: {exc}; will retry")
            self._reconcile_wanted = reason
            self._flush()
            return
        log.info("%s reconciled (%s): %s", self.venue, reason, report.lines()[0])

    def _refresh_balances(self: ExchangeBroker) -> None:
        self._pump()  # queued stream balances are older than the answer below
        balance = self._call(lambda: self._ops.balance(), "balance")
        self.book.set_balances(balances_from(balance), replace=True)

    def _resync_clock(self: ExchangeBroker, why: str) -> None:
        try:
            offset = self._loop.call(self.vclock.sync(self._client), self.config.call_timeout_s)
        except Exception as exc:
            self._alert("warning", f"clock resync after '{why}' failed: {exc}")
            return
        self._alert("info", f"clock resynced after '{why}': venue offset {offset} ms")
        self._flush()
