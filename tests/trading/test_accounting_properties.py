"""Accounting invariants over random order streams on random valid candles (hypothesis)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pivotal.core.candles import Candles
from pivotal.core.clock import ReplayClock
from pivotal.core.orders import (
    ORDER_TRANSITIONS,
    AccountSnapshot,
    Fill,
    OrderEvent,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.brokers.simulated import SimulatedBroker
from pivotal.trading.fees import FeeSchedule

BAR = 60_000
SYM = "BTC/USDT"
REL = 1e-9


@st.composite
def candles(draw: st.DrawFn) -> Candles:
    """Valid OHLC: a gapped random walk with wicks; some bars trade no volume."""
    bars = draw(
        st.lists(
            st.tuples(
                st.floats(-0.04, 0.04),  # gap from the previous close (log)
                st.floats(-0.06, 0.06),  # open → close (log)
                st.floats(0.0, 0.03),  # upper wick
                st.floats(0.0, 0.03),  # lower wick
                st.sampled_from([0.0, 0.4, 3.0, 80.0]),  # volume
            ),
            min_size=4,
            max_size=24,
        )
    )
    rows = []
    close = 100.0
    for gap, move, up, down, volume in bars:
        open_ = close * math.exp(gap)
        close = open_ * math.exp(move)
        rows.append(
            (open_, max(open_, close) * (1 + up), min(open_, close) * (1 - down), close, volume)
        )
    data = np.array(rows)
    ts = BAR * np.arange(len(rows), dtype=np.int64)
    return Candles(ts, data[:, 0], data[:, 1], data[:, 2], data[:, 3], data[:, 4])


configs = st.builds(
    SimulatedBrokerConfig,
    initial_cash=st.just(10_000.0),
    fees=st.builds(
        FeeSchedule,
        maker=st.sampled_from([0.0, 0.0002, 0.001]),
        taker=st.sampled_from([0.0, 0.001]),
    ),
    fill_timing=st.sampled_from(["next_open", "current_close"]),
    slippage=st.sampled_from(["none", "fixed", "volatility"]),
    slippage_bps=st.sampled_from([0.0, 25.0]),
    volatility_window=st.just(5),
    limit_fill_on_touch=st.booleans(),
    max_volume_fraction=st.sampled_from([None, 0.5, 1.0]),
    lot_size=st.sampled_from([1e-8, 0.01]),
    leverage=st.sampled_from([1.0, 3.0]),
    allow_short=st.booleans(),
)


@dataclass(frozen=True)
class Intent:
    kind: OrderType
    side: OrderSide
    quantity: float | None
    fraction: float | None
    offset: float
    reduce_only: bool
    tif: TimeInForce
    cancel_first: bool

    def request(self, last_close: float, now: int) -> OrderRequest:
        price = last_close * (1.0 + self.offset)
        return OrderRequest(
            symbol=SYM,
            side=self.side,
            type=self.kind,
            quantity=self.quantity,
            equity_fraction=self.fraction,
            limit_price=price if self.kind is OrderType.LIMIT else None,
            stop_price=price
            if self.kind in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT)
            else None,
            reduce_only=self.reduce_only,
            time_in_force=self.tif,
            expire_at_ms=now + 2 * BAR if self.tif is TimeInForce.GTD else None,
        )


@st.composite
def intents(draw: st.DrawFn) -> Intent:
    sized_by_fraction = draw(st.booleans())
    return Intent(
        kind=draw(st.sampled_from(list(OrderType))),
        side=draw(st.sampled_from(list(OrderSide))),
        quantity=None if sized_by_fraction else draw(st.floats(0.001, 150.0)),
        fraction=draw(st.floats(0.01, 1.0)) if sized_by_fraction else None,
        offset=draw(st.floats(-0.05, 0.05)),
        reduce_only=draw(st.booleans()),
        tif=draw(st.sampled_from(list(TimeInForce))),
        cancel_first=draw(st.integers(0, 7)) == 0,
    )


def close_to(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= REL * max(scale, abs(a), abs(b))


def check_account(snap: AccountSnapshot, initial: float) -> None:
    unrealized = sum(p.unrealized_pnl for p in snap.positions.values())
    assert close_to(snap.equity, snap.cash + unrealized, initial)
    assert close_to(snap.unrealized_pnl, unrealized, initial)
    assert snap.fees_paid >= 0.0
    assert close_to(snap.cash, initial + snap.realized_pnl - snap.fees_paid, initial)
    assert snap.margin_used >= 0.0 and snap.available >= 0.0
    assert close_to(snap.available, max(snap.equity - snap.margin_used, 0.0), initial)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    market=candles(),
    config=configs,
    plan=st.lists(st.lists(intents(), max_size=3), min_size=24, max_size=24),
)
def test_accounting_invariants_hold_after_every_bar_and_order(
    market: Candles, config: SimulatedBrokerConfig, plan: list[list[Intent]]
) -> None:
    clock = ReplayClock(0)
    broker = SimulatedBroker(clock, config, bar_ms=BAR, symbols=[SYM])
    initial = config.initial_cash
    previous = broker.account()
    signed_fills = 0.0
    for i in range(len(market)):
        clock.advance_to((i + 1) * BAR)
        broker.on_bar(SYM, market.rows(i, i + 1))
        snap = broker.account()
        check_account(snap, initial)
        # cash moves only by realized PnL minus fees
        assert close_to(
            snap.cash - previous.cash,
            (snap.realized_pnl - previous.realized_pnl) - (snap.fees_paid - previous.fees_paid),
            initial,
        )
        previous = snap
        for intent in plan[i]:
            active = broker.open_orders()
            if intent.cancel_first and active:
                broker.cancel(active[0].client_order_id)
            before = broker.account()
            order = broker.submit(intent.request(float(market.close[i]), clock.now_ms()))
            after = broker.account()
            if order.status is OrderStatus.REJECTED:
                assert order.reason
                assert after == before  # a refusal leaves the account identical
            check_account(after, initial)
            previous = after
        for event in broker.drain_events():
            if isinstance(event, Fill):
                assert event.fee >= 0.0
                signed_fills += event.side.sign * event.quantity
            else:
                assert isinstance(event, OrderEvent)
                assert event.previous_status is not None
                assert event.status in ORDER_TRANSITIONS[event.previous_status]
                assert event.reason
        position = broker.portfolio.quantity(SYM)
        assert position == pytest.approx(signed_fills, abs=1e-9)
        if not config.allow_short:
            assert position >= -1e-12
        for order in broker.open_orders():
            assert order.status.is_active
            if order.quantity is not None:
                assert order.filled_quantity <= order.quantity * (1 + 1e-12)

    fills = broker.fills_frame()
    if not fills.empty:
        bars = fills["bar"].to_numpy()
        prices = fills["price"].to_numpy()
        assert np.all(prices >= market.low[bars]) and np.all(prices <= market.high[bars])
        assert np.all(fills["fee"].to_numpy() >= 0.0)
        lots = fills["quantity"].to_numpy() / config.lot_size
        assert np.all(np.abs(lots - np.round(lots)) <= 1e-9 * np.maximum(lots, 1.0))
    # every unit of PnL is in a trade: closed pnl + open pnl = equity - initial cash
    total = broker.closed_trades()["pnl"].sum() + broker.open_trades()["pnl"].sum()
    assert close_to(total, broker.account().equity - initial, initial)


@settings(max_examples=60, deadline=None)
@given(
    fills=st.lists(
        st.tuples(st.sampled_from(list(OrderSide)), st.floats(0.01, 5.0), st.floats(50.0, 150.0)),
        min_size=1,
        max_size=30,
    ),
    marks=st.lists(st.floats(50.0, 150.0), min_size=30, max_size=30),
)
def test_portfolio_trades_partition_the_pnl(
    fills: list[tuple[OrderSide, float, float]], marks: list[float]
) -> None:
    """Any fill sequence: cash = initial + realized - fees, and the trades' PnL adds up."""
    from pivotal.trading.portfolio import Portfolio

    portfolio = Portfolio(1_000.0)
    fees = 0.0
    for k, (side, quantity, price) in enumerate(fills):
        fee = quantity * price * 0.001
        fees += fee
        portfolio.apply_fill(Fill("o", "c", SYM, side, quantity, price, fee, "taker", k), k)
        portfolio.mark(SYM, marks[k])
        assert close_to(portfolio.cash, 1_000.0 + portfolio.realized_pnl - fees, 1_000.0)
        assert close_to(portfolio.equity, portfolio.cash + portfolio.unrealized_pnl, 1_000.0)
    trades = portfolio.closed_trades()
    total = trades["pnl"].sum() + portfolio.open_trades()["pnl"].sum()
    assert close_to(total, portfolio.equity - 1_000.0, 1_000.0)
    assert np.all(trades["size"] > 0) and np.all(trades["fees"] >= 0)
    assert np.all(trades["exit_bar"] >= trades["entry_bar"])
