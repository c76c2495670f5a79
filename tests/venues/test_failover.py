"""Failover and failback on a fake clock: the primary goes down, the streams move to the next
exchange after ``failover_after_s`` and back-fill from it; the probe finds the primary again,
the streams move back and back-fill the outage from the primary. Every item keeps its venue."""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt
import pytest

from pivotal.config.models import StreamsConfig
from pivotal.core.errors import ConfigError
from pivotal.core.symbols import Symbol
from pivotal.venues.failover import FailoverPolicy
from pivotal.venues.stream_events import CandleItem, StatusItem, StreamItem, TradesItem
from pivotal.venues.streams import StreamSupervisor
from venues.fake_ccxt import GO_DOWN, FakeExchange, FakeTime, run, trade

BTC = "BTC/USDT"
ETH = "ETH/USDT"
T0 = 1_700_000_000_000
CONFIG = StreamsConfig(
    backoff_initial_s=1.0,
    backoff_factor=2.0,
    backoff_max_s=4.0,
    jitter=0.0,
    failover_after_s=5.0,
    probe_every_s=3.0,
)


def mexc_trade(ts: int, price: float) -> dict[str, Any]:
    """MEXC's stream sends no trade id."""
    return {"id": None, "timestamp": ts, "price": price, "amount": 1.0, "side": "buy"}


async def take(sup: StreamSupervisor, n: int) -> list[StreamItem]:
    return [await asyncio.wait_for(sup.queue.get(), 5) for _ in range(n)]


def test_policy_orders_switches_and_wakes() -> None:
    policy = FailoverPolicy(["Binance", "mexc"], [BTC, ETH])
    btc = Symbol.parse(BTC)
    assert policy.order(btc) == ("binance", "mexc")
    assert (policy.active(btc), policy.generation(btc)) == ("binance", 0)
    assert policy.venues() == ["binance", "mexc"]

    async def main() -> int:
        waiter = asyncio.ensure_future(policy.wait_switch(btc, 0))
        await asyncio.sleep(0)
        assert not waiter.done()
        policy.switch(btc, "mexc")
        await asyncio.wait_for(waiter, 1)
        return policy.generation(btc)

    assert asyncio.run(main()) == 1
    assert policy.active(btc) == "mexc"
    assert policy.active(Symbol.parse(ETH)) == "binance"  # per symbol
    with pytest.raises(ValueError, match="not in"):
        policy.switch(btc, "bybit")
    with pytest.raises(ConfigError):
        FailoverPolicy(["binance", "binance"], [BTC])
    per_symbol = FailoverPolicy({BTC: ["mexc", "binance"], ETH: ["binance"]})
    assert per_symbol.preferred(btc) == "mexc"


def test_fails_over_after_the_outage_and_back_when_the_probe_succeeds() -> None:
    time = FakeTime(T0)
    binance = FakeExchange("binance", time, api_key="local-key")
    mexc = FakeExchange("mexc", time)
    binance.trades = [trade(i, T0 + 10 * i) for i in range(1, 9)]
    mexc.trades = [mexc_trade(T0 + 15, 50.0), mexc_trade(T0 + 25, 51.0), mexc_trade(T0 + 35, 52.0)]
    binance.push("watch_trades", [trade(1, T0 + 10), trade(2, T0 + 20)], BTC)
    binance.push("watch_trades", GO_DOWN, BTC)
    binance.push("watch_trades", [trade(8, T0 + 80)], BTC)  # after the failback
    mexc.push("watch_trades", [mexc_trade(T0 + 35, 52.0)], BTC)

    async def main() -> tuple[list[StreamItem], list[StreamItem], StreamSupervisor]:
        sup = StreamSupervisor(
            {"binance": binance, "mexc": mexc},
            [(BTC, "trades")],
            clock=time,
            config=CONFIG,
            sleep=time.sleep,
        )
        async with sup:
            before = await take(sup, 3)  # binance 1-2, the failover, mexc's back-fill
            down_at = [c[-1] for c in binance.calls if c[0] == "watch_trades"][1]
            assert isinstance(before[1], StatusItem)
            assert before[1].received_ms - down_at >= 5_000  # not before failover_after_s
            binance.down = False  # the primary comes back; the next probe finds it
            after = await take(sup, 2)
        return before, after, sup

    before, after, sup = run(main(), time)
    first, failover, mexc_fill = before
    assert isinstance(first, TradesItem)
    assert (first.exchange, first.trades.trade_id.tolist()) == ("binance", [1, 2])
    assert isinstance(failover, StatusItem)
    assert (failover.kind, failover.exchange, failover.from_exchange) == (
        "failover",
        "mexc",
        "binance",
    )
    # mexc back-filled from just after binance's last trade, its own rows under its own name
    assert isinstance(mexc_fill, TradesItem)
    assert mexc_fill.exchange == "mexc"
    assert mexc_fill.backfilled
    assert mexc_fill.trades.timestamp.tolist() == [T0 + 25, T0 + 35]
    failback, primary_fill = after
    assert isinstance(failback, StatusItem)
    assert (failback.kind, failback.exchange, failback.from_exchange) == (
        "failback",
        "binance",
        "mexc",
    )
    # binance back-filled the outage by id from where its stream stopped
    assert isinstance(primary_fill, TradesItem)
    assert primary_fill.exchange == "binance"
    assert primary_fill.trades.trade_id.tolist() == [3, 4, 5, 6, 7, 8]
    assert {"fetchTradesMethod": "publicGetHistoricalTrades", "fromId": 3} in [
        c[4] for c in binance.calls if c[0] == "fetch_trades"
    ]
    assert any(c[0] == "fetch_time" for c in binance.calls)
    assert (sup.failover.failovers, sup.failover.failbacks) == (1, 1)
    health = {h["exchange"]: h for h in sup.snapshot()}
    assert health["binance"]["failovers"] == 1
    assert health["mexc"]["failbacks"] == 1
    assert health["mexc"]["state"] == "failed-over"
    assert health["binance"]["backfilled_rows"] == 6
    assert health["mexc"]["backfilled_rows"] == 2
    assert binance.closed and mexc.closed


def test_no_failover_when_the_primary_reconnects_in_time() -> None:
    time = FakeTime(T0)
    binance = FakeExchange("binance", time, api_key="k")
    mexc = FakeExchange("mexc", time)
    binance.trades = [trade(1, T0 + 1), trade(2, T0 + 2)]
    binance.push("watch_trades", [trade(1, T0 + 1)], BTC)
    binance.push("watch_trades", ccxt.NetworkError("closed"), BTC)
    binance.push("watch_trades", ccxt.NetworkError("closed"), BTC)
    binance.push("watch_trades", [trade(2, T0 + 2)], BTC)  # up after 1 + 2 s < 5 s

    async def main() -> tuple[list[StreamItem], StreamSupervisor]:
        sup = StreamSupervisor(
            {"binance": binance, "mexc": mexc}, [(BTC, "trades")], clock=time, config=CONFIG,
            sleep=time.sleep,
        )  # fmt: skip
        async with sup:
            return await take(sup, 2), sup

    items, sup = run(main(), time)
    assert [i.exchange for i in items] == ["binance", "binance"]
    assert time.sleeps[:2] == [1.0, 2.0]  # exponential, no jitter configured
    assert sup.failover.failovers == 0
    assert mexc.calls == []


def test_all_exchanges_down_keeps_retrying_the_active_one() -> None:
    time = FakeTime(T0)
    binance = FakeExchange("binance", time)
    mexc = FakeExchange("mexc", time)
    binance.down = mexc.down = True

    async def main() -> StreamSupervisor:
        sup = StreamSupervisor(
            {"binance": binance, "mexc": mexc}, [(BTC, "book")], clock=time, config=CONFIG,
            sleep=time.sleep,
        )  # fmt: skip
        async with sup:
            while time.now < T0 + 60_000:
                await asyncio.sleep(0)
            return sup

    sup = run(main(), time)
    # one move to mexc; mexc is down too and binance still is, so the stream stays and retries
    assert sup.failover.failovers == 1
    assert sup.failover.probes >= 10
    assert sup.failover.probe_failures == sup.failover.probes
    states = {h["exchange"]: (h["state"], h["disconnects"] >= 3) for h in sup.snapshot()}
    assert states == {"binance": ("failed-over", True), "mexc": ("stopped", True)}


def test_a_channel_the_fallback_lacks_waits_there_and_resumes_on_failback() -> None:
    time = FakeTime(T0)
    binance = FakeExchange("binance", time)
    mexc = FakeExchange("mexc", time)
    mexc.timeframes = {"1m": "1m", "1h": "1h"}  # no 1s candles on MEXC
    s = 1000
    binance.candles = [[T0 + i * s, 10.0 + i, 11.0 + i, 9.0 + i, 10.0 + i, 1.0] for i in range(6)]
    binance.push("watch_ohlcv", [binance.candles[0]], BTC, "1s")
    binance.push("watch_ohlcv", GO_DOWN, BTC, "1s")
    binance.push("watch_ohlcv", [binance.candles[5]], BTC, "1s")

    async def main() -> tuple[list[StreamItem], StreamSupervisor]:
        sup = StreamSupervisor(
            {"binance": binance, "mexc": mexc}, [(BTC, "ohlcv:1s")], clock=time, config=CONFIG,
            sleep=time.sleep,
        )  # fmt: skip
        async with sup:
            items = await take(sup, 3)  # the forming candle, failover, failed on mexc
            binance.down = False
            items += await take(sup, 6)  # failback, 5 closed candles back-filled, forming
            return items, sup

    items, sup = run(main(), time)
    kinds = [(type(i).__name__, getattr(i, "kind", None), i.exchange) for i in items]
    assert kinds[:4] == [
        ("CandleItem", None, "binance"),
        ("StatusItem", "failover", "mexc"),
        ("StatusItem", "failed", "mexc"),
        ("StatusItem", "failback", "binance"),
    ]
    failed = items[2]
    assert isinstance(failed, StatusItem)
    assert "no 1s candles" in failed.detail
    candles = [i for i in items[4:] if isinstance(i, CandleItem)]
    assert [((c.open_time - T0) // s, c.closed, c.backfilled) for c in candles] == [
        (0, True, True),
        (1, True, True),
        (2, True, True),
        (3, True, True),
        (4, True, True),
    ]
    assert mexc.subscribes() == []  # refused before any request
    health = {h["exchange"]: h["state"] for h in sup.snapshot()}
    assert health == {"binance": "stopped", "mexc": "failed"}
