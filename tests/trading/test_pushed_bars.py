"""The simulated broker driven by pushed bars: quiet spans, streaming slippage, venue ids,
exchange-style sizing, and the in-flight order states of the order vocabulary."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotal.core.candles import Candles
from pivotal.core.clock import ReplayClock
from pivotal.core.orders import (
    ORDER_TRANSITIONS,
    Fill,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
)
from pivotal.trading.brokers import matching
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.brokers.simulated import SimulatedBroker
from pivotal.trading.execution import broker_event_record
from pivotal.trading.fees import FeeSchedule
from pivotal.trading.slippage import VolatilitySlippage

BAR = 60_000
SYM = "BTC/USDT"


def random_candles(seed: int, n: int) -> Candles:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    opening = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0.0, 0.002, n))
    high = np.maximum(opening, close) * (1.0 + rng.uniform(0.0, 0.01, n))
    low = np.minimum(opening, close) * (1.0 - rng.uniform(0.0, 0.01, n))
    volume = rng.uniform(1.0, 50.0, n)
    return Candles(np.arange(n, dtype=np.int64) * BAR, opening, high, low, close, volume)


def run(
    candles: Candles, plan: dict[int, OrderRequest], quiet: frozenset[int], **options: object
) -> tuple[list[tuple[object, ...]], SimulatedBroker]:
    """Push ``candles``; bars in ``quiet`` (while no order is active) reach the broker as
    spans through ``mark``, as the engine's quiet spans do; ``plan`` submits a request at a
    bar's close. Returns the fills and the broker."""
    clock = ReplayClock(0)
    fees = FeeSchedule(maker=0.0005, taker=0.001)
    config = SimulatedBrokerConfig(fees=fees, allow_short=True, **options)  # type: ignore[arg-type]
    broker = SimulatedBroker(clock, config, bar_ms=BAR, symbols=[SYM])
    n = len(candles)
    pending: int | None = None
    for i in range(n):
        clock.advance_to((i + 1) * BAR)
        if i in quiet and i not in plan and not broker.has_active_orders(SYM):
            pending = i if pending is None else pending
            if i == n - 1:
                broker.mark(SYM, candles.rows(pending, n))
            continue
        if pending is not None:
            broker.mark(SYM, candles.rows(pending, i))
            pending = None
        broker.on_bar(SYM, candles.rows(i, i + 1))
        if i in plan:
            broker.submit(plan[i])
    fills = [
        (f.timestamp, f.quantity, f.price, f.fee, f.venue_trade_id)
        for f in broker.drain_events()
        if isinstance(f, Fill)
    ]
    return fills, broker


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    quiet=st.frozensets(st.integers(0, 59), max_size=40),
    entries=st.frozensets(st.integers(0, 58), min_size=1, max_size=8),
)
def test_quiet_spans_pushed_through_mark_change_nothing(
    seed: int, quiet: frozenset[int], entries: frozenset[int]
) -> None:
    """Marking the bars between decisions (as the engine does) gives the fills of pushing
    every bar through ``on_bar``, volatility slippage (which reads recent closes) included."""
    candles = random_candles(seed, 60)
    plan = {
        i: OrderRequest(
            SYM,
            OrderSide.BUY if k % 2 == 0 else OrderSide.SELL,
            equity_fraction=0.5 if k % 3 else None,
            quantity=None if k % 3 else 1.5,
        )
        for k, i in enumerate(sorted(entries))
    }
    options = {"slippage": "volatility", "volatility_multiplier": 0.2, "volatility_window": 8}
    every, b1 = run(candles, plan, frozenset(), **options)
    spans, b2 = run(candles, plan, quiet, **options)
    assert spans == every
    assert b1.portfolio.equity == b2.portfolio.equity
    assert b1.fills_frame().equals(b2.fills_frame())
    assert b1.last_index(SYM) == b2.last_index(SYM) == len(candles) - 1


@settings(max_examples=30, deadline=None)
@given(
    closes=st.lists(st.floats(1.0, 1_000.0), min_size=1, max_size=40),
    window=st.integers(3, 12),
    bar=st.integers(0, 45),
)
def test_streaming_volatility_slippage_equals_the_batch_model(
    closes: list[float], window: int, bar: int
) -> None:
    series = np.asarray(closes)
    bar = min(bar, len(series))
    batch = VolatilitySlippage(1.5, window, closes={SYM: series})
    streaming = VolatilitySlippage(1.5, window)
    streaming.record(SYM, series[:bar])
    assert streaming.fraction(SYM, bar) == batch.fraction(SYM, bar)
    with pytest.raises(ValueError, match="does not stream"):
        batch.record(SYM, series)


def test_fills_and_orders_carry_deterministic_venue_ids() -> None:
    candles = random_candles(1, 5)
    plan = {
        0: OrderRequest(SYM, OrderSide.BUY, quantity=1.0),
        2: OrderRequest(SYM, OrderSide.SELL, quantity=1.0),
    }
    fills, broker = run(candles, plan, frozenset())
    assert [f[-1] for f in fills] == ["sim-t00000001", "sim-t00000002"]
    order = broker.order("sim-00000001")
    assert order.venue_order_id == order.order_id == "sim-o00000001" and order.raw is None
    assert run(candles, plan, frozenset())[0] == fills  # the same ids run after run
    broker.submit(OrderRequest(SYM, OrderSide.BUY, quantity=1.0))
    record = broker_event_record(broker.drain_events()[-1])
    assert record["venue_order_id"] == "sim-o00000003"


def test_the_broker_executes_the_decided_quantity_without_size_at_fill() -> None:
    candles = random_candles(2, 4)
    both = OrderRequest(SYM, OrderSide.BUY, quantity=2.0, equity_fraction=0.9)
    by_fill, parity = run(candles, {0: both}, frozenset())
    as_given, exchange = run(candles, {0: both}, frozenset(), size_at_fill=False)
    assert as_given[0][1] == 2.0  # the quantity, as an exchange executes it
    assert by_fill[0][1] > 2.0  # re-sized from 90 % of the equity at the fill price
    fraction_only = exchange.submit(OrderRequest(SYM, OrderSide.BUY, equity_fraction=0.5))
    assert fraction_only.status is OrderStatus.REJECTED
    assert "without a quantity" in fraction_only.reason
    assert parity.submit(OrderRequest(SYM, OrderSide.BUY, equity_fraction=0.5)).status is (
        OrderStatus.OPEN
    )


def test_in_flight_states_sit_between_new_and_open_and_before_cancelled() -> None:
    t = ORDER_TRANSITIONS
    assert OrderStatus.SUBMITTED in t[OrderStatus.NEW]
    assert {OrderStatus.OPEN, OrderStatus.REJECTED, OrderStatus.FILLED} <= t[OrderStatus.SUBMITTED]
    for status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.SUBMITTED):
        assert OrderStatus.PENDING_CANCEL in t[status]
    # a cancel in flight may still see fills, succeed, or be refused by the venue
    assert {
        OrderStatus.CANCELLED,
        OrderStatus.FILLED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.OPEN,
    } <= t[OrderStatus.PENDING_CANCEL]
    assert OrderStatus.REJECTED not in t[OrderStatus.PENDING_CANCEL]
    assert OrderStatus.SUBMITTED.is_active and OrderStatus.PENDING_CANCEL.is_active
    assert set(t) == set(OrderStatus)


@pytest.mark.parametrize(
    ("buy", "limit", "touch", "expected"),
    [
        (True, 98.0, False, 98.0),  # traded through: at the limit
        (True, 97.0, False, None),  # low 97 only touches
        (True, 97.0, True, 97.0),  # ... which fills on touch
        (True, 101.0, False, 100.0),  # a limit above the open fills at the open
        (False, 102.0, False, 102.0),
        (False, 103.0, True, 103.0),
        (False, 99.0, False, 100.0),
    ],
)
def test_limit_reference_prices(
    buy: bool, limit: float, touch: bool, expected: float | None
) -> None:
    assert matching.limit_reference(buy, limit, 100.0, 103.0, 97.0, touch=touch) == expected


def test_trigger_reference_prices_gap_through_at_the_open() -> None:
    assert matching.trigger_reference(True, 102.0, 100.0, 103.0, 97.0) == 102.0
    assert matching.trigger_reference(True, 99.0, 100.0, 103.0, 97.0) == 100.0  # gapped above
    assert matching.trigger_reference(True, 104.0, 100.0, 103.0, 97.0) is None
    assert matching.trigger_reference(False, 98.0, 100.0, 103.0, 97.0) == 98.0
    assert matching.trigger_reference(False, 101.0, 100.0, 103.0, 97.0) == 100.0
    assert matching.trigger_reference(False, 96.0, 100.0, 103.0, 97.0) is None


def test_stop_order_request_round_trip_in_the_broker_keeps_its_type() -> None:
    candles = random_candles(3, 3)
    stop = OrderRequest(SYM, OrderSide.BUY, OrderType.STOP_MARKET, quantity=1.0, stop_price=1e6)
    _, broker = run(candles, {0: stop}, frozenset())
    (resting,) = broker.open_orders(SYM)
    assert resting.type is OrderType.STOP_MARKET and resting.status is OrderStatus.OPEN


def test_an_exchange_like_broker_executes_the_risk_managers_quantity() -> None:
    from pivotal.core.symbols import Symbol
    from pivotal.core.types import Action, TradingAction
    from pivotal.trading.risk import MarketState, RiskConfig, RiskManager

    candles = random_candles(4, 3)
    clock = ReplayClock(0)
    config = SimulatedBrokerConfig(fees=FeeSchedule(taker=0.001), size_at_fill=False)
    broker = SimulatedBroker(clock, config, bar_ms=BAR, symbols=[SYM])
    clock.advance_to(BAR)
    broker.on_bar(SYM, candles, 0)  # one row of a longer Candles
    price = float(candles.close[0])
    market = MarketState(SYM, BAR, price, taker_fee=0.001, lot_size=1e-8)
    action = TradingAction(Symbol.parse(SYM), BAR, Action.BUY, 1.0, "test")
    (entry,) = RiskManager(RiskConfig(fraction=0.5)).review(action, broker.account(), market).orders
    assert entry.quantity is not None and entry.equity_fraction == pytest.approx(0.5)
    broker.submit(entry)
    clock.advance_to(2 * BAR)
    broker.on_bar(SYM, candles, 1)
    (fill,) = [e for e in broker.drain_events() if isinstance(e, Fill)]
    assert fill.quantity == entry.quantity
    with pytest.raises(IndexError, match="outside"):
        broker.on_bar(SYM, candles, 3)
