"""Binance spot's signed REST endpoints over the site's matching engine.

Authentication as Binance does it: the key in ``X-MBX-APIKEY`` (missing: -2014, unknown:
-2015, HTTP 401), ``signature`` = HMAC-SHA256 (hex) with the secret over the raw query
string followed by the raw body, without the signature parameter (bad: -1022), and
``timestamp`` within ``recvWindow`` (default 5,000, at most 60,000 ms) of the server time
(-1021); the server time is the market clock, as ``/api/v3/time`` reports it
(``ServeConfig.check_timestamps=False`` turns that check off).

Endpoints (weight): ``POST /api/v3/order`` (1; newOrderRespType ACK/RESULT/FULL, default FULL
for MARKET and LIMIT, else ACK; ``X-MBX-ORDER-COUNT-10S``/``-1D`` headers, over 100 orders
in 10 wall seconds: 429 -1015), ``POST /api/v3/order/test`` (1, 20 with
computeCommissionRates), ``GET /api/v3/order`` (4), ``DELETE /api/v3/order`` (1),
``DELETE /api/v3/openOrders`` (1), ``GET /api/v3/openOrders`` (6, 80 for every symbol),
``GET /api/v3/allOrders`` (20), ``GET /api/v3/account`` (20), ``GET /api/v3/myTrades`` (20,
5 with orderId) and ``GET /sapi/v1/asset/tradeFee`` (1, what ccxt's fetchTradingFees asks).

Engine refusals map to Binance: a failed filter → -1013 ``Filter failure: <FILTER>``;
insufficient balance, duplicate client id, LIMIT_MAKER that would take, stop that would
trigger → -2010 with Binance's text; cancel of an unknown or closed order → -2011 ``Unknown
order sent.`` (also a cancel-all with nothing open); query of an unknown order → -2013.

New-order requests pass :meth:`FaultInjector.take_order_fault` (the trading faults).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web

from pivotal.core.symbols import Symbol
from pivotal.localexchange.engine_types import (
    ORDER_TYPES,
    STOP_TYPES,
    Fill,
    Order,
    OrderRejected,
    OrderSpec,
    UnknownOrder,
    text8,
)
from pivotal.localexchange.venue import VenueError

if TYPE_CHECKING:
    from pivotal.localexchange.binance import BinanceSite

_DECIMAL = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_UNKNOWN = "Unknown order sent."
#: Orders per 10 wall seconds (Binance's ORDERS limit).
ORDERS_PER_10S = 100
_NEEDS: dict[str, tuple[str, ...]] = {
    "MARKET": (),
    "LIMIT": ("timeInForce", "quantity", "price"),
    "LIMIT_MAKER": ("quantity", "price"),
    "STOP_LOSS": ("quantity", "stopPrice"),
    "TAKE_PROFIT": ("quantity", "stopPrice"),
    "STOP_LOSS_LIMIT": ("timeInForce", "quantity", "price", "stopPrice"),
    "TAKE_PROFIT_LIMIT": ("timeInForce", "quantity", "price", "stopPrice"),
}
_REFUSAL_CODES = {
    "filter": -1013,
    "invalid": -1013,
    "unsupported": -1014,
    "insufficient_balance": -2010,
    "duplicate": -2010,
    "would_take": -2010,
    "would_trigger": -2010,
}


def mandatory(name: str) -> VenueError:
    return VenueError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def sign(secret: str, payload: str) -> str:
    """Binance's HMAC-SHA256 signature (lower-case hex) of ``payload``."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def check_key(site: BinanceSite, key: str | None) -> None:
    """The API key: -2014 when missing or malformed, -2015 when not the served one."""
    if not key or len(key) > 128:
        raise VenueError(-2014, "API-key format invalid.", 401)
    if not hmac.compare_digest(key, site.ctx.config.api_key):
        raise VenueError(-2015, "Invalid API-key, IP, or permissions for action.", 401)


def check_signed(site: BinanceSite, params: Mapping[str, str], payload: str) -> None:
    """``signature`` over ``payload`` and ``timestamp``/``recvWindow`` vs the market clock."""
    config = site.ctx.config
    signature = params.get("signature")
    if not signature:
        raise mandatory("signature")
    stamp_text = params.get("timestamp")
    if not stamp_text:
        raise mandatory("timestamp")
    if not stamp_text.isdigit():
        raise VenueError(-1100, "Illegal characters found in parameter 'timestamp'; legal "
                         "range is '^[0-9]{1,20}$'.")  # fmt: skip
    window_text = params.get("recvWindow", "5000")
    if not window_text.isdigit():
        raise VenueError(-1100, "Illegal characters found in parameter 'recvWindow'; legal "
                         "range is '^[0-9]{1,20}$'.")  # fmt: skip
    window = int(window_text)
    if window > 60_000:
        raise VenueError(-1131, "recvWindow must be less than 60000")
    expected = sign(config.api_secret.get_secret_value(), payload)
    if not hmac.compare_digest(expected, signature.lower()):
        raise VenueError(-1022, "Signature for this request is not valid.")
    if config.check_timestamps:
        stamp, now = int(stamp_text), site.now_ms()
        if stamp >= now + 1000:
            raise VenueError(-1021, "Timestamp for this request was 1000ms ahead of the "
                             "server's time.")  # fmt: skip
        if now - stamp > window:
            raise VenueError(-1021, "Timestamp for this request is outside of the recvWindow.")


def _without_signature(raw: str) -> str:
    return "&".join(part for part in raw.split("&") if part and not part.startswith("signature="))


def _decimal(params: Mapping[str, str], name: str) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not _DECIMAL.match(raw):
        raise VenueError(-1100, f"Illegal characters found in parameter '{name}'; legal range "
                         "is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")  # fmt: skip
    return Decimal(raw)


def _int(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise VenueError(-1100, f"Illegal characters found in parameter '{name}'; legal range "
                         "is '^[0-9]{1,20}$'.")  # fmt: skip
    return int(raw)


def _client_id(params: Mapping[str, str], name: str) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not _CLIENT_ID.match(raw):
        raise VenueError(-1100, f"Illegal characters found in parameter '{name}'; legal range "
                         "is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")  # fmt: skip
    return raw


def _limit(params: Mapping[str, str], default: int = 500, most: int = 1000) -> int:
    value = _int(params, "limit")
    if value is None:
        return default
    if value < 1:
        raise VenueError(-1130, "Data sent for parameter 'limit' is not valid.")
    return min(value, most)


def abort_request(request: web.Request) -> web.Response:
    """Close the client's connection without a reply (the ``order_drop_reply`` fault);
    returns a response object aiohttp cannot send any more."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=503)


def _result(order: Order, transact_ms: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "symbol": order.symbol.exchange_id,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "transactTime": transact_ms,
        "price": text8(order.price),
        "origQty": text8(order.quantity),
        "executedQty": text8(order.executed_qty),
        "origQuoteOrderQty": text8(order.quote_quantity),
        "cummulativeQuoteQty": text8(order.cum_quote),
        "status": order.status,
        "timeInForce": order.time_in_force,
        "type": order.type,
        "side": order.side,
    }
    if order.type in STOP_TYPES:
        body["stopPrice"] = text8(order.stop_price)
    body["workingTime"] = order.working_ms
    body["selfTradePreventionMode"] = "EXPIRE_MAKER"
    return body


def _full_fill(fill: Fill) -> dict[str, Any]:
    return {
        "price": text8(fill.price),
        "qty": text8(fill.qty),
        "commission": text8(fill.commission),
        "commissionAsset": fill.commission_asset,
        "tradeId": fill.fill_id,
    }


def _cancelled(order: Order, cancel_id: str, transact_ms: int) -> dict[str, Any]:
    body = _result(order, transact_ms)
    body["origClientOrderId"] = order.client_order_id
    body["clientOrderId"] = cancel_id
    body.pop("workingTime", None)
    return body


class BinanceTrading:
    """The signed endpoints of one :class:`BinanceSite` (module docstring)."""

    def __init__(self, site: BinanceSite) -> None:
        self.site = site
        self.engine = site.engine
        self._recent_orders: deque[float] = deque()
        self._day_orders: deque[float] = deque()
        self._monotonic: Callable[[], float] = time.monotonic

    def register(self) -> None:
        add, api = self.site.add_rest, "/api/v3"
        add(f"{api}/order", self._new_order, weight=1, method="POST")
        add(f"{api}/order/test", self._test_order, method="POST",
            weight=lambda r: 20 if "computeCommissionRates" in r.query else 1)  # fmt: skip
        add(f"{api}/order", self._query_order, weight=4)
        add(f"{api}/order", self._cancel_order, weight=1, method="DELETE")
        add(f"{api}/openOrders", self._cancel_all, weight=1, method="DELETE")
        add(f"{api}/openOrders", self._open_orders,
            weight=lambda r: 6 if "symbol" in r.query else 80)  # fmt: skip
        add(f"{api}/allOrders", self._all_orders, weight=20)
        add(f"{api}/account", self._account, weight=20)
        add(f"{api}/myTrades", self._my_trades,
            weight=lambda r: 5 if "orderId" in r.query else 20)  # fmt: skip
        add("/sapi/v1/asset/tradeFee", self._trade_fee, weight=1)

    # -- authentication ---------------------------------------------------------------------
    async def signed(self, request: web.Request) -> dict[str, str]:
        """The request's parameters (query and form body), once key and signature pass."""
        check_key(self.site, request.headers.get("X-MBX-APIKEY"))
        query = request.raw_path.partition("?")[2]
        body = await request.text() if request.can_read_body else ""
        params: dict[str, str] = {}
        for part in (query, body):
            for name, value in parse_qsl(part, keep_blank_values=True):
                if name in params:
                    raise VenueError(-1101, "Duplicate values for a parameter detected.")
                params[name] = value
        check_signed(self.site, params, _without_signature(query) + _without_signature(body))
        return params

    def _symbol(self, params: Mapping[str, str]) -> Symbol:
        text = params.get("symbol")
        if not text:
            raise mandatory("symbol")
        symbol = self.site.symbol_for(text)
        if symbol is None or text.upper() != symbol.exchange_id:
            raise VenueError(-1121, "Invalid symbol.")
        return symbol

    # -- new orders -------------------------------------------------------------------------
    def _spec(self, params: Mapping[str, str]) -> OrderSpec:
        symbol = self._symbol(params)
        side = params.get("side")
        if not side:
            raise mandatory("side")
        if side not in ("BUY", "SELL"):
            raise VenueError(-1117, "Invalid side.")
        kind = params.get("type")
        if not kind:
            raise mandatory("type")
        if kind not in ORDER_TYPES:
            raise VenueError(-1116, "Invalid orderType.")
        for name in _NEEDS[kind]:
            if not params.get(name):
                raise mandatory(name)
        quantity, quote = _decimal(params, "quantity"), _decimal(params, "quoteOrderQty")
        if kind == "MARKET":
            if quantity is None and quote is None:
                raise VenueError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but "
                                 "both were empty/null!")  # fmt: skip
            if quantity is not None and quote is not None:
                raise VenueError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        elif quote is not None:
            raise VenueError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        for name in ("price", "stopPrice", "timeInForce"):
            if params.get(name) and name not in _NEEDS[kind]:
                raise VenueError(-1106, f"Parameter '{name}' sent when not required.")
        tif = params.get("timeInForce", "GTC")
        if tif not in ("GTC", "IOC", "FOK"):
            raise VenueError(-1115, "Invalid timeInForce.")
        return OrderSpec(
            symbol,
            side,  # type: ignore[arg-type]
            kind,  # type: ignore[arg-type]
            quantity=quantity,
            quote_quantity=quote,
            price=_decimal(params, "price"),
            stop_price=_decimal(params, "stopPrice"),
            time_in_force=tif,  # type: ignore[arg-type]
            client_order_id=_client_id(params, "newClientOrderId"),
        )

    @staticmethod
    def _refusal(error: OrderRejected) -> VenueError:
        return VenueError(_REFUSAL_CODES.get(error.reason, -1013), error.message)

    def _count_order(self) -> dict[str, str]:
        """Count one new order in the 10-second and 1-day windows (wall time)."""
        now = self._monotonic()
        for window, seconds in ((self._recent_orders, 10.0), (self._day_orders, 86_400.0)):
            while window and window[0] <= now - seconds:
                window.popleft()
        if len(self._recent_orders) >= ORDERS_PER_10S:
            raise VenueError(-1015, f"Too many new orders; current limit is {ORDERS_PER_10S} "
                             "orders per TEN_SECONDS.", 429)  # fmt: skip
        self._recent_orders.append(now)
        self._day_orders.append(now)
        return {
            "X-MBX-ORDER-COUNT-10S": str(len(self._recent_orders)),
            "X-MBX-ORDER-COUNT-1D": str(len(self._day_orders)),
        }

    async def _new_order(self, request: web.Request) -> web.StreamResponse:
        params = await self.signed(request)
        spec = self._spec(params)
        resp_type = params.get("newOrderRespType") or (
            "FULL" if spec.type in ("MARKET", "LIMIT") else "ACK"
        )
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise VenueError(-1177, "Invalid newOrderRespType.")
        headers = self._count_order()
        site = self.site
        detail = f"POST /api/v3/order {spec.symbol.exchange_id} {spec.client_order_id or ''}"
        fault = site.ctx.faults.take_order_fault(site.venue, detail)
        if fault is not None and not fault.places_order:
            return self._internal_error(headers)
        error: VenueError | None = None
        try:
            order, fills = self.engine.place(spec)
        except OrderRejected as exc:
            error = self._refusal(exc)
        if fault is not None:
            if fault.kind == "order_drop_reply":
                return abort_request(request)
            if fault.kind == "order_5xx":
                return self._unknown_status(headers)
            if fault.kind == "order_unknown_1007":
                body = {"code": -1007, "msg": "Timeout waiting for response from backend "
                        "server. Send status unknown; execution status unknown."}  # fmt: skip
                return site.json(body, status=fault.status, headers=headers)
            await asyncio.sleep(fault.seconds)  # order_delay_reply
        if error is not None:
            return site.error_response(error.status, error.code, error.msg, headers)
        now = site.now_ms()
        if resp_type == "ACK":
            body: dict[str, Any] = {
                "symbol": order.symbol.exchange_id,
                "orderId": order.order_id,
                "orderListId": -1,
                "clientOrderId": order.client_order_id,
                "transactTime": now,
            }
        else:
            body = _result(order, now)
            if resp_type == "FULL":
                body["fills"] = [_full_fill(f) for f in fills]
        return site.json(body, headers=headers)

    def _internal_error(self, headers: Mapping[str, str]) -> web.Response:
        msg = "Internal error; unable to process your request. Please try again."
        return self.site.error_response(503, -1001, msg, headers)

    def _unknown_status(self, headers: Mapping[str, str]) -> web.Response:
        msg = "Unknown error, please check your request or try again later."
        return self.site.error_response(503, -1000, msg, headers)

    async def _test_order(self, request: web.Request) -> web.Response:
        params = await self.signed(request)
        spec = self._spec(params)
        try:
            self.engine.validate(spec)
        except OrderRejected as exc:
            raise self._refusal(exc) from None
        if params.get("computeCommissionRates") != "true":
            return self.site.json({})
        rate = text8(self.engine.fee_rate)
        zero = text8(Decimal(0))
        return self.site.json({
            "standardCommissionForOrder": {"maker": rate, "taker": rate},
            "specialCommissionForOrder": {"maker": zero, "taker": zero},
            "taxCommissionForOrder": {"maker": zero, "taker": zero},
            "discount": {"enabledForAccount": False, "enabledForSymbol": False,
                         "discountAsset": "BNB", "discount": zero},
        })  # fmt: skip

    # -- orders -----------------------------------------------------------------------------
    def _ids(self, params: Mapping[str, str]) -> tuple[int | None, str | None]:
        order_id = _int(params, "orderId")
        client_id = None if order_id is not None else _client_id(params, "origClientOrderId")
        if order_id is None and client_id is None:
            raise VenueError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but "
                             "both were empty/null!")  # fmt: skip
        return order_id, client_id

    async def _query_order(self, request: web.Request) -> web.Response:
        params = await self.signed(request)
        symbol = self._symbol(params)
        order_id, client_id = self._ids(params)
        try:
            order = self.engine.order(symbol, order_id, client_id)
        except UnknownOrder:
            raise VenueError(-2013, "Order does not exist.") from None
        return self.site.json(order.to_binance())

    async def _cancel_order(self, request: web.Request) -> web.Response:
        params = await self.signed(request)
        symbol = self._symbol(params)
        order_id, client_id = self._ids(params)
        cancel_id = _client_id(params, "newClientOrderId")
        try:
            order = self.engine.cancel(
                symbol, order_id, client_id, cancel_client_order_id=cancel_id
            )
        except UnknownOrder:
            raise VenueError(-2011, _UNKNOWN) from None
        return self.site.json(_cancelled(order, self._cancel_id_of(order), self.site.now_ms()))

    def _cancel_id_of(self, order: Order) -> str:
        """The client id the cancel of ``order`` carried (as the engine reported it)."""
        return self.engine.cancel_ids.get(order.order_id, order.client_order_id)

    async def _cancel_all(self, request: web.Request) -> web.Response:
        params = await self.signed(request)
        symbol = self._symbol(params)
        cancelled = self.engine.cancel_all(symbol)
        if not cancelled:
            raise VenueError(-2011, _UNKNOWN)
        now = self.site.now_ms()
        return self.site.json([_cancelled(o, self._cancel_id_of(o), now) for o in cancelled])

    async def _open_orders(self, request: web.Request) -> web.Response:
        params = await self.signed(request)
        symbol = self._symbol(params) if "symbol" in params else None
        return self.site.json([o.to_binance() for o in self.engine.open_orders(symbol)])

    async def _all_orders(self, request: web.Request) -> web.Response:
        params = await self.signed(request)
        symbol = self._symbol(params)
        start, end = _int(params, "startTime"), _int(params, "endTime")
        if start is not None and end is not None and end - start > 86_400_000:
            raise VenueError(-1127, "More than 24 hours between startTime and endTime.")
        rows = self.engine.orders(
            symbol, from_id=_int(params, "orderId"), start_ms=start, end_ms=end,
            limit=_limit(params),
        )  # fmt: skip
        return self.site.json([o.to_binance() for o in rows])

    async def _my_trades(self, request: web.Request) -> web.Response:
        params = await self.signed(request)
        symbol = self._symbol(params)
        start, end = _int(params, "startTime"), _int(params, "endTime")
        from_id = _int(params, "fromId")
        if from_id is not None and (start is not None or end is not None):
            raise VenueError(-1106, "Parameter 'fromId' sent when not required.")
        if start is not None and end is not None and end - start > 86_400_000:
            raise VenueError(-1127, "More than 24 hours between startTime and endTime.")
        rows = self.engine.fills(
            symbol, order_id=_int(params, "orderId"), from_id=from_id, start_ms=start,
            end_ms=end, limit=_limit(params),
        )  # fmt: skip
        out = []
        for fill in rows:
            row = fill.to_binance()
            del row["clientOrderId"]  # myTrades rows carry no client id
            out.append(row)
        return self.site.json(out)

    # -- account ----------------------------------------------------------------------------
    async def _account(self, request: web.Request) -> web.Response:
        params = await self.signed(request)
        omit_zero = params.get("omitZeroBalances") == "true"
        rate = text8(self.engine.fee_rate)
        bps = int(self.engine.fee_rate * 10_000)
        zero = text8(Decimal(0))
        balances = [
            {"asset": asset, "free": text8(free), "locked": text8(locked)}
            for asset, (free, locked) in self.engine.balances().items()
            if not (omit_zero and free == 0 and locked == 0)
        ]
        return self.site.json({
            "makerCommission": bps, "takerCommission": bps, "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {"maker": rate, "taker": rate, "buyer": zero, "seller": zero},
            "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False,
            "updateTime": self.engine.updated_ms, "accountType": "SPOT",
            "balances": balances, "permissions": ["SPOT"], "uid": 1,
        })  # fmt: skip

    async def _trade_fee(self, request: web.Request) -> web.Response:
        params = await self.signed(request)
        rate = text8(self.engine.fee_rate)
        symbols = [self._symbol(params)] if "symbol" in params else list(self.engine.symbols)
        return self.site.json([
            {"symbol": s.exchange_id, "makerCommission": rate, "takerCommission": rate}
            for s in symbols
        ])  # fmt: skip
