"""The simulated broker as a Broker: lifecycle, ids, refusals, sizing, and backtesting.py parity."""

from __future__ import annotations

import dataclasses
import sys
import warnings
import weakref
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from pivotal.backtest.result import FILL_COLUMNS as RESULT_FILL_COLUMNS
from pivotal.core.candles import Candles
from pivotal.core.clock import ReplayClock
from pivotal.core.orders import (
    Fill,
    OrderEvent,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
)
from pivotal.core.ports import Broker
from pivotal.testing.shared_data import SKIP_REASON, shared_data_dir
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.brokers.simulated import FILL_COLUMNS, SimulatedBroker
from pivotal.trading.fees import FeeSchedule

BAR = 60_000
SYM = "BTC/USDT"
FULL = 1.0 - sys.float_info.epsilon  # backtesting.py's default buy() size
_SERIES: weakref.WeakKeyDictionary[SimulatedBroker, Candles] = weakref.WeakKeyDictionary()


def make_candles(rows: Sequence[tuple[float, ...]]) -> Candles:
    full = np.array([(*r, 100.0) if len(r) == 4 else r for r in rows], dtype=np.float64)
    ts = BAR * np.arange(len(rows), dtype=np.int64)
    return Candles(ts, full[:, 0], full[:, 1], full[:, 2], full[:, 3], full[:, 4])


def flat_rows(n: int, price: float = 100.0) -> list[tuple[float, ...]]:
    return [(price, price + 1.0, price - 1.0, price)] * n


def broker_at(
    rows: Sequence[tuple[float, ...]], bars_closed: int = 1, **options: object
) -> tuple[SimulatedBroker, ReplayClock]:
    """A broker whose first ``bars_closed`` bars have closed (clock at the last close)."""
    clock = ReplayClock(0)
    config = SimulatedBrokerConfig(**options)  # type: ignore[arg-type]
    broker = SimulatedBroker(clock, config, bar_ms=BAR, symbols=[SYM])
    candles = _SERIES[broker] = make_candles(rows)  # pushed bar by bar by step()
    for i in range(bars_closed):
        clock.advance_to((i + 1) * BAR)
        broker.on_bar(SYM, candles.rows(i, i + 1))
    return broker, clock


def step(broker: SimulatedBroker, clock: ReplayClock) -> None:
    i = broker.last_index(SYM) + 1
    clock.advance_to((i + 1) * BAR)
    broker.on_bar(SYM, _SERIES[broker].rows(i, i + 1))


def buy(quantity: float | None = 1.0, **fields: object) -> OrderRequest:
    return OrderRequest(SYM, OrderSide.BUY, quantity=quantity, **fields)  # type: ignore[arg-type]


def sell(quantity: float | None = 1.0, **fields: object) -> OrderRequest:
    return OrderRequest(SYM, OrderSide.SELL, quantity=quantity, **fields)  # type: ignore[arg-type]


# -- protocol and lifecycle -------------------------------------------------------------
def test_it_is_a_broker_and_orders_go_new_open_filled_with_events() -> None:
    broker, clock = broker_at(flat_rows(3))
    assert isinstance(broker, Broker)
    order = broker.submit(buy(2.0, tag="entry"))
    assert order.status is OrderStatus.OPEN and order.client_order_id == "sim-00000001"
    assert broker.open_orders() == [order] and broker.open_orders(SYM) == [order]
    assert broker.has_active_orders() and broker.has_active_orders(SYM)
    step(broker, clock)
    events = broker.drain_events()
    assert broker.drain_events() == []
    assert [type(e) for e in events] == [OrderEvent, Fill, OrderEvent]
    submitted, fill, filled = events
    assert isinstance(submitted, OrderEvent) and isinstance(filled, OrderEvent)
    assert (submitted.previous_status, submitted.status, submitted.reason) == (
        OrderStatus.NEW,
        OrderStatus.OPEN,
        "submitted",
    )
    assert isinstance(fill, Fill) and fill.tag == "entry" and fill.quantity == 2.0
    assert filled.status is OrderStatus.FILLED and filled.reason == "filled 2.0 of 2.0 at 100"
    assert broker.order(order.client_order_id) == filled.order
    assert filled.order.fees_paid == pytest.approx(2.0 * 100.0 * 0.001)
    assert not broker.has_active_orders()
    frame = broker.fills_frame()
    assert tuple(frame.columns) == FILL_COLUMNS == RESULT_FILL_COLUMNS
    assert frame.iloc[0].to_dict() == {
        "timestamp": BAR,
        "bar": 1,
        "symbol": SYM,
        "side": "buy",
        "quantity": 2.0,
        "price": 100.0,
        "fee": pytest.approx(0.2),
        "liquidity": "taker",
        "client_order_id": "sim-00000001",
        "tag": "entry",
    }


def test_client_ids_are_deterministic_and_resubmission_is_idempotent() -> None:
    broker, _ = broker_at(flat_rows(3))
    explicit = broker.submit(buy(client_order_id="sim-00000002"))
    first = broker.submit(buy())
    second = broker.submit(buy())
    assert [first.client_order_id, second.client_order_id] == ["sim-00000001", "sim-00000003"]
    broker.drain_events()
    assert broker.submit(buy(client_order_id="sim-00000002")) == explicit
    assert broker.submit(first.request) == first  # the stored request carries the id
    assert broker.drain_events() == []
    with pytest.raises(ValueError, match="already used by a different order"):
        broker.submit(buy(2.0, client_order_id="sim-00000002"))
    clock = ReplayClock(0)
    paper = SimulatedBroker(clock, bar_ms=BAR, symbols=[SYM], id_prefix="paper")
    assert paper.submit(buy()).client_order_id == "paper-00000001"


def test_cancel_and_lookup() -> None:
    broker, clock = broker_at(flat_rows(3))
    resting = broker.submit(buy(type=OrderType.LIMIT, limit_price=50.0))
    cancelled = broker.cancel(resting.client_order_id)
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.reason == "cancelled by user"
    broker.drain_events()
    assert broker.cancel(resting.client_order_id) == cancelled  # terminal: unchanged
    assert broker.drain_events() == []
    with pytest.raises(KeyError, match="no order with client_order_id 'nope'"):
        broker.cancel("nope")
    with pytest.raises(KeyError, match="nope"):
        broker.order("nope")
    step(broker, clock)
    assert broker.fills_frame().empty


def test_illegal_transitions_are_bugs() -> None:
    broker, clock = broker_at(flat_rows(3))
    order = broker.submit(buy())
    step(broker, clock)
    ledger = broker._ledger
    work = ledger.work(order.client_order_id)
    with pytest.raises(RuntimeError, match="illegal order transition filled -> open"):
        ledger.transition(work, OrderStatus.OPEN, "reopen", 0)


def test_malformed_requests_raise_when_built() -> None:
    for quantity in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="quantity"):
            OrderRequest(SYM, OrderSide.BUY, quantity=quantity)
    with pytest.raises(ValueError, match="equity_fraction"):
        OrderRequest(SYM, OrderSide.BUY, equity_fraction=-0.5)
    with pytest.raises(ValueError, match="takes no limit_price"):
        OrderRequest(SYM, OrderSide.BUY, quantity=1.0, limit_price=100.0)
    with pytest.raises(ValueError, match="or both; got neither"):
        OrderRequest(SYM, OrderSide.BUY)
    broker, _ = broker_at(flat_rows(2))
    with pytest.raises(TypeError, match="OrderRequest"):
        broker.submit({"symbol": SYM})  # type: ignore[arg-type]


# -- refusals leave the account untouched -------------------------------------------------
@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (OrderRequest("DOGE/USDT", OrderSide.BUY, quantity=1.0), "unknown symbol 'DOGE/USDT'"),
        (buy(1_000.0), "insufficient margin"),
        (buy(None, equity_fraction=0.5, type=OrderType.LIMIT, limit_price=1.0), None),
        (sell(1.0, reduce_only=True), "reduce-only order while flat"),
        (sell(1.0), "short selling is disabled"),
        (sell(None, equity_fraction=0.5), "short selling is disabled"),
        (buy(1e-9), "below the lot size"),
        (buy(time_in_force="gtd", expire_at_ms=BAR), "already passed"),
    ],
)
def test_refusals_return_a_rejected_order_and_leave_the_account_unchanged(
    request_: OrderRequest, reason: str | None
) -> None:
    broker, _ = broker_at(flat_rows(3), initial_cash=100_000.0)
    resting = broker.submit(buy(type=OrderType.LIMIT, limit_price=90.0))
    broker.drain_events()
    before = broker.account()
    order = broker.submit(request_)
    if reason is None:  # the control: an acceptable order is accepted
        assert order.status is OrderStatus.OPEN
        return
    assert order.status is OrderStatus.REJECTED
    assert reason in order.reason
    events = broker.drain_events()
    assert len(events) == 1 and isinstance(events[0], OrderEvent)
    assert events[0].reason == order.reason and events[0].previous_status is OrderStatus.NEW
    assert broker.account() == before
    assert broker.open_orders() == [resting]
    if "unknown" in reason:
        assert "BTC/USDT" in order.reason  # lists the known symbols


def test_reduce_only_on_the_position_side_and_oversized_sells_are_rejected() -> None:
    broker, clock = broker_at(flat_rows(4))
    broker.submit(buy(2.0))
    step(broker, clock)
    same_side = broker.submit(buy(1.0, reduce_only=True))
    assert same_side.status is OrderStatus.REJECTED and "increase the long" in same_side.reason
    oversized = broker.submit(sell(3.0))
    assert (
        oversized.status is OrderStatus.REJECTED and "short selling is disabled" in oversized.reason
    )
    assert broker.submit(sell(2.0)).status is OrderStatus.OPEN


def test_margin_is_checked_again_at_the_fill() -> None:
    rows = [(100.0, 101.0, 99.0, 100.0), (120.0, 121.0, 119.0, 120.0), (120.0, 121.0, 119.0, 120.0)]
    broker, clock = broker_at(rows, initial_cash=1_000.0, fees=FeeSchedule(maker=0, taker=0))
    order = broker.submit(buy(9.9))
    assert order.status is OrderStatus.OPEN  # 990 at the last close
    step(broker, clock)  # gaps to 120: 1188 > 1000
    rejected = broker.order(order.client_order_id)
    assert rejected.status is OrderStatus.REJECTED
    assert rejected.reason.startswith("insufficient margin at fill")
    assert broker.account().cash == 1_000.0 and broker.fills_frame().empty


# -- sizing ---------------------------------------------------------------------------------
def test_equity_fraction_orders_are_sized_at_the_fill_in_whole_lots() -> None:
    rows = [
        (100.0, 101.0, 99.0, 100.0),
        (123.45, 125.0, 120.0, 124.0),
        (124.0, 125.0, 123.0, 124.0),
    ]
    broker, clock = broker_at(rows, initial_cash=10_000.0)
    order = broker.submit(buy(None, equity_fraction=0.5))
    assert order.quantity is None
    step(broker, clock)
    lots = (0.5 * 10_000.0 * 1.0) // (1e-8 * 123.45 * (1.0 + 0.001))
    filled = broker.order(order.client_order_id)
    assert filled.quantity == 1e-8 * lots == filled.filled_quantity
    assert broker.portfolio.quantity(SYM) == 1e-8 * lots
    tiny = broker.submit(buy(None, equity_fraction=1e-13))
    step(broker, clock)
    refused = broker.order(tiny.client_order_id)
    assert refused.status is OrderStatus.REJECTED
    assert refused.reason.startswith("insufficient funds: 0 lots affordable at 124")


def test_quantities_are_rounded_down_to_the_lot() -> None:
    broker, clock = broker_at(flat_rows(3), lot_size=0.01)
    order = broker.submit(buy(1.2345))
    assert order.quantity == pytest.approx(1.23)
    kept = broker.submit(buy(0.3))
    assert kept.quantity == 0.3  # already a lot multiple: kept as given
    step(broker, clock)
    assert broker.portfolio.quantity(SYM) == pytest.approx(1.53)


def test_reduce_only_is_cut_to_the_position_and_flat_cancels_the_others() -> None:
    broker, clock = broker_at(flat_rows(5))
    broker.submit(buy(1.0))
    step(broker, clock)
    stop = broker.submit(sell(5.0, type=OrderType.STOP_MARKET, stop_price=50.0, reduce_only=True))
    close = broker.submit(sell(3.0, reduce_only=True))
    step(broker, clock)
    closed = broker.order(close.client_order_id)
    # cut to the 1.0 held, as exchanges do: complete once the position is closed
    assert closed.filled_quantity == 1.0 and closed.status is OrderStatus.FILLED
    assert closed.quantity == 1.0
    assert broker.order(stop.client_order_id).status is OrderStatus.CANCELLED
    assert broker.portfolio.quantity(SYM) == 0.0
    assert len(broker.closed_trades()) == 1 and broker.open_trades().empty


def test_short_round_trip_with_leverage() -> None:
    rows = [(100.0, 101.0, 99.0, 100.0), (100.0, 101.0, 99.0, 95.0), (90.0, 91.0, 89.0, 90.0)]
    rows.append((90.0, 91.0, 89.0, 90.0))
    broker, clock = broker_at(rows, initial_cash=1_000.0, allow_short=True, leverage=5.0)
    assert broker.submit(sell(60.0)).status is OrderStatus.REJECTED  # 6000/5 + fee > 1000
    order = broker.submit(sell(40.0))
    assert order.status is OrderStatus.OPEN
    step(broker, clock)
    account = broker.account()
    assert account.positions[SYM].quantity == -40.0
    assert account.margin_used == pytest.approx(40.0 * 95.0 / 5.0)
    assert account.equity == pytest.approx(1_000.0 - 4.0 + 40.0 * 5.0)
    broker.submit(buy(40.0, reduce_only=True))
    step(broker, clock)
    trade = broker.closed_trades().iloc[0]
    assert trade.side == "short" and (trade.entry_price, trade.exit_price) == (100.0, 90.0)
    assert trade.pnl == pytest.approx(400.0 - 4.0 - 3.6)
    assert broker.account().cash == pytest.approx(1_000.0 + 400.0 - 7.6)


# -- engine-driving API -----------------------------------------------------------------------
def test_mark_and_bar_order_checks() -> None:
    broker, clock = broker_at(flat_rows(6))
    candles = _SERIES[broker]
    broker.submit(buy(1.0))
    with pytest.raises(ValueError, match="active order"):
        broker.mark(SYM, candles.rows(1, 2))
    step(broker, clock)
    broker.mark(SYM, candles.rows(2, 4))  # a quiet span: several bars at once
    assert broker.last_index(SYM) == 3
    assert broker.account().positions[SYM].mark_price == candles.close[3]
    with pytest.raises(ValueError, match="increasing open time"):
        broker.on_bar(SYM, candles.rows(3, 4))
    with pytest.raises(ValueError, match="takes one row"):
        broker.on_bar(SYM, candles.rows(4, 6))
    with pytest.raises(ValueError, match="one or more rows"):
        broker.mark(SYM, candles.rows(4, 4))
    with pytest.raises(ValueError, match="unknown symbol"):
        broker.on_bar("ETH/USDT", candles.rows(4, 5))
    with pytest.raises(TypeError, match="takes a Candles row"):
        broker.on_bar(SYM, "candle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="books for unknown symbol"):
        SimulatedBroker(clock, bar_ms=BAR, symbols=[SYM], books={"X/USDT": []})
    with pytest.raises(ValueError, match="symbols is empty"):
        SimulatedBroker(clock, bar_ms=BAR, symbols=[])


def test_symbols_become_known_as_their_bars_arrive() -> None:
    clock = ReplayClock(BAR)
    broker = SimulatedBroker(clock, bar_ms=BAR)
    early = broker.submit(buy(1.0))
    assert early.status is OrderStatus.REJECTED and "no bar of it" in early.reason
    candles = make_candles(flat_rows(3))
    broker.on_bar(SYM, candles.rows(0, 1))
    assert broker.symbols == (SYM,) and broker.last_index(SYM) == 0
    assert broker.last_index("ETH/USDT") == -1
    order = broker.submit(buy(1.0))
    clock.advance_to(2 * BAR)
    broker.on_bar(SYM, candles.rows(1, 2))
    assert broker.order(order.client_order_id).status is OrderStatus.FILLED
    assert broker.fills_frame()["bar"].tolist() == [1]


# -- backtesting.py parity ----------------------------------------------------------------------
def _run_both(
    frame: pd.DataFrame, buys: set[int], exits: set[int], cash: float, commission: float
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    """Run a scripted long-only strategy in backtesting.py (whole units) and in the broker."""
    backtesting = pytest.importorskip("backtesting")

    class Scripted(backtesting.Strategy):
        def init(self) -> None:
            pass

        def next(self) -> None:
            i = len(self.data) - 1
            if i in buys and not self.position:
                self.buy()
            elif i in exits and self.position:
                self.position.close()

    data = frame.rename(columns=str.capitalize)
    data.index = pd.to_datetime(frame["timestamp"], unit="ms")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = backtesting.Backtest(
            data[["Open", "High", "Low", "Close", "Volume"]],
            Scripted,
            cash=cash,
            commission=commission,
        )
        stats = bt.run()

    candles = Candles.from_frame(frame)
    clock = ReplayClock(int(candles.timestamp[0]))
    config = SimulatedBrokerConfig(
        initial_cash=cash, fees=FeeSchedule(maker=commission, taker=commission), lot_size=1.0
    )
    broker = SimulatedBroker(clock, config, bar_ms=BAR, symbols=[SYM])
    equity = np.empty(len(candles))
    for i in range(len(candles)):
        clock.advance_to(int(candles.timestamp[i]) + BAR)
        broker.on_bar(SYM, candles.rows(i, i + 1))
        equity[i] = broker.portfolio.equity
        position = broker.portfolio.quantity(SYM)
        if i in buys and position == 0.0:
            broker.submit(buy(None, equity_fraction=FULL))
        elif i in exits and position != 0.0:
            broker.submit(sell(position))
    return stats._trades, stats._equity_curve["Equity"].to_numpy(), broker.closed_trades(), equity


def _assert_same(
    theirs: pd.DataFrame, their_eq: np.ndarray, ours: pd.DataFrame, our_eq: np.ndarray
) -> None:
    assert len(ours) == len(theirs) > 0
    assert ours["entry_bar"].tolist() == theirs["EntryBar"].tolist()
    assert ours["exit_bar"].tolist() == theirs["ExitBar"].tolist()
    assert ours["size"].tolist() == theirs["Size"].astype(float).tolist()
    np.testing.assert_array_equal(ours["entry_price"], theirs["EntryPrice"])
    np.testing.assert_array_equal(ours["exit_price"], theirs["ExitPrice"])
    np.testing.assert_allclose(ours["pnl"], theirs["PnL"], rtol=1e-12)
    np.testing.assert_allclose(our_eq, their_eq, rtol=1e-12)


def test_matches_backtesting_py_on_a_scripted_strategy() -> None:
    rng = np.random.default_rng(11)
    n = 120
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1] * np.exp(rng.normal(0.0, 0.002, n - 1))]
    frame = pd.DataFrame(
        {
            "timestamp": 1_700_000_000_000 + BAR * np.arange(n),
            "open": open_,
            "high": np.maximum(open_, close) * 1.003,
            "low": np.minimum(open_, close) * 0.997,
            "close": close,
            "volume": np.full(n, 50.0),
        }
    )
    buys = {5, 30, 31, 60, 90}
    exits = {20, 45, 75, 100}
    _assert_same(*_run_both(frame, buys, exits, cash=10_000.0, commission=0.002))


def test_real_data_smoke_sma_cross_matches_backtesting_py() -> None:
    root = shared_data_dir()
    if root is None:
        pytest.skip(SKIP_REASON)
    path = root / "ohlcv" / "binance-spot" / "1d" / "ETH_USDT-1d.parquet"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    frame = pd.read_parquet(path).reset_index(drop=True).iloc[:800]
    fast = frame["close"].rolling(10).mean().to_numpy()
    slow = frame["close"].rolling(30).mean().to_numpy()
    up = np.flatnonzero((fast[:-1] < slow[:-1]) & (fast[1:] > slow[1:])) + 1
    down = np.flatnonzero((fast[:-1] > slow[:-1]) & (fast[1:] < slow[1:])) + 1
    theirs, their_eq, ours, our_eq = _run_both(
        frame, set(up.tolist()), set(down.tolist()), cash=1_000_000.0, commission=0.001
    )
    _assert_same(theirs, their_eq, ours, our_eq)
    assert np.all(np.isfinite(our_eq))
    assert list(ours.columns)[:4] == ["symbol", "side", "entry_time", "exit_time"]


def test_order_request_replace_keeps_validation() -> None:
    """The broker stores the request with its generated id through dataclasses.replace."""
    broker, _ = broker_at(flat_rows(2))
    order = broker.submit(buy(1.0))
    assert order.request == dataclasses.replace(buy(1.0), client_order_id=order.client_order_id)
