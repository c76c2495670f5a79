"""ExchangeBroker with a REAL ccxt.pro client against the local exchange's Binance site over
127.0.0.1: market, limit and stop orders; fills (from the user stream, or from the audit poll
when ccxt's watch misses one, which happens here when two orders fill in one step) journaled
once; lost
replies, -1007, 5xx before accept, a dropped user stream, filter refusals, a clock refusal,
and a fill while the broker is closed, each checked against the exchange's own record.

The market is a synthetic flow of 1 s candles (100 → 98 over 20 s, then up to 102 by 60 s),
moved by hand (``mode="manual"``). Timestamps are checked only in the clock test: the market
clock stands still between steps while the wall clock runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pivotal.config.models import ExchangeConfig
from pivotal.core.candles import Candles
from pivotal.core.orders import Fill, OrderRequest, OrderSide, OrderStatus, OrderType
from pivotal.localexchange.config import LOCAL_API_KEY, LOCAL_API_SECRET, ServeConfig
from pivotal.localexchange.faults import FaultConfig
from pivotal.localexchange.flow import SymbolFlow
from pivotal.localexchange.server import LocalExchangeThread
from pivotal.localexchange.synthetic import synthetic_flow
from pivotal.venues.exchange_broker import ExchangeBroker
from pivotal.venues.trading_client import ApiKeys, create_trading_client
from venues.exchange_broker_kit import FAST, entries, make_broker, wait_for

pytestmark = pytest.mark.network

T0 = 1_700_000_000_000
BTC = "BTC/USDT"


def falling_then_rising() -> SymbolFlow:
    """60 one-second candles: 100 → 98 by 20 s, then up to 102 by 60 s."""
    path = [100 - 0.1 * i for i in range(21)] + [98 + 0.1 * i for i in range(1, 41)]
    opens, closes = np.array(path[:-1]), np.array(path[1:])
    candles = Candles(
        np.arange(60, dtype=np.int64) * 1000 + T0,
        opens,
        np.maximum(opens, closes),
        np.minimum(opens, closes),
        closes,
        np.full(60, 20.0),
    )
    return synthetic_flow(candles, "1s", BTC, seed=3, trades_per_candle=8)


class Local:
    """A local exchange in a thread, and brokers over real ccxt clients pointed at it."""

    def __init__(
        self, tmp_path: Path, *, check_timestamps: bool = False, venue: str = "binance"
    ) -> None:
        self.venue = venue
        config = ServeConfig(
            venues=(venue,),
            mode="manual",
            check_timestamps=check_timestamps,
            faults=FaultConfig(weight_per_minute=None),
        )
        self.ex = LocalExchangeThread([falling_then_rising()], config).start()
        self.ex.advance_to(T0 + 999)
        self.tmp_path = tmp_path
        self.brokers: list[ExchangeBroker] = []
        self.journals: list[Any] = []

    def factory(self) -> Any:
        urls = self.ex.urls[self.venue]
        config = ExchangeConfig(rest_url=urls.rest, ws_url=urls.ws, timeout_s=3)
        keys = ApiKeys(LOCAL_API_KEY, LOCAL_API_SECRET, source="local exchange")
        return create_trading_client(self.venue, config, keys, testnet=False)

    def broker(self, name: str = "orders.sqlite", **kw: Any) -> ExchangeBroker:
        broker, journal, _ = make_broker(
            self.factory, self.tmp_path / name, venue=self.venue, sleep=time.sleep, **kw
        )
        self.brokers.append(broker)
        self.journals.append(journal)
        return broker

    def advance(self, seconds: float) -> None:
        self.ex.advance_to(T0 + int(seconds * 1000))
        time.sleep(0.05)  # let the sockets flush

    def record(self) -> dict[str, Any]:
        return self.ex.record(self.venue)

    def orders_with(self, cid: str) -> list[dict[str, Any]]:
        return [o for o in self.record()["orders"] if o["clientOrderId"] == cid]

    def close(self) -> None:
        for broker in self.brokers:
            broker.close()
        for journal in self.journals:
            journal.close()
        self.ex.stop()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    rig = Local(tmp_path)
    yield rig
    rig.close()


def request(side: str, qty: float, **kw: Any) -> OrderRequest:
    return OrderRequest(symbol=BTC, side=OrderSide(side), quantity=qty, **kw)


def drain_until(broker: ExchangeBroker, check: Any, limit_s: float = 5.0) -> list[Any]:
    got: list[Any] = []

    def done() -> bool:
        got.extend(broker.drain_events())
        return bool(check(got))

    wait_for(done, limit_s=limit_s)
    return got


def test_market_limit_and_stop_fills_journaled_once(
    local: Local, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = local.broker()
    report = broker.start()
    assert report.ok and broker.book.held("USDT") == pytest.approx(100_000.0)
    market = broker.submit(request("buy", 0.3))
    assert market.status is OrderStatus.FILLED and market.venue_order_id is not None
    limit = broker.submit(request("buy", 0.1, type=OrderType.LIMIT, limit_price=98.5))
    stop = broker.submit(request("sell", 0.1, type=OrderType.STOP_MARKET, stop_price=99.0))
    assert limit.status is OrderStatus.OPEN and stop.status is OrderStatus.OPEN
    assert {o.client_order_id for o in broker.open_orders()} == {
        limit.client_order_id, stop.client_order_id,
    }  # fmt: skip
    local.advance(25)  # 100 → 98: the stop (99) and the limit (98.5) fill
    drain_until(
        broker,
        lambda _: (
            broker.order(limit.client_order_id).status is OrderStatus.FILLED
            and broker.order(stop.client_order_id).status is OrderStatus.FILLED
        ),
    )
    time.sleep(0.2)
    broker.drain_events()
    record = local.record()
    venue_fills = {str(f["id"]) for f in record["fills"]}
    journaled = [e.data["fill"]["venue_trade_id"] for e in entries(broker.journal, "fill")]
    assert sorted(journaled) == sorted(venue_fills)  # every venue fill, once
    assert [o["clientOrderId"] for o in record["orders"]] == [
        market.client_order_id, limit.client_order_id, stop.client_order_id,
    ]  # fmt: skip
    held = record["balances"]["BTC"]
    assert broker.book.held("BTC") == pytest.approx(float(held["free"]) + float(held["locked"]))
    account = broker.account()
    assert account.positions[BTC].quantity == pytest.approx(broker.book.held("BTC"))
    journaled_text = json.dumps([e.data for e in broker.journal.entries()])
    assert LOCAL_API_SECRET not in journaled_text and LOCAL_API_SECRET not in caplog.text
    assert LOCAL_API_SECRET not in repr(broker.health())


def test_filter_refusals_are_named_and_never_sent(local: Local) -> None:
    broker = local.broker()
    broker.start()
    tiny = broker.submit(request("buy", 0.000001))
    assert tiny.status is OrderStatus.REJECTED and "min_qty" in tiny.reason
    cheap = broker.submit(request("buy", 0.00002, type=OrderType.LIMIT, limit_price=99.0))
    assert cheap.status is OrderStatus.REJECTED and "min_notional" in cheap.reason
    assert local.record()["orders"] == []


@pytest.mark.parametrize(
    ("fault", "options"),
    [("order_drop_reply", {}), ("order_unknown_1007", {}), ("order_5xx", {"after_accept": True})],
)
def test_lost_reply_is_looked_up_and_one_order_exists(
    local: Local, fault: str, options: dict[str, Any]
) -> None:
    broker = local.broker()
    broker.start()
    local.ex.inject(fault, venue="binance", **options)
    order = broker.submit(request("buy", 0.2))
    assert order.status is OrderStatus.FILLED
    assert len(local.orders_with(order.client_order_id)) == 1
    assert len(entries(broker.journal, "unknown")) == 1
    assert [e.data["attempt"] for e in entries(broker.journal, "submitted")] == [1]


def test_5xx_before_accept_is_resent_once_with_the_same_id(local: Local) -> None:
    broker = local.broker()
    broker.start()
    local.ex.inject("order_5xx", venue="binance")
    order = broker.submit(request("buy", 0.2))
    assert order.status is OrderStatus.FILLED
    assert len(local.orders_with(order.client_order_id)) == 1
    assert [e.data["attempt"] for e in entries(broker.journal, "submitted")] == [1, 2]


def test_user_stream_drop_falls_back_to_polling_and_loses_no_fill(local: Local) -> None:
    config = FAST.model_copy(update={"reconnect_initial_s": 0.5, "reconnect_max_s": 0.5})
    broker = local.broker(config=config)
    broker.start()
    limit = broker.submit(request("buy", 0.1, type=OrderType.LIMIT, limit_price=99.0))
    wait_for(lambda: broker.stream is not None and broker.stream.state == "live")
    time.sleep(0.2)  # subscribed
    polls = broker.stream.polls  # the one poll after start
    assert local.ex.inject("user_stream_drop", venue="binance") >= 1
    local.advance(15)  # 100 → 98.5: the limit fills while the socket is down
    drain_until(broker, lambda _: broker.order(limit.client_order_id).status is OrderStatus.FILLED)
    assert broker.stream.polls > polls  # REST polling while the socket was down
    alerts = [e.data["message"] for e in entries(broker.journal, "alert")]
    assert any("down" in m for m in alerts)
    wait_for(lambda: broker.stream.state == "live", limit_s=5)
    time.sleep(0.2)
    broker.drain_events()
    fills = [e.data["fill"]["venue_trade_id"] for e in entries(broker.journal, "fill")]
    venue = [str(f["id"]) for f in local.record()["fills"]]
    assert sorted(fills) == sorted(venue) and len(set(fills)) == len(fills)


def test_fill_while_closed_is_found_at_start_and_booked_once(local: Local) -> None:
    first = local.broker("j.sqlite")
    first.start()
    limit = first.submit(request("buy", 0.1, type=OrderType.LIMIT, limit_price=99.0))
    first.close()
    first.journal.close()
    local.advance(15)  # fills while no broker runs
    second = local.broker("j.sqlite")
    report = second.start()
    assert second.order(limit.client_order_id).status is OrderStatus.FILLED
    assert [d.field for d in report.differences].count("missing_fill") >= 1
    events = second.drain_events()
    fills = [e for e in events if isinstance(e, Fill)]
    venue = [str(f["id"]) for f in local.record()["fills"]]
    assert sorted(f.venue_trade_id for f in fills) == sorted(venue)
    assert len(entries(second.journal, "fill")) == len(venue)


def test_clock_refusal_resyncs_and_retries_once(tmp_path: Path) -> None:
    rig = Local(tmp_path, check_timestamps=True)
    try:
        broker = rig.broker()
        broker.start()
        broker._client.options["timeDifference"] = 120_000  # stamps 2 min in the past
        order = broker.submit(request("buy", 0.2))
        assert order.status is OrderStatus.FILLED
        assert [e.data["attempt"] for e in entries(broker.journal, "submitted")] == [1, 2]
        assert len(rig.orders_with(order.client_order_id)) == 1
        assert broker.vclock.syncs >= 2
    finally:
        rig.close()


def test_bybit_market_limit_stop_and_cancel_through_the_same_broker(tmp_path: Path) -> None:
    rig = Local(tmp_path, venue="bybit")
    try:
        broker = rig.broker()
        broker.start()
        market = broker.submit(request("buy", 0.3))
        limit = broker.submit(request("buy", 0.1, type=OrderType.LIMIT, limit_price=98.5))
        stop = broker.submit(request("sell", 0.1, type=OrderType.STOP_MARKET, stop_price=99.0))
        assert all(o.status.is_active or o.status is OrderStatus.FILLED
                   for o in (market, limit, stop))  # fmt: skip
        rest = broker.submit(request("buy", 0.1, type=OrderType.LIMIT, limit_price=90.0))
        assert broker.cancel(rest.client_order_id).status in (
            OrderStatus.PENDING_CANCEL, OrderStatus.CANCELLED,
        )  # fmt: skip
        rig.advance(25)
        ids = [o.client_order_id for o in (market, limit, stop)]
        drain_until(
            broker,
            lambda _: (
                all(broker.order(c).status is OrderStatus.FILLED for c in ids)
                and broker.order(rest.client_order_id).status is OrderStatus.CANCELLED
            ),
        )
        time.sleep(0.2)
        broker.drain_events()
        venue = sorted(str(f["id"]) for f in rig.record()["fills"])
        journaled = sorted(
            e.data["fill"]["venue_trade_id"] for e in entries(broker.journal, "fill")
        )
        assert journaled == venue and len(venue) >= 3
    finally:
        rig.close()


def test_a_stop_sent_before_its_entry_filled_is_watched_locally_and_survives_a_restart(
    local: Local,
) -> None:
    """The risk manager sends the protective stop with its entry; while a buy limit rests,
    nothing is held, so a spot venue would refuse the stop: it is watched here instead (not
    rejected, not sent), and a restart arms it again from the journal."""
    broker = local.broker()
    broker.start()
    entry = broker.submit(request("buy", 0.1, type=OrderType.LIMIT, limit_price=50.0))
    assert entry.status is OrderStatus.OPEN
    stop = broker.submit(
        request("sell", 0.1, type=OrderType.STOP_MARKET, stop_price=40.0, reduce_only=True)
    )
    assert stop.status is OrderStatus.OPEN, stop.reason
    assert "entry had not filled" in stop.reason
    assert local.orders_with(stop.client_order_id) == []  # nothing sent to the venue
    assert stop.client_order_id in broker.local_stop_ids()
    broker.close()
    local.journals.pop().close()
    local.brokers.remove(broker)
    again = local.broker()  # the same journal: a restart
    again.start()
    assert stop.client_order_id in again.local_stop_ids()
    naked = again.submit(request("sell", 0.1, type=OrderType.STOP_MARKET, stop_price=40.0,
                                 reduce_only=True, client_order_id="pv-naked-stop"))  # fmt: skip
    assert naked.status is OrderStatus.OPEN  # the entry still rests: watched as well
    # the cancel's reply settles it (Binance names the cancel request's own id in its
    # clientOrderId; it must neither be missed nor become an order of its own)
    assert again.cancel(entry.client_order_id).status is OrderStatus.CANCELLED
    ours = {entry.client_order_id, stop.client_order_id, "pv-naked-stop"}
    assert set(again.book.orders) == ours
    alone = again.submit(request("sell", 0.1, type=OrderType.STOP_MARKET, stop_price=40.0,
                                 reduce_only=True, client_order_id="pv-alone-stop"))  # fmt: skip
    assert alone.status is OrderStatus.REJECTED and "no BTC held" in alone.reason, (
        alone.reason,
        again.health(),
        [(o.client_order_id, o.status) for o in again.open_orders()],
    )
