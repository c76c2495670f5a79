"""The account's user stream: order updates, fills and balances, with a REST fallback.

:class:`OrderStream` runs on the broker's event-loop thread. Per the venue profile and what
the ccxt.pro client supports, one task per method calls ``watch_orders``, ``watch_my_trades``
and ``watch_balance`` in a loop and hands what they return, unconverted, to ``emit`` (the
broker puts it on a thread-safe queue; its loop thread converts, deduplicates and journals).

When a watch fails (a dropped socket, a failed login), the stream:

- emits :class:`StreamDown` and starts REST **polling** every ``poll_interval_s``: the open
  orders of each symbol, the trades since the last fill the broker booked (minus a margin),
  a look-up by client id of each order the broker holds active that is no longer open
  (filled or cancelled meanwhile), and the balance;
- redials with its backoff (ccxt's next ``watch_*`` call reconnects and resubscribes);
- counts the stream as back once a watch returns data or stays pending ``settle_s``
  without an error (ccxt raises at once when a login or subscription fails, and a quiet
  account sends nothing): it emits :class:`StreamUp`, stops polling when every method is
  back, and emits :class:`ReconcileWanted` so the broker reconciles with the venue.

Fills missed by ccxt's ``watchOrders``/``watchMyTrades`` (ccxt#27412: two execution reports
in one burst, and the second never comes out of ``watch_*``; seen against the local exchange
when a limit and a stop fill in the same second) are caught by an **audit poll** every
``audit_interval_s`` while the stream is live, by the polling while it is down, and by the
reconciliation after a reconnect; the broker books each venue trade id once. After
:meth:`start`, one poll runs after ``poll_interval_s`` as well, to catch what happened between
the broker's start-up reconciliation and the stream's subscription.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from pivotal.venues.backoff import Backoff, Sleep
from pivotal.venues.exchange_broker_ops import VenueOps

__all__ = [
    "BalanceSeen",
    "OrderStream",
    "OrdersSeen",
    "ReconcileWanted",
    "StreamDown",
    "StreamEvent",
    "StreamUp",
    "TradesSeen",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OrdersSeen:
    """ccxt order structures (``source``: ``stream`` or ``poll``)."""

    orders: list[dict[str, Any]]
    source: str


@dataclass(frozen=True, slots=True)
class TradesSeen:
    """ccxt trade structures of the account (``source``: ``stream`` or ``poll``)."""

    trades: list[dict[str, Any]]
    source: str


@dataclass(frozen=True, slots=True)
class BalanceSeen:
    """A ccxt balance (possibly only the assets that changed)."""

    balance: dict[str, Any]
    source: str


@dataclass(frozen=True, slots=True)
class StreamDown:
    method: str
    error: str


@dataclass(frozen=True, slots=True)
class StreamUp:
    method: str
    down_s: float


@dataclass(frozen=True, slots=True)
class ReconcileWanted:
    reason: str


StreamEvent = OrdersSeen | TradesSeen | BalanceSeen | StreamDown | StreamUp | ReconcileWanted

ActiveOrders = Callable[[], Iterable[tuple[str, str, bool]]]
"""``(symbol, client_order_id, is_native_stop)`` of the orders the broker holds active."""


class OrderStream:
    """See the module docstring. ``since_ms()``: where trade polling starts (UTC ms, venue
    time; None: the venue's default); ``now_s()``: a monotonic time for the down counters."""

    def __init__(
        self,
        client: Any,
        ops: VenueOps,
        symbols: Iterable[str],
        emit: Callable[[StreamEvent], None],
        *,
        methods: Iterable[str],
        backoff: Backoff,
        poll_interval_s: float,
        active_orders: ActiveOrders,
        since_ms: Callable[[], int | None],
        settle_s: float | None = None,
        audit_interval_s: float | None = None,
        sleep: Sleep = asyncio.sleep,
        now_s: Callable[[], float] | None = None,
    ) -> None:
        self.client = client
        self.ops = ops
        self.symbols = list(symbols)
        self.emit = emit
        has = getattr(client, "has", {}) or {}
        self.methods = [m for m in methods if _has(has, m) and callable(getattr(client, m, None))]
        self.backoff = backoff
        self.poll_interval_s = poll_interval_s
        self.settle_s = settle_s if settle_s is not None else 2 * poll_interval_s
        self.audit_interval_s = audit_interval_s
        self.active_orders = active_orders
        self.since_ms = since_ms
        self._sleep = sleep
        self._now_s = now_s or (lambda: asyncio.get_running_loop().time())
        self.down: dict[str, float] = {}
        self.polls = 0
        self.poll_errors = 0
        self.reconnects = 0
        self.audits = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._poller: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def state(self) -> str:
        """``live`` (every watch up), ``polling`` (some down, or no stream), ``stopped``."""
        if self._stopped:
            return "stopped"
        if not self.methods or self.down:
            return "polling"
        return "live"

    async def start(self) -> None:
        """Start the watches (or, without any, polling for good) and the first poll."""
        self._stopped = False
        for method in self.methods:
            self._tasks.append(asyncio.ensure_future(self._watch(method)))
        if not self.methods:
            self._ensure_poller()
        else:
            self._tasks.append(asyncio.ensure_future(self._first_poll()))
            if self.audit_interval_s:
                self._tasks.append(asyncio.ensure_future(self._audit_loop()))

    async def stop(self) -> None:
        self._stopped = True
        tasks = [*self._tasks, *([self._poller] if self._poller else [])]
        self._tasks, self._poller = [], None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(BaseException):
                await task

    # -- watching -------------------------------------------------------------------------
    async def _first_poll(self) -> None:
        await self._sleep(self.poll_interval_s)
        await self.poll_once()

    async def _audit_loop(self) -> None:
        """While the stream is live, poll every ``audit_interval_s`` for what it missed."""
        assert self.audit_interval_s
        while not self._stopped:
            await self._sleep(self.audit_interval_s)
            if not self.down:  # the poller covers the time the stream is down
                self.audits += 1
                await self.poll_once()

    async def _watch(self, method: str) -> None:
        import ccxt

        attempt = 0
        call = getattr(self.client, method)
        while not self._stopped:
            task = asyncio.ensure_future(call())
            try:
                if method in self.down:
                    done, _ = await asyncio.wait({task}, timeout=self.settle_s)
                    if not done:
                        self._up(method)  # pending without an error: subscribed again
                        attempt = 0
                result = await task
            except asyncio.CancelledError:
                task.cancel()
                raise
            except ccxt.ExchangeClosedByUser:
                return
            except Exception as exc:
                attempt += 1
                if method not in self.down:
                    self.down[method] = self._now_s()
                    self.emit(StreamDown(method, _short(exc)))
                    log.warning("%s %s failed: %s", self.ops.profile.venue, method, _short(exc))
                self._ensure_poller()
                await self._sleep(self.backoff.delay(attempt))
                self.reconnects += 1
                continue
            if method in self.down:
                self._up(method)
            attempt = 0
            self._emit_result(method, result)

    def _up(self, method: str) -> None:
        since = self.down.pop(method, None)
        if since is None:
            return
        self.emit(StreamUp(method, max(0.0, self._now_s() - since)))
        if not self.down:
            self.emit(ReconcileWanted(f"user stream ({method}) back after a disconnect"))

    def _emit_result(self, method: str, result: Any) -> None:
        if method == "watch_orders":
            if result:
                self.emit(OrdersSeen([dict(o) for o in result], "stream"))
        elif method == "watch_my_trades":
            if result:
                self.emit(TradesSeen([dict(t) for t in result], "stream"))
        elif method == "watch_balance" and result:
            self.emit(BalanceSeen(dict(result), "stream"))

    # -- polling --------------------------------------------------------------------------
    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.ensure_future(self._poll_loop())

    async def _poll_loop(self) -> None:
        while not self._stopped and (self.down or not self.methods):
            await self.poll_once()
            await self._sleep(self.poll_interval_s)

    async def poll_once(self) -> bool:
        """One REST poll (module docstring); False when a request failed (logged)."""
        self.polls += 1
        try:
            open_ids: set[str] = set()
            for symbol in self.symbols:
                orders = await self.ops.open_orders(symbol)
                open_ids |= {str(o.get("clientOrderId")) for o in orders}
                if orders:
                    self.emit(OrdersSeen(orders, "poll"))
                trades = await self.ops.my_trades(symbol, self.since_ms())
                if trades:
                    self.emit(TradesSeen(trades, "poll"))
            for symbol, cid, stop in list(self.active_orders()):
                if cid in open_ids or symbol not in self.symbols:
                    continue
                order = await self.ops.lookup(symbol, cid, stop=stop)
                if order is not None:
                    self.emit(OrdersSeen([order], "poll"))
            self.emit(BalanceSeen(await self.ops.balance(), "poll"))
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.poll_errors += 1
            log.warning("%s REST poll failed: %s", self.ops.profile.venue, _short(exc))
            return False

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "methods": list(self.methods),
            "down": sorted(self.down),
            "polls": self.polls,
            "poll_errors": self.poll_errors,
            "reconnects": self.reconnects,
            "audits": self.audits,
        }


def _has(has: Any, method: str) -> bool:
    camel = "".join(w if i == 0 else w.capitalize() for i, w in enumerate(method.split("_")))
    try:
        return bool(has.get(camel, True))
    except AttributeError:
        return True


def _short(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
