"""Risk sizing: each method with hand-computed numbers, lot rounding, stops, and bad configs."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from pivotal.core.orders import AccountSnapshot, OrderSide, OrderType, PositionSnapshot
from pivotal.core.symbols import Symbol
from pivotal.core.types import Action, TradingAction
from pivotal.trading.risk import (
    MarketState,
    RiskConfig,
    RiskManager,
    ceil_to_lot,
    floor_to_lot,
    protective_levels,
)

SYMBOL = "BTC/USDT"


def account(
    equity: float, positions: tuple[tuple[str, float, float], ...] = (), leverage: float = 1.0
) -> AccountSnapshot:
    pos = {s: PositionSnapshot(s, q, p, p, 0.0, 0.0, 0.0, 0) for s, q, p in positions}
    return AccountSnapshot(0, "USDT", equity, equity, 0.0, equity, leverage, 0.0, 0.0, 0.0, pos)


def buy(
    price: float | None = None, quantity: float | None = None, source: str = "sma"
) -> TradingAction:
    return TradingAction(Symbol.parse(SYMBOL), 60_000, Action.BUY, 0.8, source, price, quantity)


def sell() -> TradingAction:
    return TradingAction(Symbol.parse(SYMBOL), 60_000, Action.SELL, 0.8, "sma")


def market(price: float = 100.0, **kw: float | None) -> MarketState:
    return MarketState(SYMBOL, 60_000, price, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- sizing methods
def test_fixed_fraction_emits_an_equity_fraction_order_with_its_quantity() -> None:
    rm = RiskManager(RiskConfig(fraction=0.5))
    d = rm.review(buy(), account(10_000.0), market(100.0))
    assert d.approved
    (entry,) = d.orders
    assert entry.equity_fraction == pytest.approx(0.5)
    # the quantity an exchange executes: 0.5 × 10 000 / 100 (no fee here), in whole lots
    assert entry.quantity == pytest.approx(50.0) and not entry.sized_at_fill
    assert entry.type is OrderType.MARKET
    assert entry.side is OrderSide.BUY
    assert not entry.reduce_only
    assert entry.tag == "sma:entry"
    # estimate: 0.5 × 10 000 / 100 = 50 units
    assert d.final_quantity == pytest.approx(50.0)
    assert not d.resized


def test_the_decided_quantity_is_what_the_broker_would_size_at_the_decision_price() -> None:
    """An exchange needs a size: the quantity sent with the fraction is the simulated
    broker's fill-time rule (backtesting.py's) applied at the decision price."""
    from pivotal.trading.brokers.matching import affordable_lots

    rm = RiskManager(RiskConfig(fraction=0.5))
    mkt = market(123.45, taker_fee=0.001, lot_size=1e-6)
    (entry,) = rm.review(buy(), account(10_000.0), mkt).orders
    lots = affordable_lots(
        0.5, available=10_000.0, freed=0.0, leverage=1.0, lot=1e-6, price=123.45, rate=0.001
    )
    assert lots > 0 and entry.quantity == lots * 1e-6
    assert entry.equity_fraction == pytest.approx(0.5)
    # nothing affordable at the decision price: only the intent goes (a broker sizing at the
    # fill may still fill it; an exchange broker refuses it)
    one_lot_before_fees = market(4_999.0, taker_fee=0.001, lot_size=1.0)  # 5 000 notional
    (poor,) = rm.review(buy(), account(10_000.0), one_lot_before_fees).orders
    assert poor.quantity is None and poor.sized_at_fill


def test_fixed_fraction_with_account_leverage_divides_by_it() -> None:
    # fraction is notional / equity: 1.5 × 10 000 = 15 000 notional; the broker multiplies
    # equity_fraction by the account's leverage 3, so the order asks for 15 000 / 30 000 = 0.5
    rm = RiskManager(RiskConfig(fraction=1.5, max_leverage=2.0, max_position_fraction=2.0))
    d = rm.review(buy(), account(10_000.0, leverage=3.0), market(100.0))
    assert d.orders[0].equity_fraction == pytest.approx(0.5)
    assert d.final_quantity == pytest.approx(150.0)


def test_risk_per_trade_with_a_percent_stop() -> None:
    # stop 2 % below 100 = 98; loss per unit 2; 1 % of 10 000 = 100 → 50 units
    rm = RiskManager(RiskConfig(sizing="risk_per_trade", risk_per_trade=0.01, stop_loss_pct=0.02))
    d = rm.review(buy(), account(10_000.0), market(100.0, lot_size=0.01))
    entry, stop = d.orders
    assert entry.quantity == pytest.approx(50.0)
    assert stop.type is OrderType.STOP_MARKET
    assert stop.side is OrderSide.SELL
    assert stop.reduce_only
    assert stop.stop_price == pytest.approx(98.0)
    assert stop.quantity == pytest.approx(50.0)
    assert stop.tag == "sma:stop"
    assert "risk_per_trade" in d.reason


def test_risk_per_trade_counts_both_fees_and_rounds_down_to_the_lot() -> None:
    # loss per unit = 2 + 0.001 × (100 + 98) = 2.198 → 100 / 2.198 = 45.4959… → 45.49
    rm = RiskManager(RiskConfig(sizing="risk_per_trade", stop_loss_pct=0.02))
    d = rm.review(buy(), account(10_000.0), market(100.0, taker_fee=0.001, lot_size=0.01))
    assert d.orders[0].quantity == pytest.approx(45.49)
    assert d.requested_quantity == pytest.approx(100 / 2.198)


def test_risk_per_trade_with_an_atr_stop() -> None:
    # stop 2 × ATR 1.5 = 3 below 100 = 97; 100 / 3 = 33.333… → 33.333 with lot 0.001
    rm = RiskManager(RiskConfig(sizing="risk_per_trade", stop_loss_atr=2.0))
    d = rm.review(buy(), account(10_000.0), market(100.0, atr=1.5, lot_size=0.001))
    entry, stop = d.orders
    assert entry.quantity == pytest.approx(33.333)
    assert stop.stop_price == pytest.approx(97.0)


def test_volatility_target() -> None:
    # 1 % of 10 000 = 100 per ATR of 2.5 → 40 units (4 000 notional, under the cap)
    rm = RiskManager(RiskConfig(sizing="volatility_target", volatility_target=0.01))
    d = rm.review(buy(), account(10_000.0), market(100.0, atr=2.5, lot_size=0.01))
    (entry,) = d.orders
    assert entry.quantity == pytest.approx(40.0)
    assert d.approved and not d.resized


def test_risk_per_trade_without_a_stop_is_refused_with_the_fix() -> None:
    rm = RiskManager(RiskConfig(sizing="risk_per_trade"))
    d = rm.review(buy(), account(10_000.0), market())
    assert not d.approved
    assert d.orders == ()
    assert "stop_loss_pct or stop_loss_atr" in d.reason


@pytest.mark.parametrize("atr", [None, math.nan])
def test_volatility_target_waits_for_the_atr(atr: float | None) -> None:
    rm = RiskManager(RiskConfig(sizing="volatility_target"))
    d = rm.review(buy(), account(10_000.0), market(atr=atr))
    assert not d.approved
    assert "ATR unknown yet (warm-up)" in d.reason
    assert rm.drain_alerts() == []  # warm-up is normal, not an alert


def test_atr_stop_waits_for_the_atr_even_with_fixed_fraction() -> None:
    rm = RiskManager(RiskConfig(stop_loss_atr=2.0))
    d = rm.review(buy(), account(10_000.0), market(atr=None))
    assert not d.approved
    assert "ATR unknown yet (warm-up)" in d.reason


def test_zero_atr_is_refused_not_divided_by() -> None:
    rm = RiskManager(RiskConfig(sizing="volatility_target"))
    d = rm.review(buy(), account(10_000.0), market(atr=0.0))
    assert not d.approved
    assert "ATR is 0" in d.reason


def test_requested_quantity_overrides_sizing() -> None:
    rm = RiskManager(RiskConfig(sizing="risk_per_trade"))  # no stop: sizing could not decide
    d = rm.review(buy(quantity=3.0), account(10_000.0), market(100.0))
    assert d.approved
    assert d.orders[0].quantity == pytest.approx(3.0)
    assert d.requested_quantity == pytest.approx(3.0)


def test_zero_requested_quantity_is_refused() -> None:
    d = RiskManager().review(buy(quantity=0.0), account(10_000.0), market())
    assert not d.approved
    assert "quantity is 0" in d.reason


def test_limit_entry_and_protective_orders_from_the_limit_price() -> None:
    rm = RiskManager(
        RiskConfig(
            sizing="risk_per_trade", stop_loss_pct=0.05, take_profit_pct=0.1, risk_per_trade=0.02
        )
    )
    d = rm.review(buy(price=90.0), account(10_000.0), market(100.0, lot_size=0.01))
    entry, stop, take = d.orders
    assert entry.type is OrderType.LIMIT
    assert entry.limit_price == pytest.approx(90.0)
    # stop 5 % under 90 = 85.5, loss 4.5 per unit, 2 % of 10 000 = 200 → 44.44 units
    assert stop.stop_price == pytest.approx(85.5)
    assert entry.quantity == pytest.approx(44.44)
    assert take.type is OrderType.TAKE_PROFIT
    assert take.stop_price == pytest.approx(99.0)
    assert take.side is OrderSide.SELL and take.reduce_only
    assert take.tag == "sma:take_profit"
    assert d.immediate_orders == (entry,)
    assert d.protective_orders == (stop, take)
    assert d.entry is entry


def test_short_entry_mirrors_the_protective_orders() -> None:
    rm = RiskManager(
        RiskConfig(allow_short=True, fraction=0.5, stop_loss_pct=0.02, take_profit_pct=0.04)
    )
    d = rm.review(sell(), account(10_000.0), market(100.0, lot_size=0.001))
    entry, stop, take = d.orders
    assert entry.side is OrderSide.SELL and entry.equity_fraction == pytest.approx(0.5)
    assert stop.side is OrderSide.BUY and stop.stop_price == pytest.approx(102.0)
    assert take.side is OrderSide.BUY and take.stop_price == pytest.approx(96.0)
    # equity_fraction entry: protective quantity estimated as 0.5 × 10 000 × 1 / 100 = 50
    assert stop.quantity == pytest.approx(50.0)
    assert take.quantity == pytest.approx(50.0)


def test_protective_levels_function() -> None:
    cfg = RiskConfig(stop_loss_atr=3.0, take_profit_pct=0.1)
    long = protective_levels(cfg, OrderSide.BUY, 200.0, market(200.0, atr=4.0))
    short = protective_levels(cfg, OrderSide.SELL, 200.0, market(200.0, atr=4.0))
    assert (long.stop_price, long.take_profit_price) == pytest.approx((188.0, 220.0))
    assert (short.stop_price, short.take_profit_price) == pytest.approx((212.0, 180.0))


def test_atr_stop_below_zero_is_refused() -> None:
    rm = RiskManager(RiskConfig(stop_loss_atr=5.0))
    d = rm.review(buy(), account(10_000.0), market(10.0, atr=3.0))
    assert not d.approved
    assert "lower stop_loss_atr" in d.reason


# ---------------------------------------------------------------------- lots
def test_lot_rounding_tolerates_float_noise() -> None:
    assert floor_to_lot(0.3, 0.1) == pytest.approx(0.3)
    assert floor_to_lot(0.29999, 0.1) == pytest.approx(0.2)
    assert floor_to_lot(0.05, 0.1) == 0.0
    assert floor_to_lot(-1.0, 0.1) == 0.0
    assert ceil_to_lot(0.21, 0.1) == pytest.approx(0.3)
    assert ceil_to_lot(0.3, 0.1) == pytest.approx(0.3)


def test_entry_below_one_lot_is_refused() -> None:
    rm = RiskManager(RiskConfig(sizing="volatility_target", volatility_target=0.0001))
    # 0.0001 × 1 000 / 5 = 0.02 units < lot 1
    d = rm.review(buy(), account(1_000.0), market(100.0, atr=5.0, lot_size=1.0))
    assert not d.approved
    assert "below one lot" in d.reason


# ---------------------------------------------------------------------- market state
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"price": 0.0}, "price"),
        ({"price": math.nan}, "price"),
        ({"atr": -1.0}, "atr"),
        ({"taker_fee": -0.1}, "taker_fee"),
        ({"lot_size": 0.0}, "lot_size"),
    ],
)
def test_market_state_refuses_bad_values(kwargs: dict[str, float], match: str) -> None:
    base: dict[str, float | None] = {"price": 100.0}
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        MarketState(SYMBOL, 0, **base)  # type: ignore[arg-type]


def test_market_state_takes_a_symbol_object() -> None:
    assert MarketState(Symbol.parse(SYMBOL), 0, 1.0).symbol == SYMBOL  # type: ignore[arg-type]


def test_market_for_another_symbol_is_an_error() -> None:
    with pytest.raises(ValueError, match="same symbol"):
        RiskManager().review(buy(), account(1_000.0), MarketState("ETH/USDT", 0, 10.0))


# ---------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fraction": -0.5}, "fraction must be above 0"),
        ({"fraction": 0.0}, "fraction must be above 0"),
        ({"fraction": 1.5}, "fraction 1.5 exceeds max_leverage 1"),
        ({"stop_loss_pct": 0.02, "stop_loss_atr": 2.0}, "mutually exclusive"),
        ({"risk_per_trade": 2.0}, r"risk_per_trade is a share of equity in \(0, 1\]"),
        ({"stop_loss_pct": 1.5}, r"stop_loss_pct is a share in \(0, 1\)"),
        ({"max_drawdown": 0.0}, "max_drawdown is a share"),
        ({"daily_loss_limit": -0.1}, "daily_loss_limit is a share"),
        ({"max_leverage": math.inf}, "max_leverage must be a finite number"),
        ({"take_profit_pct": 0.0}, "take_profit_pct must be above 0"),
        ({"symbol_caps": {"BTC/USDT": 0.0}}, "symbol_caps"),
        ({"var_confidence": 1.0}, "var_confidence"),
        ({"var_window": 10}, "var_window must be at least 30"),
        ({"sizing": "kelly"}, "sizing"),
        ({"max_dd": 0.2}, "max_dd"),
    ],
)
def test_bad_configs_raise_clear_validation_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        RiskConfig(**kwargs)  # type: ignore[arg-type]


def test_config_is_frozen_and_symbol_caps_are_normalized() -> None:
    cfg = RiskConfig(symbol_caps={" eth/usdt ": 0.25}, max_position_fraction=0.5)
    assert cfg.position_cap("ETH/USDT") == 0.25
    assert cfg.position_cap("BTC/USDT") == 0.5
    with pytest.raises(ValidationError):
        cfg.fraction = 0.2  # type: ignore[misc]
