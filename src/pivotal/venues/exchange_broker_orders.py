"""Placing and cancelling orders for :class:`~pivotal.venues.exchange_broker.ExchangeBroker`
(a mixin: the broker's state lives there).

Placement of one order (``_place``), every step journaled before the next is taken:

1. ``intent`` (the filtered request) and ``submitted`` (attempt n) are appended, durable,
   before the first byte goes out; the order is SUBMITTED.
2. ``create_order`` with the client id. A reply → the venue's status (OPEN, FILLED...) and the
   fills in it.
3. A business refusal (:mod:`~pivotal.venues.venue_errors`: filters, funds, symbol,
   permissions) → REJECTED with the venue's code and what it means; never retried.
4. A timestamp refusal → the clock is resynced and the order sent once more, same id.
5. A rate limit (429/418: nothing executed) → retried after the Retry-After / a jittered
   backoff, ``transient_retries`` times; then REJECTED "not placed" and ``TransientError``
   (the same client id may be submitted again later).
6. A lost reply (timeout, dropped connection, 5xx, Binance -1007) → ``unknown`` is journaled
   and the order is **looked up by its client id** (``lookup_attempts`` times, jittered
   backoff). Found → adopted. Not found → once the request's ``recvWindow`` has passed (the
   venue can no longer accept it), one final look; still not found → sent again ONCE with
   the SAME client id (a venue that has it refuses the duplicate, which is then looked up).
   Never a blind resend with a new id. If its state still cannot be known, the order stays
   SUBMITTED, ``TransientError`` is raised and the next ``drain_events`` reconciles it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, TypeVar

from pivotal.core.errors import OperationalError, PivotalError, TransientError
from pivotal.core.journal import request_to_dict
from pivotal.core.orders import (
    ORDER_TRANSITIONS,
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from pivotal.venues.exchange_broker_book import LOCAL_STOP_REASON, LocalStop
from pivotal.venues.exchange_broker_convert import order_from_venue
from pivotal.venues.order_ids import client_order_id
from pivotal.venues.venue_errors import ErrorKind, classify, explain

if TYPE_CHECKING:
    from pivotal.venues.exchange_broker import ExchangeBroker

#: The reason of a protective stop held locally until its entry fills.
ENTRY_PENDING_REASON = (
    "stop watched locally: its entry had not filled when it was sent (a spot venue refuses a "
    "sell of what is not held)"
)

__all__ = ["NOT_PLACED", "OrderPlacement"]

log = logging.getLogger(__name__)

T = TypeVar("T")

NOT_PLACED: Final = "not placed (retry later): "
"""Reason prefix of an order refused for a transient cause: its client id may be reused."""
_LOOKUP_MARGIN_MS: Final = 250


class OrderPlacement:
    """Submit / cancel / flatten (module docstring). Mixed into ``ExchangeBroker``."""

    # -- the venue, with retries --------------------------------------------------------------
    def _retry_delay(self: ExchangeBroker, attempt: int, initial: float, maximum: float) -> float:
        base = min(maximum, initial * 2 ** max(0, attempt - 1))
        scale = 1.0 + self.config.jitter * (2.0 * self._rng.random() - 1.0)
        blocked = self.limiter.blocked_s() if self.limiter is not None else 0.0
        return max(blocked, base * scale)

    def _call(self: ExchangeBroker, make: Callable[[], Coroutine[Any, Any, T]], what: str) -> T:
        """One venue call, retried on rate limits and lost replies (``transient_retries``
        times, jittered); ``TransientError`` when they run out; other errors propagate."""
        attempt = 0
        while True:
            try:
                return self._loop.call(make(), self.config.call_timeout_s)
            except PivotalError:
                raise
            except Exception as exc:
                kind = classify(exc, self.profile)
                if kind is ErrorKind.CLOSED:
                    raise OperationalError(f"{self.venue}: the client is closed ({what})") from exc
                if kind not in (ErrorKind.RATE_LIMIT, ErrorKind.UNKNOWN_STATUS):
                    raise
                attempt += 1
                if attempt > self.config.transient_retries:
                    raise TransientError(
                        f"{self.venue} {what}: {explain(exc, self.profile)} ({attempt} tries)",
                        retry_after_s=self.limiter.blocked_s() if self.limiter else None,
                    ) from exc
                self._sleep(
                    self._retry_delay(attempt, self.config.retry_initial_s, self.config.retry_max_s)
                )

    # -- submit -------------------------------------------------------------------------------
    def _next_client_id(self: ExchangeBroker, request: OrderRequest) -> str:
        ts = self.clock.now_ms()
        if self._id_ts != ts:
            self._id_ts, self._id_counts = ts, {}
        key = (request.symbol, request.tag)
        index = self._id_counts.get(key, 0)
        while True:
            cid = client_order_id(self.session_id, ts, request.symbol, index, request.tag)
            index += 1
            if cid not in self.book.orders:
                self._id_counts[key] = index
                return cid

    def _refusal(
        self: ExchangeBroker, request: OrderRequest
    ) -> tuple[OrderRequest, str | None, tuple[str, ...]]:
        """The request as it will be sent, or why it is refused before sending."""
        if request.symbol not in self.filters:
            return (
                request,
                (
                    f"{request.symbol} is not traded by this broker ({self.venue}: "
                    f"{', '.join(self.symbols)})"
                ),
                (),
            )
        if request.quantity is None:
            return (
                request,
                (
                    "an exchange broker executes quantities: equity_fraction alone is sized "
                    "at fill time, which only the simulated broker can do; give quantity"
                ),
                (),
            )
        if request.time_in_force is TimeInForce.GTD:
            return request, f"{self.venue} spot orders take no GTD: use GTC or IOC", ()
        filters = self.filters[request.symbol]
        if request.side is OrderSide.BUY and request.reduce_only:
            return request, "reduce_only buy on spot: there is no short position to reduce", ()
        if request.side is OrderSide.SELL:
            held = self.book.held(filters.base)
            if request.quantity > held + 1e-12:
                self._refresh_balances()  # a fill's balance update may still be on its way
                held = self.book.held(filters.base)
            if request.quantity > held + 1e-12:
                if not request.reduce_only:
                    return (
                        request,
                        (
                            f"no shorting on spot: sell {request.quantity:.12g} {filters.base} "
                            f"exceeds the {held:.12g} {filters.base} held"
                        ),
                        (),
                    )
                if held <= 0:
                    return request, f"reduce_only sell: no {filters.base} held", ()
                request = dataclasses.replace(request, quantity=held)
        reference = None
        if request.limit_price is None and request.stop_price is None:
            reference = self._mark(request.symbol)  # prices a market order's notional
        result = filters.apply(request, reference)
        if result.request is None:
            return request, result.refusal, result.notes
        return result.request, None, result.notes

    def submit(self: ExchangeBroker, request: OrderRequest) -> Order:
        """Send ``request`` (module docstring); a business refusal is an order REJECTED with
        its reason. An existing client id returns its order (submission is idempotent)."""
        if not isinstance(request, OrderRequest):
            raise TypeError(f"submit takes an OrderRequest, got {type(request).__name__}")
        self._require_started()
        self._pump()
        cid = request.client_order_id
        if cid is not None:
            existing = self.book.orders.get(cid)
            if existing is not None and not existing.reason.startswith(NOT_PLACED):
                if (existing.symbol, existing.side) != (request.symbol, request.side):
                    raise ValueError(
                        f"client_order_id {cid!r} is already used by {existing.symbol} "
                        f"{existing.side.value} order; submit with a new id"
                    )
                return existing
            if not self.profile.valid_client_id(cid):
                raise ValueError(
                    f"client_order_id {cid!r} is not valid on {self.venue}: at most "
                    f"{self.profile.id_max_length} characters of letters, digits, '-' and '_'"
                )
        else:
            cid = self._next_client_id(request)
        request = dataclasses.replace(request, client_order_id=cid)
        request, refusal, notes = self._refusal(request)
        local = self._watched_locally(request)
        reason = LOCAL_STOP_REASON
        if refusal is not None and self._protects_pending_entry(request):
            # the risk manager sends the stop with its entry; a spot venue refuses a sell of
            # what is not held yet, so the stop is watched here until the entry has filled
            refusal, local, reason = None, True, ENTRY_PENDING_REASON
        now = self.clock.now_ms()
        order = Order(request, cid, cid, OrderStatus.NEW, now, now, request.quantity)
        self.book.add_new(order)
        self.book.journal(
            "intent",
            {"request": request_to_dict(request), "order_id": cid, "notes": list(notes),
             "local_stop": local and refusal is None},
            order,
        )  # fmt: skip
        if refusal is not None:
            self.book.transition(cid, OrderStatus.REJECTED, refusal)
            self._flush()
            return self.book.orders[cid]
        if local:
            self.book.transition(cid, OrderStatus.OPEN, reason)
            self.book.arm(self.book.orders[cid])
            self._flush()
            return self.book.orders[cid]
        return self._place(cid, request)

    def _watched_locally(self: ExchangeBroker, request: OrderRequest) -> bool:
        return (
            request.type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT)
            and not self.profile.native_stops
        )

    def _protects_pending_entry(self: ExchangeBroker, request: OrderRequest) -> bool:
        """A reduce-only stop or take-profit sent while a buy of its symbol still works and is
        not being cancelled (the entry it protects has not filled, so nothing is held to sell
        yet)."""
        return (
            request.reduce_only
            and request.side is OrderSide.SELL
            and request.type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT)
            and any(
                o.side is OrderSide.BUY and o.status is not OrderStatus.PENDING_CANCEL
                for o in self.book.active(request.symbol)
            )
        )

    def _place(
        self: ExchangeBroker, cid: str, send: OrderRequest, *, trigger: float | None = None
    ) -> Order:
        attempt, clock_retried, resent, rate_tries = 0, False, False, 0
        while True:
            attempt += 1
            self._wait_for_gate(cid, local=trigger is not None)
            order = self.book.orders[cid]
            data: dict[str, Any] = {"attempt": attempt}
            if trigger is not None:
                data.update(local_stop=True, trigger_price=trigger)
            self.book.journal("submitted", data, order)
            if order.status is OrderStatus.NEW:
                self.book.transition(cid, OrderStatus.SUBMITTED, "sent to the venue", journal=False)
            self._flush()
            sent_at = self.vclock.venue_now_ms()
            try:
                raw = self._loop.call(self._ops.create(send, cid), self.config.call_timeout_s)
            except PivotalError:
                raise
            except Exception as exc:
                kind = classify(exc, self.profile)
                reason = explain(exc, self.profile)
                if kind is ErrorKind.CLOSED:
                    raise OperationalError(f"{self.venue}: the client is closed") from exc
                if kind is ErrorKind.CLOCK and not clock_retried:
                    clock_retried = True
                    self._resync_clock(reason)
                    continue
                if kind is ErrorKind.RATE_LIMIT:
                    rate_tries += 1
                    if rate_tries <= self.config.transient_retries:
                        self._sleep(self._retry_delay(
                            rate_tries, self.config.retry_initial_s, self.config.retry_max_s
                        ))  # fmt: skip
                        continue
                    self._not_placed(cid, reason, local=trigger is not None)
                    raise TransientError(
                        f"order {cid} not placed: {reason}",
                        retry_after_s=self.limiter.blocked_s() if self.limiter else None,
                    ) from exc
                if kind is ErrorKind.DUPLICATE:
                    found, _ = self._look_up(cid, sent_at)
                    if found is not None:
                        return self._accepted(cid, found, "already at the venue (same client id)")
                    return self._reject(cid, reason)
                if kind is not ErrorKind.UNKNOWN_STATUS:
                    return self._reject(cid, reason)
                self.book.journal(
                    "unknown", {"error": reason, "attempt": attempt}, self.book.orders[cid]
                )
                self._flush()
                found, definitive = self._look_up(cid, sent_at)
                if found is not None:
                    return self._accepted(cid, found, "found by client id after a lost reply")
                if definitive and not resent:
                    resent = True
                    continue
                self._pending_lookups.add(cid)
                raise TransientError(
                    f"order {cid}: the venue's reply was lost ({reason}) and its state could not "
                    "be learned; it stays SUBMITTED and is reconciled on the next drain_events"
                ) from exc
            return self._accepted(cid, raw, "accepted by the venue")

    def _wait_for_gate(self: ExchangeBroker, cid: str, *, local: bool = False) -> None:
        """Wait out a short Retry-After hold; refuse (NOT_PLACED, ``TransientError``) when the
        venue holds requests longer than half a call's timeout (a 418 ban): a request queued
        behind it would time out unsent and leave the order in doubt."""
        blocked = self.limiter.blocked_s() if self.limiter is not None else 0.0
        if blocked <= 0:
            return
        if blocked > self.config.call_timeout_s / 2:
            reason = f"{self.venue} holds requests for {blocked:.0f} s more (rate limit or ban)"
            self._not_placed(cid, reason, local=local)
            raise TransientError(f"order {cid} not placed: {reason}", retry_after_s=blocked)
        self._sleep(blocked)

    def _not_placed(self: ExchangeBroker, cid: str, reason: str, *, local: bool) -> None:
        """The venue surely has not got the order: REJECTED with :data:`NOT_PLACED` (its id
        may be submitted again); a local stop's market order instead leaves the stop OPEN
        (re-armed by the caller: a protective stop is not dropped for a rate limit)."""
        if local:
            self._alert("warning", f"local stop {cid}: market order not placed ({reason})")
            self._flush()
        else:
            self._reject(cid, NOT_PLACED + reason)

    def _look_up(
        self: ExchangeBroker, cid: str, sent_at_ms: int
    ) -> tuple[dict[str, Any] | None, bool]:
        """Find ``cid`` at the venue: ``(order, True)`` when found, ``(None, True)`` when the
        venue says it has no such id after the request's recvWindow passed, ``(None, False)``
        when that could not be learned (look-ups failed)."""
        order = self.book.orders[cid]
        stop = self._ops.is_native_stop(order.request)
        for attempt in range(self.config.lookup_attempts):
            if attempt:
                self._sleep(self._retry_delay(
                    attempt, self.config.lookup_initial_s, self.config.lookup_max_s
                ))  # fmt: skip
            try:
                found = self._loop.call(
                    self._ops.lookup(order.symbol, cid, stop=stop), self.config.call_timeout_s
                )
            except PivotalError:
                raise
            except Exception as exc:
                log.warning("%s look-up of %s failed: %s", self.venue, cid, exc)
                continue
            if found is not None:
                return found, True
        wait_ms = sent_at_ms + self.vclock.recv_window_ms + _LOOKUP_MARGIN_MS
        wait_ms -= self.vclock.venue_now_ms()
        if wait_ms > 0:
            self._sleep(wait_ms / 1000)
        try:
            found = self._loop.call(
                self._ops.lookup(order.symbol, cid, stop=stop), self.config.call_timeout_s
            )
        except PivotalError:
            raise
        except Exception as exc:
            log.warning("%s final look-up of %s failed: %s", self.venue, cid, exc)
            return None, False
        return found, True

    def _accepted(self: ExchangeBroker, cid: str, raw: dict[str, Any], reason: str) -> Order:
        existing = self.book.orders[cid]
        text = existing.reason if existing.reason.startswith(LOCAL_STOP_REASON) else reason
        order = order_from_venue(
            raw, existing=existing, request=None, now_ms=self.clock.now_ms(), reason=text
        )
        if order is not None:
            if order.client_order_id != cid:
                order = dataclasses.replace(order, client_order_id=cid)
            self.book.record(order, reason)
        for trade in raw.get("trades") or []:
            self._apply_trade(dict(trade), client_order_id=cid)
        self._flush()
        return self.book.orders[cid]

    def _reject(self: ExchangeBroker, cid: str, reason: str) -> Order:
        self.book.transition(cid, OrderStatus.REJECTED, reason)
        self._flush()
        return self.book.orders[cid]

    # -- local stops ----------------------------------------------------------------------------
    def _fire_local_stop(self: ExchangeBroker, stop: LocalStop, price: float) -> None:
        """Send the market order of a crossed local stop, under the stop's client id."""
        self.book.local_stops.pop(stop.client_order_id, None)
        order = self.book.orders.get(stop.client_order_id)
        if order is None or order.status.is_terminal or order.request.quantity is None:
            return
        filters = self.filters[order.symbol]
        quantity = order.request.quantity
        if order.side is OrderSide.SELL:
            quantity = min(quantity, self.book.held(filters.base))
        quantity = filters.quantity(quantity, market_order=True)
        reason = f"{LOCAL_STOP_REASON}; triggered at {price:.12g}"
        self.book.record(
            dataclasses.replace(order, reason=reason), reason, journal=False, force=True
        )
        if quantity <= 0:
            self._reject(stop.client_order_id, f"{reason}; nothing left to sell")
            return
        send = dataclasses.replace(
            order.request, type=OrderType.MARKET, stop_price=None, quantity=quantity
        )
        try:
            self._place(stop.client_order_id, send, trigger=price)
        except TransientError as exc:
            current = self.book.orders[stop.client_order_id]
            rearm = current.status.is_active and stop.client_order_id not in self._pending_lookups
            self._alert(
                "warning",
                f"local stop {stop.client_order_id} triggered at {price:.12g}: {exc}"
                + ("; re-armed" if rearm else "; its state is looked up"),
            )
            if rearm:
                self.book.arm(current)
            self._flush()

    # -- cancel ---------------------------------------------------------------------------------
    def cancel(self: ExchangeBroker, client_order_id: str) -> Order:
        """Cancel by client id: CANCELLED, or PENDING_CANCEL until the venue confirms.
        ``KeyError`` for an id this broker does not know."""
        self._require_started()
        self._pump()
        cid = client_order_id
        order = self.order(cid)
        if order.status.is_terminal:
            return order
        if cid in self.book.local_stops:
            self.book.journal("cancel_request", {"local_stop": True}, order)
            self.book.local_stops.pop(cid, None)
            self.book.transition(
                cid, OrderStatus.CANCELLED, "cancelled by user (stop watched locally)"
            )
            self._flush()
            return self.book.orders[cid]
        self.book.journal("cancel_request", {}, order)
        self._flush()
        stop = self._ops.is_native_stop(order.request)
        try:
            raw = self._call(
                lambda: self._ops.cancel(order.symbol, cid, stop=stop), f"cancel {cid}"
            )
        except TransientError as exc:
            current = self.book.orders[cid]
            if OrderStatus.PENDING_CANCEL in ORDER_TRANSITIONS[current.status]:
                self.book.transition(cid, OrderStatus.PENDING_CANCEL, f"cancel sent; {exc}")
            self._pending_lookups.add(cid)
            self._flush()
            return self.book.orders[cid]
        except PivotalError:
            raise
        except Exception as exc:
            kind = classify(exc, self.profile)
            if kind not in (ErrorKind.UNKNOWN_ORDER, ErrorKind.REJECTED):
                raise
            found, _ = self._look_up_now(cid)
            reason = f"cancel refused ({explain(exc, self.profile)})"
            if found is not None:
                return self._accepted(cid, found, reason)
            self._pending_lookups.add(cid)
            self._alert("warning", f"{reason}; order {cid} not found at the venue")
            self._flush()
            return self.book.orders[cid]
        current = self.book.orders[cid]
        new = order_from_venue(raw, existing=current, request=None, now_ms=self.clock.now_ms())
        if new is not None:
            if new.status.is_active:
                new = dataclasses.replace(new, status=OrderStatus.PENDING_CANCEL)
            if new.status is not current.status or new.filled_quantity != current.filled_quantity:
                self.book.record(new, "cancelled by user")
        self._flush()
        return self.book.orders[cid]

    def _look_up_now(self: ExchangeBroker, cid: str) -> tuple[dict[str, Any] | None, bool]:
        order = self.book.orders[cid]
        try:
            found = self._call(
                lambda: self._ops.lookup(
                    order.symbol, cid, stop=self._ops.is_native_stop(order.request)
                ),
                f"look up {cid}",
            )
        except TransientError:
            return None, False
        return found, True

    def cancel_all(self: ExchangeBroker, symbol: str | None = None) -> list[Order]:
        """Cancel every active order (of ``symbol``), then any order still open at the venue
        that this broker does not hold (cancelled by its client id). Returns the broker's
        orders after their cancel."""
        self._require_started()
        self._pump()
        done = [self.cancel(o.client_order_id) for o in self.book.active(symbol)]
        for sym in [symbol] if symbol else self.symbols:
            opens = self._call(lambda s=sym: self._ops.open_orders(s), f"open orders {sym}")
            for raw in opens:
                cid = str(raw.get("clientOrderId") or "")
                if cid and cid in self.book.orders:
                    continue
                try:
                    if cid:
                        self._call(lambda s=sym, c=cid: self._ops.cancel(s, c), f"cancel {cid}")
                    else:
                        venue_id = str(raw.get("id"))
                        self._call(
                            lambda s=sym, v=venue_id: self._client.cancel_order(v, s),
                            f"cancel venue order {venue_id}",
                        )
                    self._alert("info", f"cancelled venue order {cid or raw.get('id')} ({sym}) "
                                "that this broker did not hold")  # fmt: skip
                except (TransientError, Exception) as exc:  # report, go on with the others
                    self._alert("warning", f"could not cancel venue order {raw.get('id')}: {exc}")
        self._flush()
        return done

    def flatten(self: ExchangeBroker, symbol: str) -> Order | None:
        """Sell the free base asset of ``symbol`` at market (filters applied). None when
        nothing is held; a REJECTED order naming the filter when what is held is dust."""
        self._require_started()
        if symbol not in self.filters:
            raise KeyError(f"{symbol} is not traded by this broker ({', '.join(self.symbols)})")
        self._refresh_balances()
        base = self.filters[symbol].base
        free = self.book.free(base)
        if free <= 0:
            return None
        request = OrderRequest(
            symbol=symbol, side=OrderSide.SELL, quantity=free, reduce_only=True, tag="flatten"
        )
        order = self.submit(request)
        if order.status is OrderStatus.REJECTED and order.reason.startswith("filter"):
            self._alert(
                "warning", f"flatten {symbol}: dust left, {free:.12g} {base}: {order.reason}"
            )
        return order
