"""The local exchange's matching engine: filters, refusals, taker walks, maker fills from
trade prints, stops, balances and the record (no server, no sockets)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from pivotal.core.symbols import Symbol
from pivotal.localexchange.engine import MatchingEngine
from pivotal.localexchange.engine_types import (
    BalanceUpdate,
    EngineUpdate,
    OrderRejected,
    OrderSpec,
    OrderUpdate,
    SymbolRules,
    UnknownOrder,
)
from pivotal.localexchange.exchange_info import binance_symbol_entry
from pivotal.localexchange.flow import (
    BookSnapshot,
    DepthDiff,
    FlowEvent,
    Level,
    SymbolFlow,
    TradePrint,
)
from pivotal.localexchange.market import MarketState
from pivotal.localexchange.replayer import MarketClock

T0 = 1_700_000_000_000
BTC = Symbol("BTC", "USDT")
D = Decimal
# the book: asks 100.01 x1, 100.02 x2, 100.03 x3; bids 99.99 x1, 99.98 x2, 99.97 x3
ASKS: tuple[Level, ...] = ((100.01, 1.0), (100.02, 2.0), (100.03, 3.0))
BIDS: tuple[Level, ...] = ((99.99, 1.0), (99.98, 2.0), (99.97, 3.0))


def _no_events() -> Iterator[FlowEvent]:
    return iter(())


class Rig:
    """A market with a hand-made book, its clock and an engine; ``play`` replays events."""

    def __init__(
        self,
        balances: dict[str, float] | None = None,
        *,
        fee_rate: float = 0.001,
        asks: tuple[Level, ...] = ASKS,
        bids: tuple[Level, ...] = BIDS,
    ) -> None:
        flow = SymbolFlow(BTC, "test", T0, T0 + 3_600_000, BookSnapshot(1, bids, asks), 0.01,
                          0.001, _no_events)  # fmt: skip
        self.market = MarketState(flow)
        self.clock = MarketClock(T0)
        rules = SymbolRules.from_binance(BTC, binance_symbol_entry(BTC, 0.01, 0.001))
        self.engine = MatchingEngine(
            "binance",
            {BTC: self.market},
            self.clock,
            {BTC: rules},
            {"USDT": 10_000.0} if balances is None else balances,
            fee_rate=fee_rate,
        )
        self.updates: list[EngineUpdate] = []
        self.engine.add_listener(self.updates.append)
        self.trade_id = 1
        self.update_id = 1

    def play(self, *events: FlowEvent) -> None:
        for event in events:
            self.clock.set(event.time_ms)
            self.market.apply(event)
            self.engine.on_event(BTC, event)

    def trade(self, dt_ms: int, price: float, qty: float, buyer_maker: bool = True) -> None:
        self.play(TradePrint(T0 + dt_ms, self.trade_id, price, qty, buyer_maker))
        self.trade_id += 1

    def diff(self, dt_ms: int, bids: tuple[Level, ...] = (), asks: tuple[Level, ...] = ()) -> None:
        self.update_id += 1
        self.play(DepthDiff(T0 + dt_ms, self.update_id, self.update_id, bids, asks))

    def place(self, side: str, kind: str, qty: str | None = None, **fields: str) -> object:
        spec = OrderSpec(
            BTC,
            side,  # type: ignore[arg-type]
            kind,  # type: ignore[arg-type]
            quantity=None if qty is None else D(qty),
            quote_quantity=D(fields["quote"]) if "quote" in fields else None,
            price=D(fields["price"]) if "price" in fields else None,
            stop_price=D(fields["stop"]) if "stop" in fields else None,
            time_in_force=fields.get("tif", "GTC"),  # type: ignore[arg-type]
            client_order_id=fields.get("cid"),
        )
        return self.engine.place(spec)

    def free(self, asset: str) -> Decimal:
        return self.engine.ledger.free(asset)

    def locked(self, asset: str) -> Decimal:
        return self.engine.ledger.locked(asset)

    def executions(self) -> list[str]:
        return [u.execution for u in self.updates if isinstance(u, OrderUpdate)]


def refused(rig: Rig, *args: str, **fields: str) -> OrderRejected:
    before = rig.engine.balances(), rig.engine.open_orders(), len(rig.updates)
    with pytest.raises(OrderRejected) as info:
        rig.place(*args, **fields)
    after = rig.engine.balances(), rig.engine.open_orders(), len(rig.updates)
    assert after == before  # nothing changed, nothing reported
    return info.value


# -- filters and refusals ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "fields", "reason", "message"),
    [
        (("BUY", "LIMIT", "0.1005"), {"price": "99"}, "filter", "Filter failure: LOT_SIZE"),
        (("BUY", "LIMIT", "0.1"), {"price": "99.005"}, "filter", "Filter failure: PRICE_FILTER"),
        (("BUY", "LIMIT", "0.01"), {"price": "99"}, "filter", "Filter failure: NOTIONAL"),
        (("BUY", "MARKET", "200"), {}, "filter", "Filter failure: MARKET_LOT_SIZE"),
        (("BUY", "LIMIT", "10000"), {"price": "1"}, "filter", "Filter failure: LOT_SIZE"),
        (("BUY", "LIMIT", "1"), {"price": "20000"}, "insufficient_balance",
         "Account has insufficient balance for requested action."),
        (("SELL", "LIMIT", "1"), {"price": "101"}, "insufficient_balance",
         "Account has insufficient balance for requested action."),
        (("SELL", "MARKET", "0.5"), {}, "insufficient_balance",
         "Account has insufficient balance for requested action."),
        (("BUY", "LIMIT_MAKER", "0.5"), {"price": "100.01"}, "would_take",
         "Order would immediately match and take."),
        (("BUY", "LIMIT", "0.5"), {}, "invalid", "LIMIT needs price."),
        (("BUY", "MARKET"), {}, "invalid", "MARKET takes either quantity or quoteOrderQty."),
    ],
)  # fmt: skip
def test_refusals_change_nothing(
    args: tuple[str, ...], fields: dict[str, str], reason: str, message: str
) -> None:
    rig = Rig()
    error = refused(rig, *args, **fields)
    assert (error.reason, error.message) == (reason, message)
    assert rig.updates == []


def test_market_buy_beyond_the_balance_is_refused_before_any_fill() -> None:
    rig = Rig({"USDT": 150.0})
    error = refused(rig, "BUY", "MARKET", "2")  # 100.01 + 100.02 > 150
    assert error.reason == "insufficient_balance"
    assert rig.updates == []


def test_stop_that_would_trigger_now_is_refused() -> None:
    rig = Rig({"USDT": 10_000.0, "BTC": 1.0})
    rig.trade(10, 100.0, 0.1)
    error = refused(rig, "SELL", "STOP_LOSS", "0.5", stop="100.5")  # last 100 <= 100.5
    assert error.reason == "would_trigger"
    assert error.message == "Stop price would trigger immediately."
    error = refused(rig, "BUY", "TAKE_PROFIT", "0.5", stop="100.5")  # buy TP: price <= stop
    assert error.reason == "would_trigger"


def test_duplicate_client_id_only_among_open_orders() -> None:
    rig = Rig()
    rig.place("BUY", "LIMIT", "0.5", price="99", cid="dup")
    error = refused(rig, "BUY", "LIMIT", "0.5", price="98", cid="dup")
    assert (error.reason, error.message) == ("duplicate", "Duplicate order sent.")
    rig.engine.cancel(BTC, client_order_id="dup")
    order, _ = rig.place("BUY", "LIMIT", "0.5", price="98", cid="dup")  # closed: reusable
    assert rig.engine.order(BTC, client_order_id="dup").order_id == order.order_id == 2


def test_max_stop_orders_filter() -> None:
    rig = Rig({"USDT": 10_000.0, "BTC": 10.0})
    for i in range(5):
        rig.place("SELL", "STOP_LOSS", "0.1", stop=str(90 - i))
    error = refused(rig, "SELL", "STOP_LOSS", "0.1", stop="80")
    assert error.message == "Filter failure: MAX_NUM_ALGO_ORDERS"


# -- taker walks ------------------------------------------------------------------------------
def test_market_buy_walks_levels_and_pays_commission_in_base() -> None:
    rig = Rig()
    order, fills = rig.place("BUY", "MARKET", "2.5", cid="m1")
    assert [(f.price, f.qty) for f in fills] == [(D("100.01"), D(1)), (D("100.02"), D("1.5"))]
    assert order.status == "FILLED" and order.executed_qty == D("2.5")
    assert order.cum_quote == D("100.01") + D("150.03")
    assert all(not f.maker and f.commission_asset == "BTC" for f in fills)
    assert rig.free("BTC") == D("2.5") - D("0.0025")
    assert rig.free("USDT") == D(10_000) - order.cum_quote
    assert rig.executions() == ["NEW", "TRADE", "TRADE"]
    assert isinstance(rig.updates[-1], BalanceUpdate)
    assert set(rig.updates[-1].balances) == {"BTC", "USDT"}


def test_thin_book_market_order_expires_with_a_partial_fill() -> None:
    rig = Rig({"USDT": 10_000.0})
    order, fills = rig.place("BUY", "MARKET", "7")  # the book holds 6
    assert sum(f.qty for f in fills) == D(6)
    assert order.status == "EXPIRED" and order.executed_qty == D(6)
    assert rig.executions() == ["NEW", "TRADE", "TRADE", "TRADE", "EXPIRED"]


def test_taken_liquidity_stays_taken_until_a_diff_rewrites_the_level() -> None:
    rig = Rig()
    rig.place("BUY", "MARKET", "1")  # takes 100.01 x1
    _, fills = rig.place("BUY", "MARKET", "1")
    assert fills[0].price == D("100.02")
    rig.diff(50, asks=((100.01, 4.0),))  # the venue shows 4 at 100.01 again
    _, fills = rig.place("BUY", "MARKET", "1")
    assert fills[0].price == D("100.01")


def test_quote_sized_market_buy_spends_at_most_the_amount() -> None:
    rig = Rig()
    order, fills = rig.place("BUY", "MARKET", quote="150")
    assert order.cum_quote <= D(150) and order.status == "FILLED"
    assert fills[0].qty == D(1) and fills[1].qty == D("0.499")  # 49.99 / 100.02, lot 0.001
    assert order.quantity == order.executed_qty == D("1.499")


def test_marketable_limit_takes_then_rests_and_fok_ioc_expire() -> None:
    rig = Rig()
    order, fills = rig.place("BUY", "LIMIT", "2", price="100.01")
    assert [f.qty for f in fills] == [D(1)] and order.status == "PARTIALLY_FILLED"
    assert rig.locked("USDT") == D("100.01")  # the resting 1 at 100.01
    order, fills = rig.place("BUY", "LIMIT", "5", price="100.03", tif="FOK")  # 5 left: 2+3
    assert order.status == "FILLED"
    order, fills = rig.place("BUY", "LIMIT", "1", price="100.03", tif="FOK")  # nothing left
    assert order.status == "EXPIRED" and fills == []
    order, fills = rig.place("BUY", "LIMIT", "1", price="100.03", tif="IOC")
    assert order.status == "EXPIRED" and fills == []


# -- maker fills from trade prints ------------------------------------------------------------
def test_resting_limit_fills_from_prints_that_reach_it() -> None:
    rig = Rig()
    order, _ = rig.place("BUY", "LIMIT", "1", price="99.5", cid="rest")
    assert rig.locked("USDT") == D("99.5")
    rig.trade(100, 99.6, 5.0)  # above the bid: nothing
    rig.trade(200, 99.5, 0.3, buyer_maker=False)  # at the price, buyer aggressor: nothing
    assert rig.engine.order(BTC, order.order_id).executed_qty == 0
    rig.trade(300, 99.5, 0.3, buyer_maker=True)  # seller hit the bid at our price
    rig.trade(400, 99.4, 5.0)  # through: the rest
    done = rig.engine.order(BTC, client_order_id="rest")
    assert done.status == "FILLED" and done.executed_qty == D(1)
    fills = rig.engine.fills(BTC, order_id=order.order_id)
    assert [(f.qty, f.price, f.maker, f.time_ms) for f in fills] == [
        (D("0.3"), D("99.5"), True, T0 + 300),
        (D("0.7"), D("99.5"), True, T0 + 400),
    ]
    assert rig.locked("USDT") == 0
    assert rig.free("USDT") == D(10_000) - D("99.5")
    assert rig.free("BTC") == D(1) - D("0.001")


def test_a_print_is_shared_by_price_then_time_priority() -> None:
    rig = Rig()
    first, _ = rig.place("BUY", "LIMIT", "0.5", price="99.5")
    better, _ = rig.place("BUY", "LIMIT", "0.5", price="99.6")
    second, _ = rig.place("BUY", "LIMIT", "0.5", price="99.5")
    rig.trade(100, 99.0, 0.8)
    assert rig.engine.order(BTC, better.order_id).executed_qty == D("0.5")
    assert rig.engine.order(BTC, first.order_id).executed_qty == D("0.3")
    assert rig.engine.order(BTC, second.order_id).executed_qty == 0


def test_fills_happen_with_no_listener_connected() -> None:
    rig = Rig()
    order, _ = rig.place("BUY", "LIMIT", "1", price="99.5")
    rig.engine.remove_listener(rig.updates.append)
    rig.trade(100, 99.0, 2.0)  # nobody listens: the engine still matches
    assert rig.engine.order(BTC, order.order_id).status == "FILLED"
    assert len(rig.engine.fills()) == 1


# -- stops ------------------------------------------------------------------------------------
def test_stop_loss_triggers_on_a_print_and_sells_into_the_book() -> None:
    rig = Rig({"USDT": 0.0, "BTC": 2.0})
    rig.trade(10, 100.0, 0.1)
    order, fills = rig.place("SELL", "STOP_LOSS", "1.5", stop="99.5", cid="sl")
    assert fills == [] and order.working_ms == -1 and rig.locked("BTC") == D("1.5")
    rig.trade(100, 99.6, 0.1)
    assert rig.engine.order(BTC, order.order_id).status == "NEW"
    rig.trade(200, 99.5, 0.1)  # at the stop: trigger; sells 1 @ 99.99, 0.5 @ 99.98
    done = rig.engine.order(BTC, client_order_id="sl")
    assert done.status == "FILLED" and done.working_ms == T0 + 200
    assert [(f.price, f.qty) for f in rig.engine.fills()] == [
        (D("99.99"), D(1)),
        (D("99.98"), D("0.5")),
    ]
    quote = D("99.99") + D("49.99")
    assert rig.free("USDT") == quote - (D("99.99") * D("0.001")).quantize(D("1e-8")) - (
        D("49.99") * D("0.001")
    ).quantize(D("1e-8"))
    assert rig.free("BTC") == D("0.5") and rig.locked("BTC") == 0


def test_take_profit_limit_becomes_a_resting_limit() -> None:
    rig = Rig({"USDT": 0.0, "BTC": 1.0})
    rig.trade(10, 100.0, 0.1)
    order, _ = rig.place("SELL", "TAKE_PROFIT_LIMIT", "1", price="101", stop="100.5")
    rig.trade(100, 100.5, 0.1, buyer_maker=False)  # trigger; 101 is above the bids: rests
    now = rig.engine.order(BTC, order.order_id)
    assert now.status == "NEW" and now.triggered and now.working_ms == T0 + 100
    assert [o.order_id for o in rig.engine.open_orders(BTC)] == [order.order_id]
    rig.trade(200, 101.2, 0.4, buyer_maker=False)
    assert rig.engine.order(BTC, order.order_id).executed_qty == D("0.4")


# -- cancels, queries, record -----------------------------------------------------------------
def test_cancel_releases_the_lock_and_unknown_orders_raise() -> None:
    rig = Rig()
    order, _ = rig.place("BUY", "LIMIT", "1", price="99", cid="c1")
    cancelled = rig.engine.cancel(BTC, client_order_id="c1", cancel_client_order_id="x1")
    assert cancelled.status == "CANCELED" and rig.locked("USDT") == 0
    last = [u for u in rig.updates if isinstance(u, OrderUpdate)][-1]
    assert last.execution == "CANCELED" and last.cancel_client_order_id == "x1"
    with pytest.raises(UnknownOrder):
        rig.engine.cancel(BTC, order.order_id)  # already closed
    with pytest.raises(UnknownOrder):
        rig.engine.order(BTC, client_order_id="nope")
    with pytest.raises(UnknownOrder):
        rig.engine.order(BTC, 999)
    rig.place("BUY", "LIMIT", "1", price="98")
    rig.place("BUY", "LIMIT", "1", price="97")
    assert [o.status for o in rig.engine.cancel_all(BTC)] == ["CANCELED", "CANCELED"]
    assert rig.engine.cancel_all(BTC) == []
    assert rig.free("USDT") == D(10_000)


def _scenario(rig: Rig) -> None:
    rig.trade(10, 100.0, 0.1)
    rig.place("BUY", "MARKET", "1.2", cid="a")
    rig.place("BUY", "LIMIT", "1", price="99.5", cid="b")
    rig.place("SELL", "STOP_LOSS", "0.5", stop="99.2", cid="c")
    rig.place("SELL", "LIMIT", "0.6", price="100.5", cid="d")
    rig.trade(100, 99.4, 0.6)
    rig.diff(150, asks=((100.01, 2.0),))
    rig.trade(200, 99.1, 2.0)
    rig.trade(300, 100.6, 1.0, buyer_maker=False)
    rig.place("BUY", "MARKET", quote="120", cid="e")


def test_record_is_deterministic_and_value_is_conserved_minus_fees() -> None:
    one, two = Rig(), Rig()
    _scenario(one)
    _scenario(two)
    record = one.engine.record()
    assert record == two.engine.record()
    assert [o["clientOrderId"] for o in record["orders"]] == ["a", "b", "c", "d", "e"]
    assert [f["id"] for f in record["fills"]] == list(range(1, len(record["fills"]) + 1))
    statuses = {o["clientOrderId"]: o["status"] for o in record["orders"]}
    assert statuses == {"a": "FILLED", "b": "FILLED", "c": "FILLED", "d": "FILLED",
                        "e": "FILLED"}  # fmt: skip
    # every fill moved value between USDT and BTC at its price; only commissions left
    usdt = sum((D(f["quoteQty"]) * (-1 if f["isBuyer"] else 1) for f in record["fills"]), D(0))
    btc = sum((D(f["qty"]) * (1 if f["isBuyer"] else -1) for f in record["fills"]), D(0))
    fees = {"USDT": D(0), "BTC": D(0)}
    for fill in record["fills"]:
        fees[fill["commissionAsset"]] += D(fill["commission"])
    fee_usdt, fee_btc = fees["USDT"], fees["BTC"]
    bal = record["balances"]
    assert D(bal["USDT"]["free"]) + D(bal["USDT"]["locked"]) == D(10_000) + usdt - fee_usdt
    assert D(bal["BTC"]["free"]) + D(bal["BTC"]["locked"]) == btc - fee_btc
    assert fee_btc > 0 and fee_usdt > 0
