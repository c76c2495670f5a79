"""The local exchange's matching engine: one account's orders, fills and balances per venue.

:class:`MatchingEngine` is venue-agnostic (the sites map its types to their wire formats)
and runs in the server's event loop. It is a replay sink: the replayer hands it every flow
event after the venue sites, so orders fill as the replayed market moves, in market time,
whether or not any client is connected.

Matching rules (times are the market clock's, UTC ms):

- **MARKET** walks the current book of the symbol's :class:`MarketState` as taker, level by
  level, by ``quantity`` or by ``quote_quantity`` (quote to spend or receive, the quantity
  rounded down to the lot step per level). Liquidity this account took from a level stays
  taken until a depth diff rewrites that level. A book too thin to fill it all leaves the
  rest unfilled: the order ends ``EXPIRED`` with its partial ``executed_qty`` (Binance's
  status for a MARKET order that could not fill completely).
- **LIMIT** first takes what the book offers at its price or better (taker fills); the rest
  rests (GTC) or expires (IOC; FOK expires whole unless the book fills it all). A resting
  order fills as maker, at its own price, from replayed trade prints that reach it: a buy
  from prints below its price, or at its price when the print's seller was the aggressor
  (``buyer_maker``); a sell symmetrically. A print's quantity is shared among this account's
  resting orders by price then time priority; partial fills follow the print sizes.
- **LIMIT_MAKER** is refused (``would_take``) when it would take liquidity at once.
- **STOP_LOSS / TAKE_PROFIT (_LIMIT)** wait for a trade print through ``stop_price``
  (stop-loss: sell when price <= stop, buy when >=; take-profit the other way) and are
  refused (``would_trigger``) when the last trade already satisfies it. On trigger the
  plain kinds run as MARKET orders, the ``_LIMIT`` kinds as LIMIT orders.

Balances: a resting buy locks price × quantity of the quote asset (a stop-market buy
stop × quantity until triggered), a sell locks its quantity of the base asset; MARKET orders
are checked against the free balance before they execute. Commission is ``fee_rate`` of
the received amount, in the received asset, rounded to 8 decimals. Order and fill ids count
up from 1 per engine: a replay with the same requests gives the same ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal

from pivotal.core.symbols import Symbol
from pivotal.core.timeframes import Timeframe
from pivotal.localexchange.engine_ledger import INSUFFICIENT
from pivotal.localexchange.engine_state import EngineState, Listener
from pivotal.localexchange.engine_types import (
    PRICED_TYPES,
    STOP_TYPES,
    UNIT,
    ZERO,
    Fill,
    Order,
    OrderRejected,
    OrderSpec,
    OrderUpdate,
    SymbolRules,
    UnknownOrder,
    dec,
)
from pivotal.localexchange.flow import DepthDiff, FlowEvent, Kline, TradePrint

__all__ = ["EngineState", "Listener", "MatchingEngine"]

#: Book levels read for one taker walk.
WALK_LEVELS = 1000
_Plan = list[tuple[float, Decimal, Decimal]]  # (book price as served, price, quantity)


class MatchingEngine(EngineState):
    """One venue's account and order book over the replayed markets (module docstring).

    Built with the symbols' ``rules``, the initial ``balances`` and ``fee_rate`` (see
    :class:`~pivotal.localexchange.engine_state.EngineState`).
    """

    # -- placing ----------------------------------------------------------------------------
    def place(self, spec: OrderSpec) -> tuple[Order, list[Fill]]:
        """Accept and execute ``spec``; returns the order after its immediate executions and
        those fills. Raises :class:`OrderRejected` (nothing changed) when refused."""
        rules = self._rules.get(spec.symbol)
        if rules is None:
            raise OrderRejected("invalid", "Invalid symbol.")
        now = self._clock.now_ms()
        self._validate(spec, rules)
        cid = spec.client_order_id or f"auto-{self.venue}-{self._next_order}"
        if any(self._orders[i].is_open for i in self._by_client.get((spec.symbol, cid), ())):
            raise OrderRejected("duplicate", "Duplicate order sent.")
        plan: _Plan = []
        if spec.type == "MARKET":
            plan = self._market_plan(spec.symbol, spec.side, spec.quantity, spec.quote_quantity)
        lock_asset, lock = self._lock_for(spec)
        if lock_asset:
            self.ledger.lock(lock_asset, lock)
        quantity = spec.quantity
        if quantity is None:  # quote-sized MARKET: what the book gives for the amount
            quantity = sum((q for _, _, q in plan), ZERO)
        limit_tif = spec.type in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
        order = Order(
            order_id=self._next_order,
            client_order_id=cid,
            symbol=spec.symbol,
            side=spec.side,
            type=spec.type,
            time_in_force=spec.time_in_force if limit_tif else "GTC",
            quantity=quantity,
            quote_quantity=spec.quote_quantity or ZERO,
            price=spec.price or ZERO,
            stop_price=spec.stop_price or ZERO,
            created_ms=now,
            updated_ms=now,
            working_ms=-1 if spec.type in STOP_TYPES else now,
            locked_asset=lock_asset,
            locked=lock,
        )
        self._next_order += 1
        self._orders[order.order_id] = order
        self._by_client.setdefault((order.symbol, cid), []).append(order.order_id)
        first_fill = len(self._fills)
        self._emit(OrderUpdate(now, "NEW", order.snapshot()))
        if order.type == "MARKET":
            self._execute_market(order, plan, now)
        elif order.is_stop:
            self._open[order.symbol][order.order_id] = order
        else:
            self._run_limit(order, now)
        self._flush_balances(now)
        return order.snapshot(), self._fills[first_fill:]

    def validate(self, spec: OrderSpec) -> None:
        """Check ``spec`` as :meth:`place` would (filters, types, triggers) without placing it
        or checking the balance (Binance's ``order/test``); raises :class:`OrderRejected`."""
        rules = self._rules.get(spec.symbol)
        if rules is None:
            raise OrderRejected("invalid", "Invalid symbol.")
        self._validate(spec, rules)

    def _validate(self, spec: OrderSpec, rules: SymbolRules) -> None:
        kind = spec.type
        if kind not in rules.order_types:
            raise OrderRejected("unsupported", "Unsupported order combination")
        if spec.side not in ("BUY", "SELL"):
            raise OrderRejected("invalid", f"Invalid side {spec.side!r}.")
        if spec.time_in_force not in ("GTC", "IOC", "FOK"):
            raise OrderRejected("invalid", "Invalid timeInForce.")
        market = kind == "MARKET"
        if market and (spec.quantity is None) == (spec.quote_quantity is None):
            raise OrderRejected("invalid", "MARKET takes either quantity or quoteOrderQty.")
        if not market and spec.quantity is None:
            raise OrderRejected("invalid", f"{kind} needs a quantity.")
        if not market and spec.quote_quantity is not None:
            raise OrderRejected("invalid", "quoteOrderQty is for MARKET orders only.")
        if (kind in PRICED_TYPES) != (spec.price is not None):
            verb = "needs" if kind in PRICED_TYPES else "takes no"
            raise OrderRejected("invalid", f"{kind} {verb} price.")
        if (kind in STOP_TYPES) != (spec.stop_price is not None):
            verb = "needs" if kind in STOP_TYPES else "takes no"
            raise OrderRejected("invalid", f"{kind} {verb} stopPrice.")
        book = self._open[spec.symbol]
        if len(book) >= rules.max_orders:
            raise OrderRejected("filter", "Filter failure: MAX_NUM_ORDERS", "MAX_NUM_ORDERS")
        if kind in STOP_TYPES and sum(o.is_stop for o in book.values()) >= rules.max_stop_orders:
            raise OrderRejected(
                "filter", "Filter failure: MAX_NUM_ALGO_ORDERS", "MAX_NUM_ALGO_ORDERS"
            )
        if spec.price is not None:
            rules.check_price(spec.price)
        if spec.stop_price is not None:
            rules.check_price(spec.stop_price)
        executes_as_market = kind in ("MARKET", "STOP_LOSS", "TAKE_PROFIT")
        if spec.quantity is not None:
            rules.check_quantity(spec.quantity, market=executes_as_market)
        if spec.quote_quantity is not None and spec.quote_quantity <= 0:
            raise OrderRejected("invalid", "Invalid quoteOrderQty.")
        rules.check_notional(self._notional(spec), market=executes_as_market)
        if kind in STOP_TYPES:
            last = self.last_price(spec.symbol)
            assert spec.stop_price is not None
            if last is not None and self._triggers(kind, spec.side, spec.stop_price, last):
                raise OrderRejected("would_trigger", "Stop price would trigger immediately.")
        if kind == "LIMIT_MAKER":
            assert spec.price is not None and spec.quantity is not None
            if self._plan(spec.symbol, spec.side, qty=spec.quantity, bound=spec.price):
                raise OrderRejected("would_take", "Order would immediately match and take.")

    def _reference_price(self, symbol: Symbol) -> Decimal:
        """The last trade, else the book's mid (for a MARKET order's notional)."""
        last = self.last_price(symbol)
        if last is not None:
            return last
        top = self._markets[symbol].top()
        return dec(top.bid + top.ask) / 2 if top is not None else ZERO

    def _notional(self, spec: OrderSpec) -> Decimal:
        if spec.quote_quantity is not None:
            return spec.quote_quantity
        assert spec.quantity is not None
        price = spec.price if spec.price is not None else spec.stop_price
        return spec.quantity * (price if price is not None else self._reference_price(spec.symbol))

    def _lock_for(self, spec: OrderSpec) -> tuple[str, Decimal]:
        """What an accepted order locks: (asset, amount), ("", 0) for none (MARKET)."""
        if spec.type == "MARKET":
            return "", ZERO
        assert spec.quantity is not None
        if spec.side == "SELL":
            return spec.symbol.base, spec.quantity
        price = spec.price if spec.price is not None else spec.stop_price
        assert price is not None
        return spec.symbol.quote, spec.quantity * price

    @staticmethod
    def _triggers(kind: str, side: str, stop: Decimal, price: Decimal) -> bool:
        falling = kind.startswith("STOP_LOSS") == (side == "SELL")
        return price <= stop if falling else price >= stop

    # -- executing --------------------------------------------------------------------------
    def _plan(
        self,
        symbol: Symbol,
        side: str,
        *,
        qty: Decimal | None = None,
        quote: Decimal | None = None,
        bound: Decimal | None = None,
    ) -> _Plan:
        """Taker fills the book offers now: (served price, price, qty) per level, best first,
        up to ``qty`` base and/or ``quote`` quote and a limit price ``bound``."""
        book = self._markets[symbol].depth(WALK_LEVELS)
        levels, key = (book.asks, "a") if side == "BUY" else (book.bids, "b")
        taken = self._taken[symbol]
        rules = self._rules[symbol]
        out: _Plan = []
        for raw_price, raw_qty in levels:
            if (qty is not None and qty <= 0) or (quote is not None and quote <= 0):
                break
            price = dec(raw_price)
            if bound is not None and (price > bound if side == "BUY" else price < bound):
                break
            avail = dec(raw_qty) - taken.get((key, raw_price), ZERO)
            if avail <= 0:
                continue
            q = avail if qty is None else min(avail, qty)
            if quote is not None:
                q = min(q, rules.floor_quantity(quote / price))
                if q <= 0:
                    break
                quote -= price * q
            if qty is not None:
                qty -= q
            out.append((raw_price, price, q))
        return out

    def _take(self, order: Order, plan: _Plan, time_ms: int) -> None:
        key = "a" if order.side == "BUY" else "b"
        taken = self._taken[order.symbol]
        for raw_price, price, qty in plan:
            taken[(key, raw_price)] = taken.get((key, raw_price), ZERO) + qty
            self._fill(order, price, qty, time_ms, maker=False)

    def _market_plan(
        self,
        symbol: Symbol,
        side: str,
        qty: Decimal | None,
        quote: Decimal | None,
        *,
        partial: bool = False,
    ) -> _Plan:
        """A MARKET execution's taker fills, checked against the free balance: refused
        (insufficient balance) when it cannot pay, or (``partial``, a triggered stop) cut to
        what the balance pays for."""
        free_quote, free_base = self.ledger.free(symbol.quote), self.ledger.free(symbol.base)
        if side == "BUY":
            if quote is not None and quote > free_quote:
                if not partial:
                    raise OrderRejected("insufficient_balance", INSUFFICIENT)
                quote = free_quote
            plan = self._plan(symbol, side, qty=qty, quote=quote)
            if sum((p * q for _, p, q in plan), ZERO) > free_quote:
                if not partial:
                    raise OrderRejected("insufficient_balance", INSUFFICIENT)
                plan = self._plan(symbol, side, qty=qty, quote=free_quote)
            return plan
        if qty is not None and qty > free_base:
            if not partial:
                raise OrderRejected("insufficient_balance", INSUFFICIENT)
            qty = free_base
        plan = self._plan(symbol, side, qty=qty, quote=quote)
        if sum((q for _, _, q in plan), ZERO) > free_base:
            raise OrderRejected("insufficient_balance", INSUFFICIENT)
        return plan

    def _execute_market(self, order: Order, plan: _Plan, time_ms: int) -> None:
        """Take ``plan``; what the book could not fill expires (Binance's MARKET EXPIRED)."""
        self._take(order, plan, time_ms)
        if order.remaining > 0 or order.executed_qty == 0:
            self._close(order, "EXPIRED", time_ms)

    def _run_limit(self, order: Order, time_ms: int) -> None:
        """Take what the book offers at the limit or better; rest or expire the rest."""
        plan = self._plan(order.symbol, order.side, qty=order.remaining, bound=order.price)
        if order.time_in_force == "FOK" and sum((q for _, _, q in plan), ZERO) < order.remaining:
            self._close(order, "EXPIRED", time_ms)
            return
        self._take(order, plan, time_ms)
        if order.remaining <= 0:
            return
        if order.time_in_force == "GTC":
            self._open[order.symbol][order.order_id] = order
        else:
            self._close(order, "EXPIRED", time_ms)

    def _fill(
        self, order: Order, price: Decimal, qty: Decimal, time_ms: int, *, maker: bool
    ) -> None:
        ledger, symbol = self.ledger, order.symbol
        quote_qty = price * qty
        if order.side == "BUY":
            if order.locked:
                release = min(order.locked, qty * (order.price or order.stop_price))
                if order.remaining == qty:
                    release = order.locked
                ledger.unlock(symbol.quote, release)
                order.locked -= release
            ledger.debit(symbol.quote, quote_qty)
            fee, fee_asset = (qty * self.fee_rate).quantize(UNIT, ROUND_HALF_UP), symbol.base
            ledger.credit(symbol.base, qty - fee)
        else:
            if order.locked:
                release = min(order.locked, qty)
                ledger.unlock(symbol.base, release)
                order.locked -= release
            ledger.debit(symbol.base, qty)
            fee, fee_asset = (quote_qty * self.fee_rate).quantize(UNIT, ROUND_HALF_UP), symbol.quote
            ledger.credit(symbol.quote, quote_qty - fee)
        order.executed_qty += qty
        order.cum_quote += quote_qty
        order.updated_ms = time_ms
        order.status = "FILLED" if order.remaining <= 0 else "PARTIALLY_FILLED"
        fill = Fill(
            self._next_fill, order.order_id, order.client_order_id, symbol, order.side, price,
            qty, quote_qty, fee, fee_asset, time_ms, maker,
        )  # fmt: skip
        self._next_fill += 1
        self._fills.append(fill)
        self._fills_by_order.setdefault(order.order_id, []).append(fill)
        if order.status == "FILLED":
            self._open[symbol].pop(order.order_id, None)
            if order.locked:
                ledger.unlock(order.locked_asset, order.locked)
                order.locked = ZERO
        self._emit(OrderUpdate(time_ms, "TRADE", order.snapshot(), fill))

    def _close(
        self, order: Order, status: str, time_ms: int, cancel_client_order_id: str | None = None
    ) -> None:
        """End an open order as CANCELED or EXPIRED and release what it locked."""
        if order.locked:
            self.ledger.unlock(order.locked_asset, order.locked)
            order.locked = ZERO
        order.status = "CANCELED" if status == "CANCELED" else "EXPIRED"
        order.updated_ms = time_ms
        self._open[order.symbol].pop(order.order_id, None)
        if cancel_client_order_id is not None:
            self.cancel_ids[order.order_id] = cancel_client_order_id
        execution = "CANCELED" if status == "CANCELED" else "EXPIRED"
        self._emit(OrderUpdate(time_ms, execution, order.snapshot(),
                               cancel_client_order_id=cancel_client_order_id))  # fmt: skip

    # -- cancelling -------------------------------------------------------------------------
    def cancel(
        self,
        symbol: Symbol,
        order_id: int | None = None,
        client_order_id: str | None = None,
        *,
        cancel_client_order_id: str | None = None,
    ) -> Order:
        """Cancel an open order; :class:`UnknownOrder` when none matches or it is closed."""
        order = self._find(symbol, order_id, client_order_id)
        if not order.is_open:
            raise UnknownOrder(f"order {order.order_id} is {order.status}, not open")
        now = self._clock.now_ms()
        cancel_id = cancel_client_order_id or self._cancel_id()
        self._close(order, "CANCELED", now, cancel_id)
        self._flush_balances(now)
        return order.snapshot()

    def cancel_all(self, symbol: Symbol) -> list[Order]:
        """Cancel every open order of ``symbol`` (by id); returns them (maybe none)."""
        now = self._clock.now_ms()
        out = []
        for order in sorted(self._open[symbol].values(), key=lambda o: o.order_id):
            self._close(order, "CANCELED", now, self._cancel_id())
            out.append(order.snapshot())
        self._flush_balances(now)
        return out

    def _cancel_id(self) -> str:
        cid = f"cancel-{self.venue}-{self._next_cancel}"
        self._next_cancel += 1
        return cid

    # -- the replay -------------------------------------------------------------------------
    def on_event(self, symbol: Symbol, event: FlowEvent) -> None:
        """A flow event (already applied to the market): trades fill and trigger orders,
        depth diffs give back the liquidity this account took from the levels they rewrite."""
        if type(event) is TradePrint:
            if symbol not in self._open:
                return
            self._last[symbol] = event.price
            if self._open[symbol]:
                self._on_print(symbol, event, dec(event.price))
        elif type(event) is DepthDiff:
            taken = self._taken.get(symbol)
            if taken:
                for level_price, _ in event.bids:
                    taken.pop(("b", level_price), None)
                for level_price, _ in event.asks:
                    taken.pop(("a", level_price), None)

    def _on_print(self, symbol: Symbol, trade: TradePrint, price: Decimal) -> None:
        time_ms = trade.time_ms
        book = self._open[symbol]
        for side in ("BUY", "SELL"):
            reached = [o for o in book.values() if o.side == side and o.resting
                       and self._reaches(o, price, trade.buyer_maker)]  # fmt: skip
            if not reached:
                continue
            sign = -1 if side == "BUY" else 1
            reached.sort(key=lambda o: (sign * o.price, o.order_id))
            left = dec(trade.qty)
            for order in reached:
                qty = min(order.remaining, left)
                self._fill(order, order.price, qty, time_ms, maker=True)
                left -= qty
                if left <= 0:
                    break
        stops = sorted((o for o in book.values() if o.is_stop and not o.triggered
                        and self._triggers(o.type, o.side, o.stop_price, price)),
                       key=lambda o: o.order_id)  # fmt: skip
        for order in stops:
            self._trigger(order, time_ms)
        self._flush_balances(time_ms)

    @staticmethod
    def _reaches(order: Order, price: Decimal, buyer_maker: bool) -> bool:
        if order.side == "BUY":
            return price < order.price or (price == order.price and buyer_maker)
        return price > order.price or (price == order.price and not buyer_maker)

    def _trigger(self, order: Order, time_ms: int) -> None:
        order.triggered = True
        order.working_ms = time_ms
        order.updated_ms = time_ms
        if order.type in ("STOP_LOSS", "TAKE_PROFIT"):
            self._open[order.symbol].pop(order.order_id, None)
            if order.locked:
                self.ledger.unlock(order.locked_asset, order.locked)
                order.locked = ZERO
            plan = self._market_plan(order.symbol, order.side, order.remaining, None, partial=True)
            self._execute_market(order, plan, time_ms)
        else:
            self._open[order.symbol].pop(order.order_id, None)
            self._run_limit(order, time_ms)

    # -- replay sink hooks without effect on the engine ---------------------------------------
    def on_klines(self, symbol: Symbol, klines: Mapping[Timeframe, list[Kline]]) -> None:
        """Klines do not move orders (trade prints do)."""

    def on_second(self, now_ms: int) -> None:
        """Nothing happens on second boundaries."""

    def on_replay_end(self) -> None:
        """Open orders stay open after the replay (the market no longer moves)."""
