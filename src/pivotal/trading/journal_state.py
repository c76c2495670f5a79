"""A trading session's state rebuilt from its order journal: orders, fills, balances,
positions, marks, realized PnL, fees and the equity curve.

:meth:`JournalState.rebuild` applies entries (:mod:`pivotal.core.journal`) in seq order;
:meth:`JournalState.apply` applies one more, so a node keeps the state current as it journals
and, after a crash, rebuilds the same state from the file (streaming == batch; a property
test proves it). An entry whose seq is not above the last one applied is skipped (already
applied). Entries are applied as follows:

- ``intent``: a NEW order from the request (client id: the entry's, else the request's;
  ``data["order_id"]`` or the client id as ``order_id``); an intent for a known client id
  changes nothing (submission is idempotent by client id);
- ``submitted``: a NEW order becomes SUBMITTED; the order is no longer "unknown";
- ``unknown``: the order's state is unknown (reply lost): flagged for a look-up
  (:meth:`JournalState.intents_without_ack`); a NEW order becomes SUBMITTED (maybe sent);
- ``order``: the snapshot replaces the order (the venue's word); clears the unknown flag;
- ``fill``: booked once. Deduplicated by ``(symbol, venue_trade_id)`` (Binance numbers
  trades per symbol), or, for a fill without a venue trade id, by ``(client_order_id,
  timestamp, quantity, price)``. A fill does not change its order (``order`` entries do);
- ``cancel_request``: the order is flagged as having a cancel in flight until a terminal
  ``order`` snapshot arrives;
- ``session``: its ``balances`` (``{asset: total}``, ``{asset: [free, locked]}`` or
  ``{asset: {"free": .., "locked": ..}}``) set the initial balances, but only while no
  balances are known yet (a paper session's deposit; a restart's session entry does not
  overwrite what the fills made of them);
- ``reconcile``: a ``balance`` difference with ``action`` ``adopted`` sets that asset's
  balance to the venue's ``free + locked`` (this is how a live session gets its initial
  balances: the first reconciliation adopts the venue's);
- ``equity``: a point ``(ts, data["equity"])`` of the equity curve; marks from
  ``data["marks"]`` (``{symbol: price}``) and ``data["positions"][symbol]["mark_price"]``;
- ``decision``, ``alert``, ``kill``: counted.

Spot accounting (the contract's rule; money in the quote currency, quantities in base units):
a buy of ``q`` at ``p`` with fee ``f`` adds ``q`` BASE and takes ``q·p + f`` QUOTE; a sell
takes ``q`` BASE and adds ``q·p - f`` QUOTE. The position of ``BASE/QUOTE`` is the BASE balance;
its average entry price is the weighted average of the buys while held (sells reduce the
quantity, not the average; flat resets it); a sell realizes ``q·(p - average)``. Holdings
whose cost the journal never saw (adopted from the venue) have no average: they are valued at
the mark (unrealized 0), and the next buy takes its own price as the average. Marks are the
last price seen (fills, equity entries) unless given. A position whose symbol has no mark is
valued at its average entry price (0 when unknown too). Equity = QUOTE total + Σ qty·mark;
cash = equity - Σ unrealized; margin used = Σ qty·mark; available = QUOTE free, where QUOTE
locked is estimated as Σ remaining·limit price of the active buy limit orders (the venue's
figure replaces it at each reconciliation); leverage 1.

Logical oddities (a ``submitted`` entry for an order the journal never saw, a fill without
a client id) are listed in :attr:`JournalState.anomalies` and otherwise ignored; an entry
whose data cannot be decoded raises :class:`~pivotal.core.errors.DataError` naming its seq.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pivotal.core.errors import DataError
from pivotal.core.journal import (
    JournalEntry,
    fill_from_dict,
    fill_to_dict,
    order_from_dict,
    order_to_dict,
    request_from_dict,
)
from pivotal.core.orders import (
    AccountSnapshot,
    Fill,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionSnapshot,
)

__all__ = ["JournalState", "JournalSummary", "fill_key", "split_symbol"]

#: A balance this close to 0 counts as 0 (float dust from sums of fills).
DUST: Final = 1e-12
_UNACKED: Final = frozenset({OrderStatus.NEW, OrderStatus.SUBMITTED})


def split_symbol(symbol: str) -> tuple[str, str]:
    """``"BTC/USDT"`` (or ``"BTC/USDT:USDT"``) -> ``("BTC", "USDT")``."""
    base, sep, rest = symbol.partition("/")
    if not sep or not base or not rest:
        raise DataError(f"symbol {symbol!r} is not BASE/QUOTE (a spot symbol like BTC/USDT)")
    return base, rest.partition(":")[0]


def fill_key(fill: Fill) -> tuple[Any, ...]:
    """The identity of a fill: ``("trade", symbol, venue_trade_id)``, or, without a venue
    trade id, ``("local", client_order_id, timestamp, quantity, price)``. A fill journaled
    with a venue trade id and again without one counts twice: a venue broker always has the
    id (Binance's ``t``, Bybit's ``execId``); fills without one come from the paper broker,
    which has no venue to reconcile with."""
    if fill.venue_trade_id is not None:
        return ("trade", fill.symbol, str(fill.venue_trade_id))
    return ("local", fill.client_order_id, fill.timestamp, fill.quantity, fill.price)


@dataclass(frozen=True, slots=True)
class JournalSummary:
    """What a session's journal adds up to (for ``pivotal orders`` and reports).

    ``fees``/``realized_pnl``: quote currency (realized excludes fees);
    ``last_equity``: ``(ts, equity)`` of the last ``equity`` entry, None without one;
    ``reconcile_differences``/``unresolved``: ``reconcile`` entries, and those not resolved.
    """

    entries: int
    last_seq: int
    last_ts: int | None
    kinds: dict[str, int]
    orders: int
    open_orders: int
    orders_by_status: dict[str, int]
    fills: int
    fees: float
    realized_pnl: float
    last_equity: tuple[int, float] | None
    reconcile_differences: int
    unresolved: int
    anomalies: int


class JournalState:
    """Orders, fills, balances and positions rebuilt from journal entries (module docstring).

    ``quote``: the account's quote currency (the spot rule's single quote asset).
    """

    def __init__(self, *, quote: str = "USDT") -> None:
        self.quote = quote
        self.last_seq = 0
        self.last_ts: int | None = None
        self.kinds: Counter[str] = Counter()
        self._orders: dict[str, Order] = {}
        self._unknown: set[str] = set()
        self._cancel_requested: set[str] = set()
        self._fills: list[Fill] = []
        self._fill_keys: set[tuple[Any, ...]] = set()
        self._by_venue_order: dict[str, str] = {}
        self.balances: dict[str, float] = {}
        self.balances_known = False
        self._average: dict[str, float | None] = {}
        self._opened: dict[str, int | None] = {}
        self.realized: dict[str, float] = {}
        self.fees: dict[str, float] = {}
        self.marks: dict[str, float] = {}
        self.equity_curve: list[tuple[int, float]] = []
        self.reconcile_differences = 0
        self.unresolved = 0
        self.anomalies: list[str] = []

    # -- building -----------------------------------------------------------------------
    @classmethod
    def rebuild(cls, entries: Iterable[JournalEntry], *, quote: str = "USDT") -> JournalState:
        """The state after applying ``entries`` (in seq order) to an empty one."""
        state = cls(quote=quote)
        for entry in entries:
            state.apply(entry)
        return state

    def apply(self, entry: JournalEntry) -> None:
        """Apply one more entry (module docstring); skipped when its seq was applied."""
        if entry.seq <= self.last_seq:
            return
        try:
            handler = _HANDLERS.get(entry.kind)
            if handler is not None:
                handler(self, entry)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(
                f"journal entry {entry.seq} ({entry.kind}) cannot be read: {exc!r}; the "
                "journal was written by another version or edited: check that entry"
            ) from exc
        self.last_seq = entry.seq
        self.last_ts = entry.ts
        self.kinds[entry.kind] += 1

    def copy(self) -> JournalState:
        """An independent copy (what a reconciliation plays its bookings on): every container
        is copied, the orders and fills in them are shared (they are frozen values), so a
        copy costs O(entries) references, not a deep copy of every object."""
        twin = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, dict | list | set | Counter):
                setattr(twin, name, value.copy())
        return twin

    # -- handlers -------------------------------------------------------------------------
    def _on_intent(self, entry: JournalEntry) -> None:
        request = request_from_dict(entry.data["request"])
        cid = entry.client_order_id or request.client_order_id
        if not cid:
            self.anomalies.append(f"seq {entry.seq}: an intent without a client order id")
            return
        if cid in self._orders:
            return
        order_id = str(entry.data.get("order_id") or cid)
        self._orders[cid] = Order(
            request=request,
            client_order_id=cid,
            order_id=order_id,
            status=OrderStatus.NEW,
            created_ms=entry.ts,
            updated_ms=entry.ts,
            quantity=request.quantity,
        )

    def _on_submitted(self, entry: JournalEntry) -> None:
        order = self._known_order(entry)
        if order is None:
            return
        self._unknown.discard(order.client_order_id)
        self._mark_sent(order, entry.ts)

    def _on_unknown(self, entry: JournalEntry) -> None:
        order = self._known_order(entry)
        if order is None:
            return
        self._unknown.add(order.client_order_id)
        self._mark_sent(order, entry.ts)

    def _on_cancel_request(self, entry: JournalEntry) -> None:
        order = self._known_order(entry)
        if order is not None and order.status.is_active:
            self._cancel_requested.add(order.client_order_id)

    def _on_order(self, entry: JournalEntry) -> None:
        order = order_from_dict(entry.data["order"])
        cid = order.client_order_id
        self._orders[cid] = order
        self._unknown.discard(cid)
        if order.status.is_terminal:
            self._cancel_requested.discard(cid)
        if order.venue_order_id is not None:
            self._by_venue_order[str(order.venue_order_id)] = cid

    def _on_fill(self, entry: JournalEntry) -> None:
        fill = fill_from_dict(entry.data["fill"])
        key = fill_key(fill)
        if key in self._fill_keys:
            return
        base, quote = split_symbol(fill.symbol)
        self._fill_keys.add(key)
        self._fills.append(fill)
        symbol, q, p = fill.symbol, fill.quantity, fill.price
        # the fee leaves the asset(s) the venue charged (``fee_assets``: Binance takes the
        # received asset), else the quote
        native = entry.data.get("fee_assets")
        quote_fee = fill.fee
        if isinstance(native, Mapping) and native:
            quote_fee = float(native.get(quote, 0.0))
            for asset, amount in native.items():
                if asset != quote:
                    self.balances[asset] = self.balances.get(asset, 0.0) - float(amount)
        held = self.balances.get(base, 0.0)
        average = self._average.get(symbol)
        if fill.side is OrderSide.BUY:
            if held <= DUST or average is None:
                self._average[symbol] = p
                if held <= DUST:
                    self._opened[symbol] = fill.timestamp
            else:
                self._average[symbol] = (held * average + q * p) / (held + q)
            self.balances[base] = held + q
            self.balances[quote] = self.balances.get(quote, 0.0) - (q * p + quote_fee)
        else:
            if average is not None:
                sold = min(q, max(held, 0.0))
                self.realized[symbol] = self.realized.get(symbol, 0.0) + sold * (p - average)
            self.balances[base] = held - q
            self.balances[quote] = self.balances.get(quote, 0.0) + (q * p - quote_fee)
            if self.balances[base] <= DUST:
                self._average[symbol] = None
                self._opened[symbol] = None
        self.fees[symbol] = self.fees.get(symbol, 0.0) + fill.fee
        self.marks[symbol] = p

    def _on_session(self, entry: JournalEntry) -> None:
        balances = entry.data.get("balances")
        if balances is None or self.balances_known:
            return
        totals = {str(asset): _total(value) for asset, value in dict(balances).items()}
        for asset, total in totals.items():
            self._set_balance(asset, total)
        self.balances_known = True

    def _on_reconcile(self, entry: JournalEntry) -> None:
        if entry.data.get("field") == "balance" and entry.data.get("action") == "adopted":
            self._set_balance(str(entry.data["asset"]), _total(entry.data["venue"]))
            self.balances_known = True
        self.reconcile_differences += 1
        if not entry.data.get("resolved", True):
            self.unresolved += 1

    def _on_equity(self, entry: JournalEntry) -> None:
        equity = entry.data.get("equity")
        marks = {str(s): float(p) for s, p in dict(entry.data.get("marks") or {}).items()}
        for symbol, position in dict(entry.data.get("positions") or {}).items():
            if isinstance(position, Mapping) and position.get("mark_price") is not None:
                marks[str(symbol)] = float(position["mark_price"])
        if equity is not None:
            self.equity_curve.append((entry.ts, float(equity)))
        self.marks.update(marks)

    def _known_order(self, entry: JournalEntry) -> Order | None:
        cid = entry.client_order_id
        order = self._orders.get(cid) if cid else None
        if order is None:
            self.anomalies.append(
                f"seq {entry.seq}: a {entry.kind} entry for order {cid!r}, which the journal "
                "has no intent or snapshot of"
            )
        return order

    def _mark_sent(self, order: Order, ts: int) -> None:
        if order.status is OrderStatus.NEW:
            self._orders[order.client_order_id] = dataclasses.replace(
                order, status=OrderStatus.SUBMITTED, updated_ms=ts
            )

    def _set_balance(self, asset: str, total: float) -> None:
        self.balances[asset] = total
        if asset != self.quote and total <= DUST:
            for symbol in list(self._average):
                if split_symbol(symbol)[0] == asset:
                    self._average[symbol] = None
                    self._opened[symbol] = None

    # -- queries --------------------------------------------------------------------------
    def known(self, client_order_id: str) -> bool:
        """Whether the journal has an intent or a snapshot of this client order id."""
        return client_order_id in self._orders

    def order(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def order_by_venue_id(self, venue_order_id: str) -> Order | None:
        """The order the venue numbered ``venue_order_id`` (from ``order`` snapshots)."""
        cid = self._by_venue_order.get(str(venue_order_id))
        return None if cid is None else self._orders.get(cid)

    def orders(self, open_only: bool = False) -> list[Order]:
        """Every order (latest snapshot), first seen first; ``open_only``: the active ones."""
        orders = list(self._orders.values())
        return [o for o in orders if o.status.is_active] if open_only else orders

    def open_orders(self) -> list[Order]:
        """Active orders: sent, acknowledged, partly filled or with a cancel in flight."""
        return self.orders(open_only=True)

    def intents_without_ack(self) -> list[Order]:
        """Orders sent or maybe sent whose venue state is not known: NEW or SUBMITTED (no
        acknowledgement journaled) or flagged ``unknown``. Look each up by client id."""
        return [
            o
            for o in self._orders.values()
            if o.status in _UNACKED or (o.client_order_id in self._unknown and o.status.is_active)
        ]

    def unknown_orders(self) -> list[str]:
        """Client ids whose last entry is ``unknown`` (reply lost; look up)."""
        return [cid for cid in self._orders if cid in self._unknown]

    def cancel_requested(self) -> list[str]:
        """Client ids with a cancel sent and no terminal snapshot yet."""
        return [cid for cid in self._orders if cid in self._cancel_requested]

    def fills(self) -> list[Fill]:
        """Every booked fill, in journal order (duplicates dropped)."""
        return list(self._fills)

    def has_fill(self, fill: Fill) -> bool:
        """Whether ``fill`` (or a copy of it) is booked (see :func:`fill_key`)."""
        return fill_key(fill) in self._fill_keys

    def balance(self, asset: str) -> float:
        """The total (free + locked) of ``asset``; 0 when never seen."""
        return self.balances.get(asset, 0.0)

    def locked_quote(self) -> float:
        """Quote locked by active buy limit orders (remaining × limit price), an estimate."""
        locked = 0.0
        for order in self._orders.values():
            request = order.request
            if (
                order.status.is_active
                and request.side is OrderSide.BUY
                and request.type is OrderType.LIMIT
                and request.limit_price is not None
            ):
                locked += (order.remaining_quantity or 0.0) * request.limit_price
        return locked

    def positions(self, marks: Mapping[str, float] | None = None) -> dict[str, PositionSnapshot]:
        """Non-flat positions: one per non-quote asset held, as ``ASSET/QUOTE``; ``marks``
        override the last prices seen."""
        prices = {**self.marks, **dict(marks or {})}
        out: dict[str, PositionSnapshot] = {}
        for asset in sorted(self.balances):
            qty = self.balances[asset]
            if asset == self.quote or abs(qty) <= DUST:
                continue
            symbol = f"{asset}/{self.quote}"
            average = self._average.get(symbol)
            mark = prices.get(symbol)
            if mark is None:
                mark = average if average is not None else 0.0
            entry = average if average is not None else mark
            out[symbol] = PositionSnapshot(
                symbol=symbol,
                quantity=qty,
                average_entry_price=entry,
                mark_price=mark,
                realized_pnl=self.realized.get(symbol, 0.0),
                unrealized_pnl=qty * (mark - entry),
                fees_paid=self.fees.get(symbol, 0.0),
                opened_ms=self._opened.get(symbol),
            )
        return out

    def account(
        self, marks: Mapping[str, float] | None = None, *, ts: int | None = None
    ) -> AccountSnapshot:
        """The account by the spot rule (module docstring) at ``ts`` (the last entry's ts
        when None; 0 for an empty journal)."""
        positions = self.positions(marks)
        quote_total = self.balance(self.quote)
        held = sum(p.quantity * p.mark_price for p in positions.values())
        unrealized = sum(p.unrealized_pnl for p in positions.values())
        equity = quote_total + held
        return AccountSnapshot(
            timestamp=ts if ts is not None else (self.last_ts or 0),
            currency=self.quote,
            cash=equity - unrealized,
            equity=equity,
            margin_used=held,
            available=max(quote_total - self.locked_quote(), 0.0),
            leverage=1.0,
            fees_paid=sum(self.fees.values()),
            realized_pnl=sum(self.realized.values()),
            unrealized_pnl=unrealized,
            positions=positions,
        )

    def summary(self) -> JournalSummary:
        statuses = Counter(o.status.value for o in self._orders.values())
        return JournalSummary(
            entries=sum(self.kinds.values()),
            last_seq=self.last_seq,
            last_ts=self.last_ts,
            kinds=dict(self.kinds),
            orders=len(self._orders),
            open_orders=len(self.open_orders()),
            orders_by_status=dict(sorted(statuses.items())),
            fills=len(self._fills),
            fees=sum(self.fees.values()),
            realized_pnl=sum(self.realized.values()),
            last_equity=self.equity_curve[-1] if self.equity_curve else None,
            reconcile_differences=self.reconcile_differences,
            unresolved=self.unresolved,
            anomalies=len(self.anomalies),
        )

    def to_dict(self) -> dict[str, Any]:
        """The whole state as plain data (two states are equal when these are)."""
        return {
            "quote": self.quote,
            "last_seq": self.last_seq,
            "last_ts": self.last_ts,
            "kinds": dict(sorted(self.kinds.items())),
            "orders": {cid: order_to_dict(o) for cid, o in self._orders.items()},
            "unknown": sorted(self._unknown),
            "cancel_requested": sorted(self._cancel_requested),
            "fills": [fill_to_dict(f) for f in self._fills],
            "balances": dict(sorted(self.balances.items())),
            "balances_known": self.balances_known,
            "average": dict(sorted(self._average.items())),
            "opened": dict(sorted(self._opened.items())),
            "realized": dict(sorted(self.realized.items())),
            "fees": dict(sorted(self.fees.items())),
            "marks": dict(sorted(self.marks.items())),
            "equity_curve": list(self.equity_curve),
            "reconcile": [self.reconcile_differences, self.unresolved],
            "anomalies": list(self.anomalies),
        }


def _total(value: Any) -> float:
    """A balance given as a total, ``[free, locked]`` or ``{"free":, "locked":}``."""
    if isinstance(value, Mapping):
        return float(value.get("free", 0.0)) + float(value.get("locked", 0.0))
    if isinstance(value, list | tuple):
        free, locked = value
        return float(free) + float(locked)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a balance is a number, [free, locked] or a mapping, got {value!r}")
    return float(value)


_HANDLERS = {
    "intent": JournalState._on_intent,
    "submitted": JournalState._on_submitted,
    "unknown": JournalState._on_unknown,
    "cancel_request": JournalState._on_cancel_request,
    "order": JournalState._on_order,
    "fill": JournalState._on_fill,
    "session": JournalState._on_session,
    "reconcile": JournalState._on_reconcile,
    "equity": JournalState._on_equity,
}
