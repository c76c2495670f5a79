"""The risk manager: actions in every position state, caps, halts, raw orders, and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core.errors import RiskRejected
from pivotal.core.orders import (
    AccountSnapshot,
    OrderRequest,
    OrderSide,
    OrderType,
    PositionSnapshot,
)
from pivotal.core.symbols import Symbol
from pivotal.core.types import Action, TradingAction
from pivotal.trading.risk import (
    MarketState,
    RiskConfig,
    RiskDecision,
    RiskManager,
    floor_to_lot,
)

BTC = "BTC/USDT"
ETH = "ETH/USDT"
HOUR = 3_600_000
T0 = 1_704_445_200_000  # 2024-01-05 09:00 UTC


def account(
    equity: float,
    positions: tuple[tuple[str, float, float], ...] = (),
    leverage: float = 1.0,
    timestamp: int = T0,
) -> AccountSnapshot:
    pos = {s: PositionSnapshot(s, q, p, p, 0.0, 0.0, 0.0, 0) for s, q, p in positions}
    return AccountSnapshot(
        timestamp, "USDT", equity, equity, 0.0, equity, leverage, 0.0, 0.0, 0.0, pos
    )


def act(
    action: Action | str,
    symbol: str = BTC,
    price: float | None = None,
    quantity: float | None = None,
    timestamp: int = T0,
) -> TradingAction:
    return TradingAction(
        Symbol.parse(symbol), timestamp, Action.parse(action), 0.7, "sma_cross", price, quantity
    )


def market(
    symbol: str = BTC, price: float = 100.0, timestamp: int = T0, **kw: float
) -> MarketState:
    return MarketState(symbol, timestamp, price, **kw)  # type: ignore[arg-type]


def summary(decision: RiskDecision) -> list[str]:
    """``purpose:side`` per order, e.g. ``["exit:sell", "entry:sell"]``."""
    return [f"{o.tag.split(':')[1]}:{o.side.value}" for o in decision.orders]


# ---------------------------------------------------------------------- every action, every state
POSITION = {"flat": 0.0, "long": 2.0, "short": -2.0}
TABLE = [
    # allow_short, state, action, approved, orders, reason fragment
    (False, "flat", "BUY", True, ["entry:buy"], "open long"),
    (False, "flat", "SELL", False, [], "shorting disabled"),
    (False, "flat", "HOLD", True, [], "hold"),
    (False, "flat", "CLOSE", True, [], "already flat"),
    (False, "long", "BUY", True, [], "already long"),
    (False, "long", "SELL", True, ["exit:sell"], "close long 2"),
    (False, "long", "HOLD", True, [], "hold"),
    (False, "long", "CLOSE", True, ["exit:sell"], "close long 2"),
    (False, "short", "BUY", True, ["exit:buy"], "no flip"),
    (False, "short", "SELL", True, [], "already short"),
    (False, "short", "HOLD", True, [], "hold"),
    (False, "short", "CLOSE", True, ["exit:buy"], "close short 2"),
    (True, "flat", "BUY", True, ["entry:buy"], "open long"),
    (True, "flat", "SELL", True, ["entry:sell"], "open short"),
    (True, "flat", "HOLD", True, [], "hold"),
    (True, "flat", "CLOSE", True, [], "already flat"),
    (True, "long", "BUY", True, [], "already long"),
    (True, "long", "SELL", True, ["exit:sell", "entry:sell"], "close long 2"),
    (True, "long", "HOLD", True, [], "hold"),
    (True, "long", "CLOSE", True, ["exit:sell"], "close long 2"),
    (True, "short", "BUY", True, ["exit:buy", "entry:buy"], "close short 2"),
    (True, "short", "SELL", True, [], "already short"),
    (True, "short", "HOLD", True, [], "hold"),
    (True, "short", "CLOSE", True, ["exit:buy"], "close short 2"),
]


@pytest.mark.parametrize(("allow_short", "state", "action", "approved", "orders", "reason"), TABLE)
def test_every_action_in_every_position_state(
    allow_short: bool, state: str, action: str, approved: bool, orders: list[str], reason: str
) -> None:
    rm = RiskManager(RiskConfig(allow_short=allow_short, fraction=0.5))
    q = POSITION[state]
    positions = ((BTC, q, 100.0),) if q else ()
    d = rm.review(act(action), account(10_000.0, positions), market())
    assert d.approved is approved
    assert summary(d) == orders
    assert reason in d.reason
    assert d.action is Action.parse(action)
    for order in d.orders:
        if order.tag.endswith(":exit"):
            assert order.reduce_only and order.type is OrderType.MARKET
            assert order.quantity == pytest.approx(2.0)
        else:
            assert not order.reduce_only
            assert order.equity_fraction == pytest.approx(0.5)


def test_flip_sizes_the_new_entry_as_if_flat() -> None:
    # a 9 000 long with cap 0.5: the exit frees the room, the short entry gets the full 5 000
    rm = RiskManager(RiskConfig(allow_short=True, max_position_fraction=0.5, fraction=0.5))
    d = rm.review(act("SELL"), account(10_000.0, ((BTC, 90.0, 100.0),)), market())
    assert summary(d) == ["exit:sell", "entry:sell"]
    assert d.orders[0].quantity == pytest.approx(90.0)
    assert d.orders[1].equity_fraction == pytest.approx(0.5)
    assert not d.resized


def test_review_strict_raises_risk_rejected_with_the_reason() -> None:
    rm = RiskManager()
    refused = rm.review(act("SELL"), account(1_000.0), market())
    with pytest.raises(RiskRejected, match="shorting disabled") as err:
        rm.review_strict(act("SELL"), account(1_000.0), market())
    assert str(err.value) == refused.reason
    assert rm.review_strict(act("BUY"), account(1_000.0), market()).approved


# ---------------------------------------------------------------------- caps
def test_per_symbol_cap_resizes_a_quantity_entry() -> None:
    # volatility sizing asks 0.01 × 10 000 / 2.5 = 40 units = 4 000 notional; cap 0.2 → 2 000
    rm = RiskManager(
        RiskConfig(sizing="volatility_target", max_position_fraction=0.2, fraction=0.2)
    )
    d = rm.review(act("BUY"), account(10_000.0), market(atr=2.5, lot_size=0.01))
    assert d.approved and d.resized
    assert d.orders[0].quantity == pytest.approx(20.0)
    assert (d.requested_quantity, d.final_quantity) == pytest.approx((40.0, 20.0))
    assert "per-symbol cap" in d.reason and "2,000.00" in d.reason
    (alert,) = rm.drain_alerts()
    assert alert.kind == "order_resized"
    assert alert.symbol == BTC
    assert alert.timestamp == T0
    assert alert.values["final_quantity"] == pytest.approx(20.0)


def test_symbol_caps_override_the_default_cap() -> None:
    rm = RiskManager(RiskConfig(symbol_caps={ETH: 0.1}, fraction=0.8))
    btc = rm.review(act("BUY"), account(10_000.0), market())
    eth = rm.review(act("BUY", ETH), account(10_000.0), market(ETH, 50.0))
    assert btc.orders[0].equity_fraction == pytest.approx(0.8) and not btc.resized
    assert eth.orders[0].equity_fraction == pytest.approx(0.1) and eth.resized
    assert "0.1 × equity 10,000.00 = 1,000.00" in eth.reason


def test_leverage_cap_counts_other_positions() -> None:
    # ETH holds 8 000 of a 10 000 gross limit: the BTC entry gets at most 2 000
    rm = RiskManager(RiskConfig(fraction=1.0))
    d = rm.review(act("BUY"), account(10_000.0, ((ETH, 160.0, 50.0),)), market())
    assert d.resized
    assert d.orders[0].equity_fraction == pytest.approx(0.2)
    assert "leverage cap" in d.reason and "8,000.00" in d.reason


def test_leverage_cap_with_quantity_orders_rounds_down() -> None:
    rm = RiskManager(RiskConfig(max_leverage=2.0, max_position_fraction=2.0))
    d = rm.review(
        act("BUY", quantity=500.0),
        account(10_000.0, ((ETH, -200.0, 50.0),), leverage=2.0),
        market(price=30.0, lot_size=1.0),
    )
    # room = 2 × 10 000 − 10 000 = 10 000 → 333.33 units → 333 lots
    assert d.resized
    assert d.orders[0].quantity == pytest.approx(333.0)


def test_no_room_refuses_with_an_alert() -> None:
    rm = RiskManager()
    d = rm.review(act("BUY"), account(10_000.0, ((ETH, 250.0, 50.0),)), market())
    assert not d.approved
    assert "no room for BTC/USDT" in d.reason
    assert [a.kind for a in rm.drain_alerts()] == ["order_refused"]


def test_room_below_one_lot_is_refused() -> None:
    rm = RiskManager(RiskConfig(max_position_fraction=0.001))
    d = rm.review(act("BUY", quantity=5.0), account(10_000.0), market(lot_size=1.0))
    # room 10 → 0.1 units < lot 1
    assert not d.approved
    assert "below one lot" in d.reason
    assert [a.kind for a in rm.drain_alerts()] == ["order_refused"]


def test_limit_above_market_is_capped_at_the_limit_price() -> None:
    rm = RiskManager(RiskConfig(max_position_fraction=0.5))
    d = rm.review(
        act("SELL", price=125.0, quantity=100.0), account(10_000.0, ((BTC, 1.0, 100.0),)), market()
    )
    assert summary(d) == ["exit:sell"]  # long-only: the SELL only closes
    rm2 = RiskManager(RiskConfig(max_position_fraction=0.5, allow_short=True))
    d2 = rm2.review(act("SELL", price=125.0, quantity=100.0), account(10_000.0), market())
    assert d2.orders[0].type is OrderType.LIMIT
    assert d2.orders[0].quantity == pytest.approx(40.0)  # 5 000 / 125


def test_non_positive_equity_refuses_entries_but_not_exits() -> None:
    rm = RiskManager(RiskConfig(allow_short=True))
    d = rm.review(act("SELL"), account(-50.0, ((BTC, 3.0, 100.0),)), market())
    assert d.approved
    assert summary(d) == ["exit:sell"]
    assert "short entry refused: equity -50 is not above 0" in d.reason


# ---------------------------------------------------------------------- halts
EQUITY_PATH = np.array([1000.0, 1100.0, 1200.0, 1000.0, 950.0, 980.0, 900.0, 1300.0])
TIMES = T0 + HOUR * np.arange(EQUITY_PATH.size, dtype=np.int64)


def test_circuit_breaker_trips_at_the_right_bar_and_blocks_entries_only() -> None:
    rm = RiskManager(RiskConfig(max_drawdown=0.2, allow_short=True))
    rm.observe_many(TIMES[:4], EQUITY_PATH[:4])
    assert not rm.halted and rm.drain_alerts() == []
    rm.observe_many(TIMES[4:], EQUITY_PATH[4:])  # 950 / 1200 = −20.8 % at bar 4 (13:00 UTC)
    assert rm.halted
    alerts = rm.drain_alerts()
    assert [a.kind for a in alerts] == ["circuit_breaker"]
    assert alerts[0].timestamp == int(TIMES[4])
    reason = "circuit breaker: drawdown 20.8 % ≥ 20 % since 2024-01-05 13:00 UTC"
    assert rm.halt_reason == reason
    assert alerts[0].values["drawdown"] == pytest.approx(250 / 1200)
    # recovery to a new peak does not lift it
    assert rm.halted

    now = int(TIMES[-1])
    refused = rm.review(act("BUY", timestamp=now), account(1300.0), market(timestamp=now))
    assert not refused.approved and refused.reason == reason
    assert refused.orders == ()
    with pytest.raises(RiskRejected, match="circuit breaker"):
        rm.review_strict(act("BUY", timestamp=now), account(1300.0), market(timestamp=now))

    long = account(1300.0, ((BTC, 2.0, 100.0),))
    closed = rm.review(act("CLOSE"), long, market(timestamp=now))
    assert closed.approved and summary(closed) == ["exit:sell"]
    flip = rm.review(act("SELL"), long, market(timestamp=now))
    assert flip.approved and summary(flip) == ["exit:sell"]
    assert "short entry refused: circuit breaker" in flip.reason
    assert {a.kind for a in rm.drain_alerts()} == {"order_refused"}

    rm.reset_halt(now + 1)
    assert not rm.halted
    (reset,) = rm.drain_alerts()
    assert reset.kind == "halt_reset" and reset.timestamp == now + 1
    assert rm.review(act("BUY"), account(1300.0), market(timestamp=now)).orders
    # the breaker measures afresh from the equity at the reset (1300)
    rm.observe(now + HOUR, 1100.0)  # −15.4 %
    assert not rm.halted
    rm.observe(now + 2 * HOUR, 1040.0)  # −20 %
    assert rm.halted


def test_per_bar_observe_trips_at_the_same_bar() -> None:
    rm = RiskManager(RiskConfig(max_drawdown=0.2))
    tripped = []
    for t, e in zip(TIMES.tolist(), EQUITY_PATH.tolist(), strict=True):
        rm.observe(t, e)
        tripped.append(rm.halted)
    assert tripped == [False] * 4 + [True] * 4


def test_daily_loss_limit_halts_for_the_rest_of_the_utc_day() -> None:
    rm = RiskManager(RiskConfig(daily_loss_limit=0.05))
    day2 = 1_704_499_200_000  # 2024-01-06 00:00 UTC
    rm.observe(T0, 10_000.0)  # the day's first equity
    rm.observe(T0 + HOUR, 10_400.0)
    rm.observe(T0 + 2 * HOUR, 9_600.0)  # −4 % from 10 000: still fine
    assert not rm.halted
    rm.observe(T0 + 3 * HOUR, 9_500.0)  # −5 %
    assert rm.halted
    (alert,) = rm.drain_alerts()
    assert alert.kind == "daily_loss_limit"
    assert alert.timestamp == T0 + 3 * HOUR
    assert "daily loss limit: down 5.0 % ≥ 5 %" in rm.halt_reason
    assert not rm.review(act("BUY"), account(9_500.0), market()).approved
    assert [a.kind for a in rm.drain_alerts()] == ["order_refused"]
    rm.observe(T0 + 4 * HOUR, 10_500.0)  # recovering the same day does not lift it
    assert rm.halted
    rm.observe(day2, 10_400.0)  # a new UTC day lifts it; 10 400 is the new reference
    assert not rm.halted
    (lifted,) = rm.drain_alerts()
    assert lifted.kind == "halt_reset" and lifted.timestamp == day2
    assert rm.review(act("BUY"), account(10_400.0), market(timestamp=day2)).approved
    rm.observe(day2 + HOUR, 9_900.0)  # −4.8 % from 10 400
    assert not rm.halted
    rm.observe(day2 + 2 * HOUR, 9_880.0)  # −5 % from 10 400
    assert rm.halted


def test_reset_halt_without_a_halt_does_nothing() -> None:
    rm = RiskManager(RiskConfig(max_drawdown=0.1))
    rm.observe(T0, 100.0)
    rm.reset_halt(T0 + 1)
    assert rm.drain_alerts() == []
    assert not rm.halted


# ---------------------------------------------------------------------- raw orders
def test_review_order_reduce_only_always_passes_even_halted() -> None:
    rm = RiskManager(RiskConfig(max_drawdown=0.1))
    rm.observe_many(np.array([T0, T0 + HOUR]), np.array([100.0, 50.0]))
    assert rm.halted
    stop = OrderRequest(
        BTC, OrderSide.SELL, OrderType.STOP_MARKET, quantity=2.0, stop_price=90.0, reduce_only=True
    )
    d = rm.review_order(stop, account(50.0, ((BTC, 2.0, 100.0),)), market())
    assert d.approved and d.orders == (stop,)
    entry = OrderRequest(BTC, OrderSide.BUY, quantity=0.1)
    refused = rm.review_order(entry, account(50.0), market())
    assert not refused.approved and "circuit breaker" in refused.reason


def test_review_order_cuts_a_flip_to_the_exit_when_halted() -> None:
    rm = RiskManager(RiskConfig(daily_loss_limit=0.1, allow_short=True))
    rm.observe_many(np.array([T0, T0 + HOUR]), np.array([100.0, 80.0]))
    big_sell = OrderRequest(BTC, OrderSide.SELL, quantity=5.0)
    d = rm.review_order(big_sell, account(80.0, ((BTC, 2.0, 10.0),)), market(price=10.0))
    assert d.approved and d.resized
    (cut,) = d.orders
    assert cut.reduce_only and cut.quantity == pytest.approx(2.0)
    assert "daily loss limit" in d.reason


def test_review_order_a_reducing_order_is_left_alone() -> None:
    rm = RiskManager()
    sell = OrderRequest(BTC, OrderSide.SELL, OrderType.LIMIT, quantity=1.0, limit_price=101.0)
    d = rm.review_order(sell, account(1_000.0, ((BTC, 3.0, 100.0),)), market())
    assert d.approved and d.orders == (sell,) and not d.resized


def test_review_order_shorting_disabled() -> None:
    rm = RiskManager()
    d = rm.review_order(OrderRequest(BTC, OrderSide.SELL, quantity=1.0), account(1_000.0), market())
    assert not d.approved and "shorting disabled" in d.reason
    cut = rm.review_order(
        OrderRequest(BTC, OrderSide.SELL, quantity=5.0),
        account(1_000.0, ((BTC, 2.0, 100.0),)),
        market(),
    )
    assert cut.orders[0].reduce_only and cut.orders[0].quantity == pytest.approx(2.0)


def test_review_order_adds_up_to_the_cap() -> None:
    # long 3 000 of a 5 000 cap: a buy of 30 (3 000) is cut to 20 (2 000)
    rm = RiskManager(RiskConfig(max_position_fraction=0.5, fraction=0.5))
    d = rm.review_order(
        OrderRequest(BTC, OrderSide.BUY, quantity=30.0),
        account(10_000.0, ((BTC, 30.0, 100.0),)),
        market(lot_size=0.5),
    )
    assert d.resized and d.orders[0].quantity == pytest.approx(20.0)
    assert "per-symbol cap" in d.reason


def test_review_order_scales_an_equity_fraction_order() -> None:
    rm = RiskManager(RiskConfig(max_position_fraction=0.25, fraction=0.25))
    d = rm.review_order(
        OrderRequest(BTC, OrderSide.BUY, equity_fraction=1.0), account(10_000.0), market()
    )
    assert d.resized
    assert d.orders[0].equity_fraction == pytest.approx(0.25)
    assert d.orders[0].quantity is None


# ---------------------------------------------------------------------- invariants
SYMBOLS = (BTC, ETH)
STEP = st.tuples(
    st.integers(0, 1),  # symbol
    st.sampled_from(["BUY", "SELL", "HOLD", "CLOSE", "RAW"]),
    st.floats(0.9, 1.1),  # price move
    st.floats(0.85, 1.08),  # equity move
    st.booleans(),  # limit price?
    st.one_of(st.none(), st.floats(0.0, 400.0)),  # requested quantity
    st.one_of(st.none(), st.just(math.nan), st.floats(0.1, 10.0)),  # ATR
    st.booleans(),  # raw order reduce-only?
)
CONFIG = st.builds(
    dict,
    sizing=st.sampled_from(["fixed_fraction", "risk_per_trade", "volatility_target"]),
    max_leverage=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    max_position_fraction=st.floats(0.05, 2.0),
    btc_cap=st.one_of(st.none(), st.floats(0.05, 1.0)),
    fraction_share=st.floats(0.05, 1.0),
    stop=st.sampled_from(["none", "pct", "atr"]),
    allow_short=st.booleans(),
    max_drawdown=st.one_of(st.none(), st.floats(0.05, 0.4)),
    daily_loss_limit=st.one_of(st.none(), st.floats(0.02, 0.2)),
)


def _make_config(c: dict[str, object]) -> RiskConfig:
    lev = float(c["max_leverage"])  # type: ignore[arg-type]
    stop = c["stop"]
    return RiskConfig(
        sizing=c["sizing"],  # type: ignore[arg-type]
        fraction=lev * float(c["fraction_share"]),  # type: ignore[arg-type]
        max_leverage=lev,
        max_position_fraction=c["max_position_fraction"],  # type: ignore[arg-type]
        symbol_caps={} if c["btc_cap"] is None else {BTC: c["btc_cap"]},  # type: ignore[dict-item]
        stop_loss_pct=0.03 if stop == "pct" else None,
        stop_loss_atr=2.0 if stop == "atr" else None,
        take_profit_pct=0.05,
        allow_short=c["allow_short"],  # type: ignore[arg-type]
        max_drawdown=c["max_drawdown"],  # type: ignore[arg-type]
        daily_loss_limit=c["daily_loss_limit"],  # type: ignore[arg-type]
    )


@settings(max_examples=60, deadline=None)
@given(
    config=CONFIG,
    leverage=st.sampled_from([1.0, 2.0, 3.0]),
    lot=st.sampled_from([0.001, 0.01, 1.0]),
    steps=st.lists(STEP, min_size=1, max_size=40),
)
def test_approved_orders_never_break_the_caps_and_halts_block_every_entry(
    config: dict[str, object], leverage: float, lot: float, steps: list[tuple]
) -> None:
    cfg = _make_config(config)
    rm = RiskManager(cfg)
    positions = {s: 0.0 for s in SYMBOLS}
    prices = {BTC: 100.0, ETH: 40.0}
    equity = 10_000.0
    ts = T0
    breaker_tripped = False
    for sym_i, kind, price_move, equity_move, use_limit, qty, atr, reduce_only in steps:
        symbol = SYMBOLS[sym_i]
        ts += 5 * HOUR
        prices[symbol] *= price_move
        equity *= equity_move
        rm.observe(ts, equity)
        breaker_tripped = breaker_tripped or rm.state().breaker is not None
        halted = rm.halted
        price = prices[symbol]
        acct = account(
            equity,
            tuple((s, q, prices[s]) for s, q in positions.items() if q != 0.0),
            leverage,
            ts,
        )
        mkt = market(symbol, price, ts, atr=atr, lot_size=lot, taker_fee=0.001)
        if kind == "RAW":
            side = OrderSide.BUY if price_move >= 1.0 else OrderSide.SELL
            request = (
                OrderRequest(symbol, side, quantity=qty, reduce_only=reduce_only)
                if qty
                else OrderRequest(
                    symbol, side, equity_fraction=equity_move, reduce_only=reduce_only
                )
            )
            decision = rm.review_order(request, acct, mkt)
        else:
            limit = price * 0.99 if use_limit else None
            decision = rm.review(act(kind, symbol, limit, qty, ts), acct, mkt)
        if (halted or breaker_tripped) and kind != "RAW":
            assert all(o.reduce_only for o in decision.orders), decision.reason
        if not decision.approved:
            assert decision.orders == ()
        opened = False
        # apply the immediate orders at the decision price (conditional ones stay resting)
        for order in decision.orders:
            if order.type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT):
                continue
            pos = positions[symbol]
            if order.quantity is not None:
                fill = order.quantity
            else:
                fill = floor_to_lot(order.equity_fraction * equity * leverage / price, lot)
            if order.reduce_only:
                if pos * order.side.sign >= 0:
                    continue
                fill = min(fill, abs(pos))
            positions[symbol] = pos + order.side.sign * fill
            grew = abs(positions[symbol]) > abs(pos) + 1e-12
            opened = opened or (grew and positions[symbol] * order.side.sign > 0)
        if halted or breaker_tripped:
            assert not opened, decision.reason  # no approved order opens or adds while halted
        if opened:
            cap = cfg.position_cap(symbol) * equity
            notional = abs(positions[symbol]) * price
            gross = sum(abs(q) * prices[s] for s, q in positions.items())
            assert notional <= cap * (1 + 1e-9) + 1e-9, (notional, cap, decision.reason)
            assert gross <= cfg.max_leverage * equity * (1 + 1e-9) + 1e-9, (gross, decision.reason)
        if not cfg.allow_short:
            # a short can only come from nowhere: never opened here
            assert positions[symbol] >= -1e-12


def test_the_config_says_when_a_review_reads_the_atr() -> None:
    """The runtime computes the ATR only for a config that reads it (a live run's ATR over a
    growing history would otherwise be recomputed every step)."""
    assert not RiskConfig().uses_atr
    assert not RiskConfig(stop_loss_pct=0.02).uses_atr
    assert RiskConfig(stop_loss_atr=2.0).uses_atr
    assert RiskConfig(sizing="volatility_target").uses_atr
