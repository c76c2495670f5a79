"""The simulated broker: fills orders against historical (or live-replayed) candles.

It implements :class:`pivotal.core.ports.Broker`, so strategies, the risk manager and the
orchestrator cannot tell it from an exchange. The backtest engine (and later the paper
trading feed) drives it bar by bar with :meth:`SimulatedBroker.on_bar`; accounting lives in
:class:`~pivotal.trading.portfolio.Portfolio`.

**Timing.** Bars are addressed by their index in the candles given per symbol; bar ``i``
opens at ``timestamp[i]`` and closes at ``timestamp[i] + bar_ms`` (UTC ms).
``on_bar(symbol, i)`` says bar ``i`` has just closed. An order is *eligible* in bar ``i``
when ``created_ms + latency_ms <= timestamp[i]`` (an order submitted at the close of bar
``i-1`` is eligible in bar ``i``).

**Fill rules** (in this order within a bar — pessimistic, since the path inside a bar is
unknown: market orders first, then stops, then take-profits, then limits; within a group,
in submission order):

1. GTD orders whose ``expire_at_ms <= timestamp[i]`` (the bar's open) expire.
2. Market orders fill at the bar's **open**. With ``trades`` for the symbol they fill at
   the first trade with ``timestamp >= max(created_ms + latency_ms, bar open)`` inside the
   bar (so a late submission may still fill inside the bar), else at the open if eligible.
   With ``fill_timing="current_close"`` they fill inside :meth:`submit` at the close of the
   last bar passed to ``on_bar``/``mark`` (rejected with "no price yet" before any).
3. A buy stop triggers when ``high >= stop`` and fills at ``max(open, stop)`` (a gap above
   the stop fills at the open); a sell stop when ``low <= stop`` at ``min(open, stop)``.
4. A sell take-profit triggers when ``high >= trigger`` at ``max(open, trigger)``; a buy
   take-profit when ``low <= trigger`` at ``min(open, trigger)``.
5. A buy limit fills when ``low < limit`` (``<=`` with ``limit_fill_on_touch``) at
   ``min(open, limit)``; a sell limit when ``high > limit`` (``>=``) at ``max(open, limit)``.

Before filling, an open position is marked at the bar's open (the price at that moment),
so sizing and margin checks use no later price. Limit fills pay the maker fee and are never
slipped; everything else pays the taker fee and goes through the slippage model. Every
fill price is then clamped to the bar's ``[low, high]``. A fill's ``timestamp`` is the bar's
open (or the trade's time; the clock's time for a ``current_close`` fill).

**Partial fills.** With ``max_volume_fraction`` the fills of one symbol in one bar total at
most that share of the bar's volume (whole lots); the rest of an order stays
``PARTIALLY_FILLED`` and continues on later bars (a market or triggered stop remainder at
later opens, a limit at its limit). A zero-volume bar fills nothing. IOC orders cancel
their rest after their first fill opportunity: the first eligible bar (market, limit) or the
bar in which they trigger (stop, take-profit).

**Sizing.** Quantity orders are rounded down to ``lot_size`` at submit. ``equity_fraction``
orders are sized at their first fill: ``lots = (fraction × base × leverage) //
(lot × price × (1 + fee rate))`` where ``base`` is ``available`` plus the margin the
order frees by closing an opposite position; 0 lots rejects the order
("insufficient funds: 0 lots affordable at <price>"), as backtesting.py cancels it.

**Refusals.** ``submit`` returns a ``REJECTED`` order (the account untouched) for an unknown
symbol, a reduce-only order while flat or on the position's side, a sell that would open or
increase a short when ``allow_short`` is False, a quantity below one lot, insufficient margin
(``(opening × ref + qty × ref × fee) / leverage > available`` plus the margin freed by
the closing part; ``ref`` = the limit price or the last close; skipped before the first
price), or a GTD time already passed. The margin and the short rule are checked again at
every fill; an order refused then is REJECTED (nothing filled yet) or CANCELLED (partly
filled: ``ORDER_TRANSITIONS`` allows no rejection after a fill). Reduce-only orders are cut
to the position at fill (their quantity becomes what was held, so closing it completes
them: FILLED, as on exchanges).

**Protective orders.** A reduce-only stop or take-profit may be submitted *with* the entry
it protects, before that entry has filled: it is accepted while an active entry order on
the opposite side exists, rests untriggered until there is a position for it to reduce, and
then works within the entry's own bar (the entry fills at the open first, the stop may
trigger later in that bar). Whenever a symbol is flat, reduce-only orders that protect no
active entry (none on the opposite side submitted before them) are CANCELLED with
"position closed" (or "entry ended" when their entry was rejected or cancelled).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pivotal.core.candles import Candles
from pivotal.core.orders import (
    ORDER_TRANSITIONS,
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
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.brokers.working import (
    LIMIT,
    MARGIN_TOLERANCE,
    MARKET,
    NO_SHORT,
    PHASE,
    STOP,
    TAKE_PROFIT,
    Book,
    Working,
    first_trade,
    px,
    qty,
)
from pivotal.trading.portfolio import Portfolio
from pivotal.trading.records import FILL_COLUMNS, FILL_DTYPES, empty_fill_frame
from pivotal.trading.slippage import SlippageModel, slippage_from_config

if TYPE_CHECKING:
    from pivotal.core.clock import Clock
    from pivotal.core.trades import Trades
    from pivotal.core.types import COBData

__all__ = ["FILL_COLUMNS", "SimulatedBroker"]


class SimulatedBroker:
    """A :class:`~pivotal.core.ports.Broker` that fills against candles (module docstring).

    ``candles`` maps each tradable symbol to its columnar candles; ``bar_ms`` is the bar
    length; ``trades`` (optional, per symbol, sorted by time) refine market fills to the
    first trade after submission; ``books`` (per symbol, oldest first) feed the order book
    slippage model. ``clock`` stamps submissions and cancellations and the account snapshot.
    """

    def __init__(
        self,
        candles: Mapping[str, Candles],
        clock: Clock,
        config: SimulatedBrokerConfig | None = None,
        *,
        bar_ms: int,
        trades: Mapping[str, Trades] | None = None,
        books: Mapping[str, Sequence[COBData]] | None = None,
        id_prefix: str = "sim",
    ) -> None:
        if not candles:
            raise ValueError("the simulated broker needs candles for at least one symbol")
        if isinstance(bar_ms, bool) or not isinstance(bar_ms, int) or bar_ms <= 0:
            raise ValueError(f"bar_ms must be a positive number of milliseconds, got {bar_ms!r}")
        if not isinstance(id_prefix, str) or not id_prefix:
            raise ValueError("id_prefix must be a non-empty string")
        self.config = config if config is not None else SimulatedBrokerConfig()
        cfg = self.config
        self._clock = clock
        self._bar_ms = bar_ms
        self._prefix = id_prefix
        self._lot = cfg.lot_size
        self._leverage = cfg.leverage
        self._latency = cfg.latency_ms
        self._volume_fraction = cfg.max_volume_fraction
        self._touch = cfg.limit_fill_on_touch
        self._allow_short = cfg.allow_short
        self._at_close = cfg.fill_timing == "current_close"
        self._books: dict[str, Book] = {}
        for symbol, series in candles.items():
            if not isinstance(series, Candles):
                raise TypeError(
                    f"candles of {symbol!r} must be a Candles, got {type(series).__name__}"
                )
            maker, taker = cfg.fees.rates(symbol)
            self._books[symbol] = Book(symbol, series, maker, taker)
        for symbol, tape in (trades or {}).items():
            book = self._known(symbol, "trades")
            if len(tape) and np.any(np.diff(tape.timestamp) < 0):
                raise ValueError(f"trades of {symbol!r} must be sorted by timestamp")
            book.trade_time = tape.timestamp
            book.trade_price = tape.price
        for symbol in books or {}:
            self._known(symbol, "books")
        self._slippage: SlippageModel = slippage_from_config(
            cfg, closes={s: c.close for s, c in candles.items()}, books=books
        )
        self._portfolio = Portfolio(cfg.initial_cash, cfg.currency, cfg.leverage)
        self._orders: dict[str, Working] = {}
        self._events: list[OrderEvent | Fill] = []
        self._fills: list[tuple[int, int, str, str, float, float, float, str, str, str]] = []
        self._seq = 0
        self._auto_id = 0

    def _known(self, symbol: str, what: str) -> Book:
        book = self._books.get(symbol)
        if book is None:
            raise ValueError(
                f"{what} given for {symbol!r}, which has no candles; known: {sorted(self._books)}"
            )
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
        """Submit a market order that fills now, at the close of the last bar passed to
        ``on_bar``/``mark`` (as every market order does with ``fill_timing="current_close"``).

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
        cid = request.client_order_id
        if cid is not None and cid in self._orders:
            existing = self._orders[cid]
            if existing.request == request:
                return existing.order
            raise ValueError(
                f"client_order_id {cid!r} is already used by a different order "
                f"({existing.request}); submit with a new id"
            )
        if cid is None:
            cid = self._next_client_id()
            request = dataclasses.replace(request, client_order_id=cid)
        now = self._clock.now_ms()
        self._seq += 1
        book = self._books.get(request.symbol)
        order = Order(
            request=request,
            client_order_id=cid,
            order_id=f"{self._prefix}-o{self._seq:08d}",
            status=OrderStatus.NEW,
            created_ms=now,
            updated_ms=now,
            quantity=None,
        )
        work = Working(order, self._seq, book, now + self._latency, PHASE[request.type])
        self._orders[cid] = work
        reason = self._refusal_at_submit(work, book, now, at_close)
        if reason is not None or book is None:
            self._transition(
                work, OrderStatus.REJECTED, reason or "unknown symbol", now, quantity=work.quantity
            )
            return work.order
        self._transition(work, OrderStatus.OPEN, "submitted", now, quantity=work.quantity)
        book.active.append(work)
        if at_close and work.phase == MARKET:
            i = book.last_index
            self._execute(work, book, i, now, float(book.close[i]), Liquidity.TAKER, "at close")
            self._end_opportunity(work, now)
        return work.order

    def cancel(self, client_order_id: str) -> Order:
        """Cancel an active order ("cancelled by user"); a terminal order comes back unchanged.

        Raises ``KeyError`` for an unknown id.
        """
        work = self._work(client_order_id)
        if work.order.status.is_active:
            now = self._clock.now_ms()
            self._transition(work, OrderStatus.CANCELLED, "cancelled by user", now)
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
        return self._work(client_order_id).order

    def account(self) -> AccountSnapshot:
        """The account at the clock's time, positions marked at the latest prices."""
        return self._portfolio.snapshot(self._clock.now_ms())

    def drain_events(self) -> list[OrderEvent | Fill]:
        """Every order event and fill since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    # -- engine-driving API -------------------------------------------------------------
    def on_bar(self, symbol: str, index: int) -> None:
        """Bar ``index`` of ``symbol`` has just closed: expire, fill and trigger its orders
        (module docstring), then mark the position at ``close[index]``.

        O(1) and allocation-free when the symbol has no active orders. Bars must come in
        increasing order; skipped bars are allowed only while no order is active.
        """
        try:
            book = self._books[symbol]
        except KeyError:
            raise ValueError(f"unknown symbol {symbol!r}; known: {sorted(self._books)}") from None
        if not book.last_index < index < book.n:
            self._bad_index(book, index)
        if book.active:
            if index != book.last_index + 1 and book.last_index >= 0:
                raise ValueError(
                    f"on_bar({symbol!r}, {index}) skips bars after {book.last_index} while "
                    f"{len(book.active)} order(s) are active: pass every bar so they can fill"
                )
            self._process_bar(book, index)
        book.last_index = index
        if book.has_position:
            self._portfolio.mark(symbol, book.close.item(index))

    def mark(self, symbol: str, index: int) -> None:
        """Only mark ``symbol``'s position at ``close[index]`` (for quiet bars).

        Raises ``ValueError`` if the symbol has active orders: they must see every bar.
        """
        book = self._books.get(symbol)
        if book is None:
            raise ValueError(f"unknown symbol {symbol!r}; known: {sorted(self._books)}")
        if book.active:
            raise ValueError(
                f"{symbol} has {len(book.active)} active order(s); call on_bar({symbol!r}, "
                f"{index}) so they can fill, not mark()"
            )
        if not book.last_index < index < book.n:
            self._bad_index(book, index)
        book.last_index = index
        if book.has_position:
            self._portfolio.mark(symbol, book.close.item(index))

    def has_active_orders(self, symbol: str | None = None) -> bool:
        """Whether ``symbol`` (or any symbol) has OPEN or PARTIALLY_FILLED orders."""
        if symbol is not None:
            book = self._books.get(symbol)
            return book is not None and bool(book.active)
        return any(book.active for book in self._books.values())

    @property
    def portfolio(self) -> Portfolio:
        return self._portfolio

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._books)

    def last_index(self, symbol: str) -> int:
        """The last bar passed to ``on_bar``/``mark`` for ``symbol`` (-1 before any)."""
        return self._known(symbol, "last_index").last_index

    def fills_frame(self) -> pd.DataFrame:
        """Every fill so far, oldest first, with :data:`FILL_COLUMNS` (``bar`` = the bar index
        the fill happened in, ``timestamp`` its time in UTC ms)."""
        if not self._fills:
            return empty_fill_frame()
        frame = pd.DataFrame.from_records(self._fills, columns=list(FILL_COLUMNS))
        return frame.astype(FILL_DTYPES)

    def closed_trades(self) -> pd.DataFrame:
        return self._portfolio.closed_trades()

    def open_trades(self) -> pd.DataFrame:
        return self._portfolio.open_trades()

    # -- submission ---------------------------------------------------------------------
    def _next_client_id(self) -> str:
        while True:
            self._auto_id += 1
            cid = f"{self._prefix}-{self._auto_id:08d}"
            if cid not in self._orders:
                return cid

    def _work(self, client_order_id: str) -> Working:
        work = self._orders.get(client_order_id)
        if work is None:
            raise KeyError(
                f"no order with client_order_id {client_order_id!r} was submitted to this broker"
            )
        return work

    def _bad_index(self, book: Book, index: int) -> None:
        if not 0 <= index < book.n:
            raise IndexError(f"bar {index} is outside {book.symbol}'s {book.n} candles")
        raise ValueError(
            f"bars of {book.symbol} must come in increasing order: got {index} after "
            f"{book.last_index}"
        )

    def _to_lots(self, quantity: float) -> int:
        """Whole lots in ``quantity``, rounded down; a quotient within float error of a whole
        number (1e-13 relative, at most 0.001 lot) counts as that number."""
        exact = quantity / self._lot
        nearest = round(exact)
        if abs(exact - nearest) <= min(1e-3, max(1e-9, 1e-13 * exact)):
            return int(nearest)
        return math.floor(exact)

    def _position_lots(self, position: float) -> int:
        return round(position / self._lot)

    def _refusal_at_submit(
        self, work: Working, book: Book | None, now: int, at_close: bool
    ) -> str | None:
        request = work.request
        if book is None:
            return f"unknown symbol {request.symbol!r}; this broker trades {sorted(self._books)}"
        if request.expire_at_ms is not None and request.expire_at_ms <= now:
            return f"expire time {request.expire_at_ms} has already passed (now {now})"
        if request.quantity is not None:
            lots = self._to_lots(request.quantity)
            if lots == 0:
                return (
                    f"quantity {request.quantity!r} is below the lot size {self._lot!r}; "
                    "order at least one lot"
                )
            work.lots = lots
            as_lots = lots * self._lot
            exact = abs(as_lots - request.quantity) <= 1e-12 * request.quantity
            work.quantity = float(request.quantity) if exact else as_lots
        position = self._portfolio.quantity(book.symbol)
        sign = request.side.sign
        if request.reduce_only:
            if work.phase in (STOP, TAKE_PROFIT) and self._protects_entry(book, work):
                return None  # attached to an entry that has not filled yet
            if position == 0.0:
                return f"reduce-only order while flat: there is no {book.symbol} position to reduce"
            if position * sign > 0:
                return (
                    f"reduce-only {request.side.value} would increase the "
                    f"{'long' if position > 0 else 'short'} position of {qty(position)}"
                )
        elif sign < 0 and not self._allow_short:
            held = max(self._position_lots(position), 0)
            if work.lots is None and held == 0:
                return (
                    "short selling is disabled (allow_short=False): a sell sized by "
                    f"equity_fraction needs a long {book.symbol} position to sell from"
                )
            if work.lots is not None and work.lots > held:
                return (
                    f"short selling is disabled (allow_short=False): selling "
                    f"{qty(work.quantity or 0.0)} would open a short from a position of "
                    f"{qty(position)}"
                )
        if at_close and work.phase == MARKET and book.last_index < 0:
            return "no price yet: fill_timing='current_close' needs a bar passed to on_bar first"
        if work.lots is not None and not request.reduce_only:
            if request.limit_price is not None:
                ref = request.limit_price
            elif book.last_index >= 0:
                ref = float(book.close[book.last_index])
            else:
                return None  # no price known yet: the margin is checked at the fill
            rate = book.maker if work.phase == LIMIT else book.taker
            shortfall = self._margin_shortfall(book, sign, work.quantity or 0.0, ref, rate)
            if shortfall is not None:
                return f"insufficient margin: {shortfall}"
        return None

    def _margin_shortfall(
        self, book: Book, sign: int, quantity: float, price: float, rate: float
    ) -> str | None:
        """None when the account can carry ``quantity`` more at ``price``, else the reason.

        Need = ``(opening × price + quantity × price × rate) / leverage`` where ``opening`` is
        the part beyond an opposite position; room = ``available`` + the margin the closing
        part frees. A pure reduction always passes.
        """
        portfolio = self._portfolio
        position = portfolio.quantity(book.symbol)
        closing = min(quantity, abs(position)) if position * sign < 0 else 0.0
        opening = quantity - closing
        if opening <= MARGIN_TOLERANCE * quantity:
            return None
        need = (opening * price + quantity * price * rate) / self._leverage
        room = portfolio.available
        if closing:
            room += closing * portfolio.mark_price(book.symbol) / self._leverage
        if need > room * (1.0 + MARGIN_TOLERANCE):
            return (
                f"{qty(quantity)} {book.symbol} at {px(price)} needs {px(need)} "
                f"{portfolio.currency} of margin and fees, {px(room)} available"
            )
        return None

    def _affordable_lots(self, work: Working, book: Book, price: float, rate: float) -> int:
        """Lots an ``equity_fraction`` order buys at ``price`` (backtesting.py's sizing)."""
        portfolio = self._portfolio
        base = portfolio.available
        position = portfolio.quantity(book.symbol)
        if position * work.request.side.sign < 0:
            base += abs(position) * portfolio.mark_price(book.symbol) / self._leverage
        fraction = work.request.equity_fraction or 0.0
        lots = (fraction * base * self._leverage) // (self._lot * price * (1.0 + rate))
        return int(lots) if lots > 0 else 0

    # -- bar processing -----------------------------------------------------------------
    def _process_bar(self, book: Book, i: int) -> None:
        ts: int = book.timestamp.item(i)
        if book.has_position:
            self._portfolio.mark(book.symbol, book.open.item(i))
        for work in list(book.active):
            expire = work.request.expire_at_ms
            if expire is not None and expire <= ts:
                self._transition(
                    work, OrderStatus.EXPIRED, f"expired: GTD time {expire} reached", ts
                )
        late = ts + self._bar_ms if book.trade_time is not None else ts
        due = [w for w in book.active if w.eligible_ms <= (late if w.phase == MARKET else ts)]
        if not due:
            return
        if len(due) > 1:
            due.sort(key=lambda w: w.phase)  # stable: submission order within a phase
        opening: float = book.open.item(i)
        high: float = book.high.item(i)
        low: float = book.low.item(i)
        for work in due:
            if work.order.status.is_terminal:
                continue  # cancelled earlier in this bar (reduce-only after a flat position)
            phase = work.phase
            request = work.request
            buy = request.side is OrderSide.BUY
            if phase == MARKET:
                fill_ts, ref = ts, opening
                if book.trade_time is not None and book.trade_price is not None:
                    found = first_trade(
                        book.trade_time,
                        book.trade_price,
                        max(work.eligible_ms, ts),
                        ts + self._bar_ms,
                    )
                    if found is not None:
                        fill_ts, ref = found
                    elif work.eligible_ms > ts:
                        continue  # eligible only by a trade later in the bar: there is none
                self._execute(work, book, i, fill_ts, ref, Liquidity.TAKER, "")
            elif phase == LIMIT:
                limit = request.limit_price or 0.0
                if buy:
                    hit = low <= limit if self._touch else low < limit
                    ref = min(opening, limit)
                else:
                    hit = high >= limit if self._touch else high > limit
                    ref = max(opening, limit)
                if hit:
                    note = f"limit {px(limit)} reached"
                    if ref != limit:
                        note += f" (gap: filled at open {px(opening)})"
                    self._execute(work, book, i, ts, ref, Liquidity.MAKER, note)
            else:
                if request.reduce_only and not self._reduces(book, request.side):
                    continue  # protects an entry that has not filled yet (or is swept below)
                trigger = request.stop_price or 0.0
                upward = buy if phase == STOP else not buy
                if upward:
                    if not high >= trigger:
                        continue
                    ref = max(opening, trigger)
                elif not low <= trigger:
                    continue
                else:
                    ref = min(opening, trigger)
                work.phase = MARKET  # triggered: any remainder is a market order
                kind = "stop" if phase == STOP else "take-profit"
                note = f"{kind} triggered at {px(trigger)}"
                if ref != trigger:
                    note += f" (gap: filled at open {px(opening)})"
                self._execute(work, book, i, ts, ref, Liquidity.TAKER, note)
            self._end_opportunity(work, ts)
        if not book.has_position:
            self._sweep_protective(book, ts, "entry ended")

    def _reduces(self, book: Book, side: OrderSide) -> bool:
        """Whether an order on ``side`` would reduce the symbol's current position."""
        return self._portfolio.quantity(book.symbol) * side.sign < 0

    @staticmethod
    def _protects_entry(book: Book, work: Working) -> bool:
        """An active non-reduce-only order on the opposite side, submitted before ``work``."""
        entry_side = work.request.side.opposite
        return any(
            not other.request.reduce_only
            and other.request.side is entry_side
            and other.seq < work.seq
            and other.order.status.is_active
            for other in book.active
        )

    def _sweep_protective(self, book: Book, ts: int, reason: str) -> None:
        """While flat, cancel reduce-only orders that protect no active entry."""
        for other in list(book.active):
            if (
                other.request.reduce_only
                and other.order.status.is_active
                and not self._protects_entry(book, other)
            ):
                self._transition(other, OrderStatus.CANCELLED, reason, ts)

    def _end_opportunity(self, work: Working, ts: int) -> None:
        if work.request.time_in_force is TimeInForce.IOC and work.order.status.is_active:
            self._transition(
                work,
                OrderStatus.CANCELLED,
                "IOC: unfilled rest cancelled after its first chance",
                ts,
            )

    def _budget(self, book: Book, i: int) -> int | None:
        """Lots still fillable in bar ``i`` under ``max_volume_fraction`` (None = no cap)."""
        if self._volume_fraction is None:
            return None
        if book.budget_bar != i:
            book.budget_bar = i
            volume = float(book.volume[i])
            book.budget_lots = self._to_lots(self._volume_fraction * volume) if volume > 0 else 0
        return book.budget_lots

    def _refuse(self, work: Working, reason: str, ts: int) -> None:
        """Reject an order that has filled nothing, cancel the rest of one that has."""
        status = OrderStatus.REJECTED if work.filled_lots == 0 else OrderStatus.CANCELLED
        self._transition(work, status, reason, ts)

    def _execute(
        self,
        work: Working,
        book: Book,
        i: int,
        ts: int,
        reference: float,
        liquidity: Liquidity,
        note: str,
    ) -> None:
        """Fill what the rules allow of ``work`` in bar ``i`` at ``reference`` (before
        slippage and clamping): sizing, reduce-only and short cuts, the volume cap, the
        margin check, then the fill, its events and the portfolio update."""
        request = work.request
        side = request.side
        rate = book.maker if liquidity is Liquidity.MAKER else book.taker
        budget = self._budget(book, i)
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
            price = self._slippage.adjust(
                side, reference, wanted * self._lot, symbol=book.symbol, bar_index=i, timestamp=ts
            )
        price = min(max(price, float(book.low[i])), float(book.high[i]))
        position = self._portfolio.quantity(book.symbol)
        held = self._position_lots(position)
        if work.lots is None:
            lots = self._affordable_lots(work, book, price, rate)
            if lots == 0:
                self._refuse(work, f"insufficient funds: 0 lots affordable at {px(price)}", ts)
                return
            if side is OrderSide.SELL and not self._allow_short and not request.reduce_only:
                lots = min(lots, max(held, 0))
                if lots == 0:
                    self._refuse(work, NO_SHORT, ts)
                    return
            work.lots = lots
            work.quantity = self._lot * lots
        remaining = (work.lots or 0) - work.filled_lots
        fill = remaining
        cut = ""
        if request.reduce_only:
            if held == 0 or held * side.sign > 0:
                why = "position closed" if held == 0 else "reduce-only: the position flipped"
                self._transition(work, OrderStatus.CANCELLED, why, ts)
                return
            if fill > abs(held):
                # cut to the position, as exchanges do: the order is then complete when the
                # position is closed (FILLED), not a remainder to cancel
                fill = abs(held)
                work.lots = work.filled_lots + fill
                work.quantity = work.filled_qty + abs(position)
        elif side is OrderSide.SELL and not self._allow_short and fill > max(held, 0):
            fill = max(held, 0)
            cut = NO_SHORT
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
        fill_event = Fill(
            order_id=work.order.order_id,
            client_order_id=work.order.client_order_id,
            symbol=book.symbol,
            side=side,
            quantity=quantity,
            price=price,
            fee=fee,
            liquidity=liquidity,
            timestamp=ts,
            tag=request.tag,
        )
        self._portfolio.apply_fill(fill_event, i)
        self._events.append(fill_event)
        self._fills.append(
            (
                ts,
                i,
                book.symbol,
                side.value,
                quantity,
                price,
                fee,
                liquidity.value,
                work.order.client_order_id,
                request.tag,
            )
        )
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
        text = f"filled {qty(quantity)} of {qty(work.quantity or 0.0)} at {px(price)}"
        self._transition(
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
            self._transition(work, OrderStatus.CANCELLED, cut, ts)
        if not book.has_position:
            self._sweep_protective(book, ts, "position closed")

    # -- lifecycle ----------------------------------------------------------------------
    def _transition(
        self, work: Working, status: OrderStatus, reason: str, ts: int, **changes: object
    ) -> None:
        """Move ``work`` to ``status`` through ``ORDER_TRANSITIONS`` and emit its event."""
        previous = work.order.status
        if status not in ORDER_TRANSITIONS[previous]:
            raise RuntimeError(
                f"illegal order transition {previous.value} -> {status.value} for "
                f"{work.order.client_order_id!r} ({reason}): a bug in the simulated broker"
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
        )
        unknown = set(changes) - {"quantity", "filled_quantity", "average_fill_price", "fees_paid"}
        if unknown:
            raise TypeError(f"_transition got unknown order fields {sorted(unknown)}")
        work.order = order
        self._events.append(
            OrderEvent(timestamp=ts, order=order, previous_status=previous, reason=reason)
        )
        if status.is_terminal and work.book is not None and work in work.book.active:
            work.book.active.remove(work)
