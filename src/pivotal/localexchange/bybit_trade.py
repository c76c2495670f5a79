"""Bybit v5 spot trading on the local exchange: the signed REST routes over the engine.

The account is a unified trading account (UTA 2.0) trading spot only; requests are signed
and checked as :mod:`~pivotal.localexchange.bybit_rest` describes. Routes (each charged 1
to the venue's limiter, reported in the ``X-Bapi-Limit*`` headers):

- ``POST /v5/order/create``: ``Market``/``Limit`` (``timeInForce`` GTC, IOC, FOK,
  PostOnly), market quantities in ``baseCoin`` or ``quoteCoin`` (``marketUnit``; Bybit's
  default: quote for a buy, base for a sell), ``orderLinkId`` (<= 36 of ``[A-Za-z0-9_-]``,
  unique over every order of the account), ``orderFilter`` ``tpslOrder``/``StopOrder`` with
  ``triggerPrice`` (direction from ``triggerDirection``, else from the last trade);
- ``POST /v5/order/cancel`` (``orderId`` before ``orderLinkId``; ``orderFilter`` names the
  order's kind, ``Order`` by default), ``POST /v5/order/cancel-all`` (one ``orderFilter``
  kind, ``Order`` by default; one symbol or all);
- ``GET /v5/order/realtime`` (open orders; with ``orderId``/``orderLinkId`` the order in any
  status; ``openOnly=1``: the newest closed ones), ``GET /v5/order/history`` (closed orders
  of a 7-day window, ``orderStatus`` filter), ``GET /v5/execution/list`` (fills);
- ``GET /v5/account/wallet-balance?accountType=UNIFIED``, and what a signed ccxt client
  asks on the way: ``/v5/user/query-api``, ``/v5/account/info``,
  ``/v5/asset/coin/query-info``.

A conditional or TP/SL order that has triggered is an active order: ``orderFilter=Order``
finds it too. Wire shapes: :mod:`~pivotal.localexchange.bybit_views`. New-order requests
pass :meth:`~pivotal.localexchange.faults.FaultInjector.take_order_fault` after the checks.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import orjson
from aiohttp import web

from pivotal.core.symbols import Symbol
from pivotal.localexchange.bybit_rest import (
    BACKEND_TIMEOUT,
    BAD_ORDER_FILTER,
    DUPLICATE_LINK_ID,
    ERRORS,
    INSUFFICIENT,
    INVALID_SYMBOL,
    LINK_ID_CHARS,
    MAKER_REJECTED,
    MARKET_AMOUNT_DECIMALS,
    MAX_OPEN_ORDERS,
    MAX_STOP_ORDERS,
    ORDER_NOT_EXISTS,
    PARAM_INVALID,
    PRICE_DECIMALS,
    PRICE_TOO_HIGH,
    PRICE_TOO_LOW,
    QTY_DECIMALS,
    QTY_TOO_LARGE,
    QTY_TOO_SMALL,
    SEVEN_DAYS,
    TIFS,
    TOO_MANY_ORDERS,
    VALUE_TOO_LARGE,
    VALUE_TOO_SMALL,
    abort_request,
    check_auth,
    decimal_param,
    fail,
    gateway_error,
    int_param,
    param_error,
)
from pivotal.localexchange.bybit_views import (
    FILTERS,
    BybitViews,
    OrderMeta,
    Page,
    account_info,
    api_key_info,
    bybit_status,
    in_filter,
)
from pivotal.localexchange.bybit_wire import PARAM_ERROR
from pivotal.localexchange.engine_types import (
    Order,
    OrderRejected,
    OrderSpec,
    OrderType,
    Side,
    TimeInForce,
    UnknownOrder,
)
from pivotal.localexchange.venue import VenueError

if TYPE_CHECKING:
    from pivotal.localexchange.bybit import BybitSite
    from pivotal.localexchange.engine import MatchingEngine

Handler = Callable[[dict[str, Any], web.Request], Any]


class BybitTrading:
    """The signed v5 routes of one :class:`~pivotal.localexchange.bybit.BybitSite` over its
    ``engine``; :meth:`install` registers them (from ``BybitSite.setup``)."""

    def __init__(self, site: BybitSite, engine: MatchingEngine) -> None:
        self.site = site
        self.engine = engine
        self.views = BybitViews(site, engine)

    # -- wiring ---------------------------------------------------------------------------
    def install(self) -> None:
        add = self.site.add_rest
        add("/v5/order/create", self._signed(self._create), weight=1, method="POST")
        add("/v5/order/cancel", self._signed(self._cancel), weight=1, method="POST")
        add("/v5/order/cancel-all", self._signed(self._cancel_all), weight=1, method="POST")
        add("/v5/order/realtime", self._signed(self._realtime))
        add("/v5/order/history", self._signed(self._history))
        add("/v5/execution/list", self._signed(self._executions))
        add("/v5/account/wallet-balance", self._signed(self._wallet))
        add("/v5/account/info", self._signed(self._account_info))
        add("/v5/user/query-api", self._signed(self._query_api))
        add("/v5/asset/coin/query-info", self._signed(self._coin_info))

    def _signed(self, handler: Handler) -> Callable[[web.Request], Any]:
        """Authenticate, parse the parameters (query or JSON body) and answer what
        ``handler`` returns: a result in Bybit's envelope, or a ready response."""

        async def route(request: web.Request) -> web.StreamResponse:
            config = self.site.ctx.config
            post = request.method == "POST"
            payload = await request.text() if post else request.rel_url.raw_query_string
            check_auth(
                request.headers,
                payload,
                api_key=config.api_key,
                secret=config.api_secret.get_secret_value(),
                now_ms=self.site.now_ms() if config.check_timestamps else None,
            )
            params: Any = dict(request.query)
            if post:
                try:
                    params = orjson.loads(payload) if payload.strip() else {}
                except orjson.JSONDecodeError:
                    raise param_error("the body is not valid JSON") from None
                if not isinstance(params, dict):
                    raise param_error("the body must be a JSON object")
            result = handler(params, request)
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, web.StreamResponse):
                return result
            return self._envelope(result)

        return route

    def _envelope(self, result: Any) -> web.Response:
        body = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                "time": self.site.now_ms()}  # fmt: skip
        return self.site.json(body)

    # -- parameters -----------------------------------------------------------------------
    @staticmethod
    def _spot(params: Mapping[str, Any]) -> None:
        category = params.get("category")
        if category != "spot":
            raise param_error(f"category {category!r}: only spot is served")

    def _symbol(self, params: Mapping[str, Any], *, required: bool) -> Symbol | None:
        raw = params.get("symbol")
        if raw is None or raw == "":
            if required:
                raise param_error("symbol is required")
            return None
        if not isinstance(raw, str) or raw != raw.upper():
            raise fail(INVALID_SYMBOL, f"({raw!r}: uppercase Bybit ids like BTCUSDT)")
        symbol = self.site.symbol_for(raw)
        if symbol is None or symbol not in self.engine.symbols:
            raise fail(INVALID_SYMBOL, f"({raw} is not served)")
        return symbol

    @staticmethod
    def _filter(params: Mapping[str, Any], default: str | None) -> str | None:
        raw = params.get("orderFilter")
        if raw is None or raw == "":
            return default
        if raw not in FILTERS:
            raise fail(BAD_ORDER_FILTER, f"({raw!r}; use one of {', '.join(FILTERS)})")
        return str(raw)

    # -- orders ---------------------------------------------------------------------------
    async def _create(self, params: dict[str, Any], request: web.Request) -> Any:
        """Place an order; the trading faults (:meth:`FaultInjector.take_order_fault`) act
        after the checks: ``order_5xx`` answers a gateway 503 (before or after placing),
        ``order_drop_reply`` closes the connection, ``order_unknown_1007`` answers 170007
        (status unknown), ``order_delay_reply`` answers late."""
        self._spot(params)
        symbol = self._symbol(params, required=True)
        assert symbol is not None
        meta, spec = self._parse_order(symbol, params)
        self._validate(symbol, meta, spec)
        site = self.site
        detail = f"POST /v5/order/create {symbol.exchange_id} {meta.link_id}".strip()
        fault = site.ctx.faults.take_order_fault(site.venue, detail)
        if fault is not None and not fault.places_order:
            return gateway_error()
        error: VenueError | None = None
        result: dict[str, Any] = {}
        try:
            with self.views.placing(meta):
                order, _ = self.engine.place(spec)
                self.views.meta(order)  # bound now if no update asked for it yet
            result = {"orderId": str(order.order_id), "orderLinkId": meta.link_id}
        except OrderRejected as exc:
            error = self._rejection(exc)
        if fault is not None:
            if fault.kind == "order_drop_reply":
                return abort_request(request)
            if fault.kind == "order_5xx":
                return gateway_error()
            if fault.kind == "order_unknown_1007":
                return site.error_response(fault.status, BACKEND_TIMEOUT, ERRORS[BACKEND_TIMEOUT])
            await asyncio.sleep(fault.seconds)  # order_delay_reply
        if error is not None:
            raise error
        return result

    def _parse_order(
        self, symbol: Symbol, params: Mapping[str, Any]
    ) -> tuple[OrderMeta, OrderSpec]:
        side = {"Buy": "BUY", "Sell": "SELL"}.get(str(params.get("side")))
        if side is None:
            raise param_error(f"side must be Buy or Sell, got {params.get('side')!r}")
        kind = params.get("orderType")
        if kind not in ("Market", "Limit"):
            raise param_error(f"orderType must be Market or Limit, got {kind!r}")
        if str(params.get("isLeverage", "0")) not in ("0", "False", "false"):
            raise param_error("isLeverage=1 (margin trading) is not served; spot only")
        for name in ("takeProfit", "stopLoss", "slLimitPrice", "tpLimitPrice"):
            if params.get(name) not in (None, ""):
                raise param_error(f"{name} (a TP/SL attached to an order) is not served")
        order_filter = self._filter(params, "Order")
        assert order_filter is not None
        qty = decimal_param(params, "qty", required=True)
        assert qty is not None
        price = decimal_param(params, "price") if kind == "Limit" else None
        if kind == "Limit" and price is None:
            raise param_error("price is required for a Limit order")
        tif = str(params.get("timeInForce") or "GTC")
        if tif not in TIFS:
            raise param_error(f"timeInForce must be one of {', '.join(TIFS)}, got {tif!r}")
        link_id = self._link_id(params.get("orderLinkId"))
        unit = ""
        if kind == "Market":
            tif = "IOC"
            unit = str(params.get("marketUnit") or ("quoteCoin" if side == "BUY" else "baseCoin"))
            if unit not in ("baseCoin", "quoteCoin"):
                raise param_error(f"marketUnit must be baseCoin or quoteCoin, got {unit!r}")
        last = self.engine.last_price(symbol)
        trigger = decimal_param(params, "triggerPrice")
        direction = 0
        engine_type = "MARKET" if kind == "Market" else "LIMIT"
        if order_filter == "Order":
            if trigger is not None:
                raise param_error("triggerPrice needs orderFilter StopOrder or tpslOrder")
            if tif == "PostOnly":
                engine_type = "LIMIT_MAKER"
        else:
            if trigger is None:
                raise param_error(f"orderFilter {order_filter} needs a triggerPrice")
            if tif == "PostOnly":
                raise param_error("a PostOnly order cannot be a conditional or TP/SL order")
            if unit == "quoteCoin":
                raise param_error("a conditional market order takes its qty in baseCoin")
            direction = self._direction(params.get("triggerDirection"), trigger, last)
            stop_loss = (direction == 1) == (side == "BUY")
            engine_type = ("STOP_LOSS" if stop_loss else "TAKE_PROFIT") + (
                "_LIMIT" if kind == "Limit" else ""
            )
        meta = OrderMeta(
            order_filter=order_filter,
            order_type=kind,
            market_unit=unit,
            qty=qty,
            link_id=link_id,
            time_in_force=tif,
            trigger_direction=direction,
            base_price=last,
            reduce_only=params.get("reduceOnly") in (True, "true", "True"),
        )
        spec = OrderSpec(
            symbol=symbol,
            side=cast(Side, side),
            type=cast(OrderType, engine_type),
            quantity=None if unit == "quoteCoin" else qty,
            quote_quantity=qty if unit == "quoteCoin" else None,
            price=price,
            stop_price=trigger,
            time_in_force=cast(TimeInForce, "GTC" if tif == "PostOnly" else tif),
            client_order_id=link_id or None,
        )
        return meta, spec

    def _link_id(self, raw: Any) -> str:
        if raw is None or raw == "":
            return ""
        if not isinstance(raw, str) or len(raw) > 36 or not set(raw) <= LINK_ID_CHARS:
            raise param_error(
                "orderLinkId must be at most 36 letters, digits, '-' or '_', got " + repr(raw)
            )
        for symbol in self.engine.symbols:  # Bybit: unique over every order, any status
            try:
                self.engine.order(symbol, client_order_id=raw)
            except UnknownOrder:
                continue
            raise fail(DUPLICATE_LINK_ID)
        return raw

    @staticmethod
    def _direction(raw: Any, trigger: Decimal, last: Decimal | None) -> int:
        """1 when the order triggers on a rise to ``trigger``, 2 on a fall."""
        if raw not in (None, "", 0, "0"):
            if str(raw) not in ("1", "2"):
                raise param_error(f"triggerDirection must be 1 or 2, got {raw!r}")
            return int(str(raw))
        if last is None:
            raise param_error("no trade yet to set the trigger direction; pass triggerDirection")
        return 1 if trigger > last else 2

    def _validate(self, symbol: Symbol, meta: OrderMeta, spec: OrderSpec) -> None:
        """Bybit's own order checks (in its order), before the engine sees the order."""
        rules = self.engine.rules(symbol)
        for price in (spec.price, spec.stop_price):
            if price is None:
                continue
            if rules.max_price > 0 and price > rules.max_price:
                raise fail(PRICE_TOO_HIGH)
            if price < rules.min_price:
                raise fail(PRICE_TOO_LOW)
            if rules.tick_size > 0 and price % rules.tick_size != 0:
                raise fail(PRICE_DECIMALS, f"(tick size {rules.tick_size})")
        if spec.quantity is not None:
            if rules.step_size > 0 and spec.quantity % rules.step_size != 0:
                raise fail(QTY_DECIMALS, f"(step size {rules.step_size})")
            if spec.quantity < rules.min_qty:
                raise fail(QTY_TOO_SMALL, f"(minimum {rules.min_qty})")
            if rules.max_qty > 0 and spec.quantity > rules.max_qty:
                raise fail(QTY_TOO_LARGE, f"(maximum {rules.max_qty})")
        if spec.quote_quantity is not None and spec.quote_quantity != spec.quote_quantity.quantize(
            Decimal("0.00000001")
        ):
            raise fail(MARKET_AMOUNT_DECIMALS)
        reference = spec.price or spec.stop_price or self.engine.last_price(symbol)
        value = spec.quote_quantity
        if value is None and reference is not None and spec.quantity is not None:
            value = spec.quantity * reference
        if value is not None and value < rules.min_notional:
            raise fail(VALUE_TOO_SMALL, f"(minimum {rules.min_notional} {symbol.quote})")
        if value is not None and rules.max_notional is not None and value > rules.max_notional:
            raise fail(VALUE_TOO_LARGE, f"(maximum {rules.max_notional} {symbol.quote})")
        if meta.order_filter != "Order":
            kind = meta.order_filter
            waiting = [o for o in self.engine.open_orders(symbol) if o.is_stop and not o.triggered]
            if sum(self.views.meta(o).order_filter == kind for o in waiting) >= MAX_STOP_ORDERS:
                raise fail(TOO_MANY_ORDERS)
        if len(self.engine.open_orders()) >= MAX_OPEN_ORDERS:
            raise fail(TOO_MANY_ORDERS)

    @staticmethod
    def _rejection(exc: OrderRejected) -> VenueError:
        """The Bybit reply for what the engine refused (its own checks ran first)."""
        if exc.reason == "insufficient_balance":
            return fail(INSUFFICIENT)
        if exc.reason == "duplicate":
            return fail(DUPLICATE_LINK_ID)
        if exc.reason == "would_take":
            return fail(MAKER_REJECTED)
        if exc.reason == "would_trigger":
            return VenueError(
                PARAM_INVALID, "Data sent for parameter 'triggerPrice' is not valid.", 200
            )
        if exc.filter in ("MAX_NUM_ORDERS", "MAX_NUM_ALGO_ORDERS"):
            return fail(TOO_MANY_ORDERS)
        codes = {"PRICE_FILTER": PRICE_DECIMALS, "LOT_SIZE": QTY_DECIMALS,
                 "MARKET_LOT_SIZE": QTY_DECIMALS}  # fmt: skip
        code = codes.get(exc.filter or "", VALUE_TOO_SMALL if exc.filter else PARAM_INVALID)
        return VenueError(code, f"{ERRORS.get(code, 'params error')} ({exc.message})", 200)

    def _find(self, params: Mapping[str, Any], symbol: Symbol | None) -> Order | None:
        """The order named by ``orderId`` (first) or ``orderLinkId``; None when unknown."""
        symbols = [symbol] if symbol is not None else list(self.engine.symbols)
        raw_id, link = params.get("orderId"), params.get("orderLinkId")
        for candidate in symbols:
            try:
                if raw_id not in (None, ""):
                    text = str(raw_id)
                    return (
                        self.engine.order(candidate, order_id=int(text)) if text.isdigit() else None
                    )
                if link not in (None, ""):
                    return self.engine.order(candidate, client_order_id=str(link))
            except UnknownOrder:
                continue
        return None

    def _cancel(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        self._spot(params)
        symbol = self._symbol(params, required=True)
        assert symbol is not None
        order_filter = self._filter(params, "Order")
        if params.get("orderId") in (None, "") and params.get("orderLinkId") in (None, ""):
            raise param_error("orderId or orderLinkId is required")
        order = self._find(params, symbol)
        if order is None or not order.is_open:
            raise fail(ORDER_NOT_EXISTS)
        meta = self.views.meta(order)
        if not in_filter(order, meta, order_filter):  # another kind: not found under this one
            raise fail(ORDER_NOT_EXISTS)
        meta.cancel_type = "CancelByUser"
        self.engine.cancel(symbol, order_id=order.order_id)
        return {"orderId": str(order.order_id), "orderLinkId": meta.link_id}

    def _cancel_all(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        self._spot(params)
        symbol = self._symbol(params, required=False)
        order_filter = self._filter(params, "Order")
        base = params.get("baseCoin")
        cancelled = []
        for order in self.engine.open_orders(symbol):
            meta = self.views.meta(order)
            if not in_filter(order, meta, order_filter) or (base and order.symbol.base != base):
                continue
            meta.cancel_type = "CancelByUser"
            self.engine.cancel(order.symbol, order_id=order.order_id)
            cancelled.append({"orderId": str(order.order_id), "orderLinkId": meta.link_id})
        return {"list": cancelled, "success": "1"}

    def _realtime(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        self._spot(params)
        symbol = self._symbol(params, required=False)
        order_filter = self._filter(params, None)
        limit = int_param(params, "limit", 1, 50, 20)
        open_only = int_param(params, "openOnly", 0, 2, 0)
        if params.get("orderId") not in (None, "") or params.get("orderLinkId") not in (None, ""):
            found = self._find(params, symbol)
            orders = [] if found is None else [found]
        elif open_only == 0:
            orders = self.engine.open_orders(symbol)
        else:
            orders = self.views.recent_closed(symbol)
        base = params.get("baseCoin")
        orders = [
            o
            for o in orders
            if in_filter(o, self.views.meta(o), order_filter)
            and (not base or o.symbol.base == base)
        ]
        return self.views.order_page(orders, Page.parse(params, limit))

    def _history(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        self._spot(params)
        symbol = self._symbol(params, required=False)
        order_filter = self._filter(params, None)
        limit = int_param(params, "limit", 1, 50, 20)
        start, end = self._window(params)
        status = params.get("orderStatus")
        if params.get("orderId") not in (None, "") or params.get("orderLinkId") not in (None, ""):
            found = self._find(params, symbol)
            orders = [] if found is None else [found]
        else:
            orders = [o for s in ([symbol] if symbol else self.engine.symbols)
                      for o in self.engine.orders(s, limit=1_000_000)]  # fmt: skip
            orders = [o for o in orders if start <= o.created_ms <= end]
        orders = [
            o
            for o in orders
            if ((status in (None, "") and not o.is_open) or bybit_status(o) == status)
            and in_filter(o, self.views.meta(o), order_filter)
        ]
        return self.views.order_page(orders, Page.parse(params, limit))

    def _window(self, params: Mapping[str, Any]) -> tuple[int, int]:
        """Bybit's [startTime, endTime] rule: at most 7 days; 7 days back by default."""
        now = self.site.now_ms()
        start = int_param(params, "startTime", 0, 10**15, -1)
        end = int_param(params, "endTime", 0, 10**15, -1)
        if start < 0 and end < 0:
            return now - SEVEN_DAYS, now
        if start < 0:
            return end - SEVEN_DAYS, end
        if end < 0:
            return start, start + SEVEN_DAYS
        if end < start or end - start > SEVEN_DAYS:
            raise param_error("endTime must be after startTime, at most 7 days later")
        return start, end

    def _executions(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        self._spot(params)
        symbol = self._symbol(params, required=False)
        limit = int_param(params, "limit", 1, 100, 50)
        exec_type = params.get("execType")
        if exec_type not in (None, "", "Trade"):
            return {"category": "spot", "list": [], "nextPageCursor": ""}
        if params.get("orderId") not in (None, "") or params.get("orderLinkId") not in (None, ""):
            order = self._find(params, symbol)
            fills = [] if order is None else self.engine.fills(order_id=order.order_id)
        else:
            start, end = self._window(params)
            fills = self.engine.fills(symbol, start_ms=start, end_ms=end)
            base = params.get("baseCoin")
            fills = [f for f in fills if not base or f.symbol.base == base]
        return self.views.fill_page(fills, Page.parse(params, limit))

    # -- account --------------------------------------------------------------------------
    def _wallet(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        account = params.get("accountType")
        if account != "UNIFIED":
            raise VenueError(
                PARAM_ERROR,
                f"accountType only support UNIFIED (a UTA 2.0 account), got {account!r}",
                200,
            )
        coins = params.get("coin")
        wanted = None if not coins else {c.strip() for c in str(coins).split(",") if c.strip()}
        return {"list": [self.views.wallet(wanted)]}

    def _account_info(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        return account_info(self.site.now_ms())

    def _query_api(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        return api_key_info(self.site.ctx.config.api_key)

    def _coin_info(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        wanted = params.get("coin")
        coins = sorted({a for s in self.engine.symbols for a in (s.base, s.quote)})
        rows = [self.views.coin(c) for c in coins if not wanted or c == wanted]
        return {"rows": rows}
