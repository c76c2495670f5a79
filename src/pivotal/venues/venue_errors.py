"""What a venue's error means for an order, and a reason a person can act on.

:func:`classify` sorts a ccxt exception (with the venue's :class:`VenueProfile`) into an
:class:`ErrorKind`, which decides what the broker does:

- ``REJECTED``: a business refusal (a filter, funds, the symbol, permissions): never retried;
  the order ends ``REJECTED`` with :func:`explain`'s reason.
- ``UNKNOWN_STATUS``: the request may or may not have been executed (a timeout, a dropped
  connection, a 5xx reply, Binance -1007): the order is looked up by its client id, never
  sent again blindly.
- ``CLOCK``: our timestamp was outside the venue's ``recvWindow`` (Binance -1021, Bybit 10002,
  MEXC 700003): resync the clock and retry once with the same id (nothing was executed).
- ``DUPLICATE``: the venue already has an open order with this client id (Binance -2010
  "Duplicate order sent.", Bybit 110072): it exists, look it up.
- ``UNKNOWN_ORDER``: the venue has no such order (Binance -2011/-2013, Bybit 110001/170213).
- ``RATE_LIMIT``: HTTP 429/418 or a rate-limit code: nothing was executed; wait and retry.
- ``CLOSED``: the client was closed (shutting down).

The codes are read from the venue's JSON reply that ccxt puts in the message
(``binance {"code":-1013,"msg":"Filter failure: LOT_SIZE"}``), so they are found whatever
ccxt class the code was mapped to (a redirected Binance client, for example, only applies
ccxt's market-type-neutral table).
"""

from __future__ import annotations

import json
import re
from enum import StrEnum

from pivotal.venues.venue_profiles import VenueProfile, profile

__all__ = ["ErrorKind", "classify", "error_code", "error_message", "explain"]


class ErrorKind(StrEnum):
    REJECTED = "rejected"
    UNKNOWN_STATUS = "unknown_status"
    CLOCK = "clock"
    DUPLICATE = "duplicate"
    UNKNOWN_ORDER = "unknown_order"
    RATE_LIMIT = "rate_limit"
    CLOSED = "closed"


_CODE = re.compile(r'"(?:code|retCode|ret_code)"\s*:\s*"?(-?\d+)')
_MSG = re.compile(r'"(?:msg|retMsg|ret_msg|message)"\s*:\s*"((?:[^"\\]|\\.)*)"')

#: Hints per venue and code: what the refusal means and what to do.
_HINTS: dict[str, dict[str, str]] = {
    "binance": {
        "-1013": "a symbol filter failed (price tick, lot size or minimum notional); "
        "the order never reached the matching engine",
        "-1015": "too many new orders; wait for the order-count window to pass",
        "-1021": "our timestamp is outside recvWindow: the clock was resynced",
        "-1022": "the signature is invalid: check the API secret",
        "-2010": "the new order was rejected (insufficient balance, or a duplicate client "
        "order id among open orders)",
        "-2011": "the venue does not know this order (already filled, cancelled or never placed)",
        "-2013": "the venue does not know this order",
        "-2014": "the API key format is invalid: check the key",
        "-2015": "the API key, IP or permissions were refused: check the key's permissions "
        "and IP whitelist",
    },
    "bybit": {
        "10002": "our timestamp is outside recv_window: the clock was resynced",
        "10003": "the API key is invalid: check the key",
        "10004": "the signature is invalid: check the API secret",
        "10005": "the API key lacks a permission for this request",
        "10029": "the symbol is not in the API key's symbol whitelist",
        "110001": "the venue does not know this order",
        "110007": "insufficient balance for the order",
        "110072": "an order with this orderLinkId already exists",
        "170131": "insufficient balance for the order",
        "170136": "the quantity is below the symbol's minimum",
        "170137": "the quantity has too many decimals for the symbol",
        "170140": "the order value is below the symbol's minimum",
        "170213": "the venue does not know this order",
    },
    "mexc": {
        "700003": "our timestamp is outside recvWindow: the clock was resynced",
        "10007": "the symbol is not enabled for API trading: MEXC enables API trading per "
        "symbol; enable it for this symbol in the API key's settings",
        "30051": "MEXC has disabled market orders over the API for this symbol: use a limit order",
        "30002": "the quantity is below the symbol's minimum",
        "30004": "insufficient balance for the order",
        "10101": "insufficient balance for the order",
        "30005": "insufficient position (oversold)",
        "30016": "trading of this symbol is disabled",
        "-2011": "the venue does not know this order",
    },
}


def error_code(exc: BaseException) -> str | None:
    """The venue's error code in ``exc``'s message (``"-1013"``, ``"110072"``), or None."""
    match = _CODE.search(str(exc))
    return match.group(1) if match else None


def error_message(exc: BaseException) -> str:
    """The venue's own error text when the message holds its JSON reply, else the message
    on one line (without the leading venue id)."""
    text = str(exc)
    match = _MSG.search(text)
    if match:
        try:
            return str(json.loads(f'"{match.group(1)}"'))
        except ValueError:
            return match.group(1)
    return " ".join(text.split())


def classify(exc: BaseException, venue: VenueProfile | str) -> ErrorKind:
    """What ``exc`` (a ccxt error or a ``TimeoutError``) means for an order request on
    ``venue`` (module docstring)."""
    import ccxt

    prof = venue if isinstance(venue, VenueProfile) else profile(venue)
    code = error_code(exc)
    if isinstance(exc, ccxt.ExchangeClosedByUser):
        return ErrorKind.CLOSED
    if code is not None:
        if code in prof.clock_codes:
            return ErrorKind.CLOCK
        if code in prof.duplicate_codes and (
            not prof.duplicate_text or prof.duplicate_text.lower() in str(exc).lower()
        ):
            return ErrorKind.DUPLICATE
        if code in prof.unknown_order_codes:
            return ErrorKind.UNKNOWN_ORDER
        if code in prof.unknown_status_codes:
            return ErrorKind.UNKNOWN_STATUS
    if isinstance(exc, ccxt.DuplicateOrderId):
        return ErrorKind.DUPLICATE
    if isinstance(exc, ccxt.OrderNotFound):
        return ErrorKind.UNKNOWN_ORDER
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return ErrorKind.RATE_LIMIT
    if isinstance(exc, ccxt.InvalidNonce) and not isinstance(exc, ccxt.ChecksumError):
        return ErrorKind.CLOCK
    if isinstance(exc, TimeoutError | ccxt.OperationFailed):
        # network errors, timeouts, 5xx (ExchangeNotAvailable), unreadable replies
        return ErrorKind.UNKNOWN_STATUS
    if type(exc) is ccxt.ExchangeError or not isinstance(exc, ccxt.BaseError):
        # an unmapped code or a client-side failure: the venue may have acted
        return ErrorKind.UNKNOWN_STATUS
    return ErrorKind.REJECTED


def explain(exc: BaseException, venue: VenueProfile | str) -> str:
    """A one-line reason for an order's ``reason`` field: the venue, its code and text, and
    what it means (``binance -1013 "Filter failure: LOT_SIZE": a symbol filter failed ...``)."""
    prof = venue if isinstance(venue, VenueProfile) else profile(venue)
    code = error_code(exc)
    message = error_message(exc)
    if message.lower().startswith(prof.venue + " "):
        message = message[len(prof.venue) + 1 :]
    if len(message) > 200:
        message = message[:199] + "…"
    hint = _HINTS.get(prof.venue, {}).get(code or "")
    if hint is None:
        hint = _class_hint(exc)
    head = f"{prof.venue} {code}" if code else f"{prof.venue} {type(exc).__name__}"
    return f'{head} "{message}": {hint}'


def _class_hint(exc: BaseException) -> str:
    import ccxt

    table: list[tuple[type[BaseException], str]] = [
        (ccxt.InsufficientFunds, "insufficient balance for the order"),
        (ccxt.BadSymbol, "the venue does not trade this symbol (or not over the API)"),
        (ccxt.PermissionDenied, "the API key lacks the permission for this request"),
        (ccxt.AuthenticationError, "the venue refused the credentials: check the API key"),
        (ccxt.InvalidOrder, "the venue refused the order as invalid"),
        (ccxt.NotSupported, "the venue does not support this order"),
        (ccxt.BadRequest, "the venue refused the request as malformed"),
        (ccxt.RateLimitExceeded, "rate limited: retry after the venue's Retry-After"),
        (ccxt.NetworkError, "no reliable reply from the venue"),
    ]
    for cls, hint in table:
        if isinstance(exc, cls):
            return hint
    return "the venue refused the request"
