"""Stops and take-profits submitted together with the entry they protect."""

from __future__ import annotations

import weakref

import numpy as np

from pivotal.core.candles import Candles
from pivotal.core.clock import ReplayClock
from pivotal.core.orders import OrderRequest, OrderSide, OrderStatus, OrderType
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.brokers.simulated import SimulatedBroker
from pivotal.trading.fees import FeeSchedule

BAR = 60_000
SYMBOL = "BTC/USDT"
_SERIES: weakref.WeakKeyDictionary[SimulatedBroker, Candles] = weakref.WeakKeyDictionary()


def _broker(rows: list[tuple[float, float, float, float]], cash: float = 10_000.0):  # type: ignore[no-untyped-def]
    o, h, lo, c = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    candles = Candles(
        np.arange(len(rows), dtype=np.int64) * BAR, o, h, lo, c, np.full(len(rows), 5.0)
    )
    clock = ReplayClock(0)
    config = SimulatedBrokerConfig(initial_cash=cash, fees=FeeSchedule(maker=0.0, taker=0.001))
    broker = SimulatedBroker(clock, config, bar_ms=BAR, symbols=[SYMBOL])
    _SERIES[broker] = candles  # pushed bar by bar by _close_bar
    return broker, clock


def _close_bar(broker: SimulatedBroker, clock: ReplayClock, i: int) -> None:
    clock.advance_to((i + 1) * BAR)
    broker.on_bar(SYMBOL, _SERIES[broker].rows(i, i + 1))


def _entry(**kw: object) -> OrderRequest:
    return OrderRequest(SYMBOL, OrderSide.BUY, equity_fraction=0.5, tag="t:entry", **kw)  # type: ignore[arg-type]


def _stop(price: float) -> OrderRequest:
    return OrderRequest(
        SYMBOL, OrderSide.SELL, OrderType.STOP_MARKET, quantity=100.0, stop_price=price,
        reduce_only=True, tag="t:stop",
    )  # fmt: skip


def test_a_stop_sent_with_its_entry_rests_then_works_in_the_entry_bar() -> None:
    broker, clock = _broker([(100, 101, 99, 100), (100, 102, 94, 95), (95, 96, 94, 95)])
    _close_bar(broker, clock, 0)
    entry = broker.submit(_entry())
    stop = broker.submit(_stop(96.0))
    assert entry.status is OrderStatus.OPEN and stop.status is OrderStatus.OPEN
    _close_bar(broker, clock, 1)
    fills = broker.fills_frame()
    assert fills["tag"].tolist() == ["t:entry", "t:stop"]
    assert fills["price"].tolist() == [100.0, 96.0]
    assert broker.portfolio.quantity(SYMBOL) == 0.0
    assert not broker.has_active_orders()


def test_a_stop_whose_entry_is_refused_is_cancelled() -> None:
    broker, clock = _broker([(100, 101, 99, 100), (100, 101, 99, 100)], cash=1e-9)
    _close_bar(broker, clock, 0)
    broker.submit(_entry())
    stop = broker.submit(_stop(90.0))
    _close_bar(broker, clock, 1)
    assert broker.order(stop.client_order_id).status is OrderStatus.CANCELLED
    assert broker.order(stop.client_order_id).reason == "entry ended"
    assert not broker.has_active_orders()


def test_a_stop_without_an_entry_is_rejected_while_flat() -> None:
    broker, clock = _broker([(100, 101, 99, 100)])
    _close_bar(broker, clock, 0)
    before = broker.account()
    stop = broker.submit(_stop(90.0))
    assert stop.status is OrderStatus.REJECTED and "flat" in stop.reason
    assert broker.account() == before


def test_a_stop_waits_for_its_limit_entry() -> None:
    broker, clock = _broker(
        [(100, 101, 99, 100), (100, 101, 95, 96), (96, 97, 89, 97), (91, 92, 85, 86)]
    )
    _close_bar(broker, clock, 0)
    broker.submit(
        OrderRequest(SYMBOL, OrderSide.BUY, OrderType.LIMIT, quantity=1.0, limit_price=90.0)
    )
    stop = broker.submit(_stop(96.0))
    _close_bar(broker, clock, 1)  # low 95 would trigger the stop, but nothing is held yet
    assert broker.order(stop.client_order_id).status is OrderStatus.OPEN
    # Stops are processed before limits within a bar (pessimistic), so the limit filled in
    # bar 2 is protected from bar 3 on; bar 3 gaps below the stop and fills at its open.
    _close_bar(broker, clock, 2)
    assert broker.fills_frame()["price"].tolist() == [90.0]
    assert broker.order(stop.client_order_id).status is OrderStatus.OPEN
    _close_bar(broker, clock, 3)
    assert broker.fills_frame()["price"].tolist() == [90.0, 91.0]
    assert broker.order(stop.client_order_id).status is OrderStatus.FILLED
    assert broker.portfolio.quantity(SYMBOL) == 0.0


def test_closing_cancels_the_old_stop_and_keeps_the_new_entrys_stop() -> None:
    broker, clock = _broker([(100, 101, 99, 100), (100, 101, 99, 100), (100, 101, 99, 100)])
    _close_bar(broker, clock, 0)
    broker.submit(_entry())
    old_stop = broker.submit(_stop(80.0))
    _close_bar(broker, clock, 1)
    assert broker.portfolio.quantity(SYMBOL) > 0
    broker.submit(OrderRequest(SYMBOL, OrderSide.SELL, quantity=1e6, reduce_only=True))
    broker.submit(_entry())
    new_stop = broker.submit(_stop(85.0))
    _close_bar(broker, clock, 2)
    assert broker.order(old_stop.client_order_id).status is OrderStatus.CANCELLED
    assert broker.order(old_stop.client_order_id).reason == "position closed"
    assert broker.order(new_stop.client_order_id).status is OrderStatus.OPEN
    assert broker.portfolio.quantity(SYMBOL) > 0
