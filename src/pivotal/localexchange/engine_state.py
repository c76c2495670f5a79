"""The matching engine's state: one account's orders, fills, balances, listeners, queries.

:class:`EngineState` is the base of :class:`~pivotal.localexchange.engine.MatchingEngine`:
it holds what the engine knows and answers every read (an order by id or client id, open
orders, order history, fills, balances, the authoritative :meth:`EngineState.record`); the
engine adds what changes it (placing, cancelling, the replay).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from pivotal.core.clock import Clock
from pivotal.core.symbols import Symbol
from pivotal.localexchange.engine_ledger import Ledger
from pivotal.localexchange.engine_types import (
    BalanceUpdate,
    EngineUpdate,
    Fill,
    Order,
    SymbolRules,
    UnknownOrder,
    dec,
    text8,
)
from pivotal.localexchange.market import MarketState

log = logging.getLogger(__name__)

Listener = Callable[[EngineUpdate], None]


class EngineState:
    """One venue's account: orders, fills, balances and the reads over them.

    ``rules`` hold every tradable symbol's filters; ``balances`` the initial free amounts
    (every base and quote asset of the symbols starts at 0 unless given); ``fee_rate`` the
    commission as a fraction of the received amount.
    """

    def __init__(
        self,
        venue: str,
        markets: Mapping[Symbol, MarketState],
        clock: Clock,
        rules: Mapping[Symbol, SymbolRules],
        balances: Mapping[str, Decimal | float],
        *,
        fee_rate: Decimal | float = Decimal("0.001"),
    ) -> None:
        missing = [str(s) for s in rules if s not in markets]
        if missing:
            raise ValueError(f"rules for symbols without a market: {', '.join(missing)}")
        self.venue = venue
        self.fee_rate = dec(fee_rate)
        self._markets = markets
        self._clock = clock
        self._rules = dict(rules)
        assets = sorted({a for s in self._rules for a in (s.base, s.quote)})
        self.ledger = Ledger(balances, assets)
        self._orders: dict[int, Order] = {}
        self._by_client: dict[tuple[Symbol, str], list[int]] = {}
        self._open: dict[Symbol, dict[int, Order]] = {s: {} for s in self._rules}
        self._fills: list[Fill] = []
        self._fills_by_order: dict[int, list[Fill]] = {}
        self._taken: dict[Symbol, dict[tuple[str, float], Decimal]] = {s: {} for s in self._rules}
        self._last: dict[Symbol, float] = {}  # the last trade price as replayed
        for symbol in self._rules:
            recent = markets[symbol].trades_recent(1)
            if recent:
                self._last[symbol] = recent[-1].price
        self._listeners: list[Listener] = []
        #: order id → the client id of the request that cancelled it
        self.cancel_ids: dict[int, str] = {}
        self._next_order = 1
        self._next_fill = 1
        self._next_cancel = 1
        self.updated_ms = clock.now_ms()

    # -- listeners --------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(update)`` for every :class:`OrderUpdate` and :class:`BalanceUpdate`
        (synchronously, in the event loop; it must not block)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, update: EngineUpdate) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(update)
            except Exception:
                log.exception("%s engine listener failed on %r", self.venue, update)

    def _flush_balances(self, time_ms: int) -> None:
        touched = self.ledger.take_touched()
        if touched:
            self.updated_ms = time_ms
            self._emit(BalanceUpdate(time_ms, touched))

    # -- queries ----------------------------------------------------------------------------
    @property
    def symbols(self) -> tuple[Symbol, ...]:
        return tuple(self._rules)

    def rules(self, symbol: Symbol) -> SymbolRules:
        return self._rules[symbol]

    def last_price(self, symbol: Symbol) -> Decimal | None:
        """The last replayed trade price of ``symbol`` (None before the first trade)."""
        last = self._last.get(symbol)
        return None if last is None else dec(last)

    def _find(self, symbol: Symbol, order_id: int | None, client_order_id: str | None) -> Order:
        if order_id is not None:
            order = self._orders.get(order_id)
            if order is None or order.symbol != symbol:
                raise UnknownOrder(f"no order {order_id} on {symbol}")
            if client_order_id is not None and order.client_order_id != client_order_id:
                raise UnknownOrder(f"order {order_id} has another client id")
            return order
        if client_order_id is None:
            raise ValueError("give order_id or client_order_id")
        ids = self._by_client.get((symbol, client_order_id))
        if not ids:
            raise UnknownOrder(f"no order with client id {client_order_id!r} on {symbol}")
        return self._orders[ids[-1]]

    def order(
        self, symbol: Symbol, order_id: int | None = None, client_order_id: str | None = None
    ) -> Order:
        """An order by id or client id (the newest with that client id); a snapshot."""
        return self._find(symbol, order_id, client_order_id).snapshot()

    def open_orders(self, symbol: Symbol | None = None) -> list[Order]:
        """Open orders (resting limits and stops waiting), by order id."""
        books = [self._open[symbol]] if symbol is not None else list(self._open.values())
        return sorted((o.snapshot() for book in books for o in book.values()),
                      key=lambda o: o.order_id)  # fmt: skip

    def orders(
        self,
        symbol: Symbol,
        *,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[Order]:
        """The symbol's orders (open and closed) by id: from ``from_id``, or created within
        [start, end] (the oldest ``limit`` from ``start``/``from_id``, else the newest)."""
        rows = [
            o
            for o in self._orders.values()
            if o.symbol == symbol
            and (from_id is None or o.order_id >= from_id)
            and (start_ms is None or o.created_ms >= start_ms)
            and (end_ms is None or o.created_ms <= end_ms)
        ]
        rows = rows[:limit] if (from_id is not None or start_ms is not None) else rows[-limit:]
        return [o.snapshot() for o in rows]

    def fills(
        self,
        symbol: Symbol | None = None,
        *,
        order_id: int | None = None,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> list[Fill]:
        """Fills by id, filtered like :meth:`orders` (``limit`` None: all)."""
        source = self._fills_by_order.get(order_id, []) if order_id is not None else self._fills
        rows = [
            f
            for f in source
            if (symbol is None or f.symbol == symbol)
            and (from_id is None or f.fill_id >= from_id)
            and (start_ms is None or f.time_ms >= start_ms)
            and (end_ms is None or f.time_ms <= end_ms)
        ]
        if limit is not None:
            oldest = from_id is not None or start_ms is not None
            rows = rows[:limit] if oldest else rows[-limit:]
        return rows

    def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Every asset → (free, locked)."""
        return self.ledger.snapshot()

    def record(self) -> dict[str, Any]:
        """The authoritative record: every order and fill (Binance-shaped, by id) and the
        balances ``{asset: {"free", "locked"}}`` (decimal strings)."""
        return {
            "venue": self.venue,
            "market_ms": self._clock.now_ms(),
            "orders": [o.to_binance() for o in self._orders.values()],
            "fills": [f.to_binance() for f in self._fills],
            "balances": {
                asset: {"free": text8(free), "locked": text8(locked)}
                for asset, (free, locked) in self.ledger.snapshot().items()
            },
        }
