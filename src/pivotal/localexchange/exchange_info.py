"""Venue metadata served by the local exchange: ``exchangeInfo`` templates and builders.

:data:`BINANCE_SYMBOL_TEMPLATE` is a real Binance spot symbol entry (BTCUSDT, Oct 2021) and
:data:`MEXC_SYMBOL_TEMPLATE` MEXC's; :func:`binance_symbol_entry` fits the template to a
symbol and its tick/step sizes, :func:`binance_exchange_info` builds the whole answer.
``pivotal.testing.binance_server`` imports the templates from here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import numpy as np

from pivotal.core.symbols import Symbol

#: A real Binance spot ``exchangeInfo`` symbol entry (BTCUSDT, 2021-10-22), used as template.
BINANCE_SYMBOL_TEMPLATE: dict[str, Any] = {
    "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "baseAssetPrecision": 8,
    "quoteAsset": "USDT", "quotePrecision": 8, "quoteAssetPrecision": 8,
    "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
    "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
    "isSpotTradingAllowed": True, "isMarginTradingAllowed": True,
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01000000",
         "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
        {"filterType": "PERCENT_PRICE", "multiplierUp": "5", "multiplierDown": "0.2",
         "avgPriceMins": 5},
        {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
         "stepSize": "0.00001000"},
        {"filterType": "MIN_NOTIONAL", "minNotional": "10.00000000", "applyToMarket": True,
         "avgPriceMins": 5},
        {"filterType": "ICEBERG_PARTS", "limit": 10},
        {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "112.21108820",
         "stepSize": "0.00000000"},
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
    ],
    "permissions": ["SPOT", "MARGIN"],
}  # fmt: skip

#: MEXC spot v3 ``exchangeInfo`` symbol entry (format as documented by MEXC and ccxt).
MEXC_SYMBOL_TEMPLATE: dict[str, Any] = {
    "symbol": "BTCUSDT", "status": "1", "baseAsset": "BTC", "baseAssetPrecision": "6",
    "quoteAsset": "USDT", "quotePrecision": "2", "quoteAssetPrecision": "2",
    "baseCommissionPrecision": "6", "quoteCommissionPrecision": "2",
    "orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER"], "quoteOrderQtyMarketAllowed": False,
    "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
    "quoteAmountPrecision": "1.000000000000000000000000000000",
    "baseSizePrecision": "0.000001", "permissions": ["SPOT"], "filters": [],
    "maxQuoteAmount": "2000000.000000000000000000000000000000",
    "makerCommission": "0", "takerCommission": "0.0005",
}  # fmt: skip

#: Binance spot's announced limits (``exchangeInfo.rateLimits``).
BINANCE_RATE_LIMITS: list[dict[str, Any]] = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


def decimal_text(value: float, places: int = 8) -> str:
    """``value`` with ``places`` decimals (Binance's ``"0.01000000"``), exact when it fits.

    When ``places`` decimals would round the value, the shortest exact form is given instead.
    """
    text = f"{value:.{places}f}"
    if float(text) == value:
        return text
    return np.format_float_positional(value, trim="-")


#: The order types Binance spot lists for BTCUSDT today (the 2021 template lacks the
#: market-on-trigger STOP_LOSS and TAKE_PROFIT, which ccxt then refuses to send).
BINANCE_SPOT_ORDER_TYPES: list[str] = [
    "LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
]  # fmt: skip
#: Binance spot's ``NOTIONAL`` filter (it replaced ``MIN_NOTIONAL`` in 2023), BTCUSDT's values.
BINANCE_NOTIONAL_FILTER: dict[str, Any] = {
    "filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
    "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5,
}  # fmt: skip


def binance_symbol_entry(symbol: Symbol, tick_size: float, step_size: float) -> dict[str, Any]:
    """The Binance ``exchangeInfo`` entry of ``symbol`` with its price and quantity steps.

    The template brought up to today's Binance spot: every order type of
    :data:`BINANCE_SPOT_ORDER_TYPES` and the ``NOTIONAL`` filter instead of ``MIN_NOTIONAL``.
    """
    entry = copy.deepcopy(BINANCE_SYMBOL_TEMPLATE)
    entry.update(symbol=symbol.exchange_id, baseAsset=symbol.base, quoteAsset=symbol.quote)
    entry["orderTypes"] = list(BINANCE_SPOT_ORDER_TYPES)
    entry["filters"] = [
        dict(BINANCE_NOTIONAL_FILTER) if item["filterType"] == "MIN_NOTIONAL" else item
        for item in entry["filters"]
    ]
    for item in entry["filters"]:
        if item["filterType"] == "PRICE_FILTER":
            item["tickSize"] = decimal_text(tick_size)
            item["minPrice"] = decimal_text(tick_size)
        elif item["filterType"] == "LOT_SIZE":
            item["stepSize"] = decimal_text(step_size)
            item["minQty"] = decimal_text(step_size)
    return entry


def binance_exchange_info(
    entries: Iterable[dict[str, Any]], server_time_ms: int, weight_per_minute: int | None = None
) -> dict[str, Any]:
    """Binance's ``GET /api/v3/exchangeInfo`` body for the given symbol entries.

    ``weight_per_minute`` replaces the announced ``REQUEST_WEIGHT`` limit (the served one).
    """
    limits = copy.deepcopy(BINANCE_RATE_LIMITS)
    if weight_per_minute is not None:
        limits[0]["limit"] = weight_per_minute
    return {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "rateLimits": limits,
        "exchangeFilters": [],
        "symbols": list(entries),
    }
