"""The live broker: one :class:`~pivotal.core.ports.Broker` over ccxt for Binance, Bybit and
MEXC spot; what differs between them is data (:mod:`~pivotal.venues.venue_profiles`).

Threads. The Broker protocol is synchronous and called by one loop thread. The async ccxt
client lives on the broker's own event-loop thread (:class:`LoopThread`, from ``start()`` to
``close()``); each venue call runs there with ``run_coroutine_threadsafe(...).result(t)``.
The user stream (:class:`~pivotal.venues.order_stream.OrderStream`) runs there too and puts
raw venue data on a thread-safe queue; the caller thread applies and journals it in
``drain_events`` (and before ``submit``, ``cancel`` and ``account``), so the book and the
journal are only ever touched by the caller thread.

Start-up (``start()``): the client is built (``client_factory()``, on the loop thread), the
header rate limiter installed, the clock synced, the markets loaded (every symbol must be a
listed, active spot market: :class:`ConfigError` otherwise), the filters read, the state
rebuilt from the journal (:class:`~pivotal.trading.journal_state.JournalState`), the stops it
watches itself re-armed, and the venue reconciled (venue wins; journaled). A venue that
cannot be reached or read makes ``start()`` raise :class:`OperationalError`: the broker
refuses to start rather than trade on a state it could not check. Then the user stream and
the periodic clock resync start.

Orders: see :mod:`~pivotal.venues.exchange_broker_orders` (placement, look-up after a lost
reply, cancel, flatten) and :mod:`~pivotal.venues.exchange_broker_sync` (stream data,
venue state, reconciliation). Stops on a venue without spot stop orders (MEXC) are watched
here: ``on_event`` fires a market order under the stop's client id when a trade or candle
crosses the trigger; the order's reason says "stop watched locally (venue has no spot stop
orders)", and so does its intent in the journal (``local_stop: true``).

Account (the spot rule of the contract): positions are the venue's base balances (free +
locked); average entry, realized PnL and fees come from the journaled fills; marks from
``on_event`` (a candle's close, the last trade), else the venue's ticker.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

from pivotal.core.clock import Clock
from pivotal.core.errors import ConfigError, OperationalError, PivotalError
from pivotal.core.events import CandleClosed, MarketEvent, TradesReceived
from pivotal.core.journal import OrderJournal
from pivotal.core.orders import AccountSnapshot, Order, PositionSnapshot
from pivotal.core.ports import BrokerEvent
from pivotal.trading.journal_state import JournalState
from pivotal.trading.reconcile import ReconcileReport
from pivotal.venues.backoff import Backoff
from pivotal.venues.exchange_broker_book import LOCAL_STOP_REASON, BrokerBook
from pivotal.venues.exchange_broker_config import ExchangeBrokerConfig
from pivotal.venues.exchange_broker_loop import LoopThread
from pivotal.venues.exchange_broker_ops import VenueOps
from pivotal.venues.exchange_broker_orders import OrderPlacement
from pivotal.venues.exchange_broker_sync import VenueSync
from pivotal.venues.header_limiter import HeaderRateLimiter
from pivotal.venues.order_stream import OrderStream, StreamEvent
from pivotal.venues.venue_clock import VenueClock
from pivotal.venues.venue_filters import SymbolFilters
from pivotal.venues.venue_profiles import profile

__all__ = ["ExchangeBroker", "ExchangeBrokerConfig"]

log = logging.getLogger(__name__)


class _LocalClock:
    """The local wall clock of the venue clock, as a :class:`Clock` (the limiter's)."""

    def __init__(self, vclock: VenueClock) -> None:
        self._vclock = vclock

    def now_ms(self) -> int:
        return self._vclock.local_ms()


class ExchangeBroker(OrderPlacement, VenueSync):
    """The live broker (module docstring).

    ``client_factory()`` returns the signed async ccxt.pro client (e.g. a closure over
    :func:`~pivotal.venues.trading_client.create_trading_client`); it is called on the
    broker's loop thread. ``clock``: the node's clock (journal times, client-id times).
    ``session_id`` keeps client ids of sessions apart (and must stay the same across a
    restart for a re-decided bar to get the same id). ``sleep`` waits on the caller thread
    (retries, look-ups); ``local_ms`` is the local clock ccxt stamps requests with.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        *,
        venue: str,
        symbols: Iterable[str],
        clock: Clock,
        journal: OrderJournal,
        config: ExchangeBrokerConfig | None = None,
        session_id: str,
        sleep: Callable[[float], None] = time.sleep,
        local_ms: Callable[[], int] | None = None,
    ) -> None:
        self.profile = profile(venue)
        self.venue = self.profile.venue
        self.symbols = list(dict.fromkeys(symbols))
        if not self.symbols:
            raise ConfigError("ExchangeBroker needs at least one symbol")
        if not session_id:
            raise ConfigError("ExchangeBroker needs a session_id (it keeps client ids apart)")
        self.clock = clock
        self.journal = journal
        self.config = config or ExchangeBrokerConfig()
        self.session_id = session_id
        self._factory = client_factory
        self._sleep = sleep
        self._loop = LoopThread(f"pivotal-{self.venue}-broker")
        clock_args: dict[str, Any] = {"local_ms": local_ms} if local_ms is not None else {}
        self.vclock = VenueClock(
            recv_window_ms=self.config.recv_window_ms,
            resync_s=self.config.clock_resync_s,
            **clock_args,
        )
        self.limiter: HeaderRateLimiter | None = None
        self.book = BrokerBook(clock.now_ms)
        self.filters: dict[str, SymbolFilters] = {}
        self._jstate = JournalState(quote=self.config.quote)
        self._queue: queue.Queue[StreamEvent] = queue.Queue()
        self._rng = random.Random(f"{self.config.seed}:{self.venue}:broker")
        self._client: Any = None
        self._ops: VenueOps = None  # type: ignore[assignment]  # set by start()
        self.stream: OrderStream | None = None
        self._started = False
        self._closed = False
        self._pending_lookups: set[str] = set()
        self._pending_fills: set[tuple[Any, ...]] = set()
        self._next_lookup_ms = 0
        self._orphans: list[tuple[dict[str, Any], int]] = []
        self._id_ts: int | None = None
        self._id_counts: dict[tuple[str, str], int] = {}
        self._active_snapshot: tuple[tuple[str, str, bool], ...] = ()
        self._last_fill_ms: int | None = None
        self._reconcile_wanted: str | None = None
        self.last_report: ReconcileReport | None = None
        self.foreign_updates = 0
        self._mark_ms: dict[str, int] = {}

    # -- lifecycle --------------------------------------------------------------------------
    def _require_client(self) -> None:
        if self._client is None or self._closed:
            raise OperationalError(f"{self.venue} broker is not started (call start())")

    def _require_started(self) -> None:
        if not self._started or self._closed:
            raise OperationalError(f"{self.venue} broker is not started (call start())")

    def start(self) -> ReconcileReport:
        """Connect, sync the clock, load markets, rebuild from the journal, reconcile, start
        the user stream (module docstring). Returns the start-up reconciliation report."""
        if self._started:
            assert self.last_report is not None
            return self.last_report
        if self._closed:
            raise OperationalError(f"{self.venue} broker was closed; make a new one")
        self._loop.start()
        try:
            return self._start()
        except BaseException:
            self._shutdown()
            raise

    async def _connect(self) -> Any:
        client = self._factory()
        self.limiter = HeaderRateLimiter(
            self.profile,
            _LocalClock(self.vclock),
            fraction=self.config.rate_limit_fraction,
            jitter=min(self.config.jitter, 0.99),
            seed=self.config.seed,
        )
        self.limiter.install(client)
        self.vclock.configure(client)
        return client

    async def _prepare(self) -> dict[str, Any]:
        await self.vclock.sync(self._client)
        return dict(await self._client.load_markets())

    def _start(self) -> ReconcileReport:
        timeout = self.config.call_timeout_s
        self._client = self._loop.call(self._connect(), timeout)
        self._ops = VenueOps(self._client, self.profile)
        try:
            markets = self._loop.call(self._prepare(), timeout * 2)
        except PivotalError:
            raise
        except Exception as exc:
            raise OperationalError(
                f"refusing to start: {self.venue} could not be reached to sync the clock and "
                f"load markets ({type(exc).__name__}: {exc}); check the network / rest_url"
            ) from exc
        mode = int(getattr(self._client, "precisionMode", 4) or 4)
        for symbol in self.symbols:
            market = markets.get(symbol)
            if market is None:
                raise ConfigError(f"{symbol} is not listed on {self.venue}: check the symbol")
            filters = SymbolFilters.from_market(market, mode)
            if not filters.spot:
                raise ConfigError(f"{symbol} on {self.venue} is not a spot market")
            if not filters.active:
                raise ConfigError(f"{symbol} is listed on {self.venue} but not tradable now")
            self.filters[symbol] = filters
        self._rebuild()
        try:
            report = self.reconcile()
        except (OperationalError, ConfigError):
            raise
        except Exception as exc:
            raise OperationalError(
                f"refusing to start: reconciliation with {self.venue} could not complete "
                f"({type(exc).__name__}: {exc}); nothing was traded"
            ) from exc
        self._loop.call(self._start_stream(), timeout)
        self._loop.spawn(self._clock_task())
        self._started = True
        return report

    def _rebuild(self) -> None:
        self._jstate = JournalState.rebuild(self.journal.entries(), quote=self.config.quote)
        for order in self._jstate.orders():
            self.book.orders[order.client_order_id] = order
            if order.venue_order_id:
                self.book.by_venue_id[str(order.venue_order_id)] = order.client_order_id
        for fill in self._jstate.fills():
            self._last_fill_ms = max(self._last_fill_ms or 0, fill.timestamp)
        self.book.marks.update({s: p for s, p in self._jstate.marks.items() if s in self.symbols})
        unknown = set(self._jstate.unknown_orders())
        local = {
            e.client_order_id
            for e in self.journal.entries(kinds=["intent"])
            if e.data.get("local_stop")
        }
        for order in self._jstate.open_orders():
            if (
                (self._watched_locally(order.request) or order.client_order_id in local)
                and order.venue_order_id is None
                and order.client_order_id not in unknown
                and order.symbol in self.filters
            ):
                self.book.arm(order)

    async def _start_stream(self) -> None:
        methods = list(self.profile.user_stream)
        if not self.config.stream_balance:
            methods = [m for m in methods if m != "watch_balance"]
        self.stream = OrderStream(
            self._client,
            self._ops,
            self.symbols,
            self._queue.put_nowait,
            methods=methods,
            backoff=Backoff(
                initial_s=self.config.reconnect_initial_s,
                factor=2.0,
                max_s=self.config.reconnect_max_s,
                jitter=self.config.jitter,
                rng=random.Random(f"{self.config.seed}:{self.venue}:stream"),
            ),
            poll_interval_s=self.config.poll_interval_s,
            audit_interval_s=self.config.audit_interval_s,
            active_orders=lambda: self._active_snapshot,
            since_ms=self._fills_since,
        )
        await self.stream.start()

    async def _clock_task(self) -> None:
        while True:
            await asyncio.sleep(self.vclock.resync_s)
            try:
                await self.vclock.sync(self._client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s clock resync failed: %s", self.venue, exc)

    def close(self) -> None:
        """Stop the stream, journal what it delivered, close the client and the loop thread.
        The journal stays open (its owner closes it)."""
        if self._closed:
            return
        try:
            if self._started:
                self._pump()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self._closed = True
        self._started = False
        if self._loop.running:
            stream, client = self.stream, self._client
            try:
                if stream is not None:
                    self._loop.call(stream.stop(), 10)
                if client is not None:
                    self._loop.call(client.close(), 10)
            except Exception as exc:  # closing must finish
                log.warning("%s: closing the client failed: %r", self.venue, exc)
            self._loop.stop()

    def __enter__(self) -> ExchangeBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Broker -----------------------------------------------------------------------------
    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Active orders (sent, open, partly filled, cancel in flight, stops watched here)."""
        self._pump_if_started()
        return self.book.active(symbol)

    def order(self, client_order_id: str) -> Order:
        """The latest snapshot; ``KeyError`` for an unknown client id."""
        order = self.book.orders.get(client_order_id)
        if order is None:
            raise KeyError(f"no order with client id {client_order_id!r} at this broker")
        return order

    def drain_events(self) -> list[BrokerEvent]:
        """What happened since the last call, oldest first: the stream's data applied and
        journaled, a reconciliation when the stream came back or orders are in doubt."""
        self._require_started()
        self._pump()
        self._reconcile_if_wanted()
        return self.book.take_events()

    def _pump_if_started(self) -> None:
        if self._started and not self._closed:
            self._pump()

    def on_event(self, event: MarketEvent) -> None:
        """Marks from candles (close) and trades (last); local stops crossed fire."""
        if isinstance(event, CandleClosed):
            if len(event.candle) == 0:
                return
            last = float(event.candle.close[-1])
            low, high = float(event.candle.low.min()), float(event.candle.high.max())
        elif isinstance(event, TradesReceived):
            prices = event.trades.price
            if len(prices) == 0:
                return
            last, low, high = float(prices[-1]), float(prices.min()), float(prices.max())
        else:
            return
        self._set_mark(event.symbol, last)
        if not self._started or self._closed:
            return
        for stop in self.book.crossed_stops(event.symbol, low, high):
            self._fire_local_stop(stop, last)

    def _set_mark(self, symbol: str, price: float) -> None:
        self.book.marks[symbol] = price
        self._mark_ms[symbol] = self.vclock.local_ms()

    def _mark(self, symbol: str) -> float | None:
        """The last price of ``symbol``: from ``on_event``, else (or when older than
        ``mark_max_age_s``) the venue's ticker; the stale one when the ticker fails."""
        mark = self.book.marks.get(symbol)
        age_ms = self.vclock.local_ms() - self._mark_ms.get(symbol, -(10**15))
        fresh = mark is not None and age_ms <= self.config.mark_max_age_s * 1000
        if not fresh and self._started and not self._closed:
            try:
                price = self._call(lambda: self._ops.last_price(symbol), f"ticker {symbol}")
            except Exception as exc:  # the account is still worth reporting
                log.warning("%s: no fresh mark for %s: %s", self.venue, symbol, exc)
                return mark
            if price:
                self._set_mark(symbol, price)
                mark = price
        return mark

    def account(self) -> AccountSnapshot:
        """The account by the spot rule (module docstring); a base holding the venue would
        not take in a sell (below its minimum quantity or step: fee dust) is no position."""
        self._pump_if_started()
        quote = self.config.quote
        free_q, locked_q = self.book.balances.get(quote, (0.0, 0.0))
        journal_positions = self._jstate.positions(self.book.marks)
        positions: dict[str, PositionSnapshot] = {}
        dust_value = 0.0
        for symbol in self.symbols:
            filters = self.filters.get(symbol)
            base = filters.base if filters is not None else symbol.split("/")[0]
            qty = self.book.held(base)
            if abs(qty) <= 1e-12:
                continue
            known = journal_positions.get(f"{base}/{quote}")
            mark = self._mark(symbol)
            if mark is None:
                mark = known.average_entry_price if known is not None else 0.0
            if filters is not None and qty < _sellable(filters):
                dust_value += qty * mark  # left by fees in the base asset: not a position
                continue
            average = known.average_entry_price if known is not None else mark
            positions[symbol] = PositionSnapshot(
                symbol=symbol,
                quantity=qty,
                average_entry_price=average,
                mark_price=mark,
                realized_pnl=self._jstate.realized.get(symbol, 0.0),
                unrealized_pnl=qty * (mark - average),
                fees_paid=self._jstate.fees.get(symbol, 0.0),
                opened_ms=known.opened_ms if known is not None else None,
            )
        held = sum(p.quantity * p.mark_price for p in positions.values())
        unrealized = sum(p.unrealized_pnl for p in positions.values())
        equity = free_q + locked_q + held + dust_value
        return AccountSnapshot(
            timestamp=self.clock.now_ms(),
            currency=quote,
            cash=equity - unrealized,
            equity=equity,
            margin_used=held,
            available=free_q,
            leverage=1.0,
            fees_paid=sum(self._jstate.fees.values()),
            realized_pnl=sum(self._jstate.realized.values()),
            unrealized_pnl=unrealized,
            positions=positions,
        )

    # -- diagnostics ------------------------------------------------------------------------
    @property
    def journal_state(self) -> JournalState:
        """The journal's state as this broker keeps it (read only)."""
        return self._jstate

    def local_stop_ids(self) -> list[str]:
        """Client ids of the stops this broker watches itself (not yet fired)."""
        return list(self.book.local_stops)

    def health(self) -> dict[str, Any]:
        return {
            "venue": self.venue,
            "started": self._started,
            "stream": self.stream.snapshot() if self.stream is not None else None,
            "clock": self.vclock.snapshot(),
            "limiter": self.limiter.snapshot() if self.limiter is not None else None,
            "pending_lookups": sorted(self._pending_lookups),
            "orphan_trades": len(self._orphans),
            "stale_updates": self.book.stale_updates,
            "local_stops": len(self.book.local_stops),
            "local_stop_reason": LOCAL_STOP_REASON,
        }


def _sellable(filters: SymbolFilters) -> float:
    """The smallest base quantity the venue takes in a sell: below it a holding is dust
    (what fees charged in the base asset leave behind), not a position the risk manager could
    close; its value still counts in the equity."""
    floor = max(
        filters.market_min_qty or 0.0,
        filters.min_qty or 0.0,
        filters.market_step or 0.0,
        filters.amount_step or 0.0,
    )
    return floor
