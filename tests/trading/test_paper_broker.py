"""The paper broker: fills walk the pushed books (exact VWAP, depth shared within a book,
partial fills continuing on later books), latency, limits filled by prints that trade through
them, stops triggered by prints, fees, the spot refusals, determinism, the journal entries,
and the same executor, risk manager and kernel as a backtest driving it through a feed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from pivotal.core.candles import Candles
from pivotal.core.clock import ReplayClock
from pivotal.core.errors import ConfigError
from pivotal.core.events import BookLevels, CandleClosed, MarketEvent, TradesReceived
from pivotal.core.journal import JournalEntry, NewEntry, fill_from_dict, order_from_dict
from pivotal.core.orders import (
    Fill,
    Liquidity,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from pivotal.core.ports import Broker, DecisionContext
from pivotal.core.symbols import Symbol
from pivotal.core.trades import Trades
from pivotal.core.types import Action, TradingAction
from pivotal.runtime.kernel import MarketListener
from pivotal.runtime.loop import TradingLoop
from pivotal.runtime.pushed_feed import PushedFeed
from pivotal.trading.brokers.paper import PaperBroker
from pivotal.trading.brokers.paper_config import PaperBrokerConfig, SymbolRules
from pivotal.trading.execution import ActionExecutor
from pivotal.trading.fees import FeeSchedule
from pivotal.trading.journal_state import JournalState
from pivotal.trading.risk import RiskConfig, RiskManager

S = "BTC/USDT"
T0 = 1_751_328_000_000
FEES = FeeSchedule(maker=0.0002, taker=0.001)
ASKS = [(100.0, 0.5), (101.0, 0.5), (102.0, 5.0)]
BIDS = [(99.0, 1.0), (98.0, 2.0)]


def book(
    t: int, bids: Sequence[tuple[float, float]] = BIDS, asks: Sequence[Any] = ASKS
) -> BookLevels:
    return BookLevels(S, np.array(bids).reshape(-1, 2), np.array(asks).reshape(-1, 2), t)


def prints(times: Sequence[int], prices: Sequence[float], sizes: Sequence[float]) -> TradesReceived:
    n = len(times)
    trades = Trades(
        np.array(times, dtype=np.int64),
        np.array(prices, dtype=np.float64),
        np.array(sizes, dtype=np.float64),
        np.zeros(n, dtype=bool),
        np.arange(n, dtype=np.int64),
    )
    return TradesReceived(S, trades, int(times[-1]))


def pq(fills: Sequence[Fill]) -> list[tuple[float, float]]:
    """(price, quantity) of each fill, quantities rounded to 12 decimals (float dust)."""
    return [(f.price, round(f.quantity, 12)) for f in fills]


class Rig:
    """A paper broker on a replay clock; ``at(t, *events)`` moves the clock and pushes."""

    def __init__(self, **config: Any) -> None:
        self.clock = ReplayClock(T0)
        config.setdefault("fees", FEES)
        self.journal = ListJournal()
        cash = config.get("initial_cash", 100_000.0)  # the node writes the session entry
        self.journal.append([NewEntry(T0, "session", {"balances": {"USDT": cash}})])
        self.broker = PaperBroker(
            self.clock, PaperBrokerConfig(**config), symbols=[S], journal=self.journal
        )

    def at(self, t: int, *events: MarketEvent) -> None:
        self.clock.advance_to(t)
        for event in events:
            self.broker.on_event(event)

    def submit(self, side: str, quantity: float | None, **kw: Any) -> Any:
        return self.broker.submit(OrderRequest(S, side, quantity=quantity, **kw))

    def fills(self) -> list[Fill]:
        return [e for e in self.broker.drain_events() if isinstance(e, Fill)]


class ListJournal:
    """An in-memory OrderJournal (the port), for the entries the broker writes."""

    def __init__(self) -> None:
        self.stored: list[JournalEntry] = []

    def append(self, entries: Sequence[NewEntry]) -> list[int]:
        seqs = []
        for e in entries:
            seq = len(self.stored) + 1
            self.stored.append(JournalEntry(seq, e.ts, e.kind, e.data, e.client_order_id, e.symbol))
            seqs.append(seq)
        return seqs

    def entries(
        self, *, since_seq: int = 0, kinds: Sequence[str] | None = None
    ) -> Iterator[JournalEntry]:
        return iter(
            [e for e in self.stored if e.seq > since_seq and (kinds is None or e.kind in kinds)]
        )

    def close(self) -> None:
        pass


def test_the_paper_broker_is_a_broker_and_a_market_listener() -> None:
    rig = Rig()
    assert isinstance(rig.broker, Broker)
    assert isinstance(rig.broker, MarketListener)


def test_a_market_buy_walks_the_levels_one_fill_each_at_the_exact_vwap() -> None:
    rig = Rig()
    rig.at(T0, book(T0))
    order = rig.submit("buy", 1.2)
    assert order.status is OrderStatus.OPEN and order.quantity == 1.2
    rig.at(T0 + 1_000, book(T0 + 1_000))
    fills = rig.fills()
    assert pq(fills) == [(100.0, 0.5), (101.0, 0.5), (102.0, 0.2)]
    assert all(f.liquidity is Liquidity.TAKER and f.timestamp == T0 + 1_000 for f in fills)
    assert [f.fee for f in fills] == pytest.approx([0.05, 0.0505, 0.0204])
    final = rig.broker.order(order.client_order_id)
    assert final.status is OrderStatus.FILLED
    assert final.filled_quantity == pytest.approx(1.2)
    vwap = (0.5 * 100 + 0.5 * 101 + 0.2 * 102) / 1.2
    assert final.average_fill_price == pytest.approx(vwap, rel=1e-12)
    assert final.fees_paid == pytest.approx(vwap * 1.2 * 0.001)
    account = rig.broker.account()
    assert account.positions[S].quantity == pytest.approx(1.2)
    assert account.positions[S].average_entry_price == pytest.approx(vwap)
    assert account.available == pytest.approx(100_000 - vwap * 1.2 * 1.001)


def test_a_thin_book_fills_a_part_and_the_rest_continues_on_the_next_book() -> None:
    rig = Rig()
    rig.at(T0, book(T0))
    order = rig.submit("buy", 1.0)
    rig.at(T0 + 1_000, book(T0 + 1_000, asks=[(100.0, 0.3)]))
    assert pq(rig.fills()) == [(100.0, 0.3)]
    assert rig.broker.order(order.client_order_id).status is OrderStatus.PARTIALLY_FILLED
    rig.at(T0 + 2_000, book(T0 + 2_000, asks=[(100.5, 0.4), (101.0, 2.0)]))
    assert pq(rig.fills()) == [(100.5, 0.4), (101.0, 0.3)]
    assert rig.broker.order(order.client_order_id).status is OrderStatus.FILLED
    assert rig.broker.open_orders() == []


def test_max_book_levels_limits_the_walk_of_each_book() -> None:
    rig = Rig(max_book_levels=1)
    rig.at(T0, book(T0))
    order = rig.submit("buy", 0.8)
    rig.at(T0 + 1_000, book(T0 + 1_000))
    assert pq(rig.fills()) == [(100.0, 0.5)]
    rig.at(T0 + 2_000, book(T0 + 2_000, asks=[(100.2, 0.1), (100.3, 5.0)]))
    assert pq(rig.fills()) == [(100.2, 0.1)]
    assert rig.broker.order(order.client_order_id).filled_quantity == pytest.approx(0.6)


def test_a_book_before_submit_plus_latency_is_not_used() -> None:
    rig = Rig(latency_ms=50)
    rig.at(T0, book(T0))
    rig.submit("buy", 0.1)
    rig.at(T0 + 30, book(T0 + 30, bids=[(89.0, 1.0)], asks=[(90.0, 1.0)]))  # too early
    assert rig.fills() == []
    rig.at(T0 + 50, book(T0 + 50, asks=[(100.0, 1.0)]))
    assert [(f.price, f.timestamp) for f in rig.fills()] == [(100.0, T0 + 50)]


def test_two_orders_in_the_same_second_share_the_depth_of_one_book() -> None:
    rig = Rig()
    rig.at(T0, book(T0))
    first = rig.submit("buy", 1.0)
    second = rig.submit("buy", 1.0)
    rig.at(T0 + 1_000, book(T0 + 1_000, asks=[(100.0, 1.0), (101.0, 1.0), (103.0, 1.0)]))
    fills = rig.fills()
    by = {
        cid: [(f.price, f.quantity) for f in fills if f.client_order_id == cid]
        for cid in (first.client_order_id, second.client_order_id)
    }
    assert by[first.client_order_id] == [(100.0, 1.0)]
    assert by[second.client_order_id] == [(101.0, 1.0)]
    third = rig.submit("buy", 1.0)  # the next book is the market's own new state: full depth
    rig.at(T0 + 2_000, book(T0 + 2_000, asks=[(100.0, 1.0), (101.0, 1.0)]))
    assert [(f.client_order_id, f.price) for f in rig.fills()] == [(third.client_order_id, 100.0)]


def test_a_limit_rests_and_fills_as_maker_on_prints_through_it() -> None:
    rig = Rig()
    rig.at(T0, book(T0))
    order = rig.submit("buy", 1.0, type=OrderType.LIMIT, limit_price=98.5)
    reserved = 1.0 * 98.5 * 1.001  # the limit at the higher of the two fee rates
    assert rig.broker.account().available == pytest.approx(100_000 - reserved)
    rig.at(T0 + 20, prints([T0 + 10, T0 + 20], [98.0, 97.0], [5.0, 5.0]))  # not arrived yet
    rig.at(T0 + 1_000, book(T0 + 1_000))  # arrival: not marketable (best ask 100)
    assert rig.fills() == []
    rig.at(T0 + 1_500, prints([T0 + 1_200, T0 + 1_400], [98.5, 98.4], [3.0, 0.4]))
    fills = rig.fills()
    assert [(f.price, f.quantity, f.liquidity) for f in fills] == [(98.5, 0.4, Liquidity.MAKER)]
    assert fills[0].fee == pytest.approx(0.4 * 98.5 * 0.0002)
    assert fills[0].timestamp == T0 + 1_400
    assert rig.broker.order(order.client_order_id).status is OrderStatus.PARTIALLY_FILLED
    rig.at(T0 + 1_900, prints([T0 + 1_800, T0 + 1_900], [98.0, 97.9], [0.5, 5.0]))
    assert [f.quantity for f in rig.fills()] == pytest.approx([0.6])
    assert rig.broker.order(order.client_order_id).status is OrderStatus.FILLED
    account = rig.broker.account()
    assert account.available == pytest.approx(100_000 - 98.5 * 1.0002)


def test_a_marketable_limit_walks_up_to_its_price_and_rests_the_rest() -> None:
    rig = Rig()
    rig.at(T0, book(T0))
    order = rig.submit("buy", 2.0, type=OrderType.LIMIT, limit_price=101.0)
    rig.at(T0 + 1_000, book(T0 + 1_000))
    assert [(f.price, f.quantity, f.liquidity) for f in rig.fills()] == [
        (100.0, 0.5, Liquidity.TAKER),
        (101.0, 0.5, Liquidity.TAKER),
    ]
    assert rig.broker.order(order.client_order_id).status is OrderStatus.PARTIALLY_FILLED
    # two resting buys share one print's volume: the higher limit first
    other = rig.submit("buy", 1.0, type=OrderType.LIMIT, limit_price=100.5)
    rig.at(T0 + 2_000, book(T0 + 2_000, asks=[(102.0, 1.0)]))
    rig.at(T0 + 2_500, prints([T0 + 2_500], [100.0], [1.2]))
    got = [(f.client_order_id, f.price, f.quantity) for f in rig.fills()]
    assert got == [(order.client_order_id, 101.0, 1.0), (other.client_order_id, 100.5, 0.2)]


def test_a_stop_triggers_on_a_print_and_fills_on_the_next_book() -> None:
    rig = Rig()
    rig.at(T0, book(T0))
    rig.submit("buy", 1.0)
    rig.at(T0 + 1_000, book(T0 + 1_000, asks=[(100.0, 2.0)]))
    rig.fills()
    stop = rig.submit("sell", 1.0, type=OrderType.STOP_MARKET, stop_price=95.0, reduce_only=True)
    rig.at(T0 + 1_500, prints([T0 + 1_500], [96.0], [1.0]))
    rig.at(T0 + 2_000, book(T0 + 2_000, bids=[(96.0, 5.0)]))
    assert rig.fills() == []  # not triggered yet
    rig.at(T0 + 2_600, prints([T0 + 2_500, T0 + 2_600], [94.9, 96.0], [1.0, 1.0]))
    assert rig.fills() == []  # triggered: waits for the next book
    assert rig.broker.order(stop.client_order_id).status is OrderStatus.OPEN
    rig.at(T0 + 3_000, book(T0 + 3_000, bids=[(94.5, 0.6), (94.0, 5.0)]))
    fills = rig.fills()
    assert pq(fills) == [(94.5, 0.6), (94.0, 0.4)]
    assert rig.broker.order(stop.client_order_id).status is OrderStatus.FILLED
    assert "stop 95 triggered" in rig.broker.order(stop.client_order_id).reason
    assert rig.broker.account().positions[S].quantity == pytest.approx(0.0, abs=1e-12)


def test_a_round_trip_pays_taker_fees_and_books_the_spot_account() -> None:
    rig = Rig()
    rig.at(T0, book(T0))
    rig.submit("buy", 2.0)
    rig.at(T0 + 1_000, book(T0 + 1_000, asks=[(100.0, 5.0)]))
    rig.at(T0 + 1_500, prints([T0 + 1_500], [104.0], [1.0]))
    account = rig.broker.account()
    assert account.equity == pytest.approx(100_000 - 200.2 + 2 * 104.0)
    assert account.unrealized_pnl == pytest.approx(8.0)
    assert account.cash == pytest.approx(account.equity - 8.0)
    assert account.margin_used == pytest.approx(208.0) and account.leverage == 1.0
    rig.submit("sell", 2.0)
    rig.at(T0 + 2_000, book(T0 + 2_000, bids=[(110.0, 5.0)], asks=[(111.0, 1.0)]))
    account = rig.broker.account()
    assert account.realized_pnl == pytest.approx(20.0)
    assert account.fees_paid == pytest.approx(0.2 + 0.22)
    assert account.equity == pytest.approx(100_000 + 20.0 - 0.42)
    assert account.available == pytest.approx(account.equity)
    trades = rig.broker.closed_trades()
    assert len(trades) == 1 and trades["pnl"].iloc[0] == pytest.approx(20.0 - 0.42)


@pytest.mark.parametrize(
    ("setup", "request_kw", "words"),
    [
        ("none", {"side": "buy", "quantity": 0.1}, "no order book of BTC/USDT yet"),
        ("stale", {"side": "buy", "quantity": 0.1}, "ms old (book_stale_ms=5000)"),
        ("book", {"side": "sell", "quantity": 0.1}, "short selling is not possible on spot"),
        ("book", {"side": "buy", "quantity": 2_000.0}, "insufficient funds"),
        (
            "book",
            {"side": "buy", "quantity": 990.0, "type": "limit", "limit_price": 101.0},
            "insufficient funds",
        ),
        ("book", {"side": "buy", "equity_fraction": 0.5}, "cannot size at the fill"),
        ("book", {"side": "buy", "quantity": 1e-9}, "below the lot size"),
        ("book", {"side": "buy", "quantity": 1.0, "reduce_only": True}, "no short position"),
        ("book", {"side": "sell", "quantity": 1.0, "reduce_only": True}, "while flat"),
    ],
)
def test_refusals_reject_with_the_reason_and_leave_the_account(
    setup: str, request_kw: dict[str, Any], words: str
) -> None:
    rig = Rig()
    if setup != "none":
        rig.at(T0, book(T0))
    if setup == "stale":
        rig.at(T0 + 5_001)
    before = rig.broker.account()
    order = rig.broker.submit(OrderRequest(S, **request_kw))
    assert order.status is OrderStatus.REJECTED
    assert words in order.reason
    assert rig.broker.account() == before
    assert rig.broker.open_orders() == []


def test_a_market_buy_takes_only_what_the_free_quote_pays_for_at_fill() -> None:
    rig = Rig(initial_cash=1_000.0)
    rig.at(T0, book(T0, asks=[(100.0, 20.0)]))
    order = rig.submit("buy", 9.0)  # 9 × 100 × 1.001 fits at the best ask
    rig.at(T0 + 1_000, book(T0 + 1_000, asks=[(100.0, 5.0), (150.0, 10.0)]))
    fills = rig.fills()
    assert [f.price for f in fills] == [100.0, 150.0]
    spent = sum(f.quantity * f.price + f.fee for f in fills)
    assert spent <= 1_000.0
    final = rig.broker.order(order.client_order_id)
    assert final.status is OrderStatus.CANCELLED and "insufficient funds at fill" in final.reason


def test_an_unknown_symbol_or_another_quote_is_refused() -> None:
    rig = Rig()
    order = rig.broker.submit(OrderRequest("ETH/USDT", "buy", quantity=1.0))
    assert order.status is OrderStatus.REJECTED and "unknown symbol" in order.reason
    with pytest.raises(ConfigError, match="BASE/USDT"):
        PaperBroker(ReplayClock(T0), PaperBrokerConfig(), symbols=["ETH/BTC"])


def test_ioc_gtd_cancel_and_reduce_only_cut() -> None:
    rig = Rig()
    rig.at(T0, book(T0))
    ioc = rig.submit("buy", 1.0, time_in_force=TimeInForce.IOC)
    gtd = rig.submit(
        "buy", 1.0, type="limit", limit_price=90.0, time_in_force="gtd", expire_at_ms=T0 + 1_500
    )
    gone = rig.submit("buy", 1.0, type="limit", limit_price=90.0)
    assert rig.broker.cancel(gone.client_order_id).status is OrderStatus.CANCELLED
    rig.at(T0 + 1_000, book(T0 + 1_000, asks=[(100.0, 0.25)]))
    assert rig.broker.order(ioc.client_order_id).status is OrderStatus.CANCELLED
    assert rig.broker.order(ioc.client_order_id).filled_quantity == 0.25
    assert rig.broker.order(gtd.client_order_id).status is OrderStatus.OPEN
    rig.at(T0 + 2_000, book(T0 + 2_000))
    assert rig.broker.order(gtd.client_order_id).status is OrderStatus.EXPIRED
    assert rig.broker.account().available == pytest.approx(100_000 - 25.0 * 1.001)
    exit_ = rig.submit("sell", 1.0, reduce_only=True)  # holds 0.25: cut to it
    rig.at(T0 + 3_000, book(T0 + 3_000))
    final = rig.broker.order(exit_.client_order_id)
    assert final.status is OrderStatus.FILLED and final.filled_quantity == 0.25
    assert rig.broker.account().positions[S].quantity == 0.0


def test_all_or_nothing_expires_a_market_order_the_book_cannot_fill() -> None:
    rig = Rig(allow_partial_fills=False)
    rig.at(T0, book(T0))
    order = rig.submit("buy", 10.0)
    rig.at(T0 + 1_000, book(T0 + 1_000))
    assert rig.fills() == []
    final = rig.broker.order(order.client_order_id)
    assert final.status is OrderStatus.EXPIRED and "not enough depth" in final.reason


def test_prices_go_to_the_tick_grid_and_quantities_to_the_lot() -> None:
    rig = Rig(per_symbol={S: SymbolRules(lot_size=0.001, tick_size=0.5)})
    rig.at(T0, book(T0))
    buy = rig.submit("buy", 0.0129, type="limit", limit_price=98.7)
    sell_stop = rig.submit("buy", 0.01, type="stop_market", stop_price=120.3)
    assert buy.quantity == pytest.approx(0.012) and "98.5" in buy.reason
    assert "120.5" in sell_stop.reason


def _scenario(rig: Rig) -> list[tuple[Any, ...]]:
    rig.at(T0, book(T0))
    rig.submit("buy", 1.3)
    rig.submit("buy", 0.7, type="limit", limit_price=98.0)
    rig.at(T0 + 1_000, book(T0 + 1_000), prints([T0 + 1_000], [97.5], [0.3]))
    rig.submit("sell", 0.5, type="take_profit", stop_price=104.0, reduce_only=True)
    rig.at(T0 + 2_000, prints([T0 + 1_600, T0 + 1_900], [97.0, 104.5], [1.0, 1.0]))
    rig.at(T0 + 3_000, book(T0 + 3_000))
    out: list[tuple[Any, ...]] = []
    for e in rig.broker.drain_events():
        if isinstance(e, Fill):
            out.append(("fill", e.client_order_id, e.venue_trade_id, e.price, e.quantity, e.fee))
        else:
            out.append(("order", e.order.client_order_id, e.status, e.reason, e.timestamp))
    return out


def test_the_same_events_give_the_same_fills_and_ids() -> None:
    first, second = _scenario(Rig()), _scenario(Rig())
    assert first == second
    assert sum(1 for row in first if row[0] == "fill") >= 5


def test_the_journal_holds_intent_order_and_fill_entries_before_they_are_drained() -> None:
    rig = Rig()
    rig.at(T0, book(T0))
    order = rig.submit("buy", 1.2)
    kinds = [e.kind for e in rig.journal.stored]
    assert kinds == ["session", "intent", "order"]
    assert rig.journal.stored[1].data["order_id"] == order.order_id
    rig.at(T0 + 1_000, book(T0 + 1_000))
    stored = list(rig.journal.entries(since_seq=3))  # written before anything is drained
    assert [e.kind for e in stored] == ["fill", "order"] * 3
    drained = rig.broker.drain_events()
    assert [fill_from_dict(e.data["fill"]) for e in stored if e.kind == "fill"] == [
        e for e in drained if isinstance(e, Fill)
    ]
    snapshots = [order_from_dict(e.data["order"]) for e in rig.journal.stored if e.kind == "order"]
    assert [o.status for o in snapshots] == [
        OrderStatus.OPEN,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.FILLED,
    ]
    assert rig.broker.cancel(order.client_order_id).status is OrderStatus.FILLED
    state = JournalState.rebuild(rig.journal.entries())
    assert state.order(order.client_order_id) == rig.broker.order(order.client_order_id)
    rebuilt, live = state.account(ts=T0 + 1_000), rig.broker.account()
    assert rebuilt.equity == pytest.approx(live.equity)
    assert rebuilt.available == pytest.approx(live.available)
    assert rebuilt.positions[S].quantity == pytest.approx(live.positions[S].quantity)


# -- the same executor, risk manager and kernel as a backtest ---------------------------------
class Script:
    """A decision source: BUY at bar ``buy``, CLOSE at bar ``close`` (1s bars)."""

    name = "script"

    def __init__(self, buy: int, close: int) -> None:
        self.plan = {buy: Action.BUY, close: Action.CLOSE}

    def warmup_bars(self) -> int:
        return 0

    def prepare(self, symbol: str, candles: Candles) -> None:
        pass

    def next_wake(self, symbol: str, now_ms: int) -> int:
        return now_ms

    def decide(self, context: DecisionContext) -> Sequence[TradingAction]:
        action = self.plan.get(context.bar_index)
        if action is None:
            return ()
        return (TradingAction(Symbol.parse(S), context.timestamp, action, 1.0, self.name),)


def _second(t: int, price: float) -> list[MarketEvent]:
    """The events of the second closing at ``t``: its 1s bar, its prints, its book."""
    candle = Candles(np.array([t - 1_000]), *(np.array([price]) for _ in range(4)), np.array([1.0]))
    spread = (
        [(price - 0.5, 200.0), (price - 1.0, 900.0)],
        [(price + 0.5, 200.0), (price + 1, 900.0)],
    )
    return [
        CandleClosed(S, "1s", candle, t),
        prints([t - 500], [price], [0.2]),
        book(t, *spread),
    ]


def test_the_kernel_drives_it_with_the_backtest_executor_and_risk_manager() -> None:
    clock = ReplayClock(T0)
    feed = PushedFeed(clock, [(S, "1s")], grace_ms=0, moves=clock)
    prices = [100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 104.0, 103.0, 102.0, 101.0]
    for i, price in enumerate(prices):
        feed.publish(_second(T0 + 1_000 * (i + 1), price))
    feed.close()
    config = PaperBrokerConfig(fees=FEES, lot_size=1e-4)
    broker = PaperBroker(clock, config, symbols=[S])
    risk = RiskManager(RiskConfig(fraction=0.5, stop_loss_pct=0.05, take_profit_pct=0.2))
    executor = ActionExecutor(broker, risk, fees=config.fees, lot_size=config.lot_size)
    loop = TradingLoop(
        clock=clock,
        broker=broker,
        risk=risk,
        source=Script(buy=2, close=6),
        executor=executor,
        timeframe="1s",
        listeners=(broker,),
    )
    result = loop.run(feed)
    assert result.decisions == len(prices)
    fills = [e for e in result.events if e["kind"] == "fill"]
    # BUY decided at the close of bar 2 (102): fills on the next second's book (asks 103.5, 104)
    entry = [f for f in fills if f["side"] == "buy"]
    assert [f["timestamp"] for f in entry] == [T0 + 4_000, T0 + 4_000]
    assert [f["price"] for f in entry] == [103.5, 104.0]
    equity_at_decision = 100_000.0
    bought = sum(f["quantity"] for f in entry)
    assert bought == pytest.approx(
        np.floor(0.5 * equity_at_decision / (102.0 * 1.001) / 1e-4) * 1e-4
    )
    # CLOSE at bar 6 (104): a reduce-only market sell on the next book's bids (102.5, 102)
    exit_ = [f for f in fills if f["side"] == "sell"]
    assert {f["timestamp"] for f in exit_} == {T0 + 8_000}
    assert sum(f["quantity"] for f in exit_) == pytest.approx(bought)
    assert broker.account().positions[S].quantity == pytest.approx(0.0, abs=1e-12)
    # the protective stop and take-profit sent with the entry were swept when flat
    statuses = [e for e in result.events if e["kind"] == "order" and e["status"] == "cancelled"]
    assert len(statuses) == 2 and all("position closed" in e["message"] for e in statuses)
    assert broker.open_orders() == []
    assert result.equity[-1] == pytest.approx(broker.account().equity)


def test_order_events_come_oldest_first() -> None:
    rig = Rig()
    rig.at(T0, book(T0))
    rig.submit("buy", 0.6)
    rig.at(T0 + 1_000, book(T0 + 1_000))
    events = rig.broker.drain_events()
    times = [e.timestamp for e in events]
    assert times == sorted(times)
    assert isinstance(events[0], OrderEvent) and events[0].status is OrderStatus.OPEN
    assert rig.broker.drain_events() == []
