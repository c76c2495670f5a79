"""Every fill rule of the simulated broker on small hand-made candles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from pydantic import ValidationError

from pivotal.core.candles import Candles
from pivotal.core.clock import ReplayClock
from pivotal.core.orders import (
    Fill,
    Liquidity,
    Order,
    OrderEvent,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from pivotal.core.symbols import Symbol
from pivotal.core.trades import Trades
from pivotal.core.types import COBData
from pivotal.trading.brokers.config import SimulatedBrokerConfig
from pivotal.trading.brokers.simulated import SimulatedBroker
from pivotal.trading.fees import FeeSchedule, SymbolFees
from pivotal.trading.slippage import (
    FixedBpsSlippage,
    NoSlippage,
    OrderBookSlippage,
    SlippageModel,
    VolatilitySlippage,
    walk_book,
)

BAR = 60_000
SYM = "BTC/USDT"
ETH = "ETH/USDT"
FREE = FeeSchedule(maker=0.0, taker=0.0)

Row = tuple[float, ...]


def make_candles(rows: Sequence[Row]) -> Candles:
    """Rows of (open, high, low, close[, volume]); volume defaults to 100."""
    full = np.array([(*r, 100.0) if len(r) == 4 else r for r in rows], dtype=np.float64)
    ts = BAR * np.arange(len(rows), dtype=np.int64)
    return Candles(ts, full[:, 0], full[:, 1], full[:, 2], full[:, 3], full[:, 4])


class Sim:
    """A broker over one symbol's candles with a replay clock at bar closes."""

    def __init__(self, rows: Sequence[Row], **options: object) -> None:
        extra = {k: options.pop(k) for k in ("trades", "books") if k in options}
        options.setdefault("fees", FREE)
        options.setdefault("allow_short", True)
        self.config = SimulatedBrokerConfig(**options)  # type: ignore[arg-type]
        self.candles = make_candles(rows)
        self.clock = ReplayClock(0)
        self.broker = SimulatedBroker(
            self.clock,
            self.config,
            bar_ms=BAR,
            symbols=[SYM],
            **extra,  # type: ignore[arg-type]
        )
        self.i = 0

    def close_bars(self, n: int = 1) -> None:
        for _ in range(n):
            self.clock.advance_to((self.i + 1) * BAR)
            self.broker.on_bar(SYM, self.candles.rows(self.i, self.i + 1))
            self.i += 1

    def submit(self, side: str = "buy", **fields: object) -> Order:
        fields.setdefault("quantity", 1.0)
        request = OrderRequest(symbol=SYM, side=OrderSide(side), **fields)  # type: ignore[arg-type]
        return self.broker.submit(request)

    def fills(self) -> list[tuple[int, float, float]]:
        frame = self.broker.fills_frame()
        return list(
            zip(
                frame["bar"].tolist(),
                frame["price"].tolist(),
                frame["quantity"].tolist(),
                strict=True,
            )
        )

    def events(self) -> list[OrderEvent]:
        return [e for e in self.broker.drain_events() if isinstance(e, OrderEvent)]


FLAT = (100.0, 101.0, 99.0, 100.0)


# -- market orders ----------------------------------------------------------------------
def test_market_order_fills_at_the_next_open() -> None:
    sim = Sim([FLAT, (102.0, 103.0, 101.0, 102.5), (103.0, 104.0, 102.0, 103.0)])
    sim.close_bars()
    order = sim.submit("buy", quantity=1.0)
    assert order.status is OrderStatus.OPEN and order.quantity == 1.0
    sim.close_bars()
    assert sim.fills() == [(1, 102.0, 1.0)]
    filled = sim.broker.order(order.client_order_id)
    assert filled.status is OrderStatus.FILLED and filled.average_fill_price == 102.0
    assert sim.broker.fills_frame()["timestamp"].tolist() == [BAR]  # the bar's open time
    assert sim.broker.account().positions[SYM].mark_price == 102.5  # marked at the close


def test_latency_delays_a_market_order_to_the_bar_after() -> None:
    sim = Sim([FLAT, (102.0, 103.0, 101.0, 102.0), (104.0, 105.0, 103.0, 104.0)], latency_ms=250)
    sim.close_bars()
    sim.submit("buy")
    sim.close_bars()
    assert sim.fills() == []  # submitted at 60_000 + 250 ms latency > bar 1's open
    sim.close_bars()
    assert sim.fills() == [(2, 104.0, 1.0)]


def test_trades_place_a_market_fill_at_the_first_trade_after_submit_plus_latency() -> None:
    trades = Trades(
        timestamp=np.array([BAR + 50, BAR + 150, BAR + 40_000, 2 * BAR + 5]),
        price=np.array([101.5, 101.7, 102.2, 103.3]),
        quantity=np.ones(4),
        is_buyer_maker=np.zeros(4, dtype=bool),
        trade_id=np.arange(4),
    )
    rows = [FLAT, (101.0, 103.0, 100.0, 102.0), (103.0, 104.0, 102.5, 103.5)]
    sim = Sim(rows, latency_ms=100, trades={SYM: trades})
    sim.close_bars()
    sim.submit("buy")  # at 60_000: eligible from 60_100 → the trade at 60_150
    sim.clock.advance_to(BAR + 30_000)
    sim.submit("buy")  # mid-bar: eligible from 90_100 → the trade at 100_000, same bar
    sim.clock.advance_to(BAR + 50_000)
    sim.submit("sell")  # no trade left in bar 1 → waits → the first trade of bar 2
    sim.close_bars()
    frame = sim.broker.fills_frame()
    assert frame["price"].tolist() == [101.7, 102.2]
    assert frame["timestamp"].tolist() == [BAR + 150, BAR + 40_000]
    assert frame["bar"].tolist() == [1, 1]
    sim.close_bars()
    frame = sim.broker.fills_frame()
    assert frame["price"].tolist()[-1] == 103.3 and frame["bar"].tolist()[-1] == 2


def test_current_close_fills_inside_submit_and_needs_a_price() -> None:
    sim = Sim([FLAT, (102.0, 103.0, 101.0, 102.5)], fill_timing="current_close")
    early = sim.submit("buy")
    assert early.status is OrderStatus.REJECTED and "no price yet" in early.reason
    sim.close_bars()
    order = sim.submit("buy", quantity=2.0)
    assert order.status is OrderStatus.FILLED and order.average_fill_price == 100.0
    assert sim.fills() == [(0, 100.0, 2.0)]
    with pytest.raises(ValidationError, match="latency_ms applies"):
        SimulatedBrokerConfig(fill_timing="current_close", latency_ms=5)


# -- stops, take-profits, limits --------------------------------------------------------
@pytest.mark.parametrize(
    ("side", "bar", "stop", "price", "gap"),
    [
        ("buy", (100.0, 106.0, 99.0, 105.0), 104.0, 104.0, False),
        ("buy", (107.0, 108.0, 106.0, 107.5), 104.0, 107.0, True),
        ("buy", (100.0, 103.9, 99.0, 103.0), 104.0, None, False),
        ("sell", (100.0, 101.0, 94.0, 95.5), 95.0, 95.0, False),
        ("sell", (93.0, 94.0, 92.0, 93.5), 95.0, 93.0, True),
        ("sell", (100.0, 101.0, 95.1, 96.0), 95.0, None, False),
    ],
)
def test_stop_orders_trigger_through_the_stop_and_gap_at_the_open(
    side: str, bar: Row, stop: float, price: float | None, gap: bool
) -> None:
    sim = Sim([FLAT, bar])
    sim.close_bars()
    order = sim.submit(side, type=OrderType.STOP_MARKET, stop_price=stop)
    sim.close_bars()
    if price is None:
        assert (
            sim.fills() == [] and sim.broker.order(order.client_order_id).status is OrderStatus.OPEN
        )
        return
    assert sim.fills() == [(1, price, 1.0)]
    done = sim.broker.order(order.client_order_id)
    assert done.status is OrderStatus.FILLED
    assert done.reason.startswith(f"stop triggered at {stop:g}")
    assert ("gap: filled at open" in done.reason) is gap
    assert sim.broker.fills_frame()["liquidity"].tolist() == ["taker"]


@pytest.mark.parametrize(
    ("side", "bar", "trigger", "price"),
    [
        ("sell", (100.0, 111.0, 99.0, 110.5), 110.0, 110.0),
        ("sell", (112.0, 113.0, 111.0, 112.0), 110.0, 112.0),
        ("buy", (100.0, 101.0, 89.0, 90.5), 90.0, 90.0),
        ("buy", (88.0, 89.0, 87.0, 88.5), 90.0, 88.0),
        ("buy", (100.0, 101.0, 90.5, 91.0), 90.0, None),
    ],
)
def test_take_profit_triggers_with_the_move_and_gaps_at_the_open(
    side: str, bar: Row, trigger: float, price: float | None
) -> None:
    sim = Sim([FLAT, bar])
    sim.close_bars()
    sim.submit(side, type=OrderType.TAKE_PROFIT, stop_price=trigger)
    sim.close_bars()
    assert sim.fills() == ([] if price is None else [(1, price, 1.0)])


@pytest.mark.parametrize(
    ("side", "bar", "limit", "touch", "price"),
    [
        ("buy", (100.0, 101.0, 98.5, 99.0), 99.0, False, 99.0),
        ("buy", (100.0, 101.0, 99.0, 99.5), 99.0, False, None),  # touch is not through
        ("buy", (100.0, 101.0, 99.0, 99.5), 99.0, True, 99.0),
        ("buy", (97.0, 98.0, 96.0, 97.5), 99.0, False, 97.0),  # gap: the better open
        ("sell", (100.0, 101.5, 99.0, 101.0), 101.0, False, 101.0),
        ("sell", (100.0, 101.0, 99.0, 100.5), 101.0, False, None),
        ("sell", (100.0, 101.0, 99.0, 100.5), 101.0, True, 101.0),
        ("sell", (103.0, 104.0, 102.0, 103.0), 101.0, False, 103.0),
    ],
)
def test_limit_orders_fill_through_or_on_touch_at_the_limit_or_better(
    side: str, bar: Row, limit: float, touch: bool, price: float | None
) -> None:
    sim = Sim(
        [FLAT, bar],
        limit_fill_on_touch=touch,
        fees=FeeSchedule(maker=0.001, taker=0.002),
        slippage="fixed",
        slippage_bps=50.0,
    )
    sim.close_bars()
    sim.submit(side, type=OrderType.LIMIT, limit_price=limit)
    sim.close_bars()
    if price is None:
        assert sim.fills() == []
        return
    assert sim.fills() == [(1, price, 1.0)]  # never slipped
    frame = sim.broker.fills_frame()
    assert frame["liquidity"].tolist() == ["maker"]
    assert frame["fee"].iloc[0] == pytest.approx(price * 0.001)


def test_orders_submitted_during_a_bar_wait_for_the_next_bar() -> None:
    sim = Sim([FLAT, (100.0, 101.0, 94.0, 95.0), (95.0, 96.0, 90.0, 91.0)])
    sim.close_bars()
    sim.clock.advance_to(BAR + 1)  # after bar 1 opened
    sim.submit("sell", type=OrderType.STOP_MARKET, stop_price=95.0)
    sim.close_bars()
    assert sim.fills() == []
    sim.close_bars()
    assert sim.fills() == [(2, 95.0, 1.0)]


def test_a_bar_processes_market_then_stops_then_take_profits_then_limits() -> None:
    sim = Sim([FLAT, FLAT, (100.0, 106.0, 94.0, 100.0), FLAT], allow_short=False)
    sim.close_bars()
    sim.submit("buy", quantity=1.0)
    sim.close_bars()
    tp = sim.submit("sell", type=OrderType.TAKE_PROFIT, stop_price=105.0, reduce_only=True)
    stop = sim.submit(
        "sell", type=OrderType.STOP_MARKET, stop_price=95.0, reduce_only=True, quantity=2.0
    )
    limit = sim.submit("buy", type=OrderType.LIMIT, limit_price=98.0, quantity=0.5)
    market = sim.submit("buy", quantity=0.25)
    sim.close_bars()
    frame = sim.broker.fills_frame()
    ids = frame["client_order_id"].tolist()[1:]
    # the market buy first, then the stop: it sells only the 1.25 held (reduce-only cut),
    # the position goes flat, the take-profit is cancelled; the limit fills last
    assert ids == [market.client_order_id, stop.client_order_id, limit.client_order_id]
    assert frame["price"].tolist()[1:] == [100.0, 95.0, 98.0]
    assert frame["quantity"].tolist()[1:] == [0.25, 1.25, 0.5]
    cut = sim.broker.order(stop.client_order_id)  # 2.0 asked, cut to the 1.25 held
    assert cut.status is OrderStatus.FILLED and cut.filled_quantity == cut.quantity == 1.25
    cancelled = sim.broker.order(tp.client_order_id)
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.reason == "position closed"
    assert cancelled.filled_quantity == 0.0


# -- partial fills, IOC, GTD ------------------------------------------------------------
def test_partial_fills_over_several_bars_with_a_volume_cap() -> None:
    rows = [FLAT, (101.0, 102.0, 100.0, 101.0, 4.0), (102.0, 103.0, 101.0, 102.0, 0.0)]
    rows += [(103.0, 104.0, 102.0, 103.0, 2.0), (104.0, 105.0, 103.0, 104.0, 10.0)]
    sim = Sim(rows, max_volume_fraction=0.5)
    sim.close_bars()
    order = sim.submit("buy", quantity=5.0)
    sim.close_bars()
    partial = sim.broker.order(order.client_order_id)
    assert partial.status is OrderStatus.PARTIALLY_FILLED and partial.filled_quantity == 2.0
    assert partial.remaining_quantity == 3.0
    sim.close_bars()  # zero volume: nothing
    sim.close_bars()
    sim.close_bars()
    assert sim.fills() == [(1, 101.0, 2.0), (3, 103.0, 1.0), (4, 104.0, 2.0)]
    done = sim.broker.order(order.client_order_id)
    assert done.status is OrderStatus.FILLED and done.filled_quantity == pytest.approx(5.0)
    assert done.average_fill_price == pytest.approx((202.0 + 103.0 + 208.0) / 5.0)
    statuses = [(e.previous_status, e.status) for e in sim.events()]
    assert statuses == [
        (OrderStatus.NEW, OrderStatus.OPEN),
        (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED),
        (OrderStatus.PARTIALLY_FILLED, OrderStatus.PARTIALLY_FILLED),
        (OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED),
    ]


def test_volume_cap_is_shared_by_the_orders_of_a_bar() -> None:
    sim = Sim([FLAT, (101.0, 102.0, 100.0, 101.0, 6.0), FLAT], max_volume_fraction=0.5)
    sim.close_bars()
    first = sim.submit("buy", quantity=2.0)
    second = sim.submit("buy", quantity=2.0)
    sim.close_bars()
    assert sim.broker.order(first.client_order_id).filled_quantity == 2.0
    assert sim.broker.order(second.client_order_id).filled_quantity == 1.0
    sim.close_bars()
    assert sim.broker.order(second.client_order_id).status is OrderStatus.FILLED


def test_a_triggered_stop_remainder_fills_at_later_opens() -> None:
    rows = [FLAT, (100.0, 106.0, 99.0, 105.0, 2.0), (107.0, 108.0, 106.0, 107.0, 100.0)]
    sim = Sim(rows, max_volume_fraction=0.5)
    sim.close_bars()
    sim.submit("buy", type=OrderType.STOP_MARKET, stop_price=104.0, quantity=3.0)
    sim.close_bars(2)
    assert sim.fills() == [(1, 104.0, 1.0), (2, 107.0, 2.0)]


def test_ioc_cancels_its_rest_after_the_first_chance() -> None:
    sim = Sim([FLAT, (101.0, 102.0, 100.0, 101.0, 2.0), FLAT], max_volume_fraction=0.5)
    sim.close_bars()
    market = sim.submit("buy", quantity=3.0, time_in_force=TimeInForce.IOC)
    limit = sim.submit("buy", type=OrderType.LIMIT, limit_price=50.0, time_in_force="ioc")
    sim.close_bars()
    m = sim.broker.order(market.client_order_id)
    assert m.status is OrderStatus.CANCELLED and m.filled_quantity == 1.0
    assert m.reason.startswith("IOC")
    li = sim.broker.order(limit.client_order_id)
    assert li.status is OrderStatus.CANCELLED and li.filled_quantity == 0.0
    assert not sim.broker.has_active_orders()


def test_gtd_orders_expire_at_the_first_bar_opening_at_or_after_their_time() -> None:
    rows = [FLAT, (100.0, 101.0, 99.5, 100.0), (100.0, 101.0, 90.0, 95.0)]
    sim = Sim(rows)
    sim.close_bars()
    order = sim.submit(
        "buy", type=OrderType.LIMIT, limit_price=95.0, time_in_force="gtd", expire_at_ms=2 * BAR
    )
    sim.close_bars()
    assert sim.broker.order(order.client_order_id).status is OrderStatus.OPEN
    sim.close_bars()  # bar 2 would fill the limit, but it opens at the expire time
    expired = sim.broker.order(order.client_order_id)
    assert expired.status is OrderStatus.EXPIRED and "expired" in expired.reason
    assert sim.fills() == []
    late = sim.submit("buy", time_in_force="gtd", expire_at_ms=3 * BAR - 1)
    assert late.status is OrderStatus.REJECTED and "already passed" in late.reason


# -- slippage -----------------------------------------------------------------------------
def test_fixed_slippage_worsens_taker_fills_and_is_clamped_to_the_bar() -> None:
    rows = [FLAT, (100.0, 100.05, 99.0, 100.0), (100.0, 101.0, 99.0, 100.0)]
    rows += [(100.0, 101.0, 99.95, 100.0)]
    sim = Sim(rows, slippage="fixed", slippage_bps=10.0)
    sim.close_bars()
    sim.submit("buy")
    sim.close_bars()
    sim.submit("buy")
    sim.submit("sell", quantity=0.5)
    sim.close_bars()
    sim.submit("sell")
    sim.close_bars()
    prices = [p for _, p, _ in sim.fills()]
    assert prices == pytest.approx([100.05, 100.1, 99.9, 99.95])  # 100.1 clamped, 99.9 clamped


def test_volatility_slippage_is_causal_and_matches_the_formula() -> None:
    rng = np.random.default_rng(3)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 40)))
    model = VolatilitySlippage(2.0, 10, closes={SYM: closes})
    expected = 2.0 * np.std(np.diff(np.log(closes[20:30])), ddof=1)
    assert model.fraction(SYM, 30) == pytest.approx(expected, rel=1e-12)
    changed = closes.copy()
    changed[30:] *= 1.5  # the fill bar and later: unseen
    assert VolatilitySlippage(2.0, 10, closes={SYM: changed}).fraction(SYM, 30) == model.fraction(
        SYM, 30
    )
    assert model.fraction(SYM, 2) == 0.0  # too few closes yet
    buy = model.adjust(OrderSide.BUY, 100.0, 1.0, symbol=SYM, bar_index=30, timestamp=0)
    assert buy == pytest.approx(100.0 * (1.0 + expected))
    sell = model.adjust(OrderSide.SELL, 100.0, 1.0, symbol=SYM, bar_index=30, timestamp=0)
    assert sell == pytest.approx(100.0 * (1.0 - expected))

    rows = [(c, c * 1.1, c * 0.9, c) for c in closes]
    sim = Sim(rows, slippage="volatility", volatility_multiplier=2.0, volatility_window=10)
    sim.close_bars(30)
    sim.submit("buy")
    sim.close_bars()
    assert sim.fills()[0][1] == pytest.approx(closes[30] * (1.0 + expected))


def _book(ts: int) -> COBData:
    prices = np.array([97.0, 98.0, 99.0, 100.0, 101.0, 102.0, 103.0])
    bids = np.array([1.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    asks = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 1.0])
    vwp = np.array([0.0, 0.0, 99.3, 0.0, 101.2, 0.0, 0.0])
    return COBData(
        symbol=Symbol.parse(SYM),
        timestamp=ts,
        current_price=100.0,
        bucket_size=1.0,
        bucket_prices=prices,
        bid_volume=bids,
        ask_volume=asks,
        imbalance=np.zeros(7),
        volume_weighted_prices=vwp,
    )


def test_order_book_walk_by_hand() -> None:
    book = _book(1_000)
    assert walk_book(book, OrderSide.BUY, 0.5) == pytest.approx(101.2)
    assert walk_book(book, OrderSide.BUY, 2.0) == pytest.approx((101.2 + 102.0) / 2.0)
    # 4 available, 6 wanted: the 2 beyond the book fill at the last bucket's price (103)
    assert walk_book(book, OrderSide.BUY, 6.0) == pytest.approx(
        (101.2 + 2 * 102.0 + 103.0 + 2 * 103.0) / 6.0
    )
    assert walk_book(book, OrderSide.SELL, 2.0) == pytest.approx((99.3 + 98.0) / 2.0)
    assert walk_book(book, OrderSide.SELL, 5.0) == pytest.approx(
        (99.3 + 2 * 98.0 + 97.0 + 97.0) / 5.0
    )
    model = OrderBookSlippage({SYM: [book, _book(5_000)]}, fallback_bps=20.0)
    assert model.snapshot_at(SYM, 999) is None
    assert model.snapshot_at(SYM, 4_999) is book
    assert model.adjust(
        OrderSide.BUY, 100.0, 2.0, symbol=SYM, bar_index=0, timestamp=999
    ) == pytest.approx(100.2)  # no snapshot yet: the fallback
    assert model.adjust(
        OrderSide.BUY, 100.0, 2.0, symbol="ETH/USDT", bar_index=0, timestamp=9_999
    ) == pytest.approx(100.2)
    with pytest.raises(ValueError, match="sorted"):
        OrderBookSlippage({SYM: [_book(5_000), book]})


def test_order_book_slippage_in_the_broker_is_clamped_to_the_bar() -> None:
    rows = [FLAT, (100.5, 102.5, 99.0, 101.0), (100.5, 101.5, 99.0, 101.0)]
    sim = Sim(rows, slippage="orderbook", slippage_bps=5.0, books={SYM: [_book(BAR - 1)]})
    sim.close_bars()
    sim.submit("buy", quantity=2.0)
    sim.close_bars()
    sim.submit("sell", quantity=2.0)
    sim.submit("buy", quantity=4.0)
    sim.close_bars()
    prices = [p for _, p, _ in sim.fills()]
    # the sell walks to 98.65, below the bar's low: clamped to 99; the buy of 4 to 102.1,
    # above the high: clamped to 101.5
    assert prices == pytest.approx([(101.2 + 102.0) / 2.0, 99.0, 101.5])
    with pytest.raises(ValueError, match="needs order book snapshots"):
        Sim(rows, slippage="orderbook")


def test_slippage_models_follow_the_protocol() -> None:
    for model in (NoSlippage(), FixedBpsSlippage(3.0), OrderBookSlippage({})):
        assert isinstance(model, SlippageModel)
    assert (
        NoSlippage().adjust(OrderSide.BUY, 10.0, 1.0, symbol=SYM, bar_index=0, timestamp=0) == 10.0
    )
    with pytest.raises(ValueError, match="bps"):
        FixedBpsSlippage(-1.0)


# -- fees -------------------------------------------------------------------------------------
def test_fee_schedule_rates_and_overrides() -> None:
    fees = FeeSchedule(
        maker=0.0002, taker=0.0007, per_symbol={ETH: SymbolFees(maker=0.0, taker=0.005)}
    )
    assert fees.rate(SYM, Liquidity.MAKER) == 0.0002
    assert fees.rate(SYM, "taker") == 0.0007
    assert fees.rates(ETH) == (0.0, 0.005)
    with pytest.raises(ValidationError, match=r"fraction in \[0, 0.1\)"):
        FeeSchedule(taker=0.1)
    with pytest.raises(ValidationError, match="fraction"):
        FeeSchedule(per_symbol={ETH: {"maker": -0.001, "taker": 0.0}})
    with pytest.raises(ValidationError):
        FeeSchedule(makr=0.001)  # unknown key refused


def test_per_symbol_fees_maker_versus_taker_in_the_broker() -> None:
    fees = FeeSchedule(
        maker=0.001, taker=0.002, per_symbol={ETH: SymbolFees(maker=0.0, taker=0.005)}
    )
    clock = ReplayClock(0)
    candles = make_candles([FLAT, (100.0, 101.0, 97.0, 100.0)])
    broker = SimulatedBroker(clock, SimulatedBrokerConfig(fees=fees), bar_ms=BAR)
    for symbol in (SYM, ETH):
        broker.on_bar(symbol, candles.rows(0, 1))
    clock.advance_to(BAR)
    for symbol in (SYM, ETH):
        broker.submit(OrderRequest(symbol, OrderSide.BUY, quantity=1.0))
        broker.submit(
            OrderRequest(symbol, OrderSide.BUY, OrderType.LIMIT, quantity=1.0, limit_price=98.0)
        )
    for symbol in (SYM, ETH):
        broker.on_bar(symbol, candles.rows(1, 2))
    fills = [e for e in broker.drain_events() if isinstance(e, Fill)]
    got = {(f.symbol, f.liquidity): f.fee for f in fills}
    assert got == pytest.approx(
        {
            (SYM, Liquidity.TAKER): 100.0 * 0.002,
            (SYM, Liquidity.MAKER): 98.0 * 0.001,
            (ETH, Liquidity.TAKER): 100.0 * 0.005,
            (ETH, Liquidity.MAKER): 0.0,
        }
    )
    assert broker.portfolio.fees_by_symbol() == pytest.approx({SYM: 0.298, ETH: 0.5})
