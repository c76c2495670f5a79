"""The paper broker: exchange-like fills against the live order book, with no exchange.

:class:`PaperBroker` implements :class:`pivotal.core.ports.Broker` and the runtime kernel's
``MarketListener`` (``on_event``): the kernel hands it every market event of the feed, in
order, and the same :class:`~pivotal.trading.execution.ActionExecutor` and
:class:`~pivotal.trading.risk.RiskManager` as in a backtest submit to it. It reads
:class:`~pivotal.core.events.BookLevels` (the top of the book, one per COB second),
:class:`~pivotal.core.events.TradesReceived` (prints) and
:class:`~pivotal.core.events.CandleClosed` (marks); other events and other symbols' events
are ignored. Settings: :class:`~pivotal.trading.brokers.paper_config.PaperBrokerConfig`.
Units: quantities in base units, prices and money in the quote currency, times UTC ms.

**Arrival.** An order reaches the venue ``latency_ms`` after ``submit`` (the clock's time):
``eligible = submit time + latency_ms``. Only books *received after* the submission whose
``event_time >= eligible`` and prints with ``timestamp >= eligible`` can fill it.

**Market orders** fill against the first such book, walking the levels of their side (a buy
the asks, a sell the bids) best first, at most ``max_book_levels`` of them: one
:class:`~pivotal.core.orders.Fill` per level touched, at that level's price, liquidity taker,
``fee = taker rate × quantity × price``, timestamp the book's ``event_time``. What the book
cannot fill stays ``PARTIALLY_FILLED`` (``OPEN`` if nothing filled) and continues on the next
books the same way. The depth the paper broker took from a book is remembered for that book:
a later order walking the same book (two orders in the same second) finds only the rest; a new
book starts afresh (it is the market's own new state).

**Limit orders** marketable on arrival walk the first book like a market order, up to the
limit price (taker); the rest rests on the book. A resting limit fills as maker, at its limit
price, when prints with ``timestamp >=`` its arrival book's time trade *through* it (a buy
when ``price < limit``, a sell when ``price > limit``; a print at the limit does not fill it),
at most the volume of those prints, shared between resting orders by price then submission
order, one fill per order per :class:`TradesReceived`, timestamp the last print used.

**Stop-market and take-profit orders** are armed from ``eligible`` on; a print triggers them
(a buy stop at ``price >= stop``, a sell stop at ``price <= stop``, a sell take-profit at
``price >= trigger``, a buy take-profit at ``price <= trigger``); they then fill like market
orders on the next book received with ``event_time >=`` the trigger print's time.

**Time in force.** IOC orders cancel what is unfilled after their first book (a triggered
stop's first book after its trigger; a limit's arrival book: it never rests). GTD orders
expire when an event of their symbol with ``event_time >= expire_at_ms`` arrives.
``allow_partial_fills=False`` makes each fill opportunity all-or-nothing: a market (or
triggered) order the book cannot fill whole expires ("not enough depth"); a limit rests, and
then fills only when the prints can fill all that remains.

**Spot accounting** (:mod:`~pivotal.trading.brokers.paper_account`): one quote balance, the
base held is the position, no shorting. Refused at submission (``REJECTED`` with the reason,
the account untouched): an unknown symbol; an ``equity_fraction``-only order (an exchange
broker executes quantities and cannot size at the fill: give the quantity, as the risk
manager does); a quantity below one lot; a GTD time already passed; a sell larger than the
free base held (short selling is impossible on spot); a buy whose cost with fees (at the
limit, the trigger, or the best ask) exceeds the free quote ("insufficient funds"); a market
order before the first book, or while the newest book is older than ``book_stale_ms``.
Quantities are rounded down to the lot; prices to the tick (a buy limit down, a sell limit
up, triggers to the nearest). At a fill a market or stop buy takes only what the free quote
pays for; the rest is refused ("insufficient funds at fill": ``REJECTED`` when nothing
filled, else ``CANCELLED``).

**Reduce-only** orders are sells of base held (a reduce-only buy is refused: a spot account
holds no short), cut at the fill to the base held and not reserved by other sells (then
complete: ``FILLED``), ``CANCELLED`` when nothing is held. A reduce-only stop or take-profit
may be submitted with the buy entry it protects, before that entry filled: it is accepted
while an earlier active buy exists and does not trigger while nothing is held. While nothing
is held, reduce-only orders that protect no active entry are ``CANCELLED``.

**Events and journal.** Order changes (:class:`~pivotal.core.orders.OrderEvent`) and fills
are queued and returned by :meth:`PaperBroker.drain_events`, oldest first. With a journal
(:class:`~pivotal.core.journal.OrderJournal`) every ``intent`` (written before the order is
looked at), ``cancel_request``, ``order`` and ``fill`` entry is appended, and durable before
``submit``/``cancel``/``on_event`` return, so ``pivotal orders`` reads a paper session the
way it reads a live one. The broker answers at once (NEW → OPEN or REJECTED; never the
in-flight SUBMITTED or PENDING_CANCEL). Deterministic: the same events and submissions give
the same fills; ids are counters (:mod:`~pivotal.trading.brokers.paper_orders`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from pivotal.core.clock import Clock
from pivotal.core.errors import ConfigError
from pivotal.core.events import BookLevels, CandleClosed, MarketEvent, TradesReceived
from pivotal.core.journal import OrderJournal
from pivotal.core.orders import (
    AccountSnapshot,
    Fill,
    Liquidity,
    Order,
    OrderEvent,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from pivotal.core.symbols import Symbol
from pivotal.trading.brokers.matching import position_lots, px, qty, to_lots
from pivotal.trading.brokers.paper_account import SpotAccount
from pivotal.trading.brokers.paper_config import PaperBrokerConfig
from pivotal.trading.brokers.paper_orders import ARMED, RESTING, WAIT_BOOK, PaperLedger, PaperOrder
from pivotal.trading.brokers.paper_restore import restore_state
from pivotal.trading.brokers.paper_rules import (
    Market,
    first_trigger,
    print_shares,
    protects_entry,
    submit_refusal,
)

if TYPE_CHECKING:
    from pivotal.trading.journal_state import JournalState

__all__ = ["PaperBroker"]


class PaperBroker:
    """A :class:`~pivotal.core.ports.Broker` filling against pushed books and prints.

    ``clock`` stamps submissions, cancellations and account snapshots (the loop's clock);
    ``symbols`` are the tradable ``BASE/QUOTE`` symbols, each quoted in ``config.currency``;
    ``journal`` receives the session's order entries (module docstring).
    """

    def __init__(
        self,
        clock: Clock,
        config: PaperBrokerConfig | None = None,
        *,
        symbols: Iterable[str],
        journal: OrderJournal | None = None,
    ) -> None:
        if not isinstance(clock, Clock):
            raise TypeError(f"clock must have now_ms() (a Clock), got {type(clock).__name__}")
        if config is not None and not isinstance(config, PaperBrokerConfig):
            raise TypeError(f"config must be a PaperBrokerConfig, got {type(config).__name__}")
        if journal is not None and not isinstance(journal, OrderJournal):
            raise TypeError(
                "journal must implement pivotal.core.journal.OrderJournal (append, entries, "
                f"close), got {type(journal).__name__}"
            )
        if isinstance(symbols, str):
            raise TypeError(f"symbols must be an iterable of symbols, not the string {symbols!r}")
        self.config = cfg = config if config is not None else PaperBrokerConfig()
        self._clock = clock
        self._markets: dict[str, Market] = {}
        for symbol in symbols:
            parsed = Symbol.parse(symbol)
            if parsed.quote != cfg.currency or parsed.settle is not None:
                raise ConfigError(
                    f"paper broker symbol {symbol!r}: a spot account in {cfg.currency} trades "
                    f"BASE/{cfg.currency} symbols only; set currency or drop the symbol"
                )
            self._markets[str(parsed)] = Market(str(parsed), cfg)
        if not self._markets:
            raise ConfigError("the paper broker needs at least one symbol to trade")
        self._account = SpotAccount(cfg.initial_cash, cfg.currency)
        self._ledger = PaperLedger(cfg.id_prefix, journal)
        self._used: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}

    # -- Broker protocol -----------------------------------------------------------------
    def submit(self, request: OrderRequest) -> Order:
        """Accept (NEW → OPEN) or refuse (NEW → REJECTED) an order (module docstring).

        An existing ``client_order_id`` returns the existing order when the request is
        equal and raises ``ValueError`` when it differs; a None id becomes
        ``{id_prefix}-{n:08d}``.
        """
        if not isinstance(request, OrderRequest):
            raise TypeError(f"submit takes an OrderRequest, got {type(request).__name__}")
        ledger = self._ledger
        cid = request.client_order_id
        if cid is not None and cid in ledger.orders:
            existing = ledger.orders[cid]
            if existing.request == request:
                return existing.order
            raise ValueError(
                f"client_order_id {cid!r} is already used by a different order "
                f"({existing.request}); submit with a new id"
            )
        if cid is None:
            cid = ledger.next_client_id()
            request = dataclasses.replace(request, client_order_id=cid)
        now = self._clock.now_ms()
        work = ledger.open(request, cid, now)
        work.eligible_ms = now + self.config.latency_ms
        market = self._markets.get(request.symbol)
        if market is None:
            reason: str | None = (
                f"unknown symbol {request.symbol!r}; this paper broker trades "
                f"{sorted(self._markets)}"
            )
        else:
            reason = submit_refusal(work, market, self._account, self.config, now)
        if reason is not None or market is None:
            size = work.quantity or None
            ledger.transition(work, OrderStatus.REJECTED, reason or "", now, quantity=size)
        else:
            self._accept(work, market, now)
        ledger.flush()
        return work.order

    def cancel(self, client_order_id: str) -> Order:
        """Cancel an active order ("cancelled by user"); a terminal order comes back
        unchanged. ``KeyError`` for an unknown id."""
        work = self._ledger.work(client_order_id)
        if work.order.status.is_active:
            now = self._clock.now_ms()
            self._ledger.note(now, "cancel_request", {}, client_order_id, work.symbol)
            market = self._markets[work.symbol]
            self._end(work, market, OrderStatus.CANCELLED, "cancelled by user", now)
            self._sweep(market, now)
            self._ledger.flush()
        return work.order

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Active orders, in submission order."""
        if symbol is not None:
            market = self._markets.get(symbol)
            return [] if market is None else [w.order for w in market.active]
        working = [w for m in self._markets.values() for w in m.active]
        working.sort(key=lambda w: w.seq)
        return [w.order for w in working]

    def order(self, client_order_id: str) -> Order:
        """The latest snapshot of an order; ``KeyError`` for an unknown id."""
        return self._ledger.work(client_order_id).order

    def account(self) -> AccountSnapshot:
        """The spot account at the clock's time (module docstring's accounting)."""
        return self._account.snapshot(self._clock.now_ms())

    def drain_events(self) -> list[OrderEvent | Fill]:
        """Every order event and fill since the last call, oldest first."""
        return self._ledger.drain()

    # -- market listener -------------------------------------------------------------------
    def on_event(self, event: MarketEvent) -> None:
        """Books fill waiting orders, prints trigger stops and fill resting limits, prints
        and candle closes mark the position; other events are ignored."""
        market = self._markets.get(getattr(event, "symbol", ""))
        if market is None:
            return
        if isinstance(event, BookLevels):
            self._on_book(market, event)
        elif isinstance(event, TradesReceived):
            self._on_trades(market, event)
        elif isinstance(event, CandleClosed):
            t = int(event.event_time)
            self._expire(market, t)
            if len(event.candle):
                self._account.mark(market.symbol, float(event.candle.close[-1]), t)
            self._sweep(market, t)
        self._ledger.flush()

    def restore(self, state: JournalState, deposit: float) -> list[str]:
        """A restart: the account and orders rebuilt from the session journal's ``state``
        (``deposit``: the session's starting quote balance); see :mod:`.paper_restore`."""
        account, lines = restore_state(
            self._ledger, self.config, state, deposit, self._clock.now_ms()
        )
        self._account = account
        return lines

    # -- reads -----------------------------------------------------------------------------
    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._markets)

    def book(self, symbol: str) -> BookLevels | None:
        """The newest book of ``symbol`` the broker received (None before any)."""
        return self._markets[symbol].book

    def has_active_orders(self, symbol: str | None = None) -> bool:
        if symbol is not None:
            market = self._markets.get(symbol)
            return market is not None and bool(market.active)
        return any(m.active for m in self._markets.values())

    def closed_trades(self) -> pd.DataFrame:
        """Round trips closed so far (the portfolio's trade table; ``entry_bar``/``exit_bar``
        count the symbol's books received)."""
        return self._account.portfolio.closed_trades()

    def open_trades(self) -> pd.DataFrame:
        return self._account.portfolio.open_trades()

    # -- submission ------------------------------------------------------------------------
    def _accept(self, work: PaperOrder, market: Market, now: int) -> None:
        request = work.request
        self._reserve(work, market)
        work.after_book = market.serial
        text = "accepted"
        if work.limit is not None and work.limit != request.limit_price:
            text += f" (limit on the tick grid: {px(work.limit)})"
        if work.trigger is not None and work.trigger != request.stop_price:
            text += f" (trigger on the tick grid: {px(work.trigger)})"
        self._ledger.transition(work, OrderStatus.OPEN, text, now, quantity=work.quantity)
        market.active.append(work)

    def _reserve(self, work: PaperOrder, market: Market) -> None:
        """Set ``work``'s reservation for what remains of it (module docstring)."""
        cid = work.order.client_order_id
        request = work.request
        if request.side is OrderSide.BUY:
            if work.limit is not None:
                rate = max(market.maker, market.taker)
                self._account.reserve_quote(cid, work.remaining_qty * work.limit * (1.0 + rate))
        elif not request.reduce_only:
            self._account.reserve_base(market.symbol, cid, work.remaining_qty)

    # -- market events ---------------------------------------------------------------------
    def _on_book(self, market: Market, book: BookLevels) -> None:
        t = book.event_time
        if market.book is not None and t < market.book.event_time:
            return  # older than the newest book (a late one): the market has moved on
        self._expire(market, t)
        market.book = book
        market.serial += 1
        self._used[market.symbol] = (np.zeros(len(book.bids)), np.zeros(len(book.asks)))
        for work in list(market.active):
            if (
                work.phase == WAIT_BOOK
                and work.after_book < market.serial
                and work.eligible_ms <= t
                and work.order.status.is_active
            ):
                self._take(work, market, book, t)
        self._sweep(market, t)

    def _take(self, work: PaperOrder, market: Market, book: BookLevels, t: int) -> None:
        """``work``'s turn at ``book``: walk the levels of its side (module docstring)."""
        request = work.request
        buy = request.side is OrderSide.BUY
        levels = book.asks if buy else book.bids
        used = self._used[market.symbol][1 if buy else 0]
        depth = len(levels)
        if self.config.max_book_levels is not None:
            depth = min(depth, self.config.max_book_levels)
        if not buy and request.reduce_only and not self._cut_to_held(work, market, t):
            return
        limit = work.limit
        lot = market.lot
        rate = market.taker
        funds = self._account.quote_free() if buy and limit is None else None
        plan: list[tuple[int, int]] = []
        want = work.remaining_lots
        short = False
        for i in range(depth):
            if want == 0:
                break
            price = float(levels[i, 0])
            if limit is not None and (price > limit if buy else price < limit):
                break
            k = min(to_lots(max(float(levels[i, 1]) - used[i], 0.0), lot), want)
            if k == 0:
                continue
            if funds is not None:
                unit = lot * price * (1.0 + rate)
                afford = int(funds // unit) if funds > 0 else 0
                if afford < k:
                    k, short = afford, True
                funds -= k * unit
            if k:
                plan.append((i, k))
                want -= k
            if short:
                break
        if want and not self.config.allow_partial_fills:
            plan = []
            if limit is None:
                self._end(
                    work,
                    market,
                    OrderStatus.EXPIRED,
                    f"not enough {'free quote' if short else 'depth'}: the book at {t} cannot "
                    f"fill {qty(work.remaining_qty)} {market.base} whole "
                    "(allow_partial_fills=False)",
                    t,
                )
                return
        for i, k in plan:
            size = work.remaining_qty if k == work.remaining_lots else k * lot
            used[i] += size
            note = work.note or ("marketable limit" if limit is not None else "market")
            self._fill(work, market, size, k, float(levels[i, 0]), Liquidity.TAKER, t, note)
        if not work.order.status.is_active:
            return
        if short:
            free = self._account.quote_free()
            self._end(
                work,
                market,
                OrderStatus.REJECTED,
                f"insufficient funds at fill: {px(max(free, 0.0))} {self._account.currency} "
                f"free buys no more {market.base} at the book's prices",
                t,
            )
        elif request.time_in_force is TimeInForce.IOC:
            self._end(
                work,
                market,
                OrderStatus.CANCELLED,
                "IOC: unfilled rest cancelled after its first chance",
                t,
            )
        elif limit is not None:
            work.phase = RESTING
            work.eligible_ms = t  # prints from the arrival book's time on
        else:
            work.after_book = market.serial  # the rest waits for the next book

    def _cut_to_held(self, work: PaperOrder, market: Market, t: int) -> bool:
        """Cut a reduce-only sell to the base held and not reserved by other sells; False
        when nothing is (the order is then cancelled)."""
        cid = work.order.client_order_id
        free = max(self._account.base_free(market.symbol, exclude=cid), 0.0)
        free_lots = to_lots(free, market.lot)
        if free_lots == 0:
            held = self._account.held(market.symbol)
            why = (
                "position closed"
                if position_lots(held, market.lot) == 0
                else f"the {market.base} held is reserved by other open sell orders"
            )
            self._end(work, market, OrderStatus.CANCELLED, why, t)
            return False
        if free_lots < work.remaining_lots:
            exact = abs(free - free_lots * market.lot) <= 1e-9 * market.lot
            work.lots = work.filled_lots + free_lots
            work.quantity = work.filled_qty + (free if exact else free_lots * market.lot)
        return True

    def _on_trades(self, market: Market, event: TradesReceived) -> None:
        trades = event.trades
        if len(trades) == 0:
            return
        self._expire(market, int(event.event_time))
        times, prices = trades.timestamp, trades.price
        held_lots = position_lots(self._account.held(market.symbol), market.lot)
        for work in market.active:
            if work.phase != ARMED or (work.request.reduce_only and held_lots == 0):
                continue
            buy = work.request.side is OrderSide.BUY
            upward = buy if work.request.type is OrderType.STOP_MARKET else not buy
            trigger = work.trigger or 0.0
            j = first_trigger(times, prices, work.eligible_ms, trigger, upward)
            if j is not None:
                work.phase = WAIT_BOOK
                work.after_book = market.serial
                work.eligible_ms = max(work.eligible_ms, int(times[j]))
                kind = "stop" if work.request.type is OrderType.STOP_MARKET else "take-profit"
                work.note = f"{kind} {px(trigger)} triggered by a print at {px(float(prices[j]))}"
        for buy in (True, False):
            resting = [
                w
                for w in market.active
                if w.phase == RESTING and (w.request.side is OrderSide.BUY) == buy
            ]
            if resting:
                resting.sort(
                    key=lambda w: ((-(w.limit or 0.0)) if buy else (w.limit or 0.0), w.seq)
                )
                self._fill_resting(market, resting, trades.timestamp, prices, trades.quantity, buy)
        self._account.mark(market.symbol, float(prices[-1]), int(times[-1]))
        self._sweep(market, int(event.event_time))

    def _fill_resting(
        self,
        market: Market,
        resting: list[PaperOrder],
        times: npt.NDArray[np.int64],
        prices: npt.NDArray[np.float64],
        sizes: npt.NDArray[np.float64],
        buy: bool,
    ) -> None:
        """Resting limits of one side (in priority order) take the volume of the prints that
        traded through them; each print's volume is used once."""
        used = np.zeros(len(times))
        lot = market.lot
        for work in resting:
            if not work.order.status.is_active:
                continue
            limit = work.limit or 0.0
            through = (times >= work.eligible_ms) & (prices < limit if buy else prices > limit)
            idx = np.flatnonzero(through)
            if not len(idx):
                continue
            t = int(times[idx[-1]])
            if not buy and work.request.reduce_only and not self._cut_to_held(work, market, t):
                continue
            avail = np.maximum(sizes[idx] - used[idx], 0.0)
            k = min(to_lots(float(avail.sum()), lot), work.remaining_lots)
            if k == 0 or (k < work.remaining_lots and not self.config.allow_partial_fills):
                continue
            size = work.remaining_qty if k == work.remaining_lots else k * lot
            took = print_shares(avail, size)
            used[idx] += took
            last = int(np.flatnonzero(took > 0)[-1]) if (took > 0).any() else len(idx) - 1
            note = f"limit {px(limit)} traded through"
            self._fill(work, market, size, k, limit, Liquidity.MAKER, int(times[idx[last]]), note)

    # -- fills and endings -----------------------------------------------------------------
    def _fill(
        self,
        work: PaperOrder,
        market: Market,
        size: float,
        lots: int,
        price: float,
        liquidity: Liquidity,
        ts: int,
        note: str,
    ) -> None:
        """Book one execution of ``size`` (``lots`` whole lots) of ``work`` at ``price``."""
        rate = market.maker if liquidity is Liquidity.MAKER else market.taker
        fee = size * price * rate
        fill = self._ledger.fill(
            work, quantity=size, price=price, fee=fee, liquidity=liquidity, ts=ts
        )
        self._account.apply(fill, market.serial)
        previous = work.filled_qty
        work.average = (
            price
            if work.average is None
            else (work.average * previous + price * size) / (previous + size)
        )
        work.filled_qty = previous + size
        work.filled_lots += lots
        done = work.filled_lots >= work.lots
        self._ledger.transition(
            work,
            OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED,
            f"{note}: filled {qty(size)} of {qty(work.quantity)} at {px(price)}",
            ts,
            quantity=work.quantity,
            filled_quantity=work.filled_qty,
            average_fill_price=work.average,
            fees_paid=work.order.fees_paid + fee,
        )
        if done:
            self._account.release(market.symbol, work.order.client_order_id)
            market.active.remove(work)
        else:
            self._reserve(work, market)

    def _end(
        self, work: PaperOrder, market: Market, status: OrderStatus, reason: str, ts: int
    ) -> None:
        """End an active order (a REJECTED of an order that filled a part is CANCELLED)."""
        if status is OrderStatus.REJECTED and work.filled_lots:
            status = OrderStatus.CANCELLED
        self._ledger.transition(work, status, reason, ts)
        self._account.release(market.symbol, work.order.client_order_id)
        if work in market.active:
            market.active.remove(work)

    def _expire(self, market: Market, t: int) -> None:
        for work in list(market.active):
            expire = work.request.expire_at_ms
            if expire is not None and expire <= t:
                self._end(
                    work, market, OrderStatus.EXPIRED, f"expired: GTD time {expire} reached", t
                )

    def _sweep(self, market: Market, ts: int) -> None:
        """While nothing is held, cancel reduce-only orders that protect no active entry."""
        if position_lots(self._account.held(market.symbol), market.lot) != 0:
            return
        for work in list(market.active):
            if work.request.reduce_only and not protects_entry(market, work):
                self._end(
                    work,
                    market,
                    OrderStatus.CANCELLED,
                    "position closed: nothing held to reduce and no entry to protect",
                    ts,
                )
