"""The action executor: approved orders reach the broker in order, refusals and resizes are
recorded with their reasons, the account is read again between actions, and only the Broker
protocol is used."""

from __future__ import annotations

import pytest

from pivotal.core.clock import ReplayClock
from pivotal.core.orders import AccountSnapshot, Order, OrderRequest, OrderType
from pivotal.core.ports import Broker, BrokerEvent
from pivotal.core.symbols import Symbol
from pivotal.core.types import Action, TradingAction
from pivotal.testing.planted import planted_candles
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.brokers.simulated import SimulatedBroker
from pivotal.trading.execution import ActionExecutor, alert_record, broker_event_record
from pivotal.trading.fees import FeeSchedule
from pivotal.trading.risk import RiskAlert, RiskConfig, RiskManager

SYMBOL = "BTC/USDT"
BAR_MS = 60_000
FEES = FeeSchedule(maker=0.0002, taker=0.0007)


class ProtocolOnly:
    """A Broker that exposes the protocol and nothing else, and logs what was submitted."""

    def __init__(self, inner: SimulatedBroker) -> None:
        self._inner = inner
        self.submitted: list[OrderRequest] = []
        self.account_reads = 0

    def submit(self, request: OrderRequest) -> Order:
        self.submitted.append(request)
        return self._inner.submit(request)

    def cancel(self, client_order_id: str) -> Order:
        return self._inner.cancel(client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return self._inner.open_orders(symbol)

    def order(self, client_order_id: str) -> Order:
        return self._inner.order(client_order_id)

    def account(self) -> AccountSnapshot:
        self.account_reads += 1
        return self._inner.account()

    def drain_events(self) -> list[BrokerEvent]:
        return self._inner.drain_events()


def _setup(
    *, fill: str = "next_open", bars: int = 30, **risk: object
) -> tuple[SimulatedBroker, ProtocolOnly, RiskManager, ActionExecutor, ReplayClock, float]:
    candles = planted_candles(bars, seed=4, bar_ms=BAR_MS)
    clock = ReplayClock(int(candles.timestamp[0]))
    sim = SimulatedBroker(
        clock,
        SimulatedBrokerConfig(initial_cash=10_000.0, fees=FEES, fill_timing=fill, lot_size=1e-6),
        bar_ms=BAR_MS,
        symbols=[SYMBOL],
    )
    for j in range(bars):  # the bars up to the decision have closed
        clock.advance_to(int(candles.timestamp[j]) + BAR_MS)
        sim.on_bar(SYMBOL, candles.rows(j, j + 1))
    broker = ProtocolOnly(sim)
    manager = RiskManager(RiskConfig(**risk))
    executor = ActionExecutor(broker, manager, fees=FEES, lot_size=1e-6)
    return sim, broker, manager, executor, clock, float(candles.close[-1])


def _action(action: str, **kw: object) -> TradingAction:
    return TradingAction(Symbol.parse(SYMBOL), 0, Action.parse(action), 1.0, "test", **kw)  # type: ignore[arg-type]


def _execute(
    executor: ActionExecutor,
    broker: Broker,
    clock: ReplayClock,
    price: float,
    *actions: TradingAction,
    atr: float | None = None,
) -> list[dict[str, object]]:
    return executor.execute(
        actions, broker.account(), symbol=SYMBOL, timestamp=clock.now_ms(), price=price, atr=atr
    )


def test_an_approved_entry_reaches_the_broker_with_its_stop() -> None:
    sim, broker, _, executor, clock, price = _setup(fraction=0.5, stop_loss_pct=0.01)
    records = _execute(executor, broker, clock, price, _action("BUY"))
    assert records == []
    kinds = [(r.type, r.reduce_only) for r in broker.submitted]
    assert kinds == [(OrderType.MARKET, False), (OrderType.STOP_MARKET, True)]
    assert [o.request.type for o in sim.open_orders(SYMBOL)] == [
        OrderType.MARKET,
        OrderType.STOP_MARKET,
    ]
    stop = broker.submitted[1].stop_price
    assert stop == pytest.approx(price * 0.99)


def test_a_refusal_is_recorded_and_nothing_is_submitted() -> None:
    _, broker, _, executor, clock, price = _setup()
    records = _execute(executor, broker, clock, price, _action("SELL"))
    assert broker.submitted == []
    assert len(records) == 1
    record = records[0]
    assert record["kind"] == "risk_refused"
    assert record["action"] == "SELL"
    assert record["symbol"] == SYMBOL
    assert record["timestamp"] == clock.now_ms()
    assert "shorting disabled" in str(record["message"])


def test_a_resize_is_recorded_and_the_cut_order_submitted() -> None:
    _, broker, _, executor, clock, price = _setup(max_position_fraction=0.1)
    wanted = 10_000.0 / price  # the whole equity's worth, ten times the cap
    records = _execute(executor, broker, clock, price, _action("BUY", quantity=wanted))
    assert [r["kind"] for r in records] == ["risk_resized"]
    assert "per-symbol cap" in str(records[0]["message"])
    (entry,) = broker.submitted
    assert entry.quantity is not None
    assert entry.quantity * price <= 0.1 * 10_000.0
    assert entry.quantity < wanted


def test_the_account_is_read_again_after_submitting() -> None:
    """With fills at the close, the first BUY fills inside submit: the second BUY of the same
    decision sees the long and adds nothing. Reviewing both against the old account would
    have submitted two entries."""
    sim, broker, manager, executor, clock, price = _setup(fill="current_close", fraction=0.4)
    reads = broker.account_reads
    records = _execute(executor, broker, clock, price, _action("BUY"), _action("BUY"))
    assert records == []
    assert len(broker.submitted) == 1
    assert sim.portfolio.quantity(SYMBOL) > 0
    assert broker.account_reads == reads + 2  # the caller's read, then one after the submit
    # A CLOSE after that BUY in one decision closes what the BUY opened.
    _execute(executor, broker, clock, price, _action("BUY"), _action("CLOSE"))
    assert sim.portfolio.quantity(SYMBOL) == 0.0
    assert not manager.halted


def test_nan_atr_is_unknown_atr() -> None:
    """ATR stops need a known ATR: NaN (warm-up) and None both refuse the entry alike."""
    _, broker, _, executor, clock, price = _setup(stop_loss_atr=2.0)
    by_nan = _execute(executor, broker, clock, price, _action("BUY"), atr=float("nan"))
    by_none = _execute(executor, broker, clock, price, _action("BUY"), atr=None)
    assert [r["kind"] for r in by_nan] == [r["kind"] for r in by_none]
    assert by_nan[0]["message"] == by_none[0]["message"]
    assert broker.submitted == []
    with_atr = _execute(executor, broker, clock, price, _action("BUY"), atr=price * 0.002)
    assert with_atr == []
    assert broker.submitted[1].stop_price == pytest.approx(price - 2.0 * price * 0.002)


def test_no_actions_no_records_no_orders() -> None:
    _, broker, _, executor, clock, price = _setup()
    assert _execute(executor, broker, clock, price) == []
    assert _execute(executor, broker, clock, price, _action("HOLD")) == []
    assert broker.submitted == []


def test_an_action_for_another_symbol_is_refused_loudly() -> None:
    _, broker, _, executor, clock, price = _setup()
    eth = TradingAction(Symbol.parse("ETH/USDT"), 0, Action.BUY, 1.0, "test")
    with pytest.raises(ValueError, match="MarketState"):
        _execute(executor, broker, clock, price, eth)


def test_bad_construction_is_refused_with_a_reason() -> None:
    sim, _, manager, _, _, _ = _setup()
    with pytest.raises(TypeError, match="Broker"):
        ActionExecutor(object(), manager, fees=FEES, lot_size=1e-6)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RiskManager"):
        ActionExecutor(sim, object(), fees=FEES, lot_size=1e-6)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="FeeSchedule"):
        ActionExecutor(sim, manager, fees={"taker": 0.001}, lot_size=1e-6)  # type: ignore[arg-type]
    for lot in (0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="lot_size"):
            ActionExecutor(sim, manager, fees=FEES, lot_size=lot)


def test_event_records_carry_time_kind_and_symbol() -> None:
    sim, broker, manager, executor, clock, price = _setup(fill="current_close", fraction=0.3)
    sim.drain_events()
    _execute(executor, broker, clock, price, _action("BUY"))
    records = [broker_event_record(e) for e in sim.drain_events()]
    assert [r["kind"] for r in records] == ["order", "fill", "order"]
    fill = records[1]
    assert fill["symbol"] == SYMBOL and fill["side"] == "buy" and fill["price"] == price
    assert fill["fee"] == pytest.approx(fill["quantity"] * price * FEES.taker)  # type: ignore[operator]
    assert records[2]["status"] == "filled"
    alert = RiskAlert(clock.now_ms(), "circuit_breaker", None, "drawdown 21 % reached 20 %")
    assert alert_record(alert) == {
        "timestamp": clock.now_ms(),
        "kind": "risk_circuit_breaker",
        "symbol": None,
        "message": "drawdown 21 % reached 20 %",
    }
    with pytest.raises(TypeError, match="Fill or an OrderEvent"):
        broker_event_record("filled")  # type: ignore[arg-type]
    assert manager.drain_alerts() == []
