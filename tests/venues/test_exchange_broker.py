"""ExchangeBroker against a fake ccxt venue (tests/venues/fake_trading_ccxt.py): placement,
look-ups after lost replies, refusals, cancel, the user stream and its REST fallback,
restart, local stops, flatten and the account."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pivotal.core.errors import ConfigError, OperationalError, TransientError
from pivotal.core.events import TradesReceived
from pivotal.core.orders import Fill, OrderEvent, OrderRequest, OrderSide, OrderStatus, OrderType
from pivotal.core.trades import Trades
from pivotal.venues.exchange_broker_book import LOCAL_STOP_REASON
from pivotal.venues.exchange_broker_orders import NOT_PLACED
from venues.exchange_broker_kit import FAST, entries, make_broker, wait_for
from venues.fake_trading_ccxt import BTC, FakeTradingExchange


@pytest.fixture
def fake() -> FakeTradingExchange:
    return FakeTradingExchange()


@pytest.fixture
def broker(fake: FakeTradingExchange, tmp_path: Path):
    b, journal, _ = make_broker(lambda: fake, tmp_path / "orders.sqlite")
    b.start()
    yield b
    b.close()
    journal.close()


def buy(qty: float = 0.5, **kw: object) -> OrderRequest:
    return OrderRequest(symbol=BTC, side=OrderSide.BUY, quantity=qty, **kw)  # type: ignore[arg-type]


def fills(events: list) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill)]


def test_market_buy_fills_once_from_the_reply_and_the_stream(broker, fake) -> None:
    order = broker.submit(buy(0.5))
    assert order.status is OrderStatus.FILLED
    assert order.client_order_id.startswith("pv") and len(order.client_order_id) <= 32
    assert fake.count("create_order") == 1
    # the stream delivers the same trade again: booked once
    wait_for(lambda: broker._queue.qsize() >= 2)
    events = broker.drain_events()
    assert len(fills(events)) == 1
    statuses = [e.status for e in events if isinstance(e, OrderEvent)]
    assert statuses == [OrderStatus.SUBMITTED, OrderStatus.FILLED]
    assert len(entries(broker.journal, "fill")) == 1
    kinds = [e.kind for e in broker.journal.entries(kinds=["intent", "submitted", "order"])]
    assert kinds[:2] == ["intent", "submitted"]
    fill = fills(events)[0]
    assert fill.quantity == pytest.approx(0.5) and fill.fee == pytest.approx(0.05)


def test_filter_refusals_name_the_filter_and_numbers_and_send_nothing(broker, fake) -> None:
    tiny = broker.submit(buy(0.000001))
    assert tiny.status is OrderStatus.REJECTED
    assert "min_qty" in tiny.reason and "0.00001" in tiny.reason
    cheap = broker.submit(buy(0.01))  # 0.01 x 100 = 1 USDT < 5
    assert "min_notional" in cheap.reason and "5" in cheap.reason
    frac = broker.submit(OrderRequest(symbol=BTC, side=OrderSide.BUY, equity_fraction=0.5))
    assert frac.status is OrderStatus.REJECTED and "equity_fraction" in frac.reason
    short = broker.submit(OrderRequest(symbol=BTC, side=OrderSide.SELL, quantity=1.0))
    assert "no shorting on spot" in short.reason
    assert fake.count("create_order") == 0
    rounded = broker.submit(
        buy(0.123456789, type=OrderType.LIMIT, limit_price=90.129)  # type: ignore[arg-type]
    )
    assert rounded.quantity == pytest.approx(0.12345) and rounded.request.limit_price == 90.12


def test_reply_dropped_after_accept_is_looked_up_and_one_order_exists(broker, fake) -> None:
    fake.fault("drop_reply")
    order = broker.submit(buy(0.2))
    assert order.status is OrderStatus.FILLED
    assert len(fake.venue_orders(order.client_order_id)) == 1
    assert fake.count("create_order") == 1
    assert len(entries(broker.journal, "unknown")) == 1


def test_binance_1007_is_looked_up_not_resent(broker, fake) -> None:
    fake.fault("unknown_1007")
    order = broker.submit(buy(0.2))
    assert order.status is OrderStatus.FILLED
    assert fake.count("create_order") == 1 and fake.count("fetch_order") >= 1


def test_5xx_before_accept_is_resent_once_with_the_same_id(fake, tmp_path) -> None:
    b, journal, waits = make_broker(lambda: fake, tmp_path / "j.sqlite")
    b.start()
    try:
        fake.fault("5xx")
        order = b.submit(buy(0.2))
        creates = [c for c in fake.calls if c[0] == "create_order"]
        assert len(creates) == 2
        assert creates[0][-1] == creates[1][-1]  # same client id params
        assert len(fake.venue_orders()) == 1 and order.status is OrderStatus.FILLED
        # it waited for the request's recvWindow before declaring it absent
        assert any(0.2 < w <= 0.6 for w in waits)
        assert [e.data["attempt"] for e in entries(journal, "submitted")] == [1, 2]
    finally:
        b.close()
        journal.close()


def test_clock_refusal_resyncs_and_retries_once(broker, fake) -> None:
    syncs = fake.count("fetch_time")
    fake.fault("clock")
    order = broker.submit(buy(0.2))
    assert order.status is OrderStatus.FILLED
    assert fake.count("fetch_time") == syncs + 1 and fake.count("create_order") == 2
    fake.fault("clock", "clock")
    again = broker.submit(buy(0.2))
    assert again.status is OrderStatus.REJECTED and "-1021" in again.reason


def test_business_refusal_is_explained_and_never_retried(broker, fake) -> None:
    fake.fault("reject:-2010:Account has insufficient balance for requested action.")
    order = broker.submit(buy(0.2))
    assert order.status is OrderStatus.REJECTED
    assert order.reason.startswith("binance -2010") and "insufficient balance" in order.reason
    assert fake.count("create_order") == 1


def test_rate_limit_exhausted_raises_transient_and_the_id_can_be_reused(broker, fake) -> None:
    fake.fault("rate_limit", "rate_limit", "rate_limit")
    request = buy(0.2, client_order_id="pv-manual-1")  # type: ignore[arg-type]
    with pytest.raises(TransientError):
        broker.submit(request)
    assert broker.order("pv-manual-1").reason.startswith(NOT_PLACED)
    assert fake.count("create_order") == 3 and not fake.venue_orders()
    order = broker.submit(request)
    assert order.status is OrderStatus.FILLED and len(fake.venue_orders()) == 1


def test_submit_with_an_existing_client_id_returns_the_order(broker, fake) -> None:
    request = buy(0.2, client_order_id="pv-same")  # type: ignore[arg-type]
    first = broker.submit(request)
    assert broker.submit(request) is first
    assert fake.count("create_order") == 1


def test_cancel_a_resting_limit_and_an_unknown_one(broker, fake) -> None:
    order = broker.submit(buy(0.2, type=OrderType.LIMIT, limit_price=90.0))  # type: ignore[arg-type]
    assert order.status is OrderStatus.OPEN
    cancelled = broker.cancel(order.client_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert len(entries(broker.journal, "cancel_request")) == 1
    other = broker.submit(buy(0.2, type=OrderType.LIMIT, limit_price=95.0))  # type: ignore[arg-type]
    fake.stream_connected = False  # the stream's news is lost: the cancel learns by look-up
    fake.move(BTC, 94.0)  # fills at the venue
    lookups = fake.count("fetch_order")
    after = broker.cancel(other.client_order_id)
    assert after.status is OrderStatus.FILLED and fake.count("fetch_order") == lookups + 1
    with pytest.raises(KeyError):
        broker.cancel("nope")


def test_stream_drop_switches_to_polling_and_loses_no_fill(fake, tmp_path) -> None:
    config = FAST.model_copy(update={"reconnect_initial_s": 0.4, "reconnect_max_s": 0.4})
    b, journal, _ = make_broker(lambda: fake, tmp_path / "j.sqlite", config=config)
    b.start()
    try:
        order = b.submit(buy(0.2, type=OrderType.LIMIT, limit_price=95.0))  # type: ignore[arg-type]
        wait_for(lambda: fake.count("watch_orders") >= 1 and b.stream.polls >= 1)
        polls = b.stream.polls
        fake.drop_stream()
        fake.move(BTC, 94.0)  # fills while the socket is down
        got: list = []
        wait_for(lambda: bool(got.extend(b.drain_events()) or fills(got)), limit_s=5)
        assert b.order(order.client_order_id).status is OrderStatus.FILLED
        assert b.stream.polls > polls
        alerts = [e.data["message"] for e in entries(journal, "alert")]
        assert any("down" in m for m in alerts)
        wait_for(lambda: b.stream is not None and b.stream.state == "live", limit_s=5)
        b.drain_events()
        assert len(entries(journal, "fill")) == 1
    finally:
        b.close()
        journal.close()


def test_fill_while_closed_is_found_at_start_and_booked_once(fake, tmp_path) -> None:
    path = tmp_path / "j.sqlite"
    b, journal, _ = make_broker(lambda: fake, path)
    b.start()
    order = b.submit(buy(0.2, type=OrderType.LIMIT, limit_price=95.0))  # type: ignore[arg-type]
    b.close()
    journal.close()
    fake.move(BTC, 94.0)  # fills while no broker runs
    b2, journal2, _ = make_broker(lambda: fake, path)
    report = b2.start()
    try:
        assert b2.order(order.client_order_id).status is OrderStatus.FILLED
        assert [d.field for d in report.differences].count("missing_fill") == 1
        assert len(entries(journal2, "fill")) == 1
        events = b2.drain_events()
        assert len(fills(events)) == 1
        assert b2.account().positions[BTC].quantity == pytest.approx(0.2)
    finally:
        b2.close()
        journal2.close()


def test_start_refuses_an_unreachable_venue_and_an_unlisted_symbol(fake, tmp_path) -> None:
    fake.down = True
    b, journal, _ = make_broker(lambda: fake, tmp_path / "a.sqlite")
    with pytest.raises(OperationalError, match="refusing to start"):
        b.start()
    journal.close()
    fake.down = False
    b, journal, _ = make_broker(lambda: fake, tmp_path / "b.sqlite", symbols=("ETH/USDT",))
    with pytest.raises(ConfigError, match="not listed"):
        b.start()
    journal.close()


def test_mexc_stop_is_watched_locally_and_fires_under_its_own_id(tmp_path) -> None:
    fake = FakeTradingExchange("mexc")
    b, journal, _ = make_broker(lambda: fake, tmp_path / "j.sqlite", venue="mexc")
    b.start()
    try:
        b.submit(buy(0.5))
        stop = b.submit(
            OrderRequest(symbol=BTC, side=OrderSide.SELL, type=OrderType.STOP_MARKET,
                         quantity=0.5, stop_price=95.0)
        )  # fmt: skip
        assert stop.status is OrderStatus.OPEN and stop.reason == LOCAL_STOP_REASON
        assert [i.data["local_stop"] for i in entries(journal, "intent")] == [False, True]
        assert fake.count("create_order") == 1
        fake.price[BTC] = 94.0
        trades = Trades(
            timestamp=np.array([1, 2], dtype=np.int64), price=np.array([96.0, 94.5]),
            quantity=np.array([1.0, 1.0]), is_buyer_maker=np.array([False, True]),
            trade_id=np.array([1, 2], dtype=np.int64),
        )  # fmt: skip
        b.on_event(TradesReceived(BTC, trades, 2))
        fired = b.order(stop.client_order_id)
        assert fired.status is OrderStatus.FILLED and "triggered at 94.5" in fired.reason
        sent = [c for c in fake.calls if c[0] == "create_order"][-1]
        assert sent[2] == "market" and sent[-1]["clientOrderId"] == stop.client_order_id
    finally:
        b.close()
        journal.close()


def test_mexc_symbol_not_enabled_for_api_is_explained(tmp_path) -> None:
    fake = FakeTradingExchange("mexc")
    b, journal, _ = make_broker(lambda: fake, tmp_path / "j.sqlite", venue="mexc")
    b.start()
    try:
        fake.fault("reject:10007:symbol not support api")
        order = b.submit(buy(0.2))
        assert order.status is OrderStatus.REJECTED and "enable it for this symbol" in order.reason
    finally:
        b.close()
        journal.close()


def test_flatten_sells_the_base_and_reports_dust(broker, fake) -> None:
    broker.submit(buy(0.3))
    sold = broker.flatten(BTC)
    assert sold is not None and sold.status is OrderStatus.FILLED
    assert sold.quantity == pytest.approx(0.3)
    assert broker.flatten(BTC) is None  # nothing left
    fake.balances["BTC"][0] = 0.000004
    dust = broker.flatten(BTC)
    assert dust is not None and dust.status is OrderStatus.REJECTED and "min_qty" in dust.reason


def test_account_follows_the_spot_rule(broker, fake) -> None:
    broker.submit(buy(1.0))
    broker.drain_events()
    fake.price[BTC] = 110.0
    broker.book.marks[BTC] = 110.0
    account = broker.account()
    position = account.positions[BTC]
    assert position.quantity == pytest.approx(1.0)
    assert position.average_entry_price == pytest.approx(100.0)
    assert position.unrealized_pnl == pytest.approx(10.0)
    usdt = 10_000.0 - 100.0 - 0.1
    assert account.equity == pytest.approx(usdt + 110.0)
    assert account.cash == pytest.approx(account.equity - 10.0)
    assert account.margin_used == pytest.approx(110.0) and account.available == pytest.approx(usdt)
    assert account.leverage == 1.0 and account.fees_paid == pytest.approx(0.1)


def test_a_long_rate_limit_hold_refuses_before_sending(broker, fake) -> None:
    assert broker.limiter is not None
    broker.limiter.gate.block_for(120)  # a 418 ban
    with pytest.raises(TransientError) as caught:
        broker.submit(buy(0.2))
    assert caught.value.retry_after_s is not None and caught.value.retry_after_s > 100
    assert fake.count("create_order") == 0


def test_order_in_doubt_is_reconciled_by_the_next_drain(broker, fake) -> None:
    fake.fault("drop_reply_down")
    with pytest.raises(TransientError, match="stays SUBMITTED"):
        broker.submit(buy(0.2, client_order_id="pv-doubt"))  # type: ignore[arg-type]
    assert broker.order("pv-doubt").status is OrderStatus.SUBMITTED
    fake.down = False
    events = broker.drain_events()
    assert broker.order("pv-doubt").status is OrderStatus.FILLED
    assert len(fills(events)) == 1 and len(fake.venue_orders("pv-doubt")) == 1
    assert broker.last_report is not None and broker.last_report.ok


def test_foreign_open_order_is_adopted_at_start(fake, tmp_path) -> None:
    import asyncio

    asyncio.run(fake.create_order(BTC, "limit", "buy", 0.1, 90.0, {"clientOrderId": "by-hand"}))
    b, journal, _ = make_broker(lambda: fake, tmp_path / "j.sqlite")
    report = b.start()
    try:
        assert [d.field for d in report.differences if d.field == "foreign_order"] == [
            "foreign_order"
        ]
        assert [o.client_order_id for o in b.open_orders()] == ["by-hand"]
        assert b.cancel("by-hand").status is OrderStatus.CANCELLED
    finally:
        b.close()
        journal.close()


def test_a_local_stop_survives_a_restart(tmp_path) -> None:
    fake = FakeTradingExchange("mexc")
    path = tmp_path / "j.sqlite"
    b, journal, _ = make_broker(lambda: fake, path, venue="mexc")
    b.start()
    b.submit(buy(0.5))
    stop = b.submit(
        OrderRequest(symbol=BTC, side=OrderSide.SELL, type=OrderType.STOP_MARKET,
                     quantity=0.5, stop_price=95.0)
    )  # fmt: skip
    b.close()
    journal.close()
    b2, journal2, _ = make_broker(lambda: fake, path, venue="mexc")
    report = b2.start()
    try:
        assert report.ok, report.lines()
        assert b2.local_stop_ids() == [stop.client_order_id]
        assert b2.order(stop.client_order_id).status is OrderStatus.OPEN
        assert b2.cancel(stop.client_order_id).status is OrderStatus.CANCELLED
        assert fake.count("cancel_order") == 0
    finally:
        b2.close()
        journal2.close()


def test_a_local_stop_refused_for_a_rate_limit_stays_armed(tmp_path) -> None:
    fake = FakeTradingExchange("mexc")
    b, journal, _ = make_broker(lambda: fake, tmp_path / "j.sqlite", venue="mexc")
    b.start()
    try:
        b.submit(buy(0.5))
        stop = b.submit(
            OrderRequest(symbol=BTC, side=OrderSide.SELL, type=OrderType.STOP_MARKET,
                         quantity=0.5, stop_price=95.0)
        )  # fmt: skip
        fake.fault("rate_limit", "rate_limit", "rate_limit")
        low = Trades(
            timestamp=np.array([1], dtype=np.int64), price=np.array([94.0]),
            quantity=np.array([1.0]), is_buyer_maker=np.array([True]),
            trade_id=np.array([1], dtype=np.int64),
        )  # fmt: skip
        b.on_event(TradesReceived(BTC, low, 1))
        assert b.order(stop.client_order_id).status is OrderStatus.OPEN
        assert b.local_stop_ids() == [stop.client_order_id]
        b.on_event(TradesReceived(BTC, low, 2))  # the next crossing fires it again
        assert b.order(stop.client_order_id).status is OrderStatus.FILLED
        assert len(fake.venue_orders(stop.client_order_id)) == 1
    finally:
        b.close()
        journal.close()


def test_audit_poll_catches_a_fill_the_live_stream_missed(broker, fake) -> None:
    order = broker.submit(buy(0.2, type=OrderType.LIMIT, limit_price=95.0))  # type: ignore[arg-type]
    wait_for(lambda: broker.stream is not None and broker.stream.polls >= 1)
    fake.stream_connected = False  # the socket stays up but a message is lost (ccxt#27412)
    fake.move(BTC, 94.0)
    got: list = []
    wait_for(lambda: bool(got.extend(broker.drain_events()) or fills(got)), limit_s=5)
    assert broker.order(order.client_order_id).status is OrderStatus.FILLED
    assert broker.stream.state == "live" and broker.stream.audits >= 1
    assert len(entries(broker.journal, "fill")) == 1
