"""The simulated broker: fills orders against the bars pushed to it as they close.

It implements :class:`pivotal.core.ports.Broker`: strategies, the risk manager and the
orchestrator cannot tell it from an exchange. Whoever drives it (the backtest engine, the
runtime kernel, a paper-trading feed) pushes each closed bar with :meth:`~SimulatedBroker.
on_bar`; nothing is given up front. Accounting: :class:`~pivotal.trading.portfolio.
Portfolio`; matching rules (timing, fill order and prices, sizing): pure functions in
:mod:`pivotal.trading.brokers.matching`, whose docstring states them.

**Bars.** Every row pushed (``on_bar``'s one row, ``mark``'s rows) is one bar of its
symbol; bars are numbered per symbol in push order from 0, and that number is the ``bar``
of the fills frame and of the portfolio's trades (the engine pushes every candle, so it
equals the candle's index). Open times must increase per symbol; gaps between them are
allowed (a gap in the data). Orders see only the bars pushed through ``on_bar``.

**Partial fills.** With ``max_volume_fraction`` the fills of one symbol in one bar total at
most that share of the bar's volume (whole lots); the rest of an order stays
``PARTIALLY_FILLED`` and continues on later bars (a market or triggered stop remainder at
later opens, a limit at its limit). A zero-volume bar fills nothing. IOC orders cancel
their rest after their first fill opportunity: the first eligible bar (market, limit) or the
bar in which they trigger (stop, take-profit).

**Sizing.** Quantity orders are rounded down to ``lot_size`` at submit. ``equity_fraction``
orders (with ``size_at_fill`` on, also those carrying the decision's quantity) are sized at
their first fill (``matching.affordable_lots``); 0 lots rejects the order ("insufficient
funds: 0 lots affordable at <price>"), as backtesting.py cancels it. With ``size_at_fill``
off the quantity is executed as given, as an exchange does.

**Refusals and protective orders** (a stop sent with the entry it protects): see
:mod:`pivotal.trading.brokers.admission`.

**Venue ids.** It answers at once (NEW → OPEN; never the in-flight SUBMITTED or
PENDING_CANCEL); its deterministic venue ids are described in :mod:`.ledger`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pivotal.core.candles import Candles
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
from pivotal.trading.brokers import matching as m
from pivotal.trading.brokers.admission import protects_entry, submit_refusal, unknown_symbol
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.brokers.ledger import OrderLedger
from pivotal.trading.brokers.working import PHASE, Book, Working
from pivotal.trading.portfolio import Portfolio
from pivotal.trading.records import FILL_COLUMNS
from pivotal.trading.slippage import SlippageModel, slippage_from_config

if TYPE_CHECKING:
    from pivotal.core.clock import Clock
    from pivotal.core.trades import Trades
    from pivotal.core.types import COBData

__all__ = ["FILL_COLUMNS", "SimulatedBroker"]


class SimulatedBroker:
    """A :class:`~pivotal.core.ports.Broker` that fills against pushed bars (module docstring).

    ``clock`` stamps submissions, cancellations and the account snapshot; ``bar_ms`` is the
    bar length (UTC ms). ``symbols`` fixes the tradable symbols (None: a symbol becomes
    tradable when its first bar is pushed). Optional replay data keyed by time: ``trades``
    (per symbol, sorted by time) refine market fills to the first trade after submission;
    ``books`` (per symbol, oldest first) feed the order book slippage model.
    """

    def __init__(
        self,
        clock: Clock,
        config: SimulatedBrokerConfig | None = None,
        *,
        bar_ms: int,
        symbols: Iterable[str] | None = None,
        trades: Mapping[str, Trades] | None = None,
        books: Mapping[str, Sequence[COBData]] | None = None,
        id_prefix: str = "sim",
    ) -> None:
        if isinstance(bar_ms, bool) or not isinstance(bar_ms, int) or bar_ms <= 0:
            raise ValueError(f"bar_ms must be a positive number of milliseconds, got {bar_ms!r}")
        if isinstance(symbols, str):
            raise TypeError(f"symbols must be an iterable of symbols, not the string {symbols!r}")
        self._ledger = OrderLedger(id_prefix)
        self.config = config if config is not None else SimulatedBrokerConfig()
        cfg = self.config
        self._clock = clock
        self._bar_ms = bar_ms
        self._lot = cfg.lot_size
        self._leverage = cfg.leverage
        self._latency = cfg.latency_ms
        self._volume_fraction = cfg.max_volume_fraction
        self._touch = cfg.limit_fill_on_touch
        self._allow_short = cfg.allow_short
        self._at_close = cfg.fill_timing == "current_close"
        self._fixed = symbols is not None
        self._books: dict[str, Book] = {}
        for symbol in symbols or ():
            self._books[symbol] = self._new_book(symbol)
        if self._fixed and not self._books:
            raise ValueError("symbols is empty: give the broker at least one symbol, or None")
        for symbol, tape in (trades or {}).items():
            book = self._book_for(symbol, "trades")
            if len(tape) and np.any(np.diff(tape.timestamp) < 0):
                raise ValueError(f"trades of {symbol!r} must be sorted by timestamp")
            book.trade_time = tape.timestamp
            book.trade_price = tape.price
        for symbol in books or {}:
            self._book_for(symbol, "books")
        self._slippage: SlippageModel = slippage_from_config(cfg, books=books)
        self._record_closes = getattr(self._slippage, "record", None)
        self._portfolio = Portfolio(cfg.initial_cash, cfg.currency, cfg.leverage)

    def _new_book(self, symbol: str) -> Book:
        if not isinstance(symbol, str) or not symbol:
            raise ValueError(f"a symbol must be a non-empty string, got {symbol!r}")
        return Book(symbol, *self.config.fees.rates(symbol))

    def _book_for(self, symbol: str, what: str) -> Book:
        """The book of ``symbol``, created when the broker's symbols are not fixed."""
        book = self._books.get(symbol)
        if book is None:
            if self._fixed:
                raise ValueError(f"{what} for {unknown_symbol(symbol, self._books, fixed=True)}")
            book = self._books[symbol] = self._new_book(symbol)
        return book

    # -- Broker protocol ----------------------------------------------------------------
    def submit(self, request: OrderRequest) -> Order:
        """Accept (NEW → OPEN) or reject (NEW → REJECTED) an order; see the module docstring.

        An existing ``client_order_id`` returns the existing order when the request is
        equal and raises ``ValueError`` when it differs. A None id becomes
        ``f"{id_prefix}-{n:08d}"``.
        """
        return self._submit(request, at_close=self._at_close)

    def submit_at_close(self, request: OrderRequest) -> Order:
        """Submit a market order that fills now, at the close of the last bar pushed (as
        every market order does with ``fill_timing="current_close"``).

        For exits that cannot wait for the next bar's open: the close at the last bar before
        a gap in the data. The fill goes through the same checks, slippage, fees and events
        as any other; it is rejected with "no price yet" before the first bar.
        """
        if not isinstance(request, OrderRequest):
            raise TypeError(f"submit takes an OrderRequest, got {type(request).__name__}")
        if request.type is not OrderType.MARKET:
            raise ValueError(f"submit_at_close takes a market order, got {request.type.value}")
        return self._submit(request, at_close=True)

    def _submit(self, request: OrderRequest, *, at_close: bool) -> Order:
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
        book = self._books.get(request.symbol)
        work = ledger.open(request, cid, now, book, now + self._latency, PHASE[request.type])
        if book is None:
            reason = unknown_symbol(request.symbol, self._books, fixed=self._fixed)
        else:
            reason = submit_refusal(
                work,
                book,
                now=now,
                at_close=at_close,
                position=self._portfolio.quantity(book.symbol),
                lot=self._lot,
                allow_short=self._allow_short,
                size_at_fill=self.config.size_at_fill,
                margin=self._margin_shortfall,
            )
        if reason is not None or book is None:
            ledger.transition(
                work, OrderStatus.REJECTED, reason or "unknown symbol", now, quantity=work.quantity
            )
            return work.order
        ledger.transition(work, OrderStatus.OPEN, "submitted", now, quantity=work.quantity)
        book.active.append(work)
        if at_close and work.phase == m.MARKET:
            self._execute(work, book, now, book.close, Liquidity.TAKER, "at close")
            self._end_opportunity(work, now)
        return work.order

    def cancel(self, client_order_id: str) -> Order:
        """Cancel an active order ("cancelled by user"); a terminal order comes back unchanged.

        Raises ``KeyError`` for an unknown id.
        """
        work = self._ledger.work(client_order_id)
        if work.order.status.is_active:
            now = self._clock.now_ms()
            self._ledger.transition(work, OrderStatus.CANCELLED, "cancelled by user", now)
            book = work.book
            if book is not None and not book.has_position:
                self._sweep_protective(book, now, "entry ended")
        return work.order

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Active orders (OPEN or PARTIALLY_FILLED), in submission order."""
        if symbol is not None:
            book = self._books.get(symbol)
            return [] if book is None else [w.order for w in book.active]
        working = [w for book in self._books.values() for w in book.active]
        working.sort(key=lambda w: w.seq)
        return [w.order for w in working]

    def order(self, client_order_id: str) -> Order:
        """The latest snapshot of an order; ``KeyError`` for an unknown id."""
        return self._ledger.work(client_order_id).order

    def account(self) -> AccountSnapshot:
        """The account at the clock's time, positions marked at the latest prices."""
        return self._portfolio.snapshot(self._clock.now_ms())

    def drain_events(self) -> list[OrderEvent | Fill]:
        """Every order event and fill since the last call, oldest first."""
        return self._ledger.drain()

    # -- bar-driving API ----------------------------------------------------------------
    def on_bar(self, symbol: str, candle: Candles, row: int | None = None) -> None:
        """The bar of ``symbol`` that has just closed: expire, fill and trigger the symbol's
        orders (rules in :mod:`~pivotal.trading.brokers.matching`), then mark the position
        at its close.

        The bar is ``candle``, a one-row :class:`Candles` (what a feed delivers), or with
        ``row`` that row of a longer one (a replay passing its series, saving a view per
        bar). Open times must increase per symbol. Allocation-free when the symbol has no
        active orders.
        """
        book = self._books.get(symbol) or self._book_for(symbol, "on_bar")
        if not isinstance(candle, Candles):
            raise TypeError(f"on_bar takes a Candles row, got {type(candle).__name__}")
        if row is None:
            if len(candle) != 1:
                raise ValueError(
                    f"on_bar({symbol!r}, candle) takes one row (the bar that closed), got "
                    f"{len(candle)}; pass row= to push one row of a longer Candles"
                )
            row = 0
        elif not 0 <= row < len(candle):
            raise IndexError(f"row {row} is outside the {len(candle)} candles given")
        ts: int = candle.timestamp.item(row)
        if ts <= book.ts:
            self._out_of_order(book, ts)
        if self._record_closes is not None and book.bar >= 0:
            self._record_closes(symbol, (book.close,))
        book.source, book.row, book.ts = candle, row, ts
        book.bar += 1
        if book.active:
            self._process_bar(book)
        if book.has_position:
            self._portfolio.mark(symbol, candle.close.item(row))

    def mark(self, symbol: str, candles: Candles) -> None:
        """Bars of ``symbol`` that closed while it had no active order (one or more rows,
        oldest first, the first after the last bar pushed): only mark the position at the
        last close. For quiet spans, where an engine skips the matching step.

        Raises ``ValueError`` if the symbol has active orders: they must see every bar
        through :meth:`on_bar`.
        """
        book = self._book_for(symbol, "mark")
        if book.active:
            raise ValueError(
                f"{symbol} has {len(book.active)} active order(s); push its bars with "
                f"on_bar({symbol!r}, candle) so they can fill, not mark()"
            )
        if not isinstance(candles, Candles):
            raise TypeError(f"mark takes Candles rows, got {type(candles).__name__}")
        n = len(candles)
        if n == 0:
            raise ValueError(f"mark({symbol!r}, candles) takes one or more rows, got none")
        if candles.timestamp.item(0) <= book.ts:
            self._out_of_order(book, candles.timestamp.item(0))
        if self._record_closes is not None:
            if book.bar >= 0:
                self._record_closes(symbol, (book.close,))
            self._record_closes(symbol, candles.close[:-1])  # the span's earlier closes
        book.source, book.row, book.ts = candles, n - 1, candles.timestamp.item(n - 1)
        book.bar += n
        if book.has_position:
            self._portfolio.mark(symbol, candles.close.item(n - 1))

    @staticmethod
    def _out_of_order(book: Book, ts: int) -> None:
        raise ValueError(
            f"bars of {book.symbol} must come in increasing open time: got {ts} after {book.ts}"
        )

    def has_active_orders(self, symbol: str | None = None) -> bool:
        """Whether ``symbol`` (or any symbol) has active orders."""
        if symbol is not None:
            book = self._books.get(symbol)
            return book is not None and bool(book.active)
        return any(book.active for book in self._books.values())

    @property
    def portfolio(self) -> Portfolio:
        return self._portfolio

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols the broker trades (so far, when they were not fixed)."""
        return tuple(self._books)

    def last_index(self, symbol: str) -> int:
        """The number of the last bar pushed for ``symbol`` (from 0; -1 before any)."""
        book = self._books.get(symbol)
        return -1 if book is None else book.bar

    def fills_frame(self) -> pd.DataFrame:
        """Every fill so far, oldest first, with :data:`FILL_COLUMNS` (``bar`` = the number of
        the bar the fill happened in, ``timestamp`` its time in UTC ms)."""
        return self._ledger.fills_frame()

    def closed_trades(self) -> pd.DataFrame:
        return self._portfolio.closed_trades()

    def open_trades(self) -> pd.DataFrame:
        return self._portfolio.open_trades()

    # -- submission ---------------------------------------------------------------------
    def _margin_shortfall(
        self, book: Book, sign: int, quantity: float, price: float, rate: float
    ) -> str | None:
        """None when the account can carry ``quantity`` more at ``price``, else the reason."""
        portfolio = self._portfolio
        short = m.margin_shortfall(
            portfolio.quantity(book.symbol),
            sign,
            quantity,
            price,
            rate,
            leverage=self._leverage,
            available=portfolio.available,
            mark=portfolio.mark_price(book.symbol),
        )
        if short is None:
            return None
        need, room = short
        return (
            f"{m.qty(quantity)} {book.symbol} at {m.px(price)} needs {m.px(need)} "
            f"{portfolio.currency} of margin and fees, {m.px(room)} available"
        )

    def _affordable_lots(self, work: Working, book: Book, price: float, rate: float) -> int:
        """Lots an ``equity_fraction`` order buys at ``price`` (backtesting.py's sizing)."""
        portfolio = self._portfolio
        position = portfolio.quantity(book.symbol)
        freed = 0.0
        if position * work.request.side.sign < 0:
            freed = abs(position) * portfolio.mark_price(book.symbol) / self._leverage
        return m.affordable_lots(
            work.request.equity_fraction or 0.0,
            available=portfolio.available,
            freed=freed,
            leverage=self._leverage,
            lot=self._lot,
            price=price,
            rate=rate,
        )

    # -- bar processing -----------------------------------------------------------------
    def _process_bar(self, book: Book) -> None:
        ts = book.ts
        if book.has_position:
            self._portfolio.mark(book.symbol, book.open)
        transition = self._ledger.transition
        for work in list(book.active):
            expire = work.request.expire_at_ms
            if expire is not None and expire <= ts:
                transition(work, OrderStatus.EXPIRED, f"expired: GTD time {expire} reached", ts)
        late = ts + self._bar_ms if book.trade_time is not None else ts
        due = [w for w in book.active if w.eligible_ms <= (late if w.phase == m.MARKET else ts)]
        if not due:
            return
        if len(due) > 1:
            due.sort(key=lambda w: w.phase)  # stable: submission order within a phase
        opening, high, low = book.open, book.high, book.low
        for work in due:
            if work.order.status.is_terminal:
                continue  # cancelled earlier in this bar (reduce-only after a flat position)
            phase = work.phase
            request = work.request
            buy = request.side is OrderSide.BUY
            if phase == m.MARKET:
                fill_ts, ref = ts, opening
                if book.trade_time is not None and book.trade_price is not None:
                    found = m.first_trade(
                        book.trade_time,
                        book.trade_price,
                        max(work.eligible_ms, ts),
                        ts + self._bar_ms,
                    )
                    if found is not None:
                        fill_ts, ref = found
                    elif work.eligible_ms > ts:
                        continue  # eligible only by a trade later in the bar: there is none
                self._execute(work, book, fill_ts, ref, Liquidity.TAKER, "")
            elif phase == m.LIMIT:
                limit = request.limit_price or 0.0
                found_ref = m.limit_reference(buy, limit, opening, high, low, touch=self._touch)
                if found_ref is not None:
                    note = f"limit {m.px(limit)} reached"
                    if found_ref != limit:
                        note += f" (gap: filled at open {m.px(opening)})"
                    self._execute(work, book, ts, found_ref, Liquidity.MAKER, note)
            else:
                if request.reduce_only and not self._reduces(book, request.side):
                    continue  # protects an entry that has not filled yet (or is swept below)
                trigger = request.stop_price or 0.0
                upward = buy if phase == m.STOP else not buy
                found_ref = m.trigger_reference(upward, trigger, opening, high, low)
                if found_ref is None:
                    continue
                work.phase = m.MARKET  # triggered: any remainder is a market order
                note = f"{m.PHASE_NAMES[phase]} triggered at {m.px(trigger)}"
                if found_ref != trigger:
                    note += f" (gap: filled at open {m.px(opening)})"
                self._execute(work, book, ts, found_ref, Liquidity.TAKER, note)
            self._end_opportunity(work, ts)
        if not book.has_position:
            self._sweep_protective(book, ts, "entry ended")

    def _reduces(self, book: Book, side: OrderSide) -> bool:
        """Whether an order on ``side`` would reduce the symbol's current position."""
        return self._portfolio.quantity(book.symbol) * side.sign < 0

    def _sweep_protective(self, book: Book, ts: int, reason: str) -> None:
        """While flat, cancel reduce-only orders that protect no active entry."""
        for other in list(book.active):
            if (
                other.request.reduce_only
                and other.order.status.is_active
                and not protects_entry(book.active, other)
            ):
                self._ledger.transition(other, OrderStatus.CANCELLED, reason, ts)

    def _end_opportunity(self, work: Working, ts: int) -> None:
        if work.request.time_in_force is TimeInForce.IOC and work.order.status.is_active:
            self._ledger.transition(
                work,
                OrderStatus.CANCELLED,
                "IOC: unfilled rest cancelled after its first chance",
                ts,
            )

    def _budget(self, book: Book) -> int | None:
        """Lots still fillable in the newest bar under ``max_volume_fraction`` (None = no cap)."""
        if self._volume_fraction is None:
            return None
        if book.budget_bar != book.bar:
            book.budget_bar = book.bar
            volume = book.volume
            book.budget_lots = (
                m.to_lots(self._volume_fraction * volume, self._lot) if volume > 0 else 0
            )
        return book.budget_lots

    def _refuse(self, work: Working, reason: str, ts: int) -> None:
        """Reject an order that has filled nothing, cancel the rest of one that has."""
        status = OrderStatus.REJECTED if work.filled_lots == 0 else OrderStatus.CANCELLED
        self._ledger.transition(work, status, reason, ts)

    def _execute(
        self, work: Working, book: Book, ts: int, reference: float, liquidity: Liquidity, note: str
    ) -> None:
        """Fill what the rules allow of ``work`` in the newest bar at ``reference`` (before
        slippage and clamping): sizing, reduce-only and short cuts, the volume cap, the
        margin check, then the fill, its events and the portfolio update."""
        request = work.request
        side = request.side
        rate = book.maker if liquidity is Liquidity.MAKER else book.taker
        budget = self._budget(book)
        if budget == 0:
            return  # the bar's volume share is used up (or the bar traded nothing)
        if work.lots is None:
            wanted = max(self._affordable_lots(work, book, reference, rate), 1)
        else:
            wanted = work.lots - work.filled_lots
        if budget is not None:
            wanted = min(wanted, budget)
        price = reference
        if liquidity is Liquidity.TAKER:
            size = wanted * self._lot
            price = self._slippage.adjust(
                side, reference, size, symbol=book.symbol, bar_index=book.bar, timestamp=ts
            )
        price = min(max(price, book.low), book.high)
        position = self._portfolio.quantity(book.symbol)
        held = m.position_lots(position, self._lot)
        if work.lots is None:
            lots = self._affordable_lots(work, book, price, rate)
            if lots == 0:
                self._refuse(work, f"insufficient funds: 0 lots affordable at {m.px(price)}", ts)
                return
            if side is OrderSide.SELL and not self._allow_short and not request.reduce_only:
                lots = min(lots, max(held, 0))
                if lots == 0:
                    self._refuse(work, m.NO_SHORT, ts)
                    return
            work.lots = lots
            work.quantity = self._lot * lots
        remaining = (work.lots or 0) - work.filled_lots
        fill = remaining
        cut = ""
        if request.reduce_only:
            if held == 0 or held * side.sign > 0:
                why = "position closed" if held == 0 else "reduce-only: the position flipped"
                self._ledger.transition(work, OrderStatus.CANCELLED, why, ts)
                return
            if fill > abs(held):
                # cut to the position, as exchanges do: the order is then complete when the
                # position is closed (FILLED), not a remainder to cancel
                fill = abs(held)
                work.lots = work.filled_lots + fill
                work.quantity = work.filled_qty + abs(position)
        elif side is OrderSide.SELL and not self._allow_short and fill > max(held, 0):
            fill = max(held, 0)
            cut = m.NO_SHORT
            if fill == 0:
                self._refuse(work, cut, ts)
                return
        if budget is not None:
            fill = min(fill, budget)
        if fill == abs(held) and held * side.sign < 0:
            # closes the position exactly, leaving no float dust (checked before the order's
            # own remainder: a protective stop sized at decision time may differ from the
            # position by a fraction of a lot, and its remainder would leave that fraction)
            quantity = abs(position)
        elif fill == remaining and work.quantity is not None:
            quantity = work.quantity - work.filled_qty
        else:
            quantity = fill * self._lot
        shortfall = self._margin_shortfall(book, side.sign, quantity, price, rate)
        if shortfall is not None:
            self._refuse(work, f"insufficient margin at fill: {shortfall}", ts)
            return
        fee = quantity * price * rate
        fill_event = self._ledger.fill(
            work, book, quantity=quantity, price=price, fee=fee, liquidity=liquidity, ts=ts
        )
        self._portfolio.apply_fill(fill_event, book.bar)
        if budget is not None:
            book.budget_lots = budget - fill
        book.has_position = self._portfolio.quantity(book.symbol) != 0.0
        previous = work.filled_qty
        work.average = (
            price
            if work.average is None
            else (work.average * previous + price * quantity) / (previous + quantity)
        )
        work.filled_qty = previous + quantity
        work.filled_lots += fill
        done = work.filled_lots >= (work.lots or 0)
        text = f"filled {m.qty(quantity)} of {m.qty(work.quantity or 0.0)} at {m.px(price)}"
        self._ledger.transition(
            work,
            OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED,
            f"{note}: {text}" if note else text,
            ts,
            quantity=work.quantity,
            filled_quantity=work.filled_qty,
            average_fill_price=work.average,
            fees_paid=work.order.fees_paid + fee,
        )
        if cut and work.order.status.is_active:
            self._ledger.transition(work, OrderStatus.CANCELLED, cut, ts)
        if not book.has_position:
            self._sweep_protective(book, ts, "position closed")
