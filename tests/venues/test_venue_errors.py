"""What venue errors mean for an order, and the reasons given for them."""

from __future__ import annotations

import ccxt
import pytest

from pivotal.venues.venue_errors import ErrorKind, classify, error_code, explain


def b(code: int, msg: str, cls: type[Exception] = ccxt.ExchangeError) -> Exception:
    return cls(f'binance {{"code":{code},"msg":"{msg}"}}')


@pytest.mark.parametrize(
    ("venue", "exc", "kind"),
    [
        ("binance", b(-1007, "Timeout waiting for response", ccxt.RequestTimeout),
         ErrorKind.UNKNOWN_STATUS),
        ("binance", b(-1007, "Timeout", ccxt.BadResponse), ErrorKind.UNKNOWN_STATUS),
        ("binance", b(-1021, "Timestamp outside recvWindow", ccxt.InvalidNonce), ErrorKind.CLOCK),
        ("binance", b(-1013, "Filter failure: LOT_SIZE", ccxt.InvalidOrder), ErrorKind.REJECTED),
        ("binance", b(-2010, "Duplicate order sent.", ccxt.InvalidOrder), ErrorKind.DUPLICATE),
        ("binance", b(-2010, "Account has insufficient balance for requested action.",
                      ccxt.InsufficientFunds), ErrorKind.REJECTED),
        ("binance", b(-2011, "Unknown order sent.", ccxt.OrderNotFound), ErrorKind.UNKNOWN_ORDER),
        ("binance", b(-2013, "Order does not exist.", ccxt.OrderNotFound),
         ErrorKind.UNKNOWN_ORDER),
        ("binance", ccxt.ExchangeNotAvailable("binance POST 503 Service Unavailable"),
         ErrorKind.UNKNOWN_STATUS),
        ("binance", ccxt.NetworkError("connection reset"), ErrorKind.UNKNOWN_STATUS),
        ("binance", TimeoutError("no result"), ErrorKind.UNKNOWN_STATUS),
        ("binance", ccxt.DDoSProtection("binance 429 Too Many Requests"), ErrorKind.RATE_LIMIT),
        ("binance", ccxt.ExchangeClosedByUser("closed"), ErrorKind.CLOSED),
        ("bybit", ccxt.InvalidOrder('bybit {"retCode":110072,"retMsg":"OrderLinkedID dup"}'),
         ErrorKind.DUPLICATE),
        ("bybit", ccxt.InvalidNonce('bybit {"retCode":10002,"retMsg":"invalid request"}'),
         ErrorKind.CLOCK),
        ("bybit", ccxt.ExchangeError('bybit {"retCode":10016,"retMsg":"System error"}'),
         ErrorKind.UNKNOWN_STATUS),
        ("bybit", ccxt.InsufficientFunds('bybit {"retCode":170131,"retMsg":"Insufficient"}'),
         ErrorKind.REJECTED),
        ("mexc", ccxt.InvalidNonce('mexc {"code":700003,"msg":"Timestamp outside"}'),
         ErrorKind.CLOCK),
        ("mexc", ccxt.BadSymbol('mexc {"code":10007,"msg":"symbol not support api"}'),
         ErrorKind.REJECTED),
        ("mexc", ccxt.InvalidOrder('mexc {"code":30051,"msg":"market order disabled"}'),
         ErrorKind.REJECTED),
    ],
)  # fmt: skip
def test_classify(venue: str, exc: Exception, kind: ErrorKind) -> None:
    assert classify(exc, venue) is kind


def test_codes_and_reasons() -> None:
    exc = b(-1013, "Filter failure: LOT_SIZE", ccxt.InvalidOrder)
    assert error_code(exc) == "-1013"
    reason = explain(exc, "binance")
    assert reason.startswith('binance -1013 "Filter failure: LOT_SIZE"') and "filter" in reason
    mexc = explain(ccxt.BadSymbol('mexc {"code":10007,"msg":"symbol not support api"}'), "mexc")
    assert "enable it for this symbol" in mexc
    market = explain(ccxt.InvalidOrder('mexc {"code":30051,"msg":"x"}'), "mexc")
    assert "limit order" in market
    bybit = explain(ccxt.InvalidOrder('bybit {"retCode":110072,"retMsg":"dup"}'), "bybit")
    assert bybit.startswith('bybit 110072 "dup"') and "orderLinkId" in bybit
    plain = explain(ccxt.InsufficientFunds("binance no money"), "binance")
    assert plain == 'binance InsufficientFunds "no money": insufficient balance for the order'
