"""Bybit v5 private REST plumbing: error codes, the request signature, parameters, limits.

Every private request carries ``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP`` (ms),
``X-BAPI-RECV-WINDOW`` (ms, default 5000) and ``X-BAPI-SIGN``: the hex HMAC-SHA256, keyed
with the secret, of ``timestamp + api_key + recv_window + payload`` (the raw query string of
a GET, the raw JSON body of a POST). :func:`check_auth` refuses (HTTP 200, Bybit's
envelope) with 10003 for another key, 10002 for a timestamp outside ``[server - recv_window,
server + 1000)`` and 10004 for a wrong signature.

Error codes (:data:`ERRORS`) come from the v5 error page: the Spot-trade table (1701xx) for
order checks, 110072 for a reused ``orderLinkId`` and 110001 for an order that cannot be
cancelled (the UTA table). Instrument limits: :func:`bybit_rules`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from pivotal.core.symbols import Symbol
from pivotal.localexchange.bybit_wire import PARAM_ERROR
from pivotal.localexchange.engine_types import ZERO, SymbolRules, dec
from pivotal.localexchange.venue import VenueError

TIMESTAMP_ERROR = 10002
BAD_API_KEY = 10003
BAD_SIGN = 10004
ORDER_NOT_EXISTS = 110001
DUPLICATE_LINK_ID = 110072
INVALID_SYMBOL = 170121
PRICE_TOO_HIGH = 170132
PRICE_TOO_LOW = 170133
PRICE_DECIMALS = 170134
QTY_TOO_LARGE = 170135
QTY_TOO_SMALL = 170136
QTY_DECIMALS = 170137
VALUE_TOO_SMALL = 170140
VALUE_TOO_LARGE = 170124
MARKET_AMOUNT_DECIMALS = 170148
PARAM_INVALID = 170130
INSUFFICIENT = 170131
MAKER_REJECTED = 170218
BAD_ORDER_FILTER = 170201
TOO_MANY_ORDERS = 170810
BACKEND_TIMEOUT = 170007

#: Every code this module answers and its text (the v5 error page's wording).
ERRORS: dict[int, str] = {
    TIMESTAMP_ERROR: "invalid request, please check your server timestamp or recv_window param",
    BAD_API_KEY: "API key is invalid.",
    BAD_SIGN: "error sign! origin_string",
    ORDER_NOT_EXISTS: "Order does not exist.",
    DUPLICATE_LINK_ID: "OrderLinkedID is duplicate",
    INVALID_SYMBOL: "Invalid symbol.",
    PRICE_TOO_HIGH: "Order price too high.",
    PRICE_TOO_LOW: "Order price lower than the minimum.",
    PRICE_DECIMALS: "Order price decimal too long.",
    QTY_TOO_LARGE: "Order quantity too large.",
    QTY_TOO_SMALL: "Order quantity lower than the minimum.",
    QTY_DECIMALS: "Order volume decimal too long",
    VALUE_TOO_SMALL: "Transaction amount lower than the minimum.",
    VALUE_TOO_LARGE: "Order amount too large.",
    MARKET_AMOUNT_DECIMALS: "Market order amount decimal too long",
    INSUFFICIENT: "Insufficient balance.",
    MAKER_REJECTED: "The LIMIT-MAKER order is rejected due to invalid price.",
    BAD_ORDER_FILTER: "Invalid orderFilter parameter",
    TOO_MANY_ORDERS: "Cannot exceed maximum of 500 conditional, TP/SL and active orders.",
    BACKEND_TIMEOUT: "Timeout waiting for response from backend server.",
}
#: Bybit's spot instrument limits served by ``instruments-info`` and enforced on orders.
MIN_ORDER_AMT = Decimal("1")
MAX_ORDER_AMT = Decimal("4000000")
MAX_ORDER_QTY = Decimal("10000")
#: Open orders per account (conditional and TP/SL ones count too).
MAX_OPEN_ORDERS = 500
#: Open conditional (or TP/SL) orders per symbol.
MAX_STOP_ORDERS = 30
DEFAULT_RECV_WINDOW = 5000
LINK_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
TIFS = ("GTC", "IOC", "FOK", "PostOnly")
SEVEN_DAYS = 7 * 86_400_000


def abort_request(request: web.Request) -> web.Response:
    """Close the client's connection without a reply (the ``order_drop_reply`` fault);
    returns a response aiohttp can no longer send."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=503)


def gateway_error() -> web.Response:
    """Bybit's gateway answering 503 with an HTML page, not the API (``order_5xx``)."""
    html = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
    return web.Response(status=503, text=html, content_type="text/html")


def fail(code: int, detail: str = "") -> VenueError:
    """A Bybit error reply (HTTP 200) with ``code``'s text, plus ``detail`` when given."""
    text = ERRORS.get(code, "params error")
    return VenueError(code, f"{text} {detail}".strip() if detail else text, 200)


def param_error(detail: str) -> VenueError:
    """A 10001 reply: ``params error: <detail>``."""
    return VenueError(PARAM_ERROR, f"params error: {detail}", 200)


def sign(secret: str, payload: str) -> str:
    """Bybit's signature: hex HMAC-SHA256 of ``payload`` keyed with ``secret``."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def check_auth(
    headers: Mapping[str, str],
    payload: str,
    *,
    api_key: str,
    secret: str,
    now_ms: int | None,
) -> None:
    """Verify a private request's ``X-BAPI-*`` headers; raise the Bybit error otherwise.

    ``payload`` is the raw query string (GET) or body (POST); ``now_ms`` the server time
    the timestamp must fall in (``None``: timestamps are not checked).
    """
    key = headers.get("X-BAPI-API-KEY", "")
    if not hmac.compare_digest(key.encode(), api_key.encode()):
        raise fail(BAD_API_KEY)
    raw_ts = headers.get("X-BAPI-TIMESTAMP", "")
    raw_window = headers.get("X-BAPI-RECV-WINDOW", "") or str(DEFAULT_RECV_WINDOW)
    if not raw_ts.isdigit() or not raw_window.isdigit():
        raise fail(TIMESTAMP_ERROR, f"req_timestamp[{raw_ts}],recv_window[{raw_window}]")
    timestamp, window = int(raw_ts), int(raw_window)
    if now_ms is not None and not now_ms - window <= timestamp < now_ms + 1000:
        raise fail(
            TIMESTAMP_ERROR,
            f"req_timestamp[{timestamp}],server_timestamp[{now_ms}],recv_window[{window}]",
        )
    expected = sign(secret, f"{raw_ts}{key}{raw_window}{payload}")
    if not hmac.compare_digest(headers.get("X-BAPI-SIGN", "").lower().encode(), expected.encode()):
        raise fail(BAD_SIGN, f"[{raw_ts}{key}{raw_window}{payload}]")


def decimal_param(
    params: Mapping[str, Any], name: str, *, required: bool = False
) -> Decimal | None:
    """A positive decimal parameter (string or JSON number); 10001 when malformed."""
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise param_error(f"{name} is required")
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise param_error(f"{name} must be a decimal string, got {raw!r}")
    try:
        value = dec(raw if not isinstance(raw, str) else raw.strip())
    except InvalidOperation:
        raise param_error(f"{name} must be a decimal string, got {raw!r}") from None
    if not value.is_finite() or value <= 0:
        raise param_error(f"{name} must be a positive number, got {raw!r}")
    return value


def int_param(params: Mapping[str, Any], name: str, low: int, high: int, default: int) -> int:
    """An integer parameter within [low, high]; 10001 when malformed or out of range."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    text = str(raw)
    if not text.isdigit() or not low <= int(text) <= high:
        raise param_error(f"{name} must be an integer in [{low}, {high}], got {raw!r}")
    return int(text)


def bybit_rules(symbol: Symbol, tick_size: float, step_size: float) -> SymbolRules:
    """The engine's filters for a Bybit spot symbol, as ``instruments-info`` lists them:
    price on the tick grid (no maximum), quantity on the step grid in [step, MAX_ORDER_QTY],
    value in [MIN_ORDER_AMT, MAX_ORDER_AMT] (market orders too), at most MAX_OPEN_ORDERS
    open orders, MAX_STOP_ORDERS conditional plus MAX_STOP_ORDERS TP/SL ones waiting (the
    site counts each kind; the engine only their sum)."""
    tick, step = dec(tick_size), dec(step_size)
    return SymbolRules(
        symbol=symbol,
        tick_size=tick,
        min_price=tick,
        max_price=ZERO,
        step_size=step,
        min_qty=step,
        max_qty=MAX_ORDER_QTY,
        min_notional=MIN_ORDER_AMT,
        max_notional=MAX_ORDER_AMT,
        apply_max_to_market=True,
        max_orders=MAX_OPEN_ORDERS,
        max_stop_orders=2 * MAX_STOP_ORDERS,
    )
