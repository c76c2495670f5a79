"""The venue calls of the live broker, as coroutines on the broker's loop thread.

:class:`VenueOps` speaks ccxt with the venue's :class:`VenueProfile`: orders are placed,
looked up and cancelled *by client id* (Binance ``newClientOrderId``/``origClientOrderId``,
Bybit ``orderLinkId``, MEXC ``newClientOrderId``/``origClientOrderId``), stop orders get the
venue's trigger param. Results are ccxt's structures, unconverted: the broker converts them
on its own thread (:mod:`~pivotal.venues.exchange_broker_convert`). Nothing here journals,
retries or sleeps; errors propagate as ccxt raised them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pivotal.core.orders import OrderRequest, OrderType, TimeInForce
from pivotal.venues.venue_errors import ErrorKind, classify
from pivotal.venues.venue_profiles import VenueProfile

__all__ = ["RawVenueState", "VenueOps"]


@dataclass(slots=True)
class RawVenueState:
    """What :meth:`VenueOps.snapshot` fetched, as ccxt returned it.

    ``open_orders``: per symbol; ``looked_up``: client id → the order, or None where the
    venue said it does not know the id; ``by_venue_id``: orders fetched by venue id for
    trades that name no client id; ``trades``: per symbol since ``since_ms``; ``settled``:
    no trade appeared while it was read (see :meth:`VenueOps.snapshot`)."""

    ts: int
    open_orders: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    looked_up: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    by_venue_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    trades: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    balance: dict[str, Any] = field(default_factory=dict)
    settled: bool = False


#: Snapshots taken at most while the venue keeps filling between the requests of one.
SNAPSHOT_ATTEMPTS = 3
#: Pages of trades read per symbol in one snapshot at most (a bound, not a budget: 100,000
#: trades at Binance's 1,000 per page).
MAX_TRADE_PAGES = 100


class VenueOps:
    """ccxt calls by client id (module docstring); ``client`` is an async ccxt(.pro) client."""

    def __init__(self, client: Any, profile: VenueProfile) -> None:
        self.client = client
        self.profile = profile

    def is_native_stop(self, request: OrderRequest) -> bool:
        return request.type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT) and (
            self.profile.native_stops
        )

    # -- orders -----------------------------------------------------------------------------
    async def create(self, request: OrderRequest, client_order_id: str) -> dict[str, Any]:
        """Place ``request`` (its quantity already filtered) under ``client_order_id``.
        A STOP_MARKET / TAKE_PROFIT request needs a venue with native stops."""
        assert request.quantity is not None
        params = self.profile.create_params(client_order_id)
        price: float | None = None
        kind = "market"
        if request.type is OrderType.LIMIT:
            kind, price = "limit", request.limit_price
            if request.time_in_force is TimeInForce.IOC:
                params["timeInForce"] = "IOC"
        elif request.type is OrderType.STOP_MARKET:
            if self.profile.stop_param is None:
                raise ValueError(f"{self.profile.venue} has no spot stop orders")
            params[self.profile.stop_param] = request.stop_price
        elif request.type is OrderType.TAKE_PROFIT:
            if self.profile.take_profit_param is None:
                raise ValueError(f"{self.profile.venue} has no spot take-profit orders")
            params[self.profile.take_profit_param] = request.stop_price
        return await self.client.create_order(
            request.symbol, kind, request.side.value, request.quantity, price, params
        )

    async def lookup(
        self, symbol: str, client_order_id: str, *, stop: bool = False
    ) -> dict[str, Any] | None:
        """The order with ``client_order_id``, open or closed; None when the venue does not
        know it (Binance -2013, an empty Bybit answer). Other errors propagate."""
        params = self.profile.lookup_params(client_order_id, stop=stop)
        if self.profile.lookup == "fetch_order":
            try:
                return await self.client.fetch_order(None, symbol, params)
            except Exception as exc:
                if classify(exc, self.profile) is ErrorKind.UNKNOWN_ORDER:
                    return None
                raise
        for method in ("fetch_open_orders", "fetch_canceled_and_closed_orders"):
            orders = await getattr(self.client, method)(symbol, None, None, dict(params))
            for order in orders or []:
                if order.get("clientOrderId") == client_order_id:
                    return order
        return None

    async def cancel(
        self, symbol: str, client_order_id: str, *, stop: bool = False
    ) -> dict[str, Any]:
        params = self.profile.lookup_params(client_order_id, stop=stop)
        return await self.client.cancel_order(None, symbol, params)

    async def order_by_id(self, symbol: str, venue_order_id: str) -> dict[str, Any] | None:
        """The order the venue numbered ``venue_order_id`` (None when unknown)."""
        try:
            if self.profile.lookup == "fetch_order":
                return await self.client.fetch_order(venue_order_id, symbol)
            for method in ("fetch_open_orders", "fetch_canceled_and_closed_orders"):
                for params in (
                    {"orderId": venue_order_id},
                    {"orderId": venue_order_id, **self.profile.stop_query_params},
                ):
                    orders = await getattr(self.client, method)(symbol, None, None, params)
                    for order in orders or []:
                        if str(order.get("id")) == str(venue_order_id):
                            return order
            return None
        except Exception as exc:
            if classify(exc, self.profile) is ErrorKind.UNKNOWN_ORDER:
                return None
            raise

    async def open_orders(self, symbol: str) -> list[dict[str, Any]]:
        """Open orders of ``symbol`` (plain and, where queried apart, conditional ones)."""
        orders = list(await self.client.fetch_open_orders(symbol) or [])
        if self.profile.stop_query_params:
            extra = await self.client.fetch_open_orders(
                symbol, None, None, dict(self.profile.stop_query_params)
            )
            seen = {str(o.get("id")) for o in orders}
            orders += [o for o in extra or [] if str(o.get("id")) not in seen]
        return orders

    async def my_trades(self, symbol: str, since_ms: int | None) -> list[dict[str, Any]]:
        """Every trade of ``symbol`` since ``since_ms``, page after page (a venue answers at
        most ``trades_page`` per request): a page that comes back full is followed by the next
        one from its last trade's time; trades seen twice at a page edge are kept once."""
        page = self.profile.trades_page
        out: dict[str, dict[str, Any]] = {}
        since = since_ms
        for _ in range(MAX_TRADE_PAGES):
            rows = list(await self.client.fetch_my_trades(symbol, since, page) or [])
            fresh = 0
            for row in rows:
                key = str(row.get("id"))
                if key not in out:
                    out[key] = row
                    fresh += 1
            if len(rows) < page or not fresh:
                break
            since = max(int(r.get("timestamp") or 0) for r in rows)
        return sorted(out.values(), key=lambda r: (int(r.get("timestamp") or 0), str(r.get("id"))))

    async def balance(self) -> dict[str, Any]:
        return dict(await self.client.fetch_balance())

    async def last_price(self, symbol: str) -> float | None:
        ticker = await self.client.fetch_ticker(symbol)
        value = ticker.get("last") or ticker.get("close")
        return float(value) if value else None

    # -- a whole snapshot ---------------------------------------------------------------------
    async def snapshot(
        self,
        symbols: Iterable[str],
        *,
        since_ms: int | None,
        lookups: Mapping[str, tuple[str, bool]],
        known_venue_ids: Iterable[str],
        ts: int,
    ) -> RawVenueState:
        """Open orders and trades of every symbol, the balance, and each client id of
        ``lookups`` (``cid → (symbol, is_native_stop)``) not among the open orders; trades
        whose order is neither known (``known_venue_ids``) nor fetched are resolved by venue
        order id so their client id is known.

        The venue answers in several requests while its market moves: a fill between the
        trades request and the balance request would show in the balance but not in the
        trades, and booking it again when the user stream brings it would count it twice.
        So the trades are read again after the balance; when new ones appeared, the whole
        snapshot is taken again (up to ``SNAPSHOT_ATTEMPTS`` times; the last one is used,
        and ``RawVenueState.settled`` says whether it was quiet)."""
        state = RawVenueState(ts=ts)
        for _ in range(SNAPSHOT_ATTEMPTS):
            state = await self._snapshot_once(
                symbols, since_ms=since_ms, lookups=lookups,
                known_venue_ids=known_venue_ids, ts=ts,
            )  # fmt: skip
            after = {symbol: await self.my_trades(symbol, since_ms) for symbol in state.trades}
            if all(_trade_ids(after[s]) == _trade_ids(t) for s, t in state.trades.items()):
                state.settled = True
                return state
        return state

    async def _snapshot_once(
        self,
        symbols: Iterable[str],
        *,
        since_ms: int | None,
        lookups: Mapping[str, tuple[str, bool]],
        known_venue_ids: Iterable[str],
        ts: int,
    ) -> RawVenueState:
        state = RawVenueState(ts=ts)
        symbols = list(symbols)
        for symbol in symbols:
            state.open_orders[symbol] = await self.open_orders(symbol)
        open_ids = {
            str(o.get("clientOrderId")) for orders in state.open_orders.values() for o in orders
        }
        for cid, (symbol, stop) in lookups.items():
            if cid not in open_ids:
                state.looked_up[cid] = await self.lookup(symbol, cid, stop=stop)
        known = {str(v) for v in known_venue_ids}
        known |= {str(o.get("id")) for orders in state.open_orders.values() for o in orders}
        known |= {str(o.get("id")) for o in state.looked_up.values() if o is not None}
        for symbol in symbols:
            trades = await self.my_trades(symbol, since_ms)
            state.trades[symbol] = trades
            for trade in trades:
                venue_id = str(trade.get("order") or "")
                if venue_id and venue_id not in known and not _has_client_id(trade, self.profile):
                    order = await self.order_by_id(symbol, venue_id)
                    if order is not None:
                        state.by_venue_id[venue_id] = order
                    known.add(venue_id)
        state.balance = await self.balance()
        return state


def _trade_ids(trades: Iterable[Mapping[str, Any]]) -> set[str]:
    return {str(t.get("id")) for t in trades}


def _has_client_id(trade: Mapping[str, Any], profile: VenueProfile) -> bool:
    if trade.get("clientOrderId"):
        return True
    info = trade.get("info")
    return isinstance(info, Mapping) and any(info.get(k) for k in profile.trade_client_id_keys)
