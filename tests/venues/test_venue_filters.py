"""Symbol filters from ccxt markets, rounding and refusals."""

from __future__ import annotations

import pytest

from pivotal.core.orders import OrderRequest, OrderSide, OrderType
from pivotal.venues.venue_filters import SymbolFilters, round_to_step

MARKET = {
    "symbol": "BTC/USDT",
    "base": "BTC",
    "quote": "USDT",
    "spot": True,
    "active": True,
    "precision": {"amount": 0.00001, "price": 0.01},
    "limits": {
        "amount": {"min": 0.00001, "max": 9000.0},
        "price": {"min": 0.01, "max": 1_000_000.0},
        "cost": {"min": 5.0, "max": 9_000_000.0},
        "market": {"min": 0.0, "max": 100.0},
    },
    "info": {
        "filters": [
            {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.00100000"},
            {"filterType": "NOTIONAL", "applyMinToMarket": False},
        ]
    },
}
F = SymbolFilters.from_market(MARKET)


def req(side: str, qty: float, kind: str = "market", **kw: float) -> OrderRequest:
    return OrderRequest(symbol="BTC/USDT", side=OrderSide(side), type=OrderType(kind),
                        quantity=qty, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_round_to_step_is_exact() -> None:
    assert round_to_step(0.3, 0.1) == 0.3
    assert round_to_step(0.123456, 0.00001) == 0.12345
    assert round_to_step(90.121, 0.01, up=True) == 90.13
    assert round_to_step(7.0, None) == 7.0


def test_from_market_reads_limits_and_raw_binance_filters() -> None:
    assert (F.amount_step, F.price_tick, F.min_qty, F.min_notional) == (0.00001, 0.01, 0.00001, 5.0)
    assert F.market_step == 0.001 and F.market_max_qty == 100.0 and F.market_min_qty is None
    assert F.notional_applies_to_market is False
    decimals = SymbolFilters.from_market({**MARKET, "precision": {"amount": 3, "price": 2}}, 2)
    assert decimals.amount_step == pytest.approx(0.001) and decimals.price_tick == pytest.approx(
        0.01
    )


def test_limit_prices_round_in_the_traders_favour() -> None:
    buy = F.apply(req("buy", 0.1234567, "limit", limit_price=90.129))
    assert buy.request is not None
    assert buy.request.quantity == 0.12345 and buy.request.limit_price == 90.12
    assert any("quantity" in n for n in buy.notes)
    sell = F.apply(req("sell", 0.1, "limit", limit_price=90.121))
    assert sell.request is not None and sell.request.limit_price == 90.13


def test_triggers_round_toward_the_market() -> None:
    stop_sell = F.apply(req("sell", 0.1, "stop_market", stop_price=95.001))
    assert stop_sell.request is not None and stop_sell.request.stop_price == 95.01
    stop_buy = F.apply(req("buy", 0.1, "stop_market", stop_price=105.009))
    assert stop_buy.request is not None and stop_buy.request.stop_price == 105.0
    tp_sell = F.apply(req("sell", 0.1, "take_profit", stop_price=110.009))
    assert tp_sell.request is not None and tp_sell.request.stop_price == 110.0


def test_refusals_name_the_filter_and_the_numbers() -> None:
    small = F.apply(req("buy", 0.000004, "limit", limit_price=100.0))
    assert small.refusal is not None and small.refusal.startswith("filter min_qty")
    assert "0.000004" in small.refusal and "0.00001" in small.refusal
    notional = F.apply(req("buy", 0.01, "limit", limit_price=100.0))
    assert notional.refusal is not None and "min_notional" in notional.refusal
    assert "1 USDT" in notional.refusal and "minimum 5 USDT" in notional.refusal
    market_big = F.apply(req("buy", 150.0), reference_price=100.0)
    assert market_big.refusal is not None and "max_qty" in market_big.refusal
    price = F.apply(req("buy", 1.0, "limit", limit_price=2_000_000.0))
    assert price.refusal is not None and "max_price" in price.refusal


def test_market_orders_use_the_market_step_and_skip_notional_when_told() -> None:
    result = F.apply(req("buy", 0.01234), reference_price=100.0)  # 1.2 USDT, but not applied
    assert result.request is not None and result.request.quantity == 0.012
    tiny = F.apply(req("buy", 0.0004), reference_price=100.0)
    assert tiny.refusal is not None and "min_qty" in tiny.refusal
    applied = SymbolFilters.from_market({**MARKET, "info": {}})
    unpriced = applied.apply(req("buy", 0.01))
    assert unpriced.ok and any("not checked" in n for n in unpriced.notes)
    priced = applied.apply(req("buy", 0.01), reference_price=100.0)
    assert priced.refusal is not None and "min_notional" in priced.refusal
